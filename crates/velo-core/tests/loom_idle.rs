//! Model checking of the idle notifier's wake protocol with loom: every
//! interleaving of the owner (arming, taking due keys, shutting down) and the
//! notifier thread. Run with:
//!
//!     RUSTFLAGS="--cfg loom" cargo test -p velo-core --test loom_idle --release
//!
//! loom cannot model time passing (its `wait_timeout` never times out), so the
//! clock stands still at 100 and every deadline armed is already due: what is
//! checked is the hand-over itself: no wake is lost between the notifier's
//! reset and the owner's arm or take, every armed key is taken exactly once,
//! and shutdown never hangs.
#![cfg(loom)]

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use velo_core::IdleDeadlines;

fn frozen_clock() -> u64 {
    100
}

#[test]
fn armed_keys_are_handed_over_once_and_shutdown_is_clean() {
    loom::model(|| {
        let wakes = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&wakes);
        let mut deadlines = IdleDeadlines::spawn_with_clock(
            move || {
                seen.fetch_add(1, Ordering::SeqCst);
            },
            frozen_clock,
        )
        .unwrap();

        deadlines.arm(1, 50);
        // Wait for a wake (a lost one would hang here: loom reports a deadlock).
        while wakes.load(Ordering::SeqCst) == 0 {
            loom::thread::yield_now();
        }
        // A second key armed while the notifier may be anywhere in its loop.
        deadlines.arm(2, 60);
        let mut taken = deadlines.take_due(frozen_clock());
        if !taken.contains(&2) {
            // Not due in the first take: a second wake must come for it.
            while wakes.load(Ordering::SeqCst) < 2 {
                loom::thread::yield_now();
            }
            taken.extend(deadlines.take_due(frozen_clock()));
        }
        taken.sort_unstable();
        assert_eq!(taken, vec![1, 2], "each key exactly once");
        assert!(deadlines.is_empty());
        drop(deadlines); // joins the notifier: must not hang
    });
}

#[test]
fn shutdown_while_a_wake_is_pending_does_not_hang() {
    loom::model(|| {
        let mut deadlines = IdleDeadlines::spawn_with_clock(|| {}, frozen_clock).unwrap();
        deadlines.arm(7, 10);
        drop(deadlines);
    });
}
