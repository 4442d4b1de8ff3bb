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

use std::cell::OnceCell;

use napi::bindgen_prelude::*;
use napi_derive::napi;

thread_local! {
    /// A strong reference to the thread's state object. Never deleted
    /// (`ObjectRef<false>` does not delete on drop, nor warn): it lives as
    /// long as the thread's JavaScript environment, and Node frees the
    /// references of an environment when it tears it down.
    static STATE: OnceCell<ObjectRef<false>> = const { OnceCell::new() };
}

/// The thread's state object (`{}` on the first call on a thread, then the
/// same object every time, whatever copy of the module asks).
#[napi(catch_unwind)]
pub(crate) fn thread_state(env: &Env) -> Result<Object<'_>> {
    STATE.with(|state| {
        if let Some(held) = state.get() {
            return held.get_value(env);
        }
        let object = Object::new(env)?;
        // Set once: a thread's calls never overlap, so nothing set it since
        // the `get` above.
        let _ = state.set(object.create_ref::<false>()?);
        Ok(object)
    })
}
