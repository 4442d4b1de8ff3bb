//! One direction of a stream: a bounded FIFO between a sender and a receiver.
//!
//! A stream has two lanes: the input lane (user `send` -> handler) and the
//! output lane (handler `yield` -> consumer). Both have the same rules, so one
//! type serves both.
//!
//! # Capacity
//! At most `capacity` values are *held* by a lane at any time. A value is held
//! from the moment it is accepted until the receiver has consumed it. The
//! receiver takes values in batches ([`Lane::take`]); a batch stays *lent* (and
//! keeps counting against the capacity) until the receiver comes back for the
//! next one, which is how it says it has consumed the previous batch. That keeps
//! the bound exact while letting a whole batch cross the JS/Rust boundary in
//! one call.
//!
//! # Waiting receivers
//! The lane does not track whether its receiver waits: the embedder owns the
//! waiting (in Node, the promises), so it knows. When it says the receiver is
//! waiting, [`Lane::try_handoff`] lets one value go straight to it, counted
//! but never stored, provided nothing is queued or waiting ahead of it.
//!
//! # Waiting senders
//! A push that finds no room is not refused: the value joins the lane's
//! waiting line and the caller is told to wait ([`Push::Parked`]). Waiting
//! values are admitted in order, ahead of any later push, once the receiver
//! has freed at least half of the capacity (a low watermark, so that parked
//! senders are woken in groups rather than one per consumed value). The lane
//! only decides; the caller owns whatever "waiting" means (in the Node binding,
//! a promise per parked `send`). A value's wait (see [`Lane::take`]) runs from
//! its push, so a parked value's includes its time in the waiting line.
//!
//! # Closing
//! [`Lane::close`] refuses later pushes but keeps everything accepted or already
//! waiting: those are still delivered. [`Lane::clear`] drops everything.

use std::collections::VecDeque;

/// What became of a pushed value. ([`crate::cross_lane::Push`] answers in
/// the same names.)
#[derive(Debug, PartialEq, Eq)]
pub enum Push<T> {
    /// Accepted into the lane.
    Accepted,
    /// No room: the value waits in line and will be admitted in order.
    Parked,
    /// The lane is closed; the value is handed back.
    Closed(T),
}

/// What a receiver got from [`Lane::take`]. ([`crate::cross_lane::Take`]
/// answers in the same names.)
#[derive(Debug, PartialEq, Eq)]
pub enum Take {
    /// `count` values were appended to the output; `admitted` waiting senders
    /// were let in (oldest first) and may be told their value is accepted.
    Taken {
        /// Values handed to the receiver.
        count: usize,
        /// Parked senders admitted by this call.
        admitted: usize,
    },
    /// Nothing to take yet: the receiver waits until values arrive.
    Empty,
    /// Closed and fully drained: nothing will ever arrive.
    Ended,
}

struct Held<T> {
    value: T,
    accepted_at_us: u64,
}

/// A bounded FIFO lane. Not thread-safe by design: each stream lives on one
/// JavaScript thread, so its lanes need no synchronisation at all.
pub struct Lane<T> {
    queue: VecDeque<Held<T>>,
    /// Values that found no room, with the time of their push.
    waiting: VecDeque<Held<T>>,
    capacity: usize,
    lent: usize,
    closed: bool,
    accepted: u64,
    waits: u64,
}

impl<T> Lane<T> {
    /// A lane that holds at most `capacity` values (at least 1).
    pub fn new(capacity: usize) -> Self {
        Lane {
            queue: VecDeque::new(),
            waiting: VecDeque::new(),
            capacity: capacity.max(1),
            lent: 0,
            closed: false,
            accepted: 0,
            waits: 0,
        }
    }

    /// Free places a push can use right now without waiting. Zero while anyone
    /// waits in line, so a batch never overtakes a parked sender.
    pub fn room(&self) -> usize {
        if self.closed || !self.waiting.is_empty() {
            return 0;
        }
        self.capacity - self.held()
    }

    /// Values held: queued plus lent to the receiver.
    pub fn held(&self) -> usize {
        self.queue.len() + self.lent
    }

    /// Values queued and not yet lent to the receiver.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Values lent to the receiver by the last [`Lane::take`].
    pub fn lent(&self) -> usize {
        self.lent
    }

    /// Senders waiting in line.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Values accepted so far (waiting ones count once admitted).
    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    /// Pushes that had to wait for room.
    pub fn waits(&self) -> u64 {
        self.waits
    }

    /// Whether pushes are refused.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Push one value at time `now_us`.
    pub fn push(&mut self, value: T, now_us: u64) -> Push<T> {
        if self.closed {
            return Push::Closed(value);
        }
        if !self.waiting.is_empty() || self.held() >= self.capacity {
            self.waiting.push_back(Held {
                value,
                accepted_at_us: now_us,
            });
            self.waits += 1;
            return Push::Parked;
        }
        self.admit(value, now_us);
        Push::Accepted
    }

    /// For a value whose receiver is waiting right now (the caller knows):
    /// if nothing is queued, waiting or lent ahead of it and the lane is open,
    /// count it as accepted and taken, and return true; the caller gives the
    /// value to the receiver itself. Otherwise change nothing and return
    /// false (the caller then pushes as usual).
    ///
    /// This is the fast path of a live stream: the value never waits, so it
    /// is never stored, and its queue wait is recorded as zero.
    pub fn try_handoff(&mut self, mut record_wait: impl FnMut(u64)) -> bool {
        if self.closed || self.held() > 0 || !self.waiting.is_empty() {
            return false;
        }
        self.accepted += 1;
        record_wait(0);
        true
    }

    /// Counts `n` values the embedder handed over itself, each at a moment
    /// when [`Lane::try_handoff`] would have returned true (it keeps track
    /// of that on its side, and reports them in one call instead of one each).
    pub fn count_handoffs(&mut self, n: u64) {
        self.accepted += n;
    }

    /// Push values that fit in [`Lane::room`]; returns how many.
    ///
    /// # Panics
    /// If the values do not fit: the caller asks for `room()` first.
    pub fn push_batch(&mut self, values: impl IntoIterator<Item = T>, now_us: u64) -> usize {
        let room = self.room();
        let mut n = 0;
        for value in values {
            assert!(n < room, "push_batch over the lane's room ({room})");
            self.admit(value, now_us);
            n += 1;
        }
        n
    }

    fn admit(&mut self, value: T, now_us: u64) {
        self.queue.push_back(Held {
            value,
            accepted_at_us: now_us,
        });
        self.accepted += 1;
    }

    /// Hand up to `max` values to the receiver (appended to `out`), and tell
    /// `record_waits(micros, n)` how long they waited (µs), from their push
    /// (a parked one's included its time in the waiting line): `n` values in
    /// a row that waited `micros` each (values pushed together are told in
    /// one call). Calling `take` again tells the lane that the previous batch
    /// was consumed.
    pub fn take(
        &mut self,
        max: usize,
        now_us: u64,
        out: &mut impl Extend<T>,
        record_waits: impl FnMut(u64, u64),
    ) -> Take {
        self.take_run(max, now_us, out, record_waits, |_| 0)
    }

    /// Like [`Lane::take`], but the batch is a *run*: it stops before the
    /// first value whose `kind` differs from the first one's. The embedder uses
    /// it to move a run of numbers through shared memory and a run of other
    /// values through a JS array, in order.
    pub fn take_run(
        &mut self,
        max: usize,
        now_us: u64,
        out: &mut impl Extend<T>,
        mut record_waits: impl FnMut(u64, u64),
        kind: impl Fn(&T) -> u8,
    ) -> Take {
        self.lent = 0;
        let mut admitted = self.admit_waiting();
        let first = self.queue.front().map(|h| kind(&h.value));
        let count = self
            .queue
            .iter()
            .take(max)
            .take_while(|h| Some(kind(&h.value)) == first)
            .count();
        if count == 0 {
            if self.closed && self.waiting.is_empty() {
                return Take::Ended;
            }
            return Take::Empty;
        }
        // A batch sent at once waited the same time: one record per run of
        // equal waits, not one per value.
        let mut run = (0, 0);
        out.extend(self.queue.drain(..count).map(|held| {
            let wait = now_us.saturating_sub(held.accepted_at_us);
            if run.1 > 0 && run.0 != wait {
                record_waits(run.0, run.1);
                run.1 = 0;
            }
            run = (wait, run.1 + 1);
            held.value
        }));
        record_waits(run.0, run.1);
        self.lent = count;
        admitted += self.admit_waiting();
        Take::Taken { count, admitted }
    }

    /// The receiver has consumed `n` values of the batch it holds before coming
    /// back for the next one: they stop counting against the capacity now, and
    /// waiting senders are admitted as a take admits them (once half the
    /// capacity is free). Returns how many were admitted. Lets a paused sender
    /// refill the lane while the receiver is still working through a batch.
    pub fn consumed(&mut self, n: usize) -> usize {
        self.lent -= n.min(self.lent);
        self.admit_waiting()
    }

    /// Admit waiting senders once at least half the capacity is free.
    fn admit_waiting(&mut self) -> usize {
        let free = self.capacity - self.held();
        if self.waiting.is_empty() || free < self.capacity.div_ceil(2) {
            return 0;
        }
        let n = free.min(self.waiting.len());
        // (Each keeps the time of its push: its wait runs from there.)
        self.queue.extend(self.waiting.drain(..n));
        self.accepted += n as u64;
        n
    }

    /// Refuse later pushes; what is held or waiting is still delivered.
    /// Returns true the first time.
    pub fn close(&mut self) -> bool {
        !std::mem::replace(&mut self.closed, true)
    }

    /// Close and drop everything held or waiting. Returns how many senders
    /// were waiting (their values are dropped with the rest).
    pub fn clear(&mut self) -> usize {
        self.closed = true;
        self.queue.clear();
        self.lent = 0;
        let waiting = self.waiting.len();
        self.waiting.clear();
        waiting
    }

    /// Whether the receiver will never get another value.
    pub fn is_drained(&self) -> bool {
        self.closed && self.queue.is_empty() && self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take_all(lane: &mut Lane<u32>) -> (Vec<u32>, Take) {
        let mut out = Vec::new();
        let t = lane.take(usize::MAX, 0, &mut out, |_, _| {});
        (out, t)
    }

    #[test]
    fn take_tells_waits_per_run_of_equal_waits() {
        let mut lane = Lane::new(8);
        lane.push_batch([1, 2], 0);
        lane.push(3, 5);
        lane.push_batch([4, 5], 6);
        let mut waits = Vec::new();
        let mut out = Vec::new();
        lane.take(usize::MAX, 10, &mut out, |micros, n| {
            waits.push((micros, n))
        });
        assert_eq!(out, [1, 2, 3, 4, 5]);
        assert_eq!(waits, [(10, 2), (5, 1), (4, 2)]);
    }

    #[test]
    fn fifo_and_capacity() {
        let mut lane = Lane::new(2);
        assert_eq!(lane.push(1, 0), Push::Accepted);
        assert_eq!(lane.push(2, 0), Push::Accepted);
        assert_eq!(lane.push(3, 0), Push::Parked);
        assert_eq!(lane.room(), 0);
        let (got, t) = take_all(&mut lane);
        assert_eq!(got, vec![1, 2]);
        // The batch is lent: still counts against capacity, so 3 still waits.
        assert_eq!(
            t,
            Take::Taken {
                count: 2,
                admitted: 0
            }
        );
        assert_eq!(lane.held(), 2);
        let (got, t) = take_all(&mut lane);
        assert_eq!(got, vec![3]);
        assert_eq!(
            t,
            Take::Taken {
                count: 1,
                admitted: 1
            }
        );
    }

    #[test]
    fn parked_sender_keeps_its_place() {
        let mut lane = Lane::new(4);
        for i in 0..4 {
            lane.push(i, 0);
        }
        assert_eq!(lane.push(4, 0), Push::Parked);
        let mut out = Vec::new();
        lane.take(1, 0, &mut out, |_, _| {});
        lane.take(1, 0, &mut out, |_, _| {});
        // One place is free, but a later push may not overtake the parked one.
        assert_eq!(lane.push(5, 0), Push::Parked);
        let (got, _) = take_all(&mut lane);
        out.extend(got);
        let (got, _) = take_all(&mut lane);
        out.extend(got);
        assert_eq!(out, vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn close_delivers_what_was_accepted_or_waiting() {
        let mut lane = Lane::new(1);
        lane.push(1, 0);
        assert_eq!(lane.push(2, 0), Push::Parked);
        assert!(lane.close());
        assert!(!lane.close());
        assert_eq!(lane.push(3, 0), Push::Closed(3));
        assert_eq!(take_all(&mut lane).0, vec![1]);
        assert_eq!(take_all(&mut lane).0, vec![2]);
        assert_eq!(take_all(&mut lane).1, Take::Ended);
    }

    #[test]
    fn clear_drops_everything_and_counts_waiters() {
        let mut lane = Lane::new(1);
        lane.push(1, 0);
        lane.push(2, 0);
        lane.push(3, 0);
        assert_eq!(lane.clear(), 2);
        assert_eq!(take_all(&mut lane).1, Take::Ended);
    }

    #[test]
    fn queue_wait_is_recorded() {
        let mut lane = Lane::new(8);
        lane.push(1, 100);
        let mut h = crate::histogram::Histogram::default();
        let mut out = Vec::new();
        lane.take(8, 350, &mut out, |w, n| h.record_n(w, n));
        assert_eq!(h.snapshot(&[]).count, 1);
        let p50 = h.percentile(0.5);
        assert!((224..=256).contains(&p50), "p50 {p50}");
    }

    #[test]
    fn handoff_only_when_nothing_is_ahead() {
        let mut lane = Lane::new(1);
        assert!(lane.try_handoff(|_| {}));
        assert_eq!(
            (lane.accepted(), lane.held()),
            (1, 0),
            "handed over, never held"
        );
        lane.push(2, 0);
        assert!(!lane.try_handoff(|_| {}), "a queued value goes first");
        assert_eq!(take_all(&mut lane).0, vec![2]);
        assert!(
            !lane.try_handoff(|_| {}),
            "a lent batch is not yet consumed"
        );
        assert_eq!(take_all(&mut lane).1, Take::Empty);
        assert!(lane.try_handoff(|_| {}));
        lane.close();
        assert!(!lane.try_handoff(|_| {}), "closed");
    }

    #[test]
    fn consumed_part_of_a_batch_admits_a_waiting_sender_at_half_capacity() {
        let mut lane = Lane::new(4);
        for v in 0..4 {
            assert_eq!(lane.push(v, 0), Push::Accepted);
        }
        assert_eq!(lane.push(4, 0), Push::Parked);
        let (batch, took) = take_all(&mut lane);
        assert_eq!(batch, vec![0, 1, 2, 3]);
        assert_eq!(
            took,
            Take::Taken {
                count: 4,
                admitted: 0
            },
            "the batch is lent: no room yet"
        );
        assert_eq!(lane.consumed(1), 0, "one free place is below the watermark");
        assert_eq!(lane.held(), 3);
        assert_eq!(lane.consumed(1), 1, "half free: the waiting value goes in");
        assert_eq!((lane.held(), lane.queued(), lane.lent()), (3, 1, 2));
        assert_eq!(lane.room(), 1, "room for the next push, within the bound");
        assert_eq!(lane.consumed(9), 0, "never below zero lent");
        assert_eq!(lane.lent(), 0);
        let (batch, _) = take_all(&mut lane);
        assert_eq!(batch, vec![4], "in order, once");
    }

    #[test]
    #[should_panic(expected = "push_batch over")]
    fn push_batch_checks_room() {
        let mut lane = Lane::new(1);
        lane.push_batch([1, 2], 0);
    }
}
