//! Idle deadlines for the streams of one JS thread.
//!
//! The deadline set lives on this thread (see `velo_core::idle`); its
//! notifier thread calls a weak threadsafe function when the earliest
//! deadline passes, and the JS callback asks `idleDue()` for the due keys.
//!
//! The function is weak, so neither it nor the notifier keeps Node alive;
//! `keepAlive(true)` refs it while some read waits on a stream whose idle
//! deadline runs, so that a script awaiting such a stream is not cut short.

use std::cell::RefCell;
use std::rc::Rc;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::ThreadsafeFunctionCallMode;
use napi_derive::napi;
use velo_core::{clock, IdleDeadlines};

use crate::ffi::LocalNotify;

struct Notifier {
    deadlines: Rc<RefCell<IdleDeadlines>>,
    to_js: LocalNotify,
}

thread_local! {
    static NOTIFIER: RefCell<Option<Notifier>> = const { RefCell::new(None) };
}

/// Register the JS function called when idle deadlines may be due. Called
/// once per JS thread by `js/core/addon.ts` (by the first copy of the module;
/// the others share it); the callback must not throw.
#[napi(catch_unwind)]
pub(crate) fn set_idle_handler(callback: Function<(), ()>) -> Result<()> {
    if NOTIFIER.with(|n| n.borrow().is_some()) {
        // A second handler would take the notifier from the first, whose
        // deadlines would then never fire (see `shared.rs`).
        return Err(Error::from_reason(
            "velo-stream: setIdleHandler: an idle handler is already registered on this thread",
        ));
    }
    let to_js = LocalNotify::new(callback)?;
    let from_notifier = to_js.shared();
    let deadlines = IdleDeadlines::spawn(move || {
        from_notifier.call((), ThreadsafeFunctionCallMode::NonBlocking);
    })?;
    NOTIFIER.with(|n| {
        *n.borrow_mut() = Some(Notifier {
            deadlines: Rc::new(RefCell::new(deadlines)),
            to_js,
        })
    });
    Ok(())
}

/// Keys of the streams whose idle deadline has passed (each reported once).
#[napi(catch_unwind)]
pub(crate) fn idle_due() -> Vec<f64> {
    NOTIFIER.with(|n| match n.borrow().as_ref() {
        Some(n) => n
            .deadlines
            .borrow_mut()
            .take_due(clock::now_us())
            .into_iter()
            .map(|k| k as f64)
            .collect(),
        None => Vec::new(),
    })
}

/// Keep the event loop alive (or stop keeping it) for pending idle deadlines.
/// JS calls it only on 0 <-> 1 transitions of its count of such reads.
#[napi(catch_unwind)]
pub(crate) fn keep_alive(env: Env, on: bool) -> Result<()> {
    NOTIFIER.with(|n| match n.borrow().as_ref() {
        Some(n) => n.to_js.keep_alive(&env, on),
        None => Ok(()),
    })
}

pub(crate) fn deadlines() -> Result<Rc<RefCell<IdleDeadlines>>> {
    NOTIFIER.with(|n| {
        n.borrow()
            .as_ref()
            .map(|n| Rc::clone(&n.deadlines))
            .ok_or_else(|| Error::from_reason("velo-stream: idle handler not registered"))
    })
}

/// Disarms the deadline `key` armed at `at_us`, if the deadline set is still
/// there: for drops, which may run as the thread's thread-locals are
/// destroyed (see `slot.rs`), so this never panics.
pub(crate) fn disarm(key: u64, at_us: u64) {
    let _ = NOTIFIER.try_with(|n| {
        let Ok(notifier) = n.try_borrow() else { return };
        if let Some(notifier) = notifier.as_ref() {
            if let Ok(mut deadlines) = notifier.deadlines.try_borrow_mut() {
                deadlines.disarm(key, at_us);
            }
        }
    });
}
