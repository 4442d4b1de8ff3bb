//! The per-stream entry points, as hand-written N-API callbacks.
//!
//! These run once or more per event, so they skip napi-rs' generated glue
//! (argument conversion, class unwrap and type-tag checks: ~240 ns a call,
//! measured) for direct `napi_*` calls on a slab handle. Each one still
//! catches panics and reports errors as thrown JS errors, like the derived
//! entry points. They are installed on `exports.stream` by [`install`].

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use napi::bindgen_prelude::*;
use napi::sys;
use napi::JsValue;
use napi_derive::napi;
use velo_core::{clock, IdleVerdict, Phase, Push, Take};

use crate::slot::{bind_env, Slot};
use crate::streams;

/// Status codes shared with `js/native.ts`.
const ACCEPTED: i32 = 0;
const ACCEPTED_WAKE: i32 = 1;
const PARKED: i32 = 2;
const CLOSED: i32 = 3;
/// The other side was parked waiting: the core counted the value, and the
/// caller hands it over itself (nothing was stored).
const HANDOFF: i32 = 4;
const EMPTY: i32 = -1;
const ENDED: i32 = -2;
/// Added to a take's count when the run is numbers, written to the scratch
/// buffer instead of the JS array.
const NUMBERS: i32 = 1 << 30;

thread_local! {
    /// The `Float64Array` registered by `setScratch`: numbers cross in bulk
    /// through its memory instead of one `napi_get/set_element` each
    /// (~25-30 ns apiece, measured). Its backing store never moves.
    static SCRATCH: Cell<(*mut f64, usize)> = const { Cell::new((ptr::null_mut(), 0)) };
}

fn scratch() -> Result<&'static mut [f64]> {
    let (data, len) = SCRATCH.with(Cell::get);
    if data.is_null() {
        return Err(fail("scratch buffer not registered"));
    }
    // SAFETY: set by `set_scratch` from a live Float64Array that a strong
    // reference keeps alive for the life of the thread; only this thread
    // touches it, and no two borrows of it overlap (each entry point takes
    // one and drops it before returning).
    Ok(unsafe { std::slice::from_raw_parts_mut(data, len) })
}

fn is_number(slot: &Slot) -> u8 {
    u8::from(matches!(slot, Slot::Number(_)))
}

fn push_code<T>(p: Push<T>) -> i32 {
    match p {
        Push::Accepted {
            wake_receiver: false,
        } => ACCEPTED,
        Push::Accepted {
            wake_receiver: true,
        } => ACCEPTED_WAKE,
        Push::Parked => PARKED,
        Push::Closed(_) => CLOSED,
    }
}

fn phase_code(p: Phase) -> u32 {
    match p {
        Phase::Open => 0,
        Phase::Ending => 1,
        Phase::Done => 2,
        Phase::Failed => 3,
        Phase::Cancelled => 4,
    }
}

fn fail(what: &str) -> Error {
    Error::from_reason(format!("velo-stream: {what}"))
}

fn ok(status: sys::napi_status, what: &str) -> Result<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(fail(what))
    }
}

/// Runs a callback body; an error or a panic becomes a thrown JS error.
unsafe fn guard(
    env: sys::napi_env,
    body: impl FnOnce() -> Result<sys::napi_value>,
) -> sys::napi_value {
    let message = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => return value,
        Ok(Err(error)) => error.reason,
        Err(panic) => panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "velo-stream: panic in native code".to_owned()),
    };
    let message = std::ffi::CString::new(message.replace('\0', " ")).unwrap_or_default();
    // SAFETY: env is the live env of this callback; the message is a valid C string.
    unsafe { sys::napi_throw_error(env, ptr::null(), message.as_ptr()) };
    ptr::null_mut()
}

/// The first `N` arguments (missing ones are `undefined`).
unsafe fn args<const N: usize>(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> Result<[sys::napi_value; N]> {
    let mut argv = [ptr::null_mut(); N];
    let mut argc = N;
    // SAFETY: argv has room for argc values.
    ok(
        unsafe {
            sys::napi_get_cb_info(
                env,
                info,
                &mut argc,
                argv.as_mut_ptr(),
                ptr::null_mut(),
                ptr::null_mut(),
            )
        },
        "arguments",
    )?;
    Ok(argv)
}

unsafe fn number(env: sys::napi_env, value: sys::napi_value) -> Result<f64> {
    let mut n = 0.0;
    // SAFETY: live handles; writes only `n`.
    ok(
        unsafe { sys::napi_get_value_double(env, value, &mut n) },
        "expected a number",
    )?;
    Ok(n)
}

unsafe fn int(env: sys::napi_env, i: i32) -> Result<sys::napi_value> {
    let mut out = ptr::null_mut();
    // SAFETY: live env; writes only `out`.
    ok(unsafe { sys::napi_create_int32(env, i, &mut out) }, "int")?;
    Ok(out)
}

unsafe fn boolean(env: sys::napi_env, b: bool) -> Result<sys::napi_value> {
    let mut out = ptr::null_mut();
    // SAFETY: live env; writes only `out`.
    ok(
        unsafe { sys::napi_get_boolean(env, b, &mut out) },
        "boolean",
    )?;
    Ok(out)
}

/// Receives a taken run: numbers into the scratch buffer, other values into
/// a JS array (from index 0). A run is one kind only (`take_*_run`).
struct RunOut {
    env: sys::napi_env,
    array: sys::napi_value,
    scratch: &'static mut [f64],
    len: u32,
    numbers: bool,
    status: Result<()>,
}

impl Extend<Slot> for RunOut {
    fn extend<I: IntoIterator<Item = Slot>>(&mut self, iter: I) {
        for slot in iter {
            if self.status.is_err() {
                continue;
            }
            if let Slot::Number(n) = slot {
                self.numbers = true;
                self.scratch[self.len as usize] = n;
            } else {
                // SAFETY: env and array are live handles of the current call.
                self.status = unsafe { slot.to_js(self.env) }.and_then(|v| {
                    ok(
                        unsafe { sys::napi_set_element(self.env, self.array, self.len, v) },
                        "set_element",
                    )
                });
            }
            self.len += 1;
        }
    }
}

/// Takes one run of at most `max` (and at most the scratch size) values.
unsafe fn take_run(
    env: sys::napi_env,
    h: sys::napi_value,
    buf: sys::napi_value,
    max: sys::napi_value,
    take: impl FnOnce(&mut velo_core::StreamCore<Slot>, usize, &mut RunOut) -> Take,
) -> Result<sys::napi_value> {
    let scratch = scratch()?;
    // SAFETY: live handles of the calling entry point.
    let max = (unsafe { number(env, max) }? as usize).min(scratch.len());
    let mut out = RunOut {
        env,
        array: buf,
        scratch,
        len: 0,
        numbers: false,
        status: Ok(()),
    };
    let code = streams::with(unsafe { number(env, h) }?, |e| {
        let took = take(&mut e.core, max, &mut out);
        e.admitted = 0;
        match took {
            Take::Taken { count, admitted } => {
                e.admitted = admitted as u32;
                count as i32
            }
            Take::Empty => EMPTY,
            Take::Ended => ENDED,
        }
    })?;
    out.status?;
    // SAFETY: live env.
    unsafe { int(env, if out.numbers { code + NUMBERS } else { code }) }
}

macro_rules! raw {
    ($(#[$doc:meta])* fn $name:ident($env:ident, $($arg:ident),*) $body:block) => {
        $(#[$doc])*
        unsafe extern "C" fn $name(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
            // SAFETY: called by Node with a live env and callback info.
            unsafe {
                guard(env, || {
                    let $env = env;
                    #[allow(unused_variables)]
                    let [$($arg),*] = args::<{ [$(stringify!($arg)),*].len() }>(env, info)?;
                    $body
                })
            }
        }
    };
}

raw! {
    /// send(h, value) -> ACCEPTED | ACCEPTED_WAKE | PARKED | CLOSED | HANDOFF
    fn send(env, h, value) {
        let now = clock::now_us();
        let code = streams::with(number(env, h)?, |e| -> Result<i32> {
            if e.core.try_handoff_input(now) {
                return Ok(HANDOFF);
            }
            let slot = Slot::from_js(env, value)?;
            Ok(push_code(e.core.send(slot, now)))
        })??;
        int(env, code)
    }
}

raw! {
    /// room(h) -> free slots usable by sendBatch now
    fn room(env, h) {
        let room = streams::with(number(env, h)?, |e| e.core.room())?;
        int(env, room as i32)
    }
}

raw! {
    /// sendBatch(h, array, start, count) -> whether the handler must be woken
    fn send_batch(env, h, array, start, count) {
        let (start, count) = (number(env, start)? as u32, number(env, count)? as u32);
        // Read the values before borrowing the stream: reading an element may
        // run a getter, and a getter may call back into this module.
        let mut slots = Vec::with_capacity(count as usize);
        for i in start..start + count {
            let mut v = ptr::null_mut();
            ok(sys::napi_get_element(env, array, i, &mut v), "get_element")?;
            slots.push(Slot::from_js(env, v)?);
        }
        let now = clock::now_us();
        let wake = streams::with(number(env, h)?, |e| {
            if slots.len() > e.core.room() {
                return Err(fail("sendBatch over the free room"));
            }
            Ok(e.core.send_batch(slots, now))
        })??;
        boolean(env, wake)
    }
}

raw! {
    /// sendNumbers(h, count): send scratch[0..count] (must fit in room(h)) -> wake?
    fn send_numbers(env, h, count) {
        let count = number(env, count)? as usize;
        let scratch = scratch()?;
        if count > scratch.len() {
            return Err(fail("sendNumbers over the scratch size"));
        }
        let now = clock::now_us();
        let wake = streams::with(number(env, h)?, |e| {
            if count > e.core.room() {
                return Err(fail("sendNumbers over the free room"));
            }
            Ok(e.core.send_batch(scratch[..count].iter().map(|&n| Slot::Number(n)), now))
        })??;
        boolean(env, wake)
    }
}

raw! {
    /// setScratch(float64Array): the buffer numbers cross in (once per thread)
    fn set_scratch(env, array) {
        let mut ty = 0;
        let mut len = 0;
        let mut data = ptr::null_mut();
        let mut buffer = ptr::null_mut();
        let mut offset = 0;
        ok(
            sys::napi_get_typedarray_info(env, array, &mut ty, &mut len, &mut data, &mut buffer, &mut offset),
            "expected a Float64Array",
        )?;
        if ty != sys::TypedarrayType::float64_array {
            return Err(fail("expected a Float64Array"));
        }
        // Keep it alive for the life of the thread: the slice points into it.
        let mut keep = ptr::null_mut();
        ok(sys::napi_create_reference(env, array, 1, &mut keep), "reference")?;
        SCRATCH.with(|s| s.set((data.cast(), len)));
        let mut out = ptr::null_mut();
        ok(sys::napi_get_undefined(env, &mut out), "undefined")?;
        Ok(out)
    }
}

raw! {
    /// end(h) -> true the first time
    fn end(env, h) {
        let changed = streams::with(number(env, h)?, |e| e.core.end())?;
        boolean(env, changed)
    }
}

raw! {
    /// takeInput(h, buf, max) -> count | EMPTY | ENDED; a run of numbers comes
    /// as count + NUMBERS in scratch[0..count], other values in buf[0..count]
    fn take_input(env, h, buf, max) {
        let now = clock::now_us();
        take_run(env, h, buf, max, |core, max, out| core.take_input_run(max, now, out, is_number))
    }
}

raw! {
    /// yieldOutput(h, value) -> ACCEPTED | ACCEPTED_WAKE | PARKED | CLOSED | HANDOFF
    fn yield_output(env, h, value) {
        let now = clock::now_us();
        let code = streams::with(number(env, h)?, |e| -> Result<i32> {
            if e.core.try_handoff_output() {
                return Ok(HANDOFF);
            }
            let slot = Slot::from_js(env, value)?;
            Ok(push_code(e.core.yield_output(slot, now)))
        })??;
        int(env, code)
    }
}

raw! {
    /// takeOutput(h, buf, max) -> as takeInput, for outputs
    fn take_output(env, h, buf, max) {
        let now = clock::now_us();
        take_run(env, h, buf, max, |core, max, out| core.take_output_run(max, now, out, is_number))
    }
}

raw! {
    /// admitted(h) -> waiting senders admitted by the last take
    fn admitted(env, h) {
        let n = streams::with(number(env, h)?, |e| e.admitted)?;
        int(env, n as i32)
    }
}

raw! {
    /// phase(h) -> 0 open, 1 ending, 2 done, 3 failed, 4 cancelled
    fn phase(env, h) {
        let p = streams::with(number(env, h)?, |e| phase_code(e.core.phase()))?;
        int(env, p as i32)
    }
}

raw! {
    /// key(h) -> the stream's process-unique key (its id and idle key)
    fn key(env, h) {
        let k = streams::with(number(env, h)?, |e| e.core.key())?;
        let mut out = ptr::null_mut();
        ok(sys::napi_create_double(env, k as f64, &mut out), "key")?;
        Ok(out)
    }
}

raw! {
    /// handlerReturned(h) -> waiting sends dropped
    fn handler_returned(env, h) {
        let n = streams::with(number(env, h)?, |e| e.core.handler_returned(clock::now_us()))?;
        int(env, n as i32)
    }
}

raw! {
    /// handlerFailed(h) -> waiting sends dropped
    fn handler_failed(env, h) {
        let n = streams::with(number(env, h)?, |e| e.core.handler_failed(clock::now_us()))?;
        int(env, n as i32)
    }
}

raw! {
    /// cancel(h) -> -1 if the stream had already ended, else waiting sends dropped
    fn cancel(env, h) {
        let n = streams::with(number(env, h)?, |e| e.core.cancel(clock::now_us()).map_or(-1, |n| n as i32))?;
        int(env, n)
    }
}

raw! {
    /// releaseInput(h) -> waiting sends dropped (the handler left its input loop)
    fn release_input(env, h) {
        let n = streams::with(number(env, h)?, |e| e.core.release_input())?;
        int(env, n as i32)
    }
}

raw! {
    /// idleFire(h) -> true when the stream was idle and its input just ended
    fn idle_fire(env, h) {
        let expired = streams::with(number(env, h)?, |e| e.core.idle_fire(clock::now_us()) == IdleVerdict::Expired)?;
        boolean(env, expired)
    }
}

raw! {
    /// metrics(h, inUnconsumed, outUnconsumed) -> StreamMetrics
    fn metrics(env, h, in_unconsumed, out_unconsumed) {
        let (a, b) = (number(env, in_unconsumed)? as usize, number(env, out_unconsumed)? as usize);
        let m = streams::with(number(env, h)?, |e| e.core.metrics(clock::now_us(), a, b))?;
        Ok(Env::from_raw(env).to_js_value(&m)?.raw())
    }
}

raw! {
    /// free(h): drop the stream's native state (stale handles are ignored)
    fn free(env, h) {
        bind_env(env);
        streams::remove(number(env, h)?);
        let mut out = ptr::null_mut();
        ok(sys::napi_get_undefined(env, &mut out), "undefined")?;
        Ok(out)
    }
}

const ENTRY_POINTS: &[(
    &str,
    unsafe extern "C" fn(sys::napi_env, sys::napi_callback_info) -> sys::napi_value,
)] = &[
    ("send", send),
    ("room", room),
    ("sendBatch", send_batch),
    ("sendNumbers", send_numbers),
    ("setScratch", set_scratch),
    ("end", end),
    ("takeInput", take_input),
    ("yieldOutput", yield_output),
    ("takeOutput", take_output),
    ("admitted", admitted),
    ("phase", phase),
    ("key", key),
    ("handlerReturned", handler_returned),
    ("handlerFailed", handler_failed),
    ("cancel", cancel),
    ("releaseInput", release_input),
    ("idleFire", idle_fire),
    ("metrics", metrics),
    ("free", free),
];

/// Installs `exports.stream = { send, room, ... }`.
#[napi(module_exports)]
pub fn install(exports: Object, env: Env) -> Result<()> {
    let env = env.raw();
    let mut ops = ptr::null_mut();
    // SAFETY: live env and exports during module registration; every call
    // writes only its out-pointer.
    unsafe {
        ok(sys::napi_create_object(env, &mut ops), "create_object")?;
        for (name, cb) in ENTRY_POINTS {
            let mut f = ptr::null_mut();
            ok(
                sys::napi_create_function(
                    env,
                    name.as_ptr().cast(),
                    name.len() as isize,
                    Some(*cb),
                    ptr::null_mut(),
                    &mut f,
                ),
                "create_function",
            )?;
            let mut key = ptr::null_mut();
            ok(
                sys::napi_create_string_utf8(
                    env,
                    name.as_ptr().cast(),
                    name.len() as isize,
                    &mut key,
                ),
                "name",
            )?;
            ok(sys::napi_set_property(env, ops, key, f), "set_property")?;
        }
        let mut key = ptr::null_mut();
        ok(
            sys::napi_create_string_utf8(env, c"stream".as_ptr(), 6, &mut key),
            "name",
        )?;
        ok(
            sys::napi_set_property(env, exports.raw(), key, ops),
            "set_property",
        )?;
    }
    Ok(())
}
