//! A task stage's native state: the core's [`TaskWindow`] attached to a
//! stream (`streams.rs`), and the one deadline armed for it (a retry, a
//! batch's `maxWait`) on the thread's deadline set, under the stream's *task
//! key* (its key plus [`TASK_KEY_OFFSET`]), so it never collides with the
//! stream's idle deadline. The state disarms its deadline when it is dropped
//! (its stream freed), so nothing else needs to know it holds one.
//!
//! A stage with a limiter the window may take permits from (`taskInit`'s
//! `limiter`) keeps the permits its calls hold here too ([`TaskPermits`]), so
//! they come back when the stream is freed whatever its calls did.
//!
//! The entry points that reach it through a stream's handle are `task.rs`.

use napi::Result;
use velo_core::TaskWindow;

use crate::dto::Metrics;
use crate::idle;
use crate::limiter::TaskPermits;

/// Added to a stream's key to make the key its task deadlines are reported
/// under (keys stay far below it, and both are exact in an f64).
/// `js/core/task.ts` knows it by the same name.
const TASK_KEY_OFFSET: u64 = 1 << 40;

/// A stream's task window and the deadline armed for it.
pub(crate) struct TaskState {
    window: TaskWindow,
    /// The stream's task key.
    key: u64,
    armed_at: Option<u64>,
    /// The permits its calls hold of the stage's limiter, if the window takes them.
    permits: Option<TaskPermits>,
}

impl TaskState {
    /// The task state of the stream whose key is `stream_key`.
    pub(crate) fn new(window: TaskWindow, stream_key: u64, permits: Option<TaskPermits>) -> Self {
        TaskState {
            window,
            key: stream_key + TASK_KEY_OFFSET,
            armed_at: None,
            permits,
        }
    }

    /// Runs `f` on the window (and the permits its calls hold, if it takes
    /// any), then arms (or moves) the deadline to the window's next one.
    pub(crate) fn with_window<R>(
        &mut self,
        f: impl FnOnce(&mut TaskWindow, Option<&mut TaskPermits>) -> R,
    ) -> Result<R> {
        let r = f(&mut self.window, self.permits.as_mut());
        let next = self.window.next_deadline();
        if next != self.armed_at {
            let deadlines = idle::deadlines()?;
            let mut deadlines = deadlines.borrow_mut();
            if let Some(at) = self.armed_at.take() {
                deadlines.disarm(self.key, at);
            }
            if let Some(at) = next {
                deadlines.arm(self.key, at);
                self.armed_at = Some(at);
            }
        }
        Ok(r)
    }

    /// No call in flight or waiting for a retry, and no permit held: dropped now, the state gives nothing back
    /// that a finalizer would have to tell the limiter of, so its stream may be freed before it is collected
    /// (`retire`). (Results it counts as held then were emitted and not yet reported: they count nowhere else.)
    pub(crate) fn is_idle(&self) -> bool {
        self.window.in_flight() == 0 && !self.permits.as_ref().is_some_and(TaskPermits::any_held)
    }

    /// The window's final counters, as `retire` writes them after a stream's own: retries, skipped, task p50 and
    /// p99 (µs).
    pub(crate) fn last_counts(&self) -> [f64; 4] {
        let w = &self.window;
        [
            w.retried() as f64,
            w.skipped() as f64,
            w.latency().percentile(0.5) as f64,
            w.latency().percentile(0.99) as f64,
        ]
    }

    /// Adds the window's counters to a stream's metrics.
    pub(crate) fn add_metrics(&self, m: &mut Metrics) {
        let w = &self.window;
        m.in_flight = Some(f64::from(w.in_flight()));
        m.retries = Some(w.retried() as f64);
        m.skipped = Some(w.skipped() as f64);
        m.task_p50_us = Some(w.latency().percentile(0.5) as f64);
        m.task_p99_us = Some(w.latency().percentile(0.99) as f64);
    }
}

impl Drop for TaskState {
    /// Disarms the deadline of a freed stream.
    fn drop(&mut self) {
        if let Some(at) = self.armed_at {
            idle::disarm(self.key, at);
        }
    }
}
