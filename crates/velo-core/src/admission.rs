//! Admission against a per-function `maxConcurrent`, and the function's
//! lifetime counters.
//!
//! Each stream function owns one [`Admission`]; each open stream holds a
//! [`Permit`]. The permit is given back exactly once, with the way the stream
//! ended; a permit dropped without being given back (a stream garbage
//! collected while open) counts as cancelled, so the open count never drifts.
//!
//! A stream's events and outputs count in its function's totals, and, when
//! admitted by [`Admission::admit_also`], in a second function's totals too:
//! a pipe's first stage counts its input there and its last stage its output,
//! so a pipe's figures are its own streams', whatever else its stages serve.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::histogram::{Histogram, HistogramSnapshot};

/// Counters of one stream function, as reported by `stats()`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Streams open now.
    pub open: u64,
    /// Streams ever opened.
    pub opened: u64,
    /// Streams whose handler returned normally.
    pub completed: u64,
    /// Streams whose handler threw.
    pub failed: u64,
    /// Streams cancelled before their handler returned.
    pub cancelled: u64,
    /// Opens refused because `maxConcurrent` streams were open.
    pub rejected: u64,
}

/// How a stream gave back its permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The handler returned.
    Completed,
    /// The handler threw.
    Failed,
    /// The stream was cancelled (or dropped while open).
    Cancelled,
}

/// Refusal to open: the limit is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{limit} streams are open, the limit of this function")]
pub struct LimitError {
    /// The function's `maxConcurrent`.
    pub limit: u64,
}

/// Totals over every stream of one function, for exporters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totals {
    /// Events accepted, all streams.
    pub events_in: u64,
    /// Outputs yielded, all streams.
    pub events_out: u64,
    /// Time events waited in input buffers, all streams.
    pub queue_wait: HistogramSnapshot,
    /// Task stages only (a function whose streams have a task window).
    pub task: Option<TaskTotals>,
}

/// A task stage function's call counters, all streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskTotals {
    /// Calls in flight now (running or waiting for a retry).
    pub in_flight: u64,
    /// Retries scheduled.
    pub retries: u64,
    /// Items (or batches) dropped by the skip policy.
    pub skipped: u64,
    /// Call (attempt) durations.
    pub latency: HistogramSnapshot,
}

/// What [`TaskTotals`] accumulate (see [`Admission::task_count`]).
#[derive(Default)]
pub(crate) struct TaskCounts {
    pub(crate) in_flight: u64,
    pub(crate) retries: u64,
    pub(crate) skipped: u64,
    pub(crate) latency: Histogram,
}

struct Shared {
    limit: u64,
    stats: Cell<Stats>,
    events_in: Cell<u64>,
    events_out: Cell<u64>,
    queue_wait: RefCell<Histogram>,
    /// Made by the first task window of this function.
    task: RefCell<Option<TaskCounts>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("limit", &self.limit)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn count(&self, events_in: u64, events_out: u64) {
        self.events_in.set(self.events_in.get() + events_in);
        self.events_out.set(self.events_out.get() + events_out);
    }
}

/// Which of a stream's counts a second function's totals also receive
/// ([`Admission::admit_also`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// Events accepted, and their queue waits.
    pub input: bool,
    /// Outputs yielded.
    pub output: bool,
}

/// The admission gate of one stream function. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Admission {
    shared: Rc<Shared>,
    /// Set on the copy a permit of [`Admission::admit_also`] carries.
    also: Option<(Rc<Shared>, Share)>,
}

impl Admission {
    /// A gate that lets at most `limit` streams be open at once.
    pub fn new(limit: u64) -> Self {
        Admission {
            shared: Rc::new(Shared {
                limit,
                stats: Cell::new(Stats::default()),
                events_in: Cell::new(0),
                events_out: Cell::new(0),
                queue_wait: RefCell::new(Histogram::default()),
                task: RefCell::new(None),
            }),
            also: None,
        }
    }

    /// Take a permit, or count a refusal.
    pub fn admit(&self) -> Result<Permit, LimitError> {
        self.take_permit(None)
    }

    /// As [`Admission::admit`], and the stream's counts that `share` names
    /// also go to `other`'s totals (never to its permits or counters).
    pub fn admit_also(&self, other: &Admission, share: Share) -> Result<Permit, LimitError> {
        self.take_permit(Some((other.shared.clone(), share)))
    }

    fn take_permit(&self, also: Option<(Rc<Shared>, Share)>) -> Result<Permit, LimitError> {
        let mut s = self.shared.stats.get();
        if s.open >= self.shared.limit {
            self.refuse();
            return Err(LimitError {
                limit: self.shared.limit,
            });
        }
        s.open += 1;
        s.opened += 1;
        self.shared.stats.set(s);
        Ok(Permit(Some(Admission {
            shared: self.shared.clone(),
            also,
        })))
    }

    /// Counts an open refused for a reason outside this gate (a pipe whose
    /// stage is at its own limit): the function's `rejected` covers every
    /// refusal.
    pub fn refuse(&self) {
        let mut s = self.shared.stats.get();
        s.rejected += 1;
        self.shared.stats.set(s);
    }

    /// The counters now.
    pub fn stats(&self) -> Stats {
        self.shared.stats.get()
    }

    /// Totals over every stream, with queue-wait counts at `bounds_us`.
    pub fn totals(&self, bounds_us: &[u64]) -> Totals {
        Totals {
            events_in: self.shared.events_in.get(),
            events_out: self.shared.events_out.get(),
            queue_wait: self.shared.queue_wait.borrow().snapshot(bounds_us),
            task: self.shared.task.borrow().as_ref().map(|t| TaskTotals {
                in_flight: t.in_flight,
                retries: t.retries,
                skipped: t.skipped,
                latency: t.latency.snapshot(bounds_us),
            }),
        }
    }

    /// Updates the function's task counters (made on first use: the
    /// function is then a task stage's).
    pub(crate) fn task_count(&self, f: impl FnOnce(&mut TaskCounts)) {
        f(self
            .shared
            .task
            .borrow_mut()
            .get_or_insert_with(TaskCounts::default));
    }

    /// Adds a stream's newly accepted events and outputs to the totals.
    pub(crate) fn count(&self, events_in: u64, events_out: u64) {
        self.shared.count(events_in, events_out);
        if let Some((other, share)) = &self.also {
            other.count(
                if share.input { events_in } else { 0 },
                if share.output { events_out } else { 0 },
            );
        }
    }

    /// Counts `streams` streams that opened and completed with no permit (an embedder kept each for its first
    /// turn, within this gate's limit, and admitted it itself): their events in (each handed straight to its
    /// handler: a queue wait of 0) and outputs.
    pub fn count_completed(&self, streams: u64, events_in: u64, events_out: u64) {
        let mut s = self.shared.stats.get();
        s.opened += streams;
        s.completed += streams;
        self.shared.stats.set(s);
        self.count(events_in, events_out);
        if events_in > 0 {
            self.record_waits(0, events_in);
        }
    }

    /// Records `n` events that waited `micros` each.
    pub(crate) fn record_waits(&self, micros: u64, n: u64) {
        self.record_wait_sum(micros, n, micros.saturating_mul(n));
    }

    /// Records `n` events whose waits share `micros`'s histogram bucket and add up to `sum`.
    pub(crate) fn record_wait_sum(&self, micros: u64, n: u64, sum: u64) {
        self.shared
            .queue_wait
            .borrow_mut()
            .record_sum(micros, n, sum);
        if let Some((other, Share { input: true, .. })) = &self.also {
            other.queue_wait.borrow_mut().record_sum(micros, n, sum);
        }
    }

    fn give_back(&self, outcome: Outcome) {
        let mut s = self.shared.stats.get();
        s.open -= 1;
        match outcome {
            Outcome::Completed => s.completed += 1,
            Outcome::Failed => s.failed += 1,
            Outcome::Cancelled => s.cancelled += 1,
        }
        self.shared.stats.set(s);
    }
}

/// One open stream's hold on its function's gate: one of `limit`.
#[derive(Debug)]
pub struct Permit(Option<Admission>);

impl Permit {
    /// Give the permit back with the stream's outcome. Later calls do nothing.
    /// Returns true the first time.
    pub fn release(&mut self, outcome: Outcome) -> bool {
        match self.0.take() {
            Some(gate) => {
                gate.give_back(outcome);
                true
            }
            None => false,
        }
    }

    /// The gate this permit came from, while held.
    pub(crate) fn gate(&self) -> Option<&Admission> {
        self.0.as_ref()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.release(Outcome::Cancelled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_refuses_and_counts() {
        let gate = Admission::new(2);
        let mut a = gate.admit().unwrap();
        let _b = gate.admit().unwrap();
        assert_eq!(gate.admit().unwrap_err(), LimitError { limit: 2 });
        assert!(a.release(Outcome::Completed));
        assert!(!a.release(Outcome::Failed));
        let _c = gate
            .admit()
            .expect("a given-back permit is reusable at once");
        let s = gate.stats();
        assert_eq!((s.open, s.opened, s.completed, s.rejected), (2, 3, 1, 1));
    }

    #[test]
    fn admit_also_shares_only_the_named_counts() {
        let stage = Admission::new(1);
        let pipe = Admission::new(1);
        let first = stage
            .admit_also(
                &pipe,
                Share {
                    input: true,
                    output: false,
                },
            )
            .unwrap();
        let gate = first.gate().unwrap();
        gate.count(3, 2);
        gate.record_waits(7, 1);
        let last = Admission::new(1);
        let tail = last
            .admit_also(
                &pipe,
                Share {
                    input: false,
                    output: true,
                },
            )
            .unwrap();
        tail.gate().unwrap().count(5, 4);
        tail.gate().unwrap().record_waits(9, 1);
        let own = stage.totals(&[]);
        assert_eq!(
            (own.events_in, own.events_out, own.queue_wait.count),
            (3, 2, 1)
        );
        let shared = pipe.totals(&[]);
        assert_eq!(
            (shared.events_in, shared.events_out, shared.queue_wait.count),
            (3, 4, 1)
        );
        assert_eq!(
            pipe.stats(),
            Stats::default(),
            "the other function's permits are untouched"
        );
        assert!(stage.admit().is_err(), "the permit is the stage's own");
    }

    #[test]
    fn dropped_permit_counts_as_cancelled() {
        let gate = Admission::new(1);
        drop(gate.admit().unwrap());
        let s = gate.stats();
        assert_eq!((s.open, s.cancelled), (0, 1));
    }
}
