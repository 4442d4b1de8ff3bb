//! Every N-API primitive the binding calls by hand, and the scratch buffer's
//! memory: the crate's `unsafe` code (besides the one-line `extern "C"`
//! shims `raw.rs` generates around its entry points' safe bodies).
//!
//! The per-stream entry points (`raw.rs`) are plain N-API callbacks, not
//! napi-rs' generated glue, because they run once or more per event (see
//! `raw.rs` for the measured difference). This module makes them safe to
//! write: [`callback`] turns a callback's `(env, info)` into a [`Scope`] and
//! its arguments into [`Value`]s that cannot outlive the call, catches panics,
//! and throws errors; the other functions read and make values within a
//! scope.
//!
//! Everything else the binding does through napi-rs' safe API.

use std::cell::Cell;
use std::ffi::CString;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::{self, NonNull};
use std::sync::Arc;

use napi::bindgen_prelude::{Env, Error, Function, Result, Status, ToNapiValue};
use napi::sys;
use napi::threadsafe_function::ThreadsafeFunction;

/// The running N-API callback: its env, valid until the callback returns.
/// `'s` is the callback's lifetime; nothing tied to it can be kept.
#[derive(Clone, Copy)]
pub(crate) struct Scope<'s> {
    env: sys::napi_env,
    call: PhantomData<&'s ()>,
}

/// A JavaScript value handle of a [`Scope`].
#[derive(Clone, Copy)]
pub(crate) struct Value<'s> {
    raw: sys::napi_value,
    scope: PhantomData<&'s ()>,
}

/// The error every failed N-API call becomes: which read or write failed.
pub(crate) fn fail(what: &str) -> Error {
    Error::from_reason(format!("velo-stream: {what}"))
}

fn ok(status: sys::napi_status, what: &str) -> Result<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(fail(what))
    }
}

/// Runs `body` as the body of an N-API callback, on the callback's first `N`
/// arguments (missing ones are `undefined`), and returns what the callback
/// returns to JavaScript. An error, or a panic, becomes a thrown JS error
/// (Node aborts the process if a panic unwinds into it).
///
/// # Safety
/// `env` and `info` must be the arguments Node passed to the N-API callback
/// that is running on this thread now.
pub(crate) unsafe fn callback<const N: usize>(
    env: sys::napi_env,
    info: sys::napi_callback_info,
    body: impl for<'s> FnOnce(Scope<'s>, [Value<'s>; N]) -> Result<Value<'s>>,
) -> sys::napi_value {
    let scope = Scope {
        env,
        call: PhantomData,
    };
    let run = || {
        let mut argv = [ptr::null_mut(); N];
        let mut argc = N;
        // SAFETY: `env` and `info` are the running callback's (the caller's
        // contract); `argv` has room for `argc` values, and the call writes
        // nothing else.
        let status = unsafe {
            sys::napi_get_cb_info(
                env,
                info,
                &mut argc,
                argv.as_mut_ptr(),
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        ok(status, "arguments")?;
        body(
            scope,
            argv.map(|raw| Value {
                raw,
                scope: PhantomData,
            }),
        )
    };
    let message = match catch_unwind(AssertUnwindSafe(run)) {
        Ok(Ok(value)) => return value.raw,
        Ok(Err(error)) => error.reason,
        Err(panic) => panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "velo-stream: panic in native code".to_owned()),
    };
    let message = CString::new(message.replace('\0', " ")).unwrap_or_default();
    // SAFETY: `env` is the running callback's; the message is a valid C
    // string that outlives the call (Node copies it).
    unsafe { sys::napi_throw_error(env, ptr::null(), message.as_ptr()) };
    ptr::null_mut()
}

impl<'s> Scope<'s> {
    /// A number argument.
    pub(crate) fn number(self, value: Value<'s>) -> Result<f64> {
        let mut n = 0.0;
        // SAFETY: both handles belong to the running callback (`'s`); the
        // call writes only `n`.
        let status = unsafe { sys::napi_get_value_double(self.env, value.raw, &mut n) };
        ok(status, "expected a number")?;
        Ok(n)
    }

    /// A value-table index argument (a number in `0..2^32`).
    pub(crate) fn index(self, value: Value<'s>) -> Result<u32> {
        let mut i = 0;
        // SAFETY: as in `number`; writes only `i`.
        let status = unsafe { sys::napi_get_value_uint32(self.env, value.raw, &mut i) };
        ok(status, "expected an index")?;
        Ok(i)
    }

    /// A boolean argument.
    pub(crate) fn flag(self, value: Value<'s>) -> Result<bool> {
        let mut b = false;
        // SAFETY: as in `number`; writes only `b`.
        let status = unsafe { sys::napi_get_value_bool(self.env, value.raw, &mut b) };
        ok(status, "expected a boolean")?;
        Ok(b)
    }

    /// A small integer result.
    pub(crate) fn int(self, i: i32) -> Result<Value<'s>> {
        let mut raw = ptr::null_mut();
        // SAFETY: the running callback's env; writes only `raw`.
        let status = unsafe { sys::napi_create_int32(self.env, i, &mut raw) };
        ok(status, "int")?;
        Ok(self.wrap(raw))
    }

    /// A number result.
    pub(crate) fn double(self, n: f64) -> Result<Value<'s>> {
        let mut raw = ptr::null_mut();
        // SAFETY: the running callback's env; writes only `raw`.
        let status = unsafe { sys::napi_create_double(self.env, n, &mut raw) };
        ok(status, "number")?;
        Ok(self.wrap(raw))
    }

    /// A boolean result.
    pub(crate) fn boolean(self, b: bool) -> Result<Value<'s>> {
        let mut raw = ptr::null_mut();
        // SAFETY: the running callback's env; writes only `raw`.
        let status = unsafe { sys::napi_get_boolean(self.env, b, &mut raw) };
        ok(status, "boolean")?;
        Ok(self.wrap(raw))
    }

    /// `undefined`, for entry points that return nothing.
    pub(crate) fn undefined(self) -> Result<Value<'s>> {
        let mut raw = ptr::null_mut();
        // SAFETY: the running callback's env; writes only `raw`.
        let status = unsafe { sys::napi_get_undefined(self.env, &mut raw) };
        ok(status, "undefined")?;
        Ok(self.wrap(raw))
    }

    /// Any value napi-rs converts (a `#[napi(object)]` struct, say).
    pub(crate) fn convert(self, value: impl ToNapiValue) -> Result<Value<'s>> {
        // SAFETY: the running callback's env, the one the value is made in.
        let raw = unsafe { ToNapiValue::to_napi_value(self.env, value) }?;
        Ok(self.wrap(raw))
    }

    fn wrap(self, raw: sys::napi_value) -> Value<'s> {
        Value {
            raw,
            scope: PhantomData,
        }
    }

    /// Registers `array` (a `Float64Array`) as this thread's scratch buffer,
    /// for good. Refused if one is already registered: its memory is the one
    /// every copy of the JS module on this thread uses (see `shared.rs`).
    pub(crate) fn register_scratch(self, array: Value<'s>) -> Result<()> {
        if SCRATCH.with(Cell::get) != ScratchState::Unset {
            return Err(fail(
                "setScratch: a scratch buffer is already registered on this thread",
            ));
        }
        let mut kind = 0;
        let mut len = 0;
        let mut data = ptr::null_mut();
        let mut buffer = ptr::null_mut();
        let mut offset = 0;
        // SAFETY: both handles belong to the running callback; the call
        // writes only the five out-values.
        let status = unsafe {
            sys::napi_get_typedarray_info(
                self.env,
                array.raw,
                &mut kind,
                &mut len,
                &mut data,
                &mut buffer,
                &mut offset,
            )
        };
        ok(status, "expected a Float64Array")?;
        if kind != sys::TypedarrayType::float64_array {
            return Err(fail("expected a Float64Array"));
        }
        let Some(data) = NonNull::new(data.cast::<f64>()) else {
            return Err(fail("expected a non-empty Float64Array"));
        };
        // The views point into the array's memory: a strong reference, never
        // deleted, keeps it alive for the life of the thread.
        let mut keep = ptr::null_mut();
        // SAFETY: both handles belong to the running callback; writes only
        // `keep`.
        let status = unsafe { sys::napi_create_reference(self.env, array.raw, 1, &mut keep) };
        ok(status, "reference")?;
        SCRATCH.with(|s| s.set(ScratchState::Free { data, len }));
        Ok(())
    }
}

/// Where this thread's scratch buffer is, and whether a [`Scratch`] has it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ScratchState {
    Unset,
    Free { data: NonNull<f64>, len: usize },
    Lent,
}

thread_local! {
    /// The buffer registered by `setScratch`. Numbers and table indices
    /// cross in bulk through its memory instead of one N-API element access
    /// each (~25-30 ns apiece, measured).
    static SCRATCH: Cell<ScratchState> = const { Cell::new(ScratchState::Unset) };
}

/// The scratch buffer, lent to one user at a time: seen as `f64`s or, the
/// same bytes, as twice as many `u32`s. Given back when dropped.
pub(crate) struct Scratch {
    data: NonNull<f64>,
    len: usize,
}

impl Scratch {
    /// The buffer, if registered and not lent already.
    pub(crate) fn lend() -> Result<Scratch> {
        match SCRATCH.with(|s| s.replace(ScratchState::Lent)) {
            ScratchState::Free { data, len } => Ok(Scratch { data, len }),
            other => {
                SCRATCH.with(|s| s.set(other));
                Err(fail(if other == ScratchState::Unset {
                    "scratch buffer not registered"
                } else {
                    "scratch buffer in use"
                }))
            }
        }
    }

    /// Its length in `f64`s.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The buffer as `f64`s.
    pub(crate) fn f64s(&mut self) -> &mut [f64] {
        // SAFETY: `data` came from a live Float64Array of `len` elements
        // (8-aligned) that a strong reference keeps alive for the life of
        // the thread, and its backing store never moves (nothing detaches it:
        // only `js/core/addon.ts` holds it). Only this thread reaches it, no
        // JavaScript runs while a native call has it, and this `Scratch` is
        // its only holder (`lend`), so the borrow is exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.data.as_ptr(), self.len) }
    }

    /// The same bytes as `u32`s.
    pub(crate) fn u32s(&mut self) -> &mut [u32] {
        // SAFETY: as in `f64s`: the same memory, exclusively borrowed, seen
        // as `2 * len` u32s (any bit pattern is a valid u32; alignment 4
        // divides 8).
        unsafe { std::slice::from_raw_parts_mut(self.data.as_ptr().cast(), self.len * 2) }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let (data, len) = (self.data, self.len);
        SCRATCH.with(|s| s.set(ScratchState::Free { data, len }));
    }
}

/// The idle notifier's JS function: a weak threadsafe function (it does not
/// keep Node alive by itself), made on this thread and, unlike napi-rs' own
/// handle, never sent to another: only this thread may ref and unref it.
pub(crate) struct LocalNotify {
    tsfn: Arc<Notify>,
    /// `!Send`: ref and unref act on the event loop of the making thread.
    thread: PhantomData<*const ()>,
}

/// The notifier's function, as other threads call it.
pub(crate) type Notify = ThreadsafeFunction<(), (), (), Status, false, true>;

impl LocalNotify {
    /// Wraps `callback` (its errors are not passed to it: it must not throw).
    pub(crate) fn new(callback: Function<'_, (), ()>) -> Result<Self> {
        let tsfn = callback
            .build_threadsafe_function()
            .weak::<true>()
            .callee_handled::<false>()
            .build()?;
        Ok(LocalNotify {
            tsfn: Arc::new(tsfn),
            thread: PhantomData,
        })
    }

    /// The function, for a thread that calls it.
    pub(crate) fn shared(&self) -> Arc<Notify> {
        Arc::clone(&self.tsfn)
    }

    /// Makes the function keep the event loop alive (`on`) or not. (napi-rs'
    /// `refer`/`unref` need it by `&mut`, which a shared one is not.)
    pub(crate) fn keep_alive(&self, env: &Env, on: bool) -> Result<()> {
        let status = if on {
            // SAFETY: the function is alive (held by `self`) and was made on
            // this thread (`LocalNotify` is `!Send`), whose env `env` is (an
            // `Env` is `!Send` too, and a thread has one Node environment).
            unsafe { sys::napi_ref_threadsafe_function(env.raw(), self.tsfn.raw()) }
        } else {
            // SAFETY: as above.
            unsafe { sys::napi_unref_threadsafe_function(env.raw(), self.tsfn.raw()) }
        };
        ok(status, "keepAlive failed")
    }
}
