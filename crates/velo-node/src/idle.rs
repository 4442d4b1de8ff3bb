//! Idle deadlines reach JavaScript through one weak threadsafe function per
//! JS thread: the core's notifier thread calls it with a batch of due stream
//! keys, and JavaScript asks each stream's core whether it really is idle.
//!
//! The function is weak, so neither it nor the notifier keeps Node alive;
//! `keepAlive(true)` refs it while some read is waiting on a stream whose idle
//! deadline runs, so that a script awaiting such a stream is not cut short.

use std::cell::RefCell;
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::sys;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use velo_core::IdleTimer;

type Notify = ThreadsafeFunction<Vec<f64>, (), Vec<f64>, Status, false, true>;

struct Notifier {
    timer: IdleTimer,
    tsfn: Arc<Notify>,
}

thread_local! {
    static NOTIFIER: RefCell<Option<Notifier>> = const { RefCell::new(None) };
}

/// Register the JS function that receives due stream keys. Called once per
/// JS thread by `js/native.ts`; the callback must not throw (it catches).
#[napi(catch_unwind)]
pub fn set_idle_handler(callback: Function<Vec<f64>, ()>) -> Result<()> {
    let tsfn: Arc<Notify> = Arc::new(
        callback
            .build_threadsafe_function()
            .weak::<true>()
            .callee_handled::<false>()
            .build()?,
    );
    let to_js = Arc::clone(&tsfn);
    let timer = IdleTimer::spawn(move |keys| {
        let keys = keys.into_iter().map(|k| k as f64).collect();
        to_js.call(keys, ThreadsafeFunctionCallMode::NonBlocking);
    })?;
    NOTIFIER.with(|n| *n.borrow_mut() = Some(Notifier { timer, tsfn }));
    Ok(())
}

/// Keep the event loop alive (or stop keeping it) for pending idle deadlines.
/// JS calls it only on 0 <-> 1 transitions of its count of such reads.
#[napi(catch_unwind)]
pub fn keep_alive(env: Env, on: bool) -> Result<()> {
    NOTIFIER.with(|n| {
        let Some(n) = n.borrow().as_ref().map(|n| n.tsfn.raw()) else {
            return Ok(());
        };
        // SAFETY: `n` is a live threadsafe function created on this thread's
        // env (it lives in this thread's NOTIFIER until the thread ends).
        let status = unsafe {
            if on {
                sys::napi_ref_threadsafe_function(env.raw(), n)
            } else {
                sys::napi_unref_threadsafe_function(env.raw(), n)
            }
        };
        if status == sys::Status::napi_ok {
            Ok(())
        } else {
            Err(Error::from_reason("velo-stream: keepAlive failed"))
        }
    })
}

pub(crate) fn timer() -> Result<IdleTimer> {
    NOTIFIER.with(|n| {
        n.borrow()
            .as_ref()
            .map(|n| n.timer.clone())
            .ok_or_else(|| Error::from_reason("velo-stream: idle handler not registered"))
    })
}
