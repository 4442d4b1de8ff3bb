//! Model checking of the cross-thread lane's wake protocol with loom: every
//! interleaving of a sender thread and a receiver thread (and, for a crash, a
//! supervisor) that push, take, park, end and cancel. Run with:
//!
//!     RUSTFLAGS="--cfg loom" cargo test -p velo-core --release --test loom_cross_lane
//!
//! (`npm run test:loom` runs it in a target directory of its own, so the loom
//! build does not evict the normal one.)
//!
//! A wake is modelled as a counter raised by the party told to wake, plus a
//! loom `Notify` that the parked party blocks on until its counter moves. So:
//! - a lost wake leaves a party blocked forever, which loom reports as a
//!   deadlock (the test fails);
//! - a double wake shows as more wakes than parks at the end;
//! - every value is accounted for exactly once: taken in order, refused (left
//!   in the sender's batch), or dropped by the cancel.
#![cfg(loom)]

use std::collections::VecDeque;

use loom::sync::{Arc, Notify};
use loom::thread;
use std::sync::atomic::Ordering;
use velo_core::cross_lane::{Closed, CrossLane, Push, Take, Wake};

/// One side's waiting. `wakes` is a loom atomic because, like the threadsafe
/// function call it stands for, a wake must order the waker's lane call
/// before the woken party's next one. `parks` is written by its own thread
/// only, so a std atomic (which loom does not model, and so does not multiply
/// the interleavings) keeps it exactly.
#[derive(Default)]
struct Party {
    wakes: loom::sync::atomic::AtomicUsize,
    notify: Notify,
    parks: std::sync::atomic::AtomicUsize,
}

impl Party {
    fn wake(&self) {
        self.wakes.fetch_add(1, Ordering::AcqRel);
        self.notify.notify();
    }

    /// Parks until the wake owed for this park arrives (`Notify` may return
    /// spuriously, so the counter decides).
    fn park(&self) {
        let owed = self.parks.fetch_add(1, Ordering::SeqCst) + 1;
        while self.wakes.load(Ordering::Acquire) < owed {
            self.notify.wait();
        }
    }

    fn assert_woken_once_per_park(&self, who: &str) {
        assert_eq!(
            self.wakes.load(Ordering::SeqCst),
            self.parks.load(Ordering::SeqCst),
            "{who}: wakes must equal parks"
        );
    }
}

/// Ids of the values dropped, in a std mutex: bookkeeping of the test, not
/// part of the model.
type DropLog = std::sync::Arc<std::sync::Mutex<Vec<u32>>>;

/// A value that logs its id when the lane drops it, so values dropped by a
/// cancel are counted.
struct Tracked {
    id: u32,
    drops: DropLog,
    /// Handed back to the sender: its drop is the test's, not the lane's.
    refused: bool,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if !self.refused {
            self.drops.lock().unwrap().push(self.id);
        }
    }
}

struct Pair {
    lane: CrossLane<Tracked>,
    sender: Party,
    receiver: Party,
    drops: DropLog,
}

impl Pair {
    fn new(capacity: usize) -> Arc<Pair> {
        Arc::new(Pair {
            lane: CrossLane::new(capacity),
            sender: Party::default(),
            receiver: Party::default(),
            drops: DropLog::default(),
        })
    }

    fn values(&self, ids: impl IntoIterator<Item = u32>) -> VecDeque<Tracked> {
        ids.into_iter()
            .map(|id| Tracked {
                id,
                drops: self.drops.clone(),
                refused: false,
            })
            .collect()
    }

    fn wake(&self, wake: Wake) {
        if wake.sender {
            self.sender.wake();
        }
        if wake.receiver {
            self.receiver.wake();
        }
    }

    /// Pushes each batch in turn, parking whenever told to. Answers why the
    /// lane refused, if it did, and what it refused.
    fn send(&self, batches: &[&[u32]]) -> (Option<Closed>, Vec<u32>) {
        for ids in batches {
            let mut batch = self.values(ids.iter().copied());
            loop {
                let (push, wake) = self.lane.push(&mut batch);
                self.wake(wake);
                match push {
                    Push::Accepted => break,
                    Push::Parked => self.sender.park(),
                    Push::Closed(why) => {
                        batch.iter_mut().for_each(|v| v.refused = true);
                        return (Some(why), batch.iter().map(|v| v.id).collect());
                    }
                }
            }
        }
        (None, Vec::new())
    }

    /// Takes until the lane ends or is cancelled, parking whenever told to.
    /// `stop_after`: cancel once this many values were taken.
    fn receive(&self, max: usize, stop_after: Option<usize>) -> (Vec<Tracked>, Take) {
        let mut out = Vec::new();
        loop {
            if stop_after.is_some_and(|n| out.len() >= n) {
                let wake = self.lane.cancel();
                self.wake(wake);
            }
            let (take, wake) = self.lane.take(max, &mut out);
            self.wake(wake);
            match take {
                Take::Taken { .. } => {}
                Take::Empty => self.receiver.park(),
                Take::Ended | Take::Cancelled => return (out, take),
            }
        }
    }

    /// Takes until it gets something, parking whenever told to.
    fn take_some(&self, max: usize) -> Vec<Tracked> {
        let mut out = Vec::new();
        loop {
            let (take, wake) = self.lane.take(max, &mut out);
            self.wake(wake);
            match take {
                Take::Taken { .. } => return out,
                Take::Empty => self.receiver.park(),
                Take::Ended | Take::Cancelled => panic!("{take:?} before any value"),
            }
        }
    }

    fn assert_woken_once_per_park(&self) {
        self.sender.assert_woken_once_per_park("sender");
        self.receiver.assert_woken_once_per_park("receiver");
    }

    /// Every id in `0..total` is exactly once taken (in order), refused, or
    /// dropped by the lane.
    fn assert_accounted(&self, taken: &[Tracked], refused: &[u32], total: u32) {
        let taken: Vec<u32> = taken.iter().map(|v| v.id).collect();
        assert!(taken.windows(2).all(|w| w[0] < w[1]), "in order: {taken:?}");
        let mut all = taken.clone();
        all.extend_from_slice(refused);
        all.extend(self.drops.lock().unwrap().iter().copied());
        all.sort_unstable();
        assert_eq!(
            all,
            (0..total).collect::<Vec<_>>(),
            "taken {taken:?}, refused {refused:?}"
        );
    }
}

/// Runs `f` under loom, bounded to 3 preemptions per execution unless
/// `LOOM_MAX_PREEMPTIONS` says otherwise: loom's advice for models of this
/// size, since a race of two threads needs one or two preemptions to show.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = builder.preemption_bound.or(Some(3));
    builder.check(f);
}

fn spawn_sender(
    pair: &Arc<Pair>,
    batches: &'static [&'static [u32]],
    end: bool,
) -> thread::JoinHandle<(Option<Closed>, Vec<u32>)> {
    let pair = Arc::clone(pair);
    thread::spawn(move || {
        let result = pair.send(batches);
        if end {
            let wake = pair.lane.end();
            pair.wake(wake);
        }
        result
    })
}

#[test]
fn lane_parked_receiver_is_woken_by_the_push_that_fills_the_empty_queue() {
    model(|| {
        let pair = Pair::new(4);
        let sender = spawn_sender(&pair, &[&[0], &[1, 2]], true);
        let (taken, end) = pair.receive(8, None);
        let (refused, _) = sender.join().unwrap();
        assert_eq!(end, Take::Ended);
        assert_eq!(refused, None);
        pair.assert_accounted(&taken, &[], 3);
        assert!(pair.drops.lock().unwrap().is_empty());
        pair.assert_woken_once_per_park();
    });
}

#[test]
fn lane_parked_sender_is_woken_by_the_take_that_makes_room() {
    model(|| {
        // Capacity 3 wakes at 2 free places: takes of one value at a time
        // make the sender wait for the second.
        let pair = Pair::new(3);
        let sender = spawn_sender(&pair, &[&[0, 1, 2, 3, 4]], true);
        let (taken, end) = pair.receive(1, None);
        let (refused, _) = sender.join().unwrap();
        assert_eq!(end, Take::Ended);
        assert_eq!(refused, None);
        pair.assert_accounted(&taken, &[], 5);
        pair.assert_woken_once_per_park();
    });
}

#[test]
fn lane_both_sides_park_in_turn_at_capacity_one() {
    model(|| {
        // The sender queues 0 and parks; the receiver takes it, wakes the
        // sender and may park before 1 arrives.
        let pair = Pair::new(1);
        let sender = spawn_sender(&pair, &[&[0, 1]], true);
        let (taken, end) = pair.receive(1, None);
        sender.join().unwrap();
        assert_eq!(end, Take::Ended);
        pair.assert_accounted(&taken, &[], 2);
        pair.assert_woken_once_per_park();
    });
}

#[test]
fn lane_room_made_before_the_sender_parked_is_not_missed() {
    model(|| {
        // The receiver takes one batch, then waits until the sender has
        // queued everything before taking again. If the room it made went
        // unnoticed by a sender parking at the same moment, the sender would
        // wait for a wake that no later take brings: a deadlock.
        let pair = Pair::new(2);
        let all_queued = Arc::new(Party::default());
        let sender = {
            let pair = Arc::clone(&pair);
            let all_queued = Arc::clone(&all_queued);
            thread::spawn(move || {
                let (refused, _) = pair.send(&[&[0, 1, 2]]);
                assert_eq!(refused, None);
                all_queued.wake();
                let wake = pair.lane.end();
                pair.wake(wake);
            })
        };
        let mut taken = pair.take_some(2);
        all_queued.park();
        let (rest, end) = pair.receive(2, None);
        sender.join().unwrap();
        taken.extend(rest);
        assert_eq!(end, Take::Ended);
        pair.assert_accounted(&taken, &[], 3);
        pair.assert_woken_once_per_park();
    });
}

#[test]
fn lane_end_races_a_parking_receiver() {
    model(|| {
        let pair = Pair::new(2);
        let sender = spawn_sender(&pair, &[&[0]], true);
        let (taken, end) = pair.receive(8, None);
        sender.join().unwrap();
        // The value pushed before the end is never lost to it.
        assert_eq!(end, Take::Ended);
        pair.assert_accounted(&taken, &[], 1);
        pair.assert_woken_once_per_park();
    });
}

#[test]
fn lane_receiver_cancel_races_a_parked_sender() {
    model(|| {
        let pair = Pair::new(1);
        let sender = spawn_sender(&pair, &[&[0, 1, 2]], false);
        let (taken, end) = pair.receive(1, Some(1));
        let (refused, rest) = sender.join().unwrap();
        assert_eq!(end, Take::Cancelled);
        assert_eq!(taken.len(), 1);
        // The sender cannot finish its batch: the receiver left after one.
        assert_eq!(refused, Some(Closed::Cancelled));
        pair.assert_accounted(&taken, &rest, 3);
        pair.assert_woken_once_per_park();
    });
}

#[test]
fn lane_sender_cancel_races_a_parking_receiver() {
    model(|| {
        let pair = Pair::new(2);
        let canceller = {
            let pair = Arc::clone(&pair);
            thread::spawn(move || {
                let (refused, _) = pair.send(&[&[0]]);
                assert_eq!(refused, None);
                let wake = pair.lane.cancel();
                pair.wake(wake);
            })
        };
        let (taken, end) = pair.receive(8, None);
        canceller.join().unwrap();
        assert_eq!(end, Take::Cancelled);
        // Taken before the cancel, or dropped by it: never both, never lost.
        pair.assert_accounted(&taken, &[], 1);
        pair.assert_woken_once_per_park();
    });
}

#[test]
fn lane_supervisor_ends_the_lane_of_a_crashed_sender() {
    model(|| {
        // The sender thread dies after its push without ending the lane
        // (and, here, without waiting for the wake it may be owed); its
        // supervisor notices the death (the join) and ends the lane for it.
        let pair = Pair::new(2);
        let sender = {
            let pair = Arc::clone(&pair);
            thread::spawn(move || {
                let mut batch = pair.values([0, 1, 2]);
                let (_, wake) = pair.lane.push(&mut batch);
                pair.wake(wake);
                batch.iter().map(|v| v.id).collect::<Vec<_>>()
            })
        };
        let receiver = {
            let pair = Arc::clone(&pair);
            thread::spawn(move || {
                let (taken, end) = pair.receive(8, None);
                (taken.iter().map(|v| v.id).collect::<Vec<_>>(), end)
            })
        };
        let lost_with_the_thread = sender.join().unwrap();
        let wake = pair.lane.end();
        pair.wake(wake);
        let (taken, end) = receiver.join().unwrap();
        assert_eq!(end, Take::Ended);
        let mut all = taken.clone();
        all.extend(lost_with_the_thread);
        assert_eq!(
            all,
            [0, 1, 2],
            "everything queued before the crash is taken"
        );
        pair.receiver.assert_woken_once_per_park("receiver");
    });
}
