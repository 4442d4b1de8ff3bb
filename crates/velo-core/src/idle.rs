//! The idle-deadline notifier: one background thread that sleeps until the
//! earliest armed deadline and reports due keys in batches.
//!
//! Streams live on a JavaScript thread; this thread only keeps a sorted set
//! of `(deadline, key)` and calls `on_due` with the keys whose deadline
//! passed. It never touches stream state: the owner of the stream checks, on
//! its own thread, whether the stream really was idle (a send may have moved
//! the deadline since it was armed) and re-arms if not. So a send costs no
//! cross-thread traffic at all; only arming, disarming and firing do, about
//! once per `idleTimeout` per stream.
//!
//! Commands reach the thread through a crossbeam channel, whose
//! `recv_deadline` is the whole timer: wait for a command or the next deadline,
//! whichever comes first.
//!
//! # Shutdown
//! Dropping the last [`IdleTimer`] handle disconnects the channel; the thread
//! then exits without firing what is left.

use std::collections::BTreeSet;
use std::thread;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::clock::{instant_of, now_us};

enum Command {
    Arm { key: u64, at_us: u64 },
    Disarm { key: u64, at_us: u64 },
}

/// A handle to the notifier thread. Cloning shares the thread.
#[derive(Clone)]
pub struct IdleTimer {
    tx: Sender<Command>,
}

impl IdleTimer {
    /// Start the thread. `on_due` runs on it with every batch of due keys.
    pub fn spawn(on_due: impl FnMut(Vec<u64>) + Send + 'static) -> std::io::Result<Self> {
        let (tx, rx) = crossbeam_channel::unbounded();
        thread::Builder::new()
            .name("velo-idle".into())
            .spawn(move || run(rx, on_due, now_us))?;
        Ok(IdleTimer { tx })
    }

    /// Report `key` once the clock passes `at_us` (see [`crate::clock`]).
    pub fn arm(&self, key: u64, at_us: u64) {
        // The thread only exits when every handle is gone, so this cannot fail
        // while `self` exists.
        let _ = self.tx.send(Command::Arm { key, at_us });
    }

    /// Forget a deadline armed with the same `key` and `at_us`.
    pub fn disarm(&self, key: u64, at_us: u64) {
        let _ = self.tx.send(Command::Disarm { key, at_us });
    }
}

fn run(rx: Receiver<Command>, mut on_due: impl FnMut(Vec<u64>), clock: fn() -> u64) {
    let mut armed: BTreeSet<(u64, u64)> = BTreeSet::new();
    loop {
        let received = match armed.first() {
            Some(&(at_us, _)) => rx.recv_deadline(instant_of(at_us)),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match received {
            Ok(Command::Arm { key, at_us }) => {
                armed.insert((at_us, key));
            }
            Ok(Command::Disarm { key, at_us }) => {
                armed.remove(&(at_us, key));
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = clock();
        let mut due = Vec::new();
        while let Some(&(at_us, key)) = armed.first() {
            if at_us > now {
                break;
            }
            armed.pop_first();
            due.push(key);
        }
        if !due.is_empty() {
            on_due(due);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn fires_due_keys_in_deadline_order_and_skips_disarmed() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let timer = IdleTimer::spawn(move |keys| {
            for k in keys {
                tx.send(k).unwrap();
            }
        })
        .unwrap();
        let now = now_us();
        timer.arm(3, now + 30_000);
        timer.arm(1, now + 10_000);
        timer.arm(2, now + 20_000);
        timer.disarm(2, now + 20_000);
        let got: Vec<u64> = (0..2)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        assert_eq!(got, vec![1, 3]);
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
    }
}
