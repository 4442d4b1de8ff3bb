//! A JavaScript value held by the core without serialising it.
//!
//! Objects, functions and symbols are held by a strong `napi_ref`, so the
//! handler receives the very object that was sent (`===`), whatever its size
//! (about 30 ns per value, measured). Node 20 refuses references to other
//! primitives, so those are copied: they have no identity to lose. Strings are
//! copied as UTF-16 code units, which round-trips every JS string exactly.

use std::cell::Cell;
use std::ptr;

use napi::sys;

thread_local! {
    /// The env of the JavaScript thread that owns the slots created on it.
    /// A slot is always created and dropped on that thread (streams are
    /// `!Send`), so its `Drop` can release its reference without being handed
    /// an env.
    static ENV: Cell<sys::napi_env> = const { Cell::new(ptr::null_mut()) };
}

/// Remember the current thread's env for [`Slot`] drops.
pub fn bind_env(env: sys::napi_env) {
    ENV.with(|e| e.set(env));
}

/// A held JavaScript value.
pub enum Slot {
    Undefined,
    Null,
    Bool(bool),
    Number(f64),
    String(Box<[u16]>),
    BigInt { negative: bool, words: Box<[u64]> },
    Ref(sys::napi_ref),
}

/// Turn a failed napi status into a JS-visible error.
fn check(status: sys::napi_status, what: &str) -> napi::Result<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(napi::Error::from_reason(format!(
            "velo-stream: {what} failed (napi status {status})"
        )))
    }
}

impl Slot {
    /// Hold `value`.
    ///
    /// # Safety
    /// `env` and `value` must be live handles of the current callback scope.
    pub unsafe fn from_js(env: sys::napi_env, value: sys::napi_value) -> napi::Result<Slot> {
        let mut ty = 0;
        // SAFETY: valid env/value per this function's contract; every call
        // below writes only to the out-pointer it is given.
        unsafe {
            check(sys::napi_typeof(env, value, &mut ty), "typeof")?;
            Ok(match ty {
                sys::ValueType::napi_undefined => Slot::Undefined,
                sys::ValueType::napi_null => Slot::Null,
                sys::ValueType::napi_number => {
                    let mut n = 0.0;
                    check(sys::napi_get_value_double(env, value, &mut n), "number")?;
                    Slot::Number(n)
                }
                sys::ValueType::napi_boolean => {
                    let mut b = false;
                    check(sys::napi_get_value_bool(env, value, &mut b), "boolean")?;
                    Slot::Bool(b)
                }
                sys::ValueType::napi_string => {
                    let mut len = 0;
                    check(
                        sys::napi_get_value_string_utf16(env, value, ptr::null_mut(), 0, &mut len),
                        "string length",
                    )?;
                    // napi writes a terminating NUL, so ask for one more unit.
                    let mut buf = vec![0u16; len + 1];
                    let mut written = 0;
                    check(
                        sys::napi_get_value_string_utf16(
                            env,
                            value,
                            buf.as_mut_ptr(),
                            buf.len(),
                            &mut written,
                        ),
                        "string",
                    )?;
                    buf.truncate(written);
                    Slot::String(buf.into_boxed_slice())
                }
                sys::ValueType::napi_bigint => {
                    // With both sign and words null, napi reports only the count.
                    let mut count = 0;
                    check(
                        sys::napi_get_value_bigint_words(
                            env,
                            value,
                            ptr::null_mut(),
                            &mut count,
                            ptr::null_mut(),
                        ),
                        "bigint size",
                    )?;
                    let mut sign = 0;
                    let mut words = vec![0u64; count];
                    check(
                        sys::napi_get_value_bigint_words(
                            env,
                            value,
                            &mut sign,
                            &mut count,
                            words.as_mut_ptr(),
                        ),
                        "bigint",
                    )?;
                    Slot::BigInt {
                        negative: sign != 0,
                        words: words.into_boxed_slice(),
                    }
                }
                _ => {
                    let mut r = ptr::null_mut();
                    check(
                        sys::napi_create_reference(env, value, 1, &mut r),
                        "reference",
                    )?;
                    Slot::Ref(r)
                }
            })
        }
    }

    /// The held value, as a JavaScript value.
    ///
    /// # Safety
    /// `env` must be the live env of the thread that created the slot.
    pub unsafe fn to_js(&self, env: sys::napi_env) -> napi::Result<sys::napi_value> {
        let mut out = ptr::null_mut();
        // SAFETY: as above; each call writes only `out`.
        let status = unsafe {
            match self {
                Slot::Undefined => sys::napi_get_undefined(env, &mut out),
                Slot::Null => sys::napi_get_null(env, &mut out),
                Slot::Bool(b) => sys::napi_get_boolean(env, *b, &mut out),
                Slot::Number(n) => sys::napi_create_double(env, *n, &mut out),
                Slot::String(s) => {
                    sys::napi_create_string_utf16(env, s.as_ptr(), s.len() as isize, &mut out)
                }
                Slot::BigInt { negative, words } => sys::napi_create_bigint_words(
                    env,
                    i32::from(*negative),
                    words.len(),
                    words.as_ptr(),
                    &mut out,
                ),
                Slot::Ref(r) => sys::napi_get_reference_value(env, *r, &mut out),
            }
        };
        check(status, "value")?;
        Ok(out)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Slot::Ref(r) = *self {
            let env = ENV.with(Cell::get);
            // SAFETY: the reference was created on this thread under this env
            // (bind_env runs before any slot is made) and is deleted once.
            unsafe {
                sys::napi_delete_reference(env, r);
            }
        }
    }
}
