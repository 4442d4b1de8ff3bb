//! The one JavaScript-side state of a thread, shared by every copy of the
//! JavaScript module loaded on it.
//!
//! The native state of a thread is one set of thread-locals (the streams'
//! slab, the released value indices, the scratch buffer, the idle notifier),
//! however many times the JavaScript module is evaluated: Jest evaluates it
//! once per test file, `jest.resetModules()` and clearing `require.cache`
//! evaluate it again, and even a second load of the addon file finds the
//! library (and so its thread-locals) already mapped. A second copy with
//! JavaScript state of its own (another value table, another scratch buffer)
//! would silently corrupt the first. So the JavaScript state lives in one
//! object per thread, made on the first request and handed to every copy:
//! they all use one value table, one scratch buffer and one idle dispatcher.

use std::cell::Cell;
use std::ptr;

use napi::bindgen_prelude::*;
use napi::sys;
use napi_derive::napi;

thread_local! {
    /// A strong reference to the thread's state object. Never deleted: it
    /// lives as long as the thread's JavaScript environment, and Node frees
    /// the references of an environment when it tears it down.
    static STATE: Cell<sys::napi_ref> = const { Cell::new(ptr::null_mut()) };
}

/// The thread's state object (`{}` on the first call on a thread, then the
/// same object every time, whatever copy of the module asks).
#[napi(catch_unwind)]
pub fn thread_state(env: &Env) -> Result<Unknown<'_>> {
    let env = env.raw();
    let mut value = ptr::null_mut();
    let held = STATE.with(Cell::get);
    if held.is_null() {
        // SAFETY: live env of this call; each call writes only its out-pointer.
        unsafe {
            check(sys::napi_create_object(env, &mut value))?;
            let mut reference = ptr::null_mut();
            check(sys::napi_create_reference(env, value, 1, &mut reference))?;
            STATE.with(|s| s.set(reference));
        }
    } else {
        // SAFETY: `held` is a live strong reference made on this thread (see
        // STATE); the env is this call's.
        unsafe { check(sys::napi_get_reference_value(env, held, &mut value))? };
    }
    // SAFETY: `value` is a live handle in this call's scope, returned at once.
    Ok(unsafe { Unknown::from_raw_unchecked(env, value) })
}

fn check(status: sys::napi_status) -> Result<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(Error::from_reason("velo-stream: thread state unavailable"))
    }
}
