//! Idle deadlines: a set of `(deadline, key)` kept on the streams' own thread,
//! and one notifier thread that only sleeps until the earliest of them.
//!
//! Arming and disarming are a `BTreeSet` insert or remove on the owner's
//! thread, with no cross-thread traffic. The notifier is told a new wake time
//! only when the earliest deadline moves earlier, which for streams opened
//! over time with one timeout is almost never: each new deadline is later
//! than the ones before. When the wake time passes, the notifier calls
//! `on_wake` (in Node: a weak threadsafe function), and the owner takes the
//! due keys with [`IdleDeadlines::take_due`] on its own thread. So a send costs
//! nothing here, and an open or close costs no system call.
//!
//! The notifier never touches stream state, and the owner checks each due
//! stream (a send may have moved its deadline since it was armed; see
//! `StreamCore::idle_fire`).
//!
//! # Wake protocol
//! Shared between the two threads: `wake_at` (µs on [`crate::clock`], or
//! `u64::MAX` for "nothing to do") under a mutex, and a condvar.
//! - The owner lowers `wake_at` and notifies when it arms a deadline earlier
//!   than the one the notifier will wake for.
//! - The notifier, once `wake_at` has passed, sets it to `u64::MAX` and calls
//!   `on_wake` outside the lock.
//! - The owner, in `take_due`, sets `wake_at` to its earliest remaining
//!   deadline. A deadline armed between the notifier's reset and `take_due` is
//!   covered by that same `take_due`, which `on_wake` guarantees will run.
//!
//! # Shutdown
//! Dropping the [`IdleDeadlines`] stops the thread without firing.

use std::collections::BTreeSet;
use std::sync::PoisonError;
use std::time::Duration;

// The two threads meet only here; loom swaps in its model-checked versions
// (see tests/loom_idle.rs).
#[cfg(loom)]
use loom::{
    sync::{Arc, Condvar, Mutex, MutexGuard},
    thread,
};
#[cfg(not(loom))]
use std::{
    sync::{Arc, Condvar, Mutex, MutexGuard},
    thread,
};

use crate::clock::now_us;

const NEVER: u64 = u64::MAX;

struct WakeState {
    wake_at: u64,
    shutdown: bool,
}

struct Shared {
    state: Mutex<WakeState>,
    cv: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, WakeState> {
        // A panic in `on_wake` poisons nothing we rely on: the state is two
        // plain fields, valid at every point.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The armed idle deadlines of every stream on one thread.
pub struct IdleDeadlines {
    armed: BTreeSet<(u64, u64)>,
    /// What the notifier will wake for (a mirror of `wake_at`, owner side).
    scheduled: u64,
    shared: Arc<Shared>,
    notifier: Option<thread::JoinHandle<()>>,
}

impl IdleDeadlines {
    /// Start the notifier thread; `on_wake` runs on it whenever a deadline
    /// may be due, and must make the owner call [`IdleDeadlines::take_due`].
    pub fn spawn(on_wake: impl FnMut() + Send + 'static) -> std::io::Result<Self> {
        Self::spawn_with_clock(on_wake, now_us)
    }

    /// [`IdleDeadlines::spawn`] with the notifier reading `clock` instead of
    /// [`crate::clock`]. For tests of the wake protocol.
    #[doc(hidden)]
    pub fn spawn_with_clock(
        on_wake: impl FnMut() + Send + 'static,
        clock: fn() -> u64,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(WakeState {
                wake_at: NEVER,
                shutdown: false,
            }),
            cv: Condvar::new(),
        });
        let theirs = Arc::clone(&shared);
        let run = move || notifier(&theirs, on_wake, clock);
        #[cfg(not(loom))]
        let handle = thread::Builder::new().name("velo-idle".into()).spawn(run)?;
        #[cfg(loom)]
        let handle = thread::spawn(run);
        Ok(IdleDeadlines {
            armed: BTreeSet::new(),
            scheduled: NEVER,
            shared,
            notifier: Some(handle),
        })
    }

    /// Report `key` once the clock passes `at_us`.
    pub fn arm(&mut self, key: u64, at_us: u64) {
        self.armed.insert((at_us, key));
        if at_us < self.scheduled {
            self.schedule(at_us);
        }
    }

    /// Forget the deadline armed with the same `key` and `at_us`. The notifier
    /// is not told: if it wakes for nothing, `take_due` returns nothing.
    pub fn disarm(&mut self, key: u64, at_us: u64) {
        self.armed.remove(&(at_us, key));
    }

    /// Deadlines armed now.
    pub fn len(&self) -> usize {
        self.armed.len()
    }

    /// Whether no deadline is armed.
    pub fn is_empty(&self) -> bool {
        self.armed.is_empty()
    }

    /// Remove and return the keys whose deadline is at or before `now_us`,
    /// earliest first, and schedule the notifier for the next one.
    pub fn take_due(&mut self, now_us: u64) -> Vec<u64> {
        let mut due = Vec::new();
        while let Some(&(at, key)) = self.armed.first() {
            if at > now_us {
                break;
            }
            self.armed.pop_first();
            due.push(key);
        }
        let next = self.armed.first().map_or(NEVER, |&(at, _)| at);
        self.schedule(next);
        due
    }

    fn schedule(&mut self, at_us: u64) {
        self.scheduled = at_us;
        self.shared.lock().wake_at = at_us;
        self.shared.cv.notify_one();
    }
}

impl Drop for IdleDeadlines {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.cv.notify_one();
        // It exits at once: it checks `shutdown` before every wait, and
        // `on_wake` (a non-blocking threadsafe-function call in Node) is short.
        if let Some(handle) = self.notifier.take() {
            let _ = handle.join();
        }
    }
}

fn notifier(shared: &Shared, mut on_wake: impl FnMut(), clock: fn() -> u64) {
    let mut state = shared.lock();
    loop {
        if state.shutdown {
            return;
        }
        if state.wake_at == NEVER {
            state = shared
                .cv
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            continue;
        }
        let now = clock();
        if now < state.wake_at {
            let wait = Duration::from_micros(state.wake_at - now);
            state = shared
                .cv
                .wait_timeout(state, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            continue;
        }
        state.wake_at = NEVER;
        drop(state);
        on_wake();
        state = shared.lock();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn wakes_for_the_earliest_deadline_and_hands_due_keys_to_the_owner() {
        let (tx, rx) = mpsc::channel();
        let mut deadlines = IdleDeadlines::spawn(move || tx.send(()).unwrap()).unwrap();
        let now = now_us();
        deadlines.arm(3, now + 30_000);
        deadlines.arm(1, now + 10_000);
        deadlines.arm(2, now + 20_000);
        deadlines.disarm(2, now + 20_000);
        let mut got = Vec::new();
        while got.len() < 2 {
            rx.recv_timeout(Duration::from_secs(5)).expect("woken");
            got.extend(deadlines.take_due(now_us()));
        }
        assert_eq!(got, vec![1, 3]);
        assert!(deadlines.is_empty());
        assert!(
            rx.recv_timeout(Duration::from_millis(50)).is_err(),
            "no wake once nothing is armed"
        );
    }

    #[test]
    fn take_due_leaves_future_deadlines() {
        let mut deadlines = IdleDeadlines::spawn(|| {}).unwrap();
        deadlines.arm(1, 100);
        deadlines.arm(2, 200);
        assert_eq!(deadlines.take_due(150), vec![1]);
        assert_eq!(deadlines.len(), 1);
        assert_eq!(deadlines.take_due(150), Vec::<u64>::new());
    }
}
