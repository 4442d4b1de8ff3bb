//! The bookkeeping of a task stage (`task()` and `batch()` in JavaScript):
//! per-item (or per-batch) async calls run concurrently inside one stream,
//! and their results leave in input order or as they complete.
//!
//! The embedder starts the calls and settles them; this window decides:
//! - **the in-flight gate**: at most `concurrency` calls at once, and no new
//!   call while `in flight + held` is at the window's bound (the larger of
//!   `buffer` and `concurrency`), so results waiting for an earlier item or
//!   for output room never grow past it. A call waiting to be retried keeps
//!   its place.
//! - **the reorder window**: each call has a sequence number; in ordered mode a
//!   settled call becomes *ready* only when every earlier one has settled, so
//!   the embedder emits results from the head, as soon as they can go.
//! - **retries**: a failed attempt is retried after
//!   `delay * factor^(attempt - 1)`, capped at `max_delay`; the due times are
//!   deadlines the embedder arms on the thread's deadline set and reports
//!   back with [`TaskWindow::take_due`].
//! - **batches**: items accumulate up to `max_size`; a batch is due when full,
//!   when it holds `min_size` items and `max_wait` has passed since its first,
//!   or when the input ended (the last batch goes whatever its size).
//!
//! Calls live in slots (`0..concurrency`), which the embedder uses to find
//! its own per-call state (the item, its promise's result); sequence numbers
//! only order results.

use std::collections::{BTreeSet, VecDeque};

use crate::admission::Admission;
use crate::histogram::Histogram;

/// How failed attempts are retried.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts per item in all (1: no retry).
    pub attempts: u32,
    /// Wait before the first retry, microseconds.
    pub delay_us: u64,
    /// Each further wait is this many times the one before.
    pub factor: f64,
    /// No wait is longer than this, microseconds.
    pub max_delay_us: u64,
}

/// How items are grouped into batches (one call per batch).
#[derive(Clone, Copy, Debug)]
pub struct BatchPolicy {
    /// A batch is due when it holds this many items.
    pub max_size: u32,
    /// ... or this many, once `max_wait_us` has passed since its first item.
    pub min_size: u32,
    /// 0: only when full, or at the end of the input.
    pub max_wait_us: u64,
}

/// A task stage's settings.
#[derive(Clone, Copy, Debug)]
pub struct TaskPolicy {
    /// Calls in flight at most.
    pub concurrency: u32,
    /// Results held (settled, not yet emitted) at most, with `concurrency`:
    /// the window is the larger of the two.
    pub buffer: u32,
    /// Results leave in input order (else as calls complete).
    pub ordered: bool,
    /// How failed attempts are retried.
    pub retry: RetryPolicy,
    /// `Some` for a batch stage.
    pub batch: Option<BatchPolicy>,
}

/// How an attempt ended, as the embedder reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// A result (or a filtered one: the embedder knows which).
    Done,
    /// It threw. Retried while attempts are left; else the item is exhausted.
    Error,
    /// Dropped by the skip policy (after its last attempt).
    Skipped,
    /// Failed for good (`onError: 'fail'`, after its last attempt).
    Failed,
    /// Settled after the stage stopped (cancelled or failing): its result
    /// is discarded and nothing is counted.
    Dropped,
}

/// What settling an attempt means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// Settled for good.
    Ready {
        /// Results that just became ready to emit: from the head in ordered
        /// mode, just this slot's otherwise.
        count: u32,
        /// The failure of an item is now the stream's (every earlier item
        /// settled, in ordered mode).
        failed: bool,
    },
    /// To be retried (the slot stays taken).
    Retry {
        /// When, on the core's clock (microseconds).
        at_us: u64,
    },
    /// No attempt left: the embedder applies its error policy, then settles
    /// the slot again with `Skipped`, `Failed` or `Done`.
    Exhausted,
}

#[derive(Clone, Copy, Debug)]
struct Call {
    seq: u64,
    attempt: u32,
    started_us: u64,
    /// Its last attempt failed: the next settle is the error policy's
    /// decision, not the end of an attempt.
    exhausted: bool,
}

/// Calls in flight, results waiting, retries and the batch being filled, of
/// one task stage's stream.
pub struct TaskWindow {
    policy: TaskPolicy,
    /// Call state by slot; `None` when free. Grows as calls start, up to
    /// `concurrency` (which may be far larger than ever used).
    calls: Vec<Option<Call>>,
    /// Slots made and free now.
    free: Vec<u32>,
    next_seq: u64,
    /// Ordered mode: settled flags of `head..next_seq`.
    settled: VecDeque<bool>,
    /// Ordered mode: the first sequence number not yet ready.
    head: u64,
    /// The earliest item that failed for good.
    failed_at: Option<u64>,
    in_flight: u32,
    /// Settled and not yet emitted (ready or waiting for an earlier item).
    held: u32,
    /// Retries waiting: `(due, slot)`.
    retries: BTreeSet<(u64, u32)>,
    /// Items in the batch being filled, and when its first came.
    batch_len: u32,
    batch_first_us: u64,
    input_ended: bool,
    retried: u64,
    skipped: u64,
    latency: Histogram,
    /// The function's gate: its task totals follow this window's.
    gate: Option<Admission>,
}

impl TaskWindow {
    /// A window for `policy` (counts of 0 are taken as 1). `gate`: the
    /// function's, whose task totals this window adds to.
    pub fn new(mut policy: TaskPolicy, gate: Option<Admission>) -> Self {
        policy.concurrency = policy.concurrency.max(1);
        policy.retry.attempts = policy.retry.attempts.max(1);
        if let Some(b) = policy.batch.as_mut() {
            b.max_size = b.max_size.max(1);
            b.min_size = b.min_size.clamp(1, b.max_size);
        }
        let w = Self {
            policy,
            calls: Vec::new(),
            free: Vec::new(),
            next_seq: 0,
            settled: VecDeque::new(),
            head: 0,
            failed_at: None,
            in_flight: 0,
            held: 0,
            retries: BTreeSet::new(),
            batch_len: 0,
            batch_first_us: 0,
            input_ended: false,
            retried: 0,
            skipped: 0,
            latency: Histogram::default(),
            gate,
        };
        // The function is a task stage's from now on: its totals show it.
        w.count(|_| {});
        w
    }

    fn count(&self, f: impl FnOnce(&mut crate::admission::TaskCounts)) {
        if let Some(gate) = &self.gate {
            gate.task_count(f);
        }
    }

    fn window(&self) -> u32 {
        self.policy.buffer.max(self.policy.concurrency)
    }

    /// Whether a new call may start now.
    pub fn may_start(&self) -> bool {
        self.failed_at.is_none()
            && self.in_flight < self.policy.concurrency
            && self.in_flight + self.held < self.window()
    }

    /// Starts a call: its slot, or `None` when the gate is shut. Its sequence
    /// number is the count of calls started before it.
    pub fn start(&mut self, now_us: u64) -> Option<u32> {
        if !self.may_start() {
            return None;
        }
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                // Every slot made is busy (in flight counts them all), and
                // fewer than `concurrency` exist: make one.
                self.calls.push(None);
                (self.calls.len() - 1) as u32
            }
        };
        self.calls[slot as usize] = Some(Call {
            seq: self.next_seq,
            attempt: 1,
            started_us: now_us,
            exhausted: false,
        });
        self.next_seq += 1;
        self.in_flight += 1;
        self.count(|t| t.in_flight += 1);
        if self.policy.ordered {
            self.settled.push_back(false);
        }
        Some(slot)
    }

    /// The attempt running in `slot` (1 for the first), 0 if the slot is free.
    pub fn attempt(&self, slot: u32) -> u32 {
        self.call(slot).map_or(0, |c| c.attempt)
    }

    fn call(&self, slot: u32) -> Option<&Call> {
        self.calls.get(slot as usize).and_then(Option::as_ref)
    }

    /// Reports how the attempt in `slot` ended. A free slot (a stale report)
    /// changes nothing and answers `Ready { count: 0, failed: false }`.
    pub fn settle(&mut self, slot: u32, attempt: Attempt, now_us: u64) -> Settled {
        let Some(&call) = self.call(slot) else {
            return Settled::Ready {
                count: 0,
                failed: false,
            };
        };
        if attempt == Attempt::Dropped {
            self.free_slot(slot);
            return Settled::Ready {
                count: 0,
                failed: false,
            };
        }
        if !call.exhausted {
            let took = now_us.saturating_sub(call.started_us);
            self.latency.record(took);
            self.count(|t| t.latency.record(took));
        }
        if attempt == Attempt::Error {
            if call.attempt < self.policy.retry.attempts && self.failed_at.is_none() {
                let at_us = now_us.saturating_add(self.retry_delay(call.attempt));
                self.retried += 1;
                self.count(|t| t.retries += 1);
                self.retries.insert((at_us, slot));
                return Settled::Retry { at_us };
            }
            if let Some(c) = self.calls[slot as usize].as_mut() {
                c.exhausted = true;
            }
            return Settled::Exhausted;
        }
        self.free_slot(slot);
        match attempt {
            Attempt::Failed => {
                self.failed_at = Some(self.failed_at.map_or(call.seq, |f| f.min(call.seq)));
            }
            Attempt::Skipped => {
                self.skipped += 1;
                self.count(|t| t.skipped += 1);
            }
            _ => {}
        }
        if attempt != Attempt::Failed {
            self.held += 1;
        }
        let count = if self.policy.ordered {
            self.settled[(call.seq - self.head) as usize] = true;
            self.advance()
        } else {
            u32::from(attempt != Attempt::Failed)
        };
        let failed = match self.failed_at {
            Some(f) => !self.policy.ordered || f == self.head,
            None => false,
        };
        Settled::Ready { count, failed }
    }

    fn free_slot(&mut self, slot: u32) {
        self.calls[slot as usize] = None;
        self.free.push(slot);
        self.in_flight -= 1;
        self.count(|t| t.in_flight -= 1);
    }

    /// Ordered mode: moves the head past settled items (stopping at a failed
    /// one); returns how many became ready.
    fn advance(&mut self) -> u32 {
        let mut count = 0;
        while self.settled.front() == Some(&true) && Some(self.head) != self.failed_at {
            self.settled.pop_front();
            self.head += 1;
            count += 1;
        }
        count
    }

    fn retry_delay(&self, attempt: u32) -> u64 {
        let r = &self.policy.retry;
        let exp = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let delay = r.delay_us as f64 * r.factor.powi(exp);
        if delay.is_finite() && delay < r.max_delay_us as f64 {
            delay as u64
        } else {
            r.max_delay_us
        }
    }

    /// The embedder emitted (or dropped, if filtered) `n` ready results.
    pub fn emitted(&mut self, n: u32) {
        self.held = self.held.saturating_sub(n);
    }

    /// Slots whose retry is due at `now_us`, into `out`; each starts its next
    /// attempt now.
    pub fn take_due(&mut self, now_us: u64, out: &mut Vec<u32>) {
        while let Some(&(at, slot)) = self.retries.first() {
            if at > now_us {
                break;
            }
            self.retries.pop_first();
            if let Some(call) = self.calls[slot as usize].as_mut() {
                call.attempt += 1;
                call.started_us = now_us;
                out.push(slot);
            }
        }
    }

    /// Drops the retries waiting (the stream is failing or cancelled): they
    /// will not run, and their slots are free.
    pub fn drop_retries(&mut self) {
        while let Some((_, slot)) = self.retries.pop_first() {
            self.free_slot(slot);
        }
    }

    /// The earliest time something is due: a retry, or the batch's `max_wait`
    /// while a call may start (with the window full, a call settling or a
    /// result emitted comes first: a deadline then would wake the stage for
    /// nothing, and hold an abandoned one).
    pub fn next_deadline(&self) -> Option<u64> {
        let retry = self.retries.first().map(|&(at, _)| at);
        let batch = match self.policy.batch {
            Some(b)
                if b.max_wait_us > 0
                    && self.batch_len > 0
                    && !self.input_ended
                    && self.may_start() =>
            {
                Some(self.batch_first_us.saturating_add(b.max_wait_us))
            }
            _ => None,
        };
        match (retry, batch) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ----- batches -----

    /// How many more items the batch being filled takes now: 0 while a full
    /// batch waits for a call to start (the stage then takes no input).
    pub fn batch_room(&self) -> u32 {
        match self.policy.batch {
            Some(b) => b.max_size - self.batch_len,
            None => 0,
        }
    }

    /// `n` items (within `batch_room`) joined the batch being filled.
    pub fn batch_add(&mut self, n: u32, now_us: u64) {
        if n > 0 && self.batch_len == 0 {
            self.batch_first_us = now_us;
        }
        let max = self.policy.batch.map_or(0, |b| b.max_size);
        self.batch_len = (self.batch_len + n).min(max);
    }

    /// Items in the batch being filled.
    pub fn batch_len(&self) -> u32 {
        self.batch_len
    }

    fn batch_due(&self, now_us: u64) -> bool {
        let Some(b) = self.policy.batch else {
            return false;
        };
        self.batch_len > 0
            && (self.batch_len >= b.max_size
                || self.input_ended
                || (b.max_wait_us > 0
                    && self.batch_len >= b.min_size
                    && now_us >= self.batch_first_us.saturating_add(b.max_wait_us)))
    }

    /// Starts the call for the batch being filled if it is due and the gate
    /// is open: its slot (the batch is then empty again).
    pub fn start_batch(&mut self, now_us: u64) -> Option<u32> {
        if !self.batch_due(now_us) {
            return None;
        }
        let slot = self.start(now_us)?;
        self.batch_len = 0;
        Some(slot)
    }

    /// The input ended: the last batch is due whatever its size.
    pub fn end_input(&mut self) {
        self.input_ended = true;
    }

    // ----- counters -----

    /// Calls in flight (running or waiting to be retried).
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// Results settled and not yet emitted.
    pub fn held(&self) -> u32 {
        self.held
    }

    /// Retries scheduled so far.
    pub fn retried(&self) -> u64 {
        self.retried
    }

    /// Items (or batches) dropped by the skip policy so far.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Attempt durations, microseconds.
    pub fn latency(&self) -> &Histogram {
        &self.latency
    }
}

impl Drop for TaskWindow {
    /// Calls still counted in flight (a stream dropped mid-call) leave the
    /// function's totals with it.
    fn drop(&mut self) {
        let n = u64::from(self.in_flight);
        if n > 0 {
            self.count(|t| t.in_flight -= n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(concurrency: u32, buffer: u32, ordered: bool) -> TaskPolicy {
        TaskPolicy {
            concurrency,
            buffer,
            ordered,
            retry: RetryPolicy {
                attempts: 1,
                delay_us: 0,
                factor: 2.0,
                max_delay_us: u64::MAX,
            },
            batch: None,
        }
    }

    fn ready(count: u32) -> Settled {
        Settled::Ready {
            count,
            failed: false,
        }
    }

    #[test]
    fn the_gate_admits_at_most_concurrency_calls() {
        let mut w = TaskWindow::new(policy(2, 8, true), None);
        let a = w.start(0).unwrap();
        let _b = w.start(0).unwrap();
        assert_eq!(w.start(0), None);
        assert_eq!(w.in_flight(), 2);
        assert_eq!(w.settle(a, Attempt::Done, 1), ready(1));
        assert!(w.start(1).is_some());
    }

    #[test]
    fn ordered_results_wait_for_every_earlier_item() {
        let mut w = TaskWindow::new(policy(3, 8, true), None);
        let s: Vec<u32> = (0..3).map(|_| w.start(0).unwrap()).collect();
        assert_eq!(w.settle(s[1], Attempt::Done, 1), ready(0));
        assert_eq!(w.settle(s[2], Attempt::Done, 1), ready(0));
        assert_eq!(w.held(), 2);
        assert_eq!(w.settle(s[0], Attempt::Done, 2), ready(3));
        w.emitted(3);
        assert_eq!(w.held(), 0);
    }

    #[test]
    fn unordered_results_are_ready_as_they_settle() {
        let mut w = TaskWindow::new(policy(3, 8, false), None);
        let s: Vec<u32> = (0..3).map(|_| w.start(0).unwrap()).collect();
        assert_eq!(w.settle(s[2], Attempt::Done, 1), ready(1));
        assert_eq!(w.settle(s[0], Attempt::Skipped, 1), ready(1));
        assert_eq!(w.skipped(), 1);
    }

    #[test]
    fn held_results_shut_the_gate_at_the_window() {
        // buffer 3, concurrency 2: in flight + held stays below 3.
        let mut w = TaskWindow::new(policy(2, 3, true), None);
        let a = w.start(0).unwrap();
        let b = w.start(0).unwrap();
        w.settle(b, Attempt::Done, 1); // held, waiting for a
        let c = w.start(1).unwrap();
        assert_eq!(w.start(1), None, "in flight 2 + held 1 = 3");
        assert_eq!(w.settle(a, Attempt::Done, 2), ready(2));
        assert_eq!(w.start(2), None, "held 2 + in flight 1 = 3");
        w.emitted(2);
        assert!(w.start(3).is_some());
        let _ = c;
    }

    #[test]
    fn errors_are_retried_with_exponential_backoff_capped() {
        let mut p = policy(1, 4, true);
        p.retry = RetryPolicy {
            attempts: 4,
            delay_us: 100,
            factor: 3.0,
            max_delay_us: 500,
        };
        let mut w = TaskWindow::new(p, None);
        let s = w.start(0).unwrap();
        assert_eq!(w.attempt(s), 1);
        assert_eq!(
            w.settle(s, Attempt::Error, 10),
            Settled::Retry { at_us: 110 }
        );
        assert_eq!(w.next_deadline(), Some(110));
        let mut due = Vec::new();
        w.take_due(109, &mut due);
        assert!(due.is_empty());
        w.take_due(110, &mut due);
        assert_eq!(due, [s]);
        assert_eq!(w.attempt(s), 2);
        assert_eq!(
            w.settle(s, Attempt::Error, 200),
            Settled::Retry { at_us: 500 }
        );
        w.take_due(500, &mut due);
        assert_eq!(
            w.settle(s, Attempt::Error, 600),
            Settled::Retry { at_us: 1100 },
            "900 capped at 500"
        );
        w.take_due(1100, &mut due);
        assert_eq!(w.attempt(s), 4);
        assert_eq!(w.settle(s, Attempt::Error, 1200), Settled::Exhausted);
        assert_eq!(
            w.in_flight(),
            1,
            "an exhausted item keeps its slot until the policy decides"
        );
        assert_eq!(w.settle(s, Attempt::Skipped, 1200), ready(1));
        assert_eq!(w.retried(), 3);
        assert_eq!(w.in_flight(), 0);
    }

    #[test]
    fn ordered_failure_is_the_streams_once_every_earlier_item_settled() {
        let mut w = TaskWindow::new(policy(3, 8, true), None);
        let s: Vec<u32> = (0..3).map(|_| w.start(0).unwrap()).collect();
        assert_eq!(
            w.settle(s[2], Attempt::Failed, 1),
            Settled::Ready {
                count: 0,
                failed: false
            }
        );
        assert!(!w.may_start(), "no new call once an item failed");
        assert_eq!(
            w.settle(s[1], Attempt::Failed, 2),
            Settled::Ready {
                count: 0,
                failed: false
            }
        );
        assert_eq!(
            w.settle(s[0], Attempt::Done, 3),
            Settled::Ready {
                count: 1,
                failed: true
            },
            "item 0's result goes, then item 1's failure"
        );
    }

    #[test]
    fn unordered_failure_is_the_streams_at_once() {
        let mut w = TaskWindow::new(policy(2, 8, false), None);
        let a = w.start(0).unwrap();
        let _b = w.start(0).unwrap();
        assert_eq!(
            w.settle(a, Attempt::Failed, 1),
            Settled::Ready {
                count: 0,
                failed: true
            }
        );
    }

    #[test]
    fn a_batch_is_due_when_full_after_max_wait_with_min_size_or_at_the_end() {
        let mut p = policy(1, 4, true);
        p.batch = Some(BatchPolicy {
            max_size: 3,
            min_size: 2,
            max_wait_us: 50,
        });
        let mut w = TaskWindow::new(p, None);
        assert_eq!(w.batch_room(), 3);
        w.batch_add(1, 100);
        assert_eq!(w.next_deadline(), Some(150));
        assert_eq!(
            w.start_batch(200),
            None,
            "max_wait passed, but below min_size"
        );
        w.batch_add(1, 201);
        let s = w.start_batch(201).unwrap();
        assert_eq!(w.batch_len(), 0);
        w.batch_add(3, 202);
        assert_eq!(w.batch_room(), 0, "full: no more input");
        assert_eq!(w.start_batch(202), None, "the only slot is busy");
        w.settle(s, Attempt::Done, 203);
        w.emitted(1);
        assert!(w.start_batch(203).is_some(), "full");
        w.batch_add(1, 204);
        assert_eq!(w.start_batch(204), None);
        w.end_input();
        assert_eq!(w.next_deadline(), None);
        w.settle(0, Attempt::Done, 205);
        w.emitted(1);
        assert!(
            w.start_batch(205).is_some(),
            "the last batch, whatever its size"
        );
    }

    #[test]
    fn no_max_wait_deadline_while_the_window_is_full() {
        let mut p = policy(1, 1, true);
        p.batch = Some(BatchPolicy {
            max_size: 2,
            min_size: 1,
            max_wait_us: 50,
        });
        let mut w = TaskWindow::new(p, None);
        w.batch_add(2, 100);
        let s = w.start_batch(100).unwrap();
        w.batch_add(1, 110);
        assert_eq!(w.next_deadline(), None, "the only call runs");
        w.settle(s, Attempt::Done, 120);
        assert_eq!(w.next_deadline(), None, "its result is held");
        w.emitted(1);
        assert_eq!(
            w.next_deadline(),
            Some(160),
            "room again: max_wait from the batch's first item"
        );
        assert!(w.start_batch(160).is_some());
    }

    #[test]
    fn slots_are_made_as_calls_start_not_up_front() {
        let mut w = TaskWindow::new(policy(u32::MAX, u32::MAX, true), None);
        let a = w.start(0).unwrap();
        let b = w.start(0).unwrap();
        assert_eq!((a, b), (0, 1));
        w.settle(a, Attempt::Done, 1);
        assert_eq!(
            w.start(1),
            Some(0),
            "a free slot is reused before a new one is made"
        );
        assert_eq!(w.calls.len(), 2);
    }

    #[test]
    fn a_stale_settle_changes_nothing() {
        let mut w = TaskWindow::new(policy(1, 4, true), None);
        assert_eq!(w.settle(0, Attempt::Done, 0), ready(0));
        assert_eq!(w.in_flight(), 0);
        assert_eq!(w.held(), 0);
    }
}
