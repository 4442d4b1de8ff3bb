//! One direction of a stream whose two ends live on different threads: a
//! bounded FIFO that one thread pushes batches into and another takes batches
//! from, and the wake protocol between them.
//!
//! A stream placed on a worker thread has two of these: the input lane (the
//! caller's thread sends, the worker's handler takes) and the output lane (the
//! handler yields, the caller's thread reads). Both directions follow the same
//! rules, so one type serves both.
//!
//! # Roles
//! The *sender* calls [`CrossLane::push`] and [`CrossLane::end`]; the
//! *receiver* calls [`CrossLane::take`]; either calls [`CrossLane::cancel`].
//! At most one thread acts as the sender at a time, and one as the receiver.
//! A supervisor may act for a thread that has died (it ends or cancels the
//! lanes of a crashed worker), since the dead thread no longer calls anything.
//! Nothing blocks: when a party has to wait, the call says so, and the caller
//! owns the waiting (in the Node binding, a promise, and a threadsafe function
//! call to resolve it from the other thread).
//!
//! # Waking
//! Every call answers a status and a [`Wake`]: whom the caller must now wake.
//! The lane never calls anything itself.
//! - A [`CrossLane::take`] that finds the queue empty registers the receiver as
//!   parked and answers [`Take::Empty`]. The next push that queues a value
//!   answers `wake.receiver`: the queue went from empty to non-empty while the
//!   receiver waited. Later pushes answer no wake until the receiver parks
//!   again, so under load there is at most one wake per batch, not one per
//!   value.
//! - A [`CrossLane::push`] that fills the queue keeps the rest of its batch,
//!   registers the sender as parked and answers [`Push::Parked`]. The first
//!   take after which at least half of the capacity is free answers
//!   `wake.sender` (a low watermark, so a receiver taking one value at a time
//!   does not wake the sender for every value).
//! - A party that parked (a push answered `Parked`, a take `Empty`) is woken
//!   exactly once, by its peer's push or take, by [`CrossLane::end`] or by
//!   [`CrossLane::cancel`], provided it makes no other call on the lane until
//!   then (a `take` or `push` made while still registered answers `Empty` or
//!   `Parked` again and changes nothing).
//!
//! # Disconnection
//! - [`CrossLane::end`] (end of input, or the sender's thread died after its
//!   last push) refuses later pushes with [`Push::Closed`]`(`[`Closed::Ended`]`)`
//!   and keeps every queued value: the receiver takes them all, then
//!   [`Take::Ended`]. It wakes a parked receiver.
//! - [`CrossLane::cancel`] (either side gave up, or the receiver's thread died)
//!   refuses later pushes with [`Push::Closed`]`(`[`Closed::Cancelled`]`)`, drops the queued values,
//!   answers [`Take::Cancelled`] to the receiver, and wakes whichever parties
//!   are parked, the caller's own side included.
//!
//! Each pushed value is taken exactly once, or dropped by the cancellation,
//! never both. A take returns values only if it came before the cancel: every
//! call takes effect at its one read-modify-write of the state word, and a
//! take that finds the lane cancelled there drops what it had popped.
//!
//! # Why no wake is lost
//! Parking and every decision to wake are read-modify-writes of one atomic
//! state word, made *after* the call's queue operations. The read-modify-writes
//! of one atomic are totally ordered, and each reads the value left by the one
//! before it. Take a receiver that registers and then looks at the queue again,
//! and a sender that pushes and then clears the receiver's flag. Whichever of
//! the two read-modify-writes comes second decides:
//! - if the sender's comes second, it finds the flag and wakes the receiver;
//! - if the receiver's comes second, it acquires what the sender released, so
//!   its second look finds the value, and it withdraws its registration (a
//!   compare-and-swap: if the sender cleared the flag in between, the wake is
//!   already on its way, and the receiver waits for it).
//!
//! The sender's registration against the receiver's room check is the mirror
//! image. That is also why a call writes the state word even when nothing in
//! it changes: a plain load would not order it against the peer. The same
//! argument is model-checked with loom in `tests/loom_cross_lane.rs`.
//!
//! # Examples
//! ```
//! use std::collections::VecDeque;
//! use velo_core::cross_lane::{CrossLane, Push, Take, Wake};
//!
//! let lane = CrossLane::new(2);
//! let mut got = Vec::new();
//!
//! // The receiver finds nothing and parks.
//! assert_eq!(lane.take(16, &mut got), (Take::Empty, Wake::NONE));
//!
//! // The sender fills the queue: it must wake the receiver, and it waits too.
//! let mut batch = VecDeque::from([1, 2, 3]);
//! assert_eq!(lane.push(&mut batch), (Push::Parked, Wake::RECEIVER));
//! assert_eq!(batch, [3]); // not queued: the sender keeps it
//!
//! // Woken, the receiver takes the batch, which frees room: wake the sender.
//! assert_eq!(lane.take(16, &mut got), (Take::Taken { count: 2 }, Wake::SENDER));
//! assert_eq!(got, [1, 2]);
//!
//! // Woken, the sender pushes the rest and ends its input.
//! assert_eq!(lane.push(&mut batch), (Push::Accepted, Wake::NONE));
//! assert_eq!(lane.end(), Wake::NONE); // the receiver is not parked
//! assert_eq!(lane.take(16, &mut got), (Take::Taken { count: 1 }, Wake::NONE));
//! assert_eq!(lane.take(16, &mut got), (Take::Ended, Wake::NONE));
//! assert_eq!(got, [1, 2, 3]);
//! ```

use std::collections::VecDeque;

#[cfg(loom)]
use loom::sync::atomic::{AtomicU8, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU8, Ordering};

#[cfg(not(loom))]
type Queue<T> = crossbeam_queue::ArrayQueue<T>;
#[cfg(loom)]
type Queue<T> = model::ModelQueue<T>;

/// The receiver waits for a value.
const RECEIVER_PARKED: u8 = 1;
/// The sender waits for room.
const SENDER_PARKED: u8 = 2;
/// The sender ended its input.
const ENDED: u8 = 4;
/// Either side cancelled.
const CANCELLED: u8 = 8;

/// Whom the caller must wake after a call. Each flag is raised once per wait
/// of that party, by exactly one call.
#[must_use = "a parked party that is not woken waits forever"]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wake {
    /// Wake the sender: there is room for it, or the lane was cancelled.
    pub sender: bool,
    /// Wake the receiver: there are values for it, or the lane was closed.
    pub receiver: bool,
}

impl Wake {
    /// Nobody.
    pub const NONE: Wake = Wake {
        sender: false,
        receiver: false,
    };
    /// The sender only.
    pub const SENDER: Wake = Wake {
        sender: true,
        receiver: false,
    };
    /// The receiver only.
    pub const RECEIVER: Wake = Wake {
        sender: false,
        receiver: true,
    };
    /// Both.
    pub const BOTH: Wake = Wake {
        sender: true,
        receiver: true,
    };
}

/// Why a lane refuses values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The sender ended its input; what was queued is still delivered.
    Ended,
    /// The lane was cancelled; what was queued was dropped.
    Cancelled,
}

/// What became of a pushed batch. The names are [`crate::lane::Push`]'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Every value of the batch was queued.
    Accepted,
    /// The queue is full: the values queued left the batch, the rest stay in
    /// it. The sender waits for its wake before pushing again.
    Parked,
    /// The lane is closed (why: ended or cancelled); the values still in the
    /// batch were refused.
    Closed(Closed),
}

/// What the receiver got from a take. The names are
/// [`crate::lane::Take`]'s, plus `Cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Values were appended to the output.
    Taken {
        /// How many.
        count: usize,
    },
    /// Nothing queued: the receiver waits for its wake before taking again.
    Empty,
    /// The input ended and every value was taken.
    Ended,
    /// The lane was cancelled: nothing more will come.
    Cancelled,
}

/// A bounded FIFO between two threads, with the wake protocol of the module
/// docs. Share it between the threads (for instance in an `Arc`).
pub struct CrossLane<T> {
    queue: Queue<T>,
    state: AtomicU8,
    /// Free places at which a parked sender is woken: half the capacity.
    low_water: usize,
}

impl<T> CrossLane<T> {
    /// A lane that queues at most `capacity` values (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        CrossLane {
            queue: Queue::new(capacity),
            state: AtomicU8::new(0),
            low_water: capacity.div_ceil(2),
        }
    }

    /// The most values the queue holds.
    pub fn capacity(&self) -> usize {
        self.queue.capacity()
    }

    /// Values queued right now (a snapshot while the other side acts).
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is queued right now (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Why the lane refuses values, or `None` while it accepts them.
    pub fn closed(&self) -> Option<Closed> {
        closed(self.state.load(Ordering::Acquire))
    }

    /// Queues values from the front of `batch`, in order, until it is empty
    /// or the queue is full. Values not queued stay in `batch`. Sender only.
    pub fn push(&self, batch: &mut VecDeque<T>) -> (Push, Wake) {
        let state = self.state.load(Ordering::Acquire);
        if let Some(why) = closed(state) {
            return (Push::Closed(why), Wake::NONE);
        }
        if state & SENDER_PARKED != 0 {
            return (Push::Parked, Wake::NONE);
        }
        let mut wake = Wake::NONE;
        loop {
            let mut queued = false;
            while let Some(value) = batch.pop_front() {
                if let Err(value) = self.queue.push(value) {
                    batch.push_front(value);
                    break;
                }
                queued = true;
            }
            let full = !batch.is_empty();
            let (prev, _) = self.update(|s| {
                if s & CANCELLED != 0 {
                    return s;
                }
                let mut next = s;
                if queued {
                    next &= !RECEIVER_PARKED;
                }
                if full {
                    next |= SENDER_PARKED;
                }
                next
            });
            if prev & CANCELLED != 0 {
                // The cancel may have emptied the queue before these pushes
                // landed: drop them as it would have.
                self.discard();
                return (Push::Closed(Closed::Cancelled), wake);
            }
            wake.receiver |= queued && prev & RECEIVER_PARKED != 0;
            if !full {
                return (Push::Accepted, wake);
            }
            // Registered. The receiver may have made room before it could see
            // the registration; if so, withdraw it and go on pushing.
            if !self.has_room_for_sender() || !self.withdraw(SENDER_PARKED) {
                return (Push::Parked, wake);
            }
        }
    }

    /// Appends up to `max` queued values (at least 1) to `out`, oldest first.
    /// Receiver only.
    pub fn take(&self, max: usize, out: &mut Vec<T>) -> (Take, Wake) {
        let state = self.state.load(Ordering::Acquire);
        if state & CANCELLED != 0 {
            return (Take::Cancelled, Wake::NONE);
        }
        if state & RECEIVER_PARKED != 0 {
            return (Take::Empty, Wake::NONE);
        }
        let max = max.max(1);
        let start = out.len();
        let mut wake = Wake::NONE;
        let mut saw_end = false;
        loop {
            while out.len() - start < max {
                match self.queue.pop() {
                    Some(value) => out.push(value),
                    None => break,
                }
            }
            let count = out.len() - start;
            let (prev, next) = self.update(|s| {
                if s & CANCELLED != 0 {
                    return s;
                }
                let mut next = s;
                if s & SENDER_PARKED != 0 && self.has_room_for_sender() {
                    next &= !SENDER_PARKED;
                }
                if count == 0 && s & ENDED == 0 {
                    next |= RECEIVER_PARKED;
                }
                next
            });
            if prev & CANCELLED != 0 {
                out.truncate(start);
                return (Take::Cancelled, wake);
            }
            wake.sender |= prev & SENDER_PARKED != 0 && next & SENDER_PARKED == 0;
            if count > 0 {
                return (Take::Taken { count }, wake);
            }
            if prev & ENDED != 0 {
                // The values pushed before the end may have landed after the
                // pops above; having acquired the end, one more look finds
                // them all.
                if saw_end {
                    return (Take::Ended, wake);
                }
                saw_end = true;
                continue;
            }
            // Registered. A push may have landed before the sender could see
            // the registration; if so, withdraw it and take again.
            if self.queue.is_empty() || !self.withdraw(RECEIVER_PARKED) {
                return (Take::Empty, wake);
            }
        }
    }

    /// Ends the input: later pushes are refused, queued values are still
    /// taken. Sender only (or whoever acts for a sender that died). Ending
    /// twice, or after a cancel, does nothing.
    pub fn end(&self) -> Wake {
        let (prev, _) = self.update(|s| {
            if s & (ENDED | CANCELLED) != 0 {
                s
            } else {
                (s | ENDED) & !RECEIVER_PARKED
            }
        });
        Wake {
            sender: false,
            receiver: prev & (ENDED | CANCELLED) == 0 && prev & RECEIVER_PARKED != 0,
        }
    }

    /// Cancels the lane from either side: later pushes are refused, queued
    /// values are dropped (on the caller's thread), the receiver's next take
    /// answers [`Take::Cancelled`]. Every parked party is to be woken, the
    /// caller's own side included. Cancelling twice does nothing.
    pub fn cancel(&self) -> Wake {
        let (prev, _) = self.update(|s| {
            if s & CANCELLED != 0 {
                s
            } else {
                (s | CANCELLED) & !(RECEIVER_PARKED | SENDER_PARKED)
            }
        });
        self.discard();
        if prev & CANCELLED != 0 {
            return Wake::NONE;
        }
        Wake {
            sender: prev & SENDER_PARKED != 0,
            receiver: prev & RECEIVER_PARKED != 0,
        }
    }

    fn has_room_for_sender(&self) -> bool {
        self.queue.capacity() - self.queue.len() >= self.low_water
    }

    fn discard(&self) {
        while self.queue.pop().is_some() {}
    }

    /// Applies `f` to the state word in one read-modify-write, and answers
    /// the state before and after. It writes even when `f` changes nothing:
    /// only a write orders this call against the peer's (module docs, "Why no
    /// wake is lost").
    fn update(&self, f: impl Fn(u8) -> u8) -> (u8, u8) {
        let mut prev = self.state.load(Ordering::Acquire);
        loop {
            let next = f(prev);
            match self
                .state
                .compare_exchange_weak(prev, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return (prev, next),
                Err(actual) => prev = actual,
            }
        }
    }

    /// Clears the caller's own `flag` unless the peer (or a cancel) already
    /// has, in which case its wake is on the way. Answers whether it cleared.
    fn withdraw(&self, flag: u8) -> bool {
        self.state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                (s & flag != 0).then_some(s & !flag)
            })
            .is_ok()
    }
}

impl<T> std::fmt::Debug for CrossLane<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.load(Ordering::Acquire);
        f.debug_struct("CrossLane")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .field("receiver_parked", &(state & RECEIVER_PARKED != 0))
            .field("sender_parked", &(state & SENDER_PARKED != 0))
            .field("closed", &closed(state))
            .finish()
    }
}

fn closed(state: u8) -> Option<Closed> {
    if state & CANCELLED != 0 {
        Some(Closed::Cancelled)
    } else if state & ENDED != 0 {
        Some(Closed::Ended)
    } else {
        None
    }
}

/// The queue loom checks the protocol against.
///
/// crossbeam's `ArrayQueue` is built on std atomics, which loom cannot see or
/// reorder, so under loom the lane swaps in this stand-in with the same
/// methods: a `VecDeque` behind a loom mutex, linearizable like `ArrayQueue`.
/// The protocol relies on nothing more from the queue than that: it orders
/// the two threads through its own state word (module docs). Loom explores
/// every interleaving of the queue operations with the state transitions
/// (within the tests' preemption bound). What this stand-in cannot show is
/// the need for the unconditional write in `update`: its mutex orders the
/// threads by itself, so the tests pass with a plain load there too (tried).
/// The write is kept so that the argument holds for any linearizable queue,
/// whatever its own ordering; the queue itself is crossbeam's to prove.
#[cfg(loom)]
mod model {
    use loom::sync::Mutex;
    use std::collections::VecDeque;

    pub(super) struct ModelQueue<T> {
        items: Mutex<VecDeque<T>>,
        capacity: usize,
    }

    impl<T> ModelQueue<T> {
        pub(super) fn new(capacity: usize) -> Self {
            ModelQueue {
                items: Mutex::new(VecDeque::with_capacity(capacity)),
                capacity,
            }
        }

        pub(super) fn capacity(&self) -> usize {
            self.capacity
        }

        pub(super) fn len(&self) -> usize {
            self.items.lock().unwrap().len()
        }

        pub(super) fn is_empty(&self) -> bool {
            self.len() == 0
        }

        pub(super) fn push(&self, value: T) -> Result<(), T> {
            let mut items = self.items.lock().unwrap();
            if items.len() == self.capacity {
                return Err(value);
            }
            items.push_back(value);
            Ok(())
        }

        pub(super) fn pop(&self) -> Option<T> {
            self.items.lock().unwrap().pop_front()
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    fn batch(values: impl IntoIterator<Item = u32>) -> VecDeque<u32> {
        values.into_iter().collect()
    }

    fn full_lane(capacity: u32) -> CrossLane<u32> {
        let lane = CrossLane::new(capacity as usize);
        let mut values = batch(0..capacity + 1);
        assert_eq!(lane.push(&mut values), (Push::Parked, Wake::NONE));
        assert_eq!(values, [capacity]);
        lane
    }

    #[test]
    fn lane_is_send_and_sync() {
        fn both<X: Send + Sync>() {}
        both::<CrossLane<Vec<u8>>>();
    }

    #[test]
    fn push_queues_the_whole_batch_in_order() {
        let lane = CrossLane::new(8);
        let mut values = batch(0..5);
        assert_eq!(lane.push(&mut values), (Push::Accepted, Wake::NONE));
        assert!(values.is_empty());
        assert_eq!(lane.len(), 5);
        let mut out = Vec::new();
        assert_eq!(
            lane.take(usize::MAX, &mut out),
            (Take::Taken { count: 5 }, Wake::NONE)
        );
        assert_eq!(out, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn empty_batch_is_queued_and_wakes_nobody() {
        let lane: CrossLane<u32> = CrossLane::new(2);
        let mut out = Vec::new();
        assert_eq!(lane.take(1, &mut out), (Take::Empty, Wake::NONE));
        assert_eq!(
            lane.push(&mut VecDeque::new()),
            (Push::Accepted, Wake::NONE)
        );
        // The receiver is still owed a wake by the first push that queues.
        assert_eq!(lane.push(&mut batch([7])), (Push::Accepted, Wake::RECEIVER));
    }

    #[test]
    fn capacity_is_at_least_one() {
        let lane = CrossLane::new(0);
        assert_eq!(lane.capacity(), 1);
        let mut values = batch([1, 2]);
        assert_eq!(lane.push(&mut values), (Push::Parked, Wake::NONE));
        assert_eq!(values, [2]);
    }

    #[test]
    fn take_appends_at_most_max_and_at_least_one() {
        let lane = CrossLane::new(8);
        let _ = lane.push(&mut batch(0..6));
        let mut out = vec![99];
        assert_eq!(
            lane.take(4, &mut out),
            (Take::Taken { count: 4 }, Wake::NONE)
        );
        assert_eq!(out, [99, 0, 1, 2, 3]);
        assert_eq!(
            lane.take(0, &mut out),
            (Take::Taken { count: 1 }, Wake::NONE)
        );
        assert_eq!(out, [99, 0, 1, 2, 3, 4]);
    }

    #[test]
    fn parked_receiver_is_woken_by_the_first_push_only() {
        let lane = CrossLane::new(8);
        let mut out = Vec::new();
        assert_eq!(lane.take(8, &mut out), (Take::Empty, Wake::NONE));
        assert_eq!(
            lane.push(&mut batch([1, 2])),
            (Push::Accepted, Wake::RECEIVER)
        );
        // Still not taken: no second wake for the same wait.
        assert_eq!(lane.push(&mut batch([3])), (Push::Accepted, Wake::NONE));
        assert_eq!(
            lane.take(8, &mut out),
            (Take::Taken { count: 3 }, Wake::NONE)
        );
        // A receiver that is not parked is never woken.
        assert_eq!(lane.push(&mut batch([4])), (Push::Accepted, Wake::NONE));
    }

    #[test]
    fn take_while_parked_changes_nothing() {
        let lane: CrossLane<u32> = CrossLane::new(4);
        let mut out = Vec::new();
        assert_eq!(lane.take(4, &mut out), (Take::Empty, Wake::NONE));
        assert_eq!(lane.take(4, &mut out), (Take::Empty, Wake::NONE));
        assert_eq!(lane.push(&mut batch([1])), (Push::Accepted, Wake::RECEIVER));
        assert_eq!(
            lane.take(4, &mut out),
            (Take::Taken { count: 1 }, Wake::NONE)
        );
    }

    #[test]
    fn full_queue_parks_the_sender_and_keeps_the_rest() {
        let lane = CrossLane::new(3);
        let mut values = batch(0..5);
        assert_eq!(lane.push(&mut values), (Push::Parked, Wake::NONE));
        assert_eq!(values, [3, 4]);
        assert_eq!(lane.len(), 3);
        // Pushing again while parked moves nothing, even with room made
        // meanwhile: the wake says when to come back.
        let mut out = Vec::new();
        assert_eq!(
            lane.take(1, &mut out),
            (Take::Taken { count: 1 }, Wake::NONE)
        );
        assert_eq!(lane.push(&mut values), (Push::Parked, Wake::NONE));
        assert_eq!(values, [3, 4]);
    }

    #[test]
    fn parked_sender_is_woken_once_half_the_capacity_is_free() {
        let lane = full_lane(4);
        let mut out = Vec::new();
        assert_eq!(
            lane.take(1, &mut out),
            (Take::Taken { count: 1 }, Wake::NONE)
        );
        assert_eq!(
            lane.take(1, &mut out),
            (Take::Taken { count: 1 }, Wake::SENDER)
        );
        // Woken once: more room makes no second wake.
        assert_eq!(
            lane.take(1, &mut out),
            (Take::Taken { count: 1 }, Wake::NONE)
        );
        assert_eq!(
            lane.take(8, &mut out),
            (Take::Taken { count: 1 }, Wake::NONE)
        );
        assert_eq!(out, [0, 1, 2, 3]);
    }

    #[test]
    fn capacity_one_wakes_the_sender_at_every_take() {
        let lane = full_lane(1);
        let mut out = Vec::new();
        assert_eq!(
            lane.take(1, &mut out),
            (Take::Taken { count: 1 }, Wake::SENDER)
        );
    }

    #[test]
    fn sender_that_ends_while_parked_is_still_woken_once() {
        let lane = full_lane(2);
        assert_eq!(lane.end(), Wake::NONE);
        let mut out = Vec::new();
        assert_eq!(
            lane.take(8, &mut out),
            (Take::Taken { count: 2 }, Wake::SENDER)
        );
        assert_eq!(lane.take(8, &mut out), (Take::Ended, Wake::NONE));
    }

    #[test]
    fn woken_sender_pushes_the_rest() {
        let lane = CrossLane::new(2);
        let mut values = batch(0..5);
        let mut out = Vec::new();
        let mut rounds = 0;
        loop {
            let (push, _) = lane.push(&mut values);
            rounds += 1;
            let (_, wake) = lane.take(usize::MAX, &mut out);
            if push == Push::Accepted {
                break;
            }
            assert_eq!(wake, Wake::SENDER);
        }
        let _ = lane.take(usize::MAX, &mut out);
        assert_eq!(out, [0, 1, 2, 3, 4]);
        assert_eq!(rounds, 3);
    }

    #[test]
    fn end_wakes_a_parked_receiver_and_keeps_the_queue() {
        let lane = CrossLane::new(4);
        let mut out = Vec::new();
        assert_eq!(lane.take(4, &mut out), (Take::Empty, Wake::NONE));
        assert_eq!(lane.end(), Wake::RECEIVER);
        assert_eq!(lane.take(4, &mut out), (Take::Ended, Wake::NONE));

        let lane = CrossLane::new(4);
        let _ = lane.push(&mut batch([1, 2]));
        assert_eq!(lane.end(), Wake::NONE);
        assert_eq!(lane.closed(), Some(Closed::Ended));
        assert_eq!(
            lane.take(1, &mut out),
            (Take::Taken { count: 1 }, Wake::NONE)
        );
        assert_eq!(
            lane.take(1, &mut out),
            (Take::Taken { count: 1 }, Wake::NONE)
        );
        assert_eq!(lane.take(1, &mut out), (Take::Ended, Wake::NONE));
        assert_eq!(lane.take(1, &mut out), (Take::Ended, Wake::NONE));
        assert_eq!(out, [1, 2]);
    }

    #[test]
    fn push_after_end_is_refused_and_kept_by_the_caller() {
        let lane = CrossLane::new(4);
        assert_eq!(lane.end(), Wake::NONE);
        let mut values = batch([1, 2]);
        assert_eq!(
            lane.push(&mut values),
            (Push::Closed(Closed::Ended), Wake::NONE)
        );
        assert_eq!(values, [1, 2]);
        assert!(lane.is_empty());
    }

    #[test]
    fn end_twice_or_after_cancel_does_nothing() {
        let lane: CrossLane<u32> = CrossLane::new(4);
        let mut out = Vec::new();
        let _ = lane.take(1, &mut out);
        assert_eq!(lane.end(), Wake::RECEIVER);
        assert_eq!(lane.end(), Wake::NONE);

        let lane: CrossLane<u32> = CrossLane::new(4);
        let _ = lane.take(1, &mut out);
        assert_eq!(lane.cancel(), Wake::RECEIVER);
        assert_eq!(lane.end(), Wake::NONE);
        assert_eq!(lane.closed(), Some(Closed::Cancelled));
    }

    #[test]
    fn cancel_by_the_receiver_wakes_the_parked_sender_and_refuses_pushes() {
        let lane = full_lane(2);
        assert_eq!(lane.cancel(), Wake::SENDER);
        assert!(lane.is_empty());
        let mut values = batch([5]);
        assert_eq!(
            lane.push(&mut values),
            (Push::Closed(Closed::Cancelled), Wake::NONE)
        );
        assert_eq!(values, [5]);
        let mut out = Vec::new();
        assert_eq!(lane.take(4, &mut out), (Take::Cancelled, Wake::NONE));
        assert!(out.is_empty());
    }

    #[test]
    fn cancel_by_the_sender_wakes_the_parked_receiver() {
        let lane: CrossLane<u32> = CrossLane::new(2);
        let mut out = Vec::new();
        assert_eq!(lane.take(2, &mut out), (Take::Empty, Wake::NONE));
        assert_eq!(lane.cancel(), Wake::RECEIVER);
        assert_eq!(lane.take(2, &mut out), (Take::Cancelled, Wake::NONE));
    }

    #[test]
    fn cancel_wakes_nobody_when_nobody_waits_and_only_once() {
        let lane = CrossLane::new(2);
        let _ = lane.push(&mut batch([1]));
        assert_eq!(lane.cancel(), Wake::NONE);
        assert_eq!(lane.cancel(), Wake::NONE);
    }

    #[test]
    fn cancel_after_end_drops_what_was_queued() {
        let lane = CrossLane::new(4);
        let _ = lane.push(&mut batch([1, 2]));
        let _ = lane.end();
        assert_eq!(lane.cancel(), Wake::NONE);
        let mut out = Vec::new();
        assert_eq!(lane.take(4, &mut out), (Take::Cancelled, Wake::NONE));
        assert!(out.is_empty());
    }

    struct Counted(Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn cancel_drops_queued_values_at_once_and_only_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        let lane = CrossLane::new(4);
        let mut values: VecDeque<_> = (0..3).map(|_| Counted(Arc::clone(&drops))).collect();
        let _ = lane.push(&mut values);
        let _ = lane.cancel();
        assert_eq!(drops.load(Ordering::Relaxed), 3);
        drop(lane);
        assert_eq!(drops.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn dropping_the_lane_drops_what_is_queued() {
        let drops = Arc::new(AtomicUsize::new(0));
        let lane = CrossLane::new(4);
        let mut values: VecDeque<_> = (0..2).map(|_| Counted(Arc::clone(&drops))).collect();
        let _ = lane.push(&mut values);
        drop(lane);
        assert_eq!(drops.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn debug_shows_the_state() {
        let lane: CrossLane<u32> = CrossLane::new(2);
        let _ = lane.take(1, &mut Vec::new());
        let shown = format!("{lane:?}");
        assert!(shown.contains("receiver_parked: true"), "{shown}");
        assert!(shown.contains("closed: None"), "{shown}");
    }
}
