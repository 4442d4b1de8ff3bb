//! What the binding hands JavaScript: plain objects made from the core's
//! types, with the names JavaScript uses (the README documents them).
//!
//! Counts are `f64` here: JavaScript sees numbers, exact up to 2^53.

use napi_derive::napi;
use velo_core::histogram::HistogramSnapshot;

/// One stream's metrics now (`stream.metrics`).
#[napi(object, object_from_js = false)]
pub(crate) struct Metrics {
    /// Events accepted into the input buffer.
    pub events_in: f64,
    /// Outputs the handler yielded.
    pub events_out: f64,
    /// Events in the input buffer now.
    pub buffered_in: f64,
    /// Outputs in the output buffer now.
    pub buffered_out: f64,
    /// Sends that found the input buffer full and had to wait.
    pub backpressure_waits: f64,
    /// When the stream opened, ms since the Unix epoch.
    pub opened_at: f64,
    /// Lifetime so far, or until the handler finished, in ms.
    pub duration_ms: f64,
    /// Median time an event spent in the input buffer, µs.
    #[napi(js_name = "queueWaitP50Us")]
    pub queue_wait_p50_us: f64,
    /// 99th percentile of the same.
    #[napi(js_name = "queueWaitP99Us")]
    pub queue_wait_p99_us: f64,
    /// Task stages: calls in flight now (running or waiting for a retry).
    pub in_flight: Option<f64>,
    /// Task stages: retries scheduled so far.
    pub retries: Option<f64>,
    /// Task stages: items (or batches) dropped by `onError: 'skip'`.
    pub skipped: Option<f64>,
    /// Task stages: median call duration, µs.
    #[napi(js_name = "taskP50Us")]
    pub task_p50_us: Option<f64>,
    /// Task stages: 99th percentile of the same.
    #[napi(js_name = "taskP99Us")]
    pub task_p99_us: Option<f64>,
}

impl From<velo_core::Metrics> for Metrics {
    fn from(m: velo_core::Metrics) -> Self {
        Metrics {
            events_in: m.events_in as f64,
            events_out: m.events_out as f64,
            buffered_in: m.buffered_in as f64,
            buffered_out: m.buffered_out as f64,
            backpressure_waits: m.backpressure_waits as f64,
            opened_at: m.opened_at,
            duration_ms: m.duration_ms,
            queue_wait_p50_us: m.queue_wait_p50_us as f64,
            queue_wait_p99_us: m.queue_wait_p99_us as f64,
            in_flight: None,
            retries: None,
            skipped: None,
            task_p50_us: None,
            task_p99_us: None,
        }
    }
}

/// A stream function's counters (`fn.stats()`).
#[napi(object, object_from_js = false)]
pub struct Stats {
    /// Streams open now.
    pub open: f64,
    /// Streams ever opened.
    pub opened: f64,
    /// Streams whose handler returned normally.
    pub completed: f64,
    /// Streams whose handler threw.
    pub failed: f64,
    /// Streams cancelled before their handler returned (or collected open).
    pub cancelled: f64,
    /// Opens refused at the limit.
    pub rejected: f64,
}

impl From<velo_core::Stats> for Stats {
    fn from(s: velo_core::Stats) -> Self {
        Stats {
            open: s.open as f64,
            opened: s.opened as f64,
            completed: s.completed as f64,
            failed: s.failed as f64,
            cancelled: s.cancelled as f64,
            rejected: s.rejected as f64,
        }
    }
}

/// Totals over every stream of one function, for metrics exporters.
#[napi(object, object_from_js = false)]
pub struct Totals {
    /// Events accepted, all streams.
    pub events_in: f64,
    /// Outputs yielded, all streams.
    pub events_out: f64,
    /// Time events waited in input buffers, all streams.
    pub queue_wait: Histogram,
    /// Task and batch stages only: their calls, all streams.
    pub task: Option<TaskTotals>,
}

/// A task stage function's calls, all streams.
#[napi(object, object_from_js = false)]
pub struct TaskTotals {
    /// Calls in flight now (running or waiting for a retry).
    pub in_flight: f64,
    /// Retries scheduled.
    pub retries: f64,
    /// Items (or batches) dropped by `onError: 'skip'`.
    pub skipped: f64,
    /// Call (attempt) durations.
    pub duration: Histogram,
}

impl From<velo_core::Totals> for Totals {
    fn from(t: velo_core::Totals) -> Self {
        Totals {
            events_in: t.events_in as f64,
            events_out: t.events_out as f64,
            queue_wait: t.queue_wait.into(),
            task: t.task.map(|t| TaskTotals {
                in_flight: t.in_flight as f64,
                retries: t.retries as f64,
                skipped: t.skipped as f64,
                duration: t.latency.into(),
            }),
        }
    }
}

/// Cumulative counts of durations at chosen bounds (Prometheus `le`).
#[napi(object, object_from_js = false)]
pub struct Histogram {
    /// How many durations were recorded.
    pub count: f64,
    /// Their sum, µs.
    pub sum_us: f64,
    /// `[bound µs, durations at or below it]`, in the bounds' order.
    pub buckets: Vec<(f64, f64)>,
}

impl From<HistogramSnapshot> for Histogram {
    fn from(h: HistogramSnapshot) -> Self {
        Histogram {
            count: h.count as f64,
            sum_us: h.sum_us as f64,
            buckets: h
                .buckets
                .into_iter()
                .map(|(bound, n)| (bound as f64, n as f64))
                .collect(),
        }
    }
}

/// How a stream (or a pipe) ended, for a permit given back.
#[napi(string_enum = "lowercase")]
pub enum Outcome {
    /// The handler returned.
    Completed,
    /// The handler threw.
    Failed,
    /// Cancelled, or collected while open.
    Cancelled,
}

impl From<Outcome> for velo_core::Outcome {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Completed => velo_core::Outcome::Completed,
            Outcome::Failed => velo_core::Outcome::Failed,
            Outcome::Cancelled => velo_core::Outcome::Cancelled,
        }
    }
}
