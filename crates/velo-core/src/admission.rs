//! Admission against a per-function `maxConcurrent`, and the function's
//! lifetime counters.
//!
//! Each stream function owns one [`Admission`]; each open stream holds a
//! [`Permit`]. The permit is given back exactly once, with the way the stream
//! ended; a permit dropped without being given back (a stream garbage
//! collected while open) counts as cancelled, so the open count never drifts.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use serde::Serialize;

use crate::histogram::{Histogram, HistogramSnapshot};

/// Counters of one stream function, as reported by `stats()`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
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

/// How a stream gave back its slot.
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    /// Events accepted, all streams.
    pub events_in: u64,
    /// Outputs yielded, all streams.
    pub events_out: u64,
    /// Time events waited in input buffers, all streams.
    pub queue_wait: HistogramSnapshot,
}

struct Shared {
    limit: u64,
    stats: Cell<Stats>,
    events_in: Cell<u64>,
    events_out: Cell<u64>,
    queue_wait: RefCell<Histogram>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("limit", &self.limit)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// The admission gate of one stream function. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Admission(Rc<Shared>);

impl Admission {
    /// A gate that lets at most `limit` streams be open at once.
    pub fn new(limit: u64) -> Self {
        Admission(Rc::new(Shared {
            limit,
            stats: Cell::new(Stats::default()),
            events_in: Cell::new(0),
            events_out: Cell::new(0),
            queue_wait: RefCell::new(Histogram::default()),
        }))
    }

    /// Take a slot, or count a refusal.
    pub fn admit(&self) -> Result<Permit, LimitError> {
        let mut s = self.0.stats.get();
        if s.open >= self.0.limit {
            s.rejected += 1;
            self.0.stats.set(s);
            return Err(LimitError {
                limit: self.0.limit,
            });
        }
        s.open += 1;
        s.opened += 1;
        self.0.stats.set(s);
        Ok(Permit(Some(self.clone())))
    }

    /// The counters now.
    pub fn stats(&self) -> Stats {
        self.0.stats.get()
    }

    /// Totals over every stream, with queue-wait counts at `bounds_us`.
    pub fn totals(&self, bounds_us: &[u64]) -> Totals {
        Totals {
            events_in: self.0.events_in.get(),
            events_out: self.0.events_out.get(),
            queue_wait: self.0.queue_wait.borrow().snapshot(bounds_us),
        }
    }

    /// Adds a stream's newly accepted events and outputs to the totals.
    pub(crate) fn count(&self, events_in: u64, events_out: u64) {
        self.0.events_in.set(self.0.events_in.get() + events_in);
        self.0.events_out.set(self.0.events_out.get() + events_out);
    }

    /// Records one event's queue wait in the function's histogram.
    pub(crate) fn record_wait(&self, micros: u64) {
        self.0.queue_wait.borrow_mut().record(micros);
    }

    fn give_back(&self, outcome: Outcome) {
        let mut s = self.0.stats.get();
        s.open -= 1;
        match outcome {
            Outcome::Completed => s.completed += 1,
            Outcome::Failed => s.failed += 1,
            Outcome::Cancelled => s.cancelled += 1,
        }
        self.0.stats.set(s);
    }
}

/// One open stream's slot.
#[derive(Debug)]
pub struct Permit(Option<Admission>);

impl Permit {
    /// Give the slot back with the stream's outcome. Later calls do nothing.
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

    /// Whether the slot is still held.
    pub fn is_held(&self) -> bool {
        self.0.is_some()
    }

    /// The gate this permit came from, while held.
    pub fn gate(&self) -> Option<&Admission> {
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
        let _c = gate.admit().expect("a freed slot is reusable at once");
        let s = gate.stats();
        assert_eq!((s.open, s.opened, s.completed, s.rejected), (2, 3, 1, 1));
    }

    #[test]
    fn dropped_permit_counts_as_cancelled() {
        let gate = Admission::new(1);
        drop(gate.admit().unwrap());
        let s = gate.stats();
        assert_eq!((s.open, s.cancelled), (0, 1));
    }
}
