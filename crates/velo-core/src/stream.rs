//! One stream's state: its two lanes, its lifecycle, its permit, its idle clock
//! and its metrics.
//!
//! # Lifecycle
//! ```text
//!  Open --end()/idle--> Ending --handler returned, all outputs read--> Done
//!    |                     |
//!    +-- handler threw ----+--> Failed     (outputs yielded before are still read)
//!    +-- cancel() ---------+--> Cancelled  (everything buffered is dropped)
//! ```
//! A handler that returns while the input is still open also moves the stream
//! to `Ending`: there is nobody left to read the input.
//!
//! The [`Permit`] is given back as soon as the handler returns, throws,
//! or the stream is cancelled, whichever comes first.
//!
//! # Idle clock
//! It runs while the input is open and no send waits for room. Every send
//! moves it; when it runs out the input is ended exactly as by
//! [`StreamCore::end`]. The deadline set ([`IdleDeadlines`]) only reports the
//! stream when its armed deadline passes; [`StreamCore::idle_fire`] decides.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::admission::{Admission, Outcome, Permit};
use crate::histogram::Histogram;
use crate::idle::IdleDeadlines;
use crate::lane::{Lane, Push, Take};
use crate::lent_waits::LentWaits;

/// Where a stream is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Accepting events.
    Open,
    /// Input ended; the handler runs to its end or outputs wait to be read.
    Ending,
    /// The handler returned and every output was read.
    Done,
    /// The handler threw.
    Failed,
    /// Cancelled.
    Cancelled,
}

impl Phase {
    /// Whether the stream can still change (not done, failed or cancelled).
    pub fn is_live(self) -> bool {
        matches!(self, Phase::Open | Phase::Ending)
    }
}

/// What an idle deadline turned out to mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleVerdict {
    /// The stream was idle for its whole timeout: its input is now ended.
    Expired,
    /// A send moved the deadline; it was armed again.
    Rearmed,
    /// No idle clock runs (input already ended, or none configured).
    Off,
}

/// A live snapshot of one stream's metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metrics {
    /// Events accepted into the input buffer.
    pub events_in: u64,
    /// Outputs the handler yielded (accepted into the output buffer).
    pub events_out: u64,
    /// Events held in the input buffer now (at most `buffer`).
    pub buffered_in: u64,
    /// Outputs held in the output buffer now (at most `buffer`).
    pub buffered_out: u64,
    /// Sends that found the input buffer full and had to wait.
    pub backpressure_waits: u64,
    /// When the stream opened, in milliseconds since the Unix epoch.
    pub opened_at: f64,
    /// Milliseconds from open to now, or to the end of the handler.
    pub duration_ms: f64,
    /// Median time an event spent in the input buffer, microseconds.
    pub queue_wait_p50_us: u64,
    /// 99th percentile of the same.
    pub queue_wait_p99_us: u64,
}

struct Idle {
    deadlines: Rc<RefCell<IdleDeadlines>>,
    timeout_us: u64,
    last_activity_us: u64,
    armed_at_us: Option<u64>,
    /// Held while the stream waits for admission (`hold_idle`): not idle then.
    held: bool,
}

impl Idle {
    fn arm(&mut self, key: u64, at_us: u64) {
        self.armed_at_us = Some(at_us);
        self.deadlines.borrow_mut().arm(key, at_us);
    }

    fn disarm(&mut self, key: u64) {
        if let Some(at) = self.armed_at_us.take() {
            self.deadlines.borrow_mut().disarm(key, at);
        }
    }
}

/// Idle-timeout settings for [`StreamCore::new`].
pub struct IdleConfig {
    /// The deadline set of this thread, which will report this stream.
    pub deadlines: Rc<RefCell<IdleDeadlines>>,
    /// How long without a send ends the input, microseconds (greater than 0).
    pub timeout_us: u64,
}

static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

/// Reserves `n` stream keys (process-unique, never given to another stream): the first of them. An embedder that
/// keeps a stream without native state for its first turn names it from such a block, and opens it later with
/// [`StreamCore::adopt`] under the same key.
pub fn reserve_keys(n: u64) -> u64 {
    NEXT_KEY.fetch_add(n, Ordering::Relaxed)
}

/// Where an adopted stream started ([`StreamCore::adopt`]).
#[derive(Debug, Clone, Copy)]
pub struct Start {
    /// Its key, from [`reserve_keys`], or `None` for a new one.
    pub key: Option<u64>,
    /// When it opened, on the core's clock (`clock::now_us`).
    pub opened_us: u64,
    /// The same, in milliseconds since the Unix epoch.
    pub opened_at_ms: f64,
}

/// Records `n` events' queue waits in the stream's histogram and its function's.
fn record_waits(hist: &mut Histogram, gate: &Option<Admission>, micros: u64, n: u64) {
    hist.record_n(micros, n);
    if let Some(g) = gate {
        g.record_waits(micros, n);
    }
}

/// Records `n` events' queue waits that share `micros`'s histogram bucket and add up to `sum`, in the stream's
/// histogram and its function's.
fn record_wait_sum(hist: &mut Histogram, gate: &Option<Admission>, micros: u64, n: u64, sum: u64) {
    hist.record_sum(micros, n, sum);
    if let Some(g) = gate {
        g.record_wait_sum(micros, n, sum);
    }
}

/// Records an event's queue wait in the stream's histogram and its function's.
fn record_wait<'a>(hist: &'a mut Histogram, gate: &'a Option<Admission>) -> impl FnMut(u64) + 'a {
    move |micros| record_waits(hist, gate, micros, 1)
}

/// The state of one stream. `T` is whatever the embedder carries as events
/// and outputs (in the Node binding, a handle to a JavaScript value).
pub struct StreamCore<T> {
    key: u64,
    input: Lane<T>,
    output: Lane<T>,
    phase: Phase,
    handler_running: bool,
    permit: Permit,
    /// The function's gate, kept after the permit is given back: the totals.
    gate: Option<Admission>,
    /// Accepted counts already added to the gate's totals (input, output).
    counted: (u64, u64),
    idle: Option<Idle>,
    opened_at_ms: f64,
    opened_us: u64,
    finished_us: Option<u64>,
    queue_wait: Histogram,
    /// Events lent to the handler whose wait ends when it takes them.
    lent_waits: LentWaits,
}

impl<T> StreamCore<T> {
    /// A new open stream holding `permit`, with `buffer` places per direction.
    pub fn new(permit: Permit, buffer: usize, idle: Option<IdleConfig>, now_us: u64) -> Self {
        let opened_at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        Self::adopt(
            permit,
            buffer,
            idle,
            now_us,
            Start {
                key: None,
                opened_us: now_us,
                opened_at_ms,
            },
        )
    }

    /// A stream that opened earlier (`start`) without native state: the embedder kept it for its first turn, and
    /// replays what happened since (handoffs, its input's end) on the new core. Its idle clock starts at `now_us`,
    /// which is no earlier than any send it had.
    pub fn adopt(
        permit: Permit,
        buffer: usize,
        idle: Option<IdleConfig>,
        now_us: u64,
        start: Start,
    ) -> Self {
        let key = start.key.unwrap_or_else(|| reserve_keys(1));
        let opened_at_ms = start.opened_at_ms;
        let idle = idle.map(|cfg| {
            let mut idle = Idle {
                deadlines: cfg.deadlines,
                timeout_us: cfg.timeout_us,
                last_activity_us: now_us,
                armed_at_us: None,
                held: false,
            };
            idle.arm(key, now_us + cfg.timeout_us);
            idle
        });
        StreamCore {
            key,
            input: Lane::new(buffer),
            output: Lane::new(buffer),
            phase: Phase::Open,
            handler_running: true,
            gate: permit.gate().cloned(),
            counted: (0, 0),
            permit,
            idle,
            opened_at_ms,
            opened_us: start.opened_us,
            finished_us: None,
            queue_wait: Histogram::default(),
            lent_waits: LentWaits::default(),
        }
    }

    /// The function's gate the stream was admitted by (its totals).
    pub fn gate(&self) -> Option<&Admission> {
        self.gate.as_ref()
    }

    /// Unique (per process) key of this stream; also its idle-timer key.
    pub fn key(&self) -> u64 {
        self.key
    }

    /// The lifecycle phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether the idle clock is running now: configured, input open, and no
    /// send waiting for room.
    pub fn idle_running(&self) -> bool {
        self.idle.as_ref().is_some_and(|i| !i.held)
            && !self.input.is_closed()
            && self.input.waiting() == 0
    }

    /// Holds the idle clock (`held`: a stream waiting for a limiter's permit before its handler starts), or lets
    /// it run again from `now_us`: a stream is not idle while it waits for admission.
    pub fn hold_idle(&mut self, held: bool, now_us: u64) {
        if let Some(idle) = &mut self.idle {
            idle.held = held;
            idle.last_activity_us = now_us;
        }
    }

    /// Adds what the lanes accepted since last time to the function's totals.
    fn account(&mut self) {
        let now = (self.input.accepted(), self.output.accepted());
        if now != self.counted {
            if let Some(gate) = &self.gate {
                gate.count(now.0 - self.counted.0, now.1 - self.counted.1);
            }
            self.counted = now;
        }
    }

    fn touch(&mut self, now_us: u64) {
        if let Some(idle) = &mut self.idle {
            idle.last_activity_us = now_us;
        }
    }

    // ----- input side -----

    /// Send one event.
    pub fn send(&mut self, event: T, now_us: u64) -> Push<T> {
        let pushed = self.input.push(event, now_us);
        if !matches!(pushed, Push::Closed(_)) {
            self.touch(now_us);
        }
        self.account();
        pushed
    }

    /// Send one event straight to a handler that the caller knows waits for
    /// input (see [`Lane::try_handoff`]). False: use [`StreamCore::send`].
    pub fn try_handoff_input(&mut self, now_us: u64) -> bool {
        let handed = self
            .input
            .try_handoff(record_wait(&mut self.queue_wait, &self.gate));
        if handed {
            self.touch(now_us);
            self.account();
        }
        handed
    }

    /// Counts events and outputs the embedder handed over itself, each to a
    /// handler or reader waiting with nothing ahead of it, where
    /// [`StreamCore::try_handoff_input`] and [`StreamCore::try_handoff_output`]
    /// would have succeeded, reported in one call rather than one call each.
    /// `last_input_us`: when the last of the events was handed over, which
    /// restarts the idle clock as a send at that time would have (so an
    /// embedder reports before [`StreamCore::idle_fire`] decides).
    pub fn handed_over(&mut self, inputs: u64, outputs: u64, last_input_us: u64) {
        if inputs > 0 {
            if let Some(idle) = &mut self.idle {
                idle.last_activity_us = idle.last_activity_us.max(last_input_us);
            }
            self.input.count_handoffs(inputs);
            self.queue_wait.record_n(0, inputs);
            if let Some(gate) = &self.gate {
                gate.record_waits(0, inputs);
            }
        }
        self.output.count_handoffs(outputs);
        self.account();
    }

    /// Room for [`StreamCore::send_batch`] now.
    pub fn room(&self) -> usize {
        self.input.room()
    }

    /// Send events that fit in [`StreamCore::room`]; returns how many.
    pub fn send_batch(&mut self, events: impl IntoIterator<Item = T>, now_us: u64) -> usize {
        self.touch(now_us);
        let n = self.input.push_batch(events, now_us);
        self.account();
        n
    }

    /// End the input (idempotent). Returns true the first time.
    pub fn end(&mut self) -> bool {
        if !self.input.close() {
            return false;
        }
        if self.phase == Phase::Open {
            self.phase = Phase::Ending;
        }
        self.disarm_idle();
        true
    }

    /// The handler takes up to `max` events (see [`Lane::take`]).
    pub fn take_input(&mut self, max: usize, now_us: u64, out: &mut impl Extend<T>) -> Take {
        self.take_input_run(max, now_us, out, |_| 0)
    }

    /// The handler takes a run of up to `max` events of one `kind` (see
    /// [`Lane::take_run`]).
    pub fn take_input_run(
        &mut self,
        max: usize,
        now_us: u64,
        out: &mut impl Extend<T>,
        kind: impl Fn(&T) -> u8,
    ) -> Take {
        // Taking again says the handler took all of the batch before, in the run of code told last (the embedder
        // tells the takes of earlier runs first): they are spread over that run, up to now.
        self.input_taken(u64::MAX, None, now_us);
        self.lent_waits.lend(now_us);
        let (hist, gate, lent) = (&mut self.queue_wait, &self.gate, &mut self.lent_waits);
        // The first event is the handler's now; the rest wait in the batch until it takes them.
        let mut first = true;
        let record = |micros: u64, mut n: u64| {
            if first {
                first = false;
                record_waits(hist, gate, micros, 1);
                n -= 1;
            }
            lent.push(now_us.saturating_sub(micros), n);
        };
        let took = self.input.take_run(max, now_us, out, record, kind);
        self.account();
        if let Take::Taken { admitted, .. } = took {
            if admitted > 0 {
                self.touch(now_us);
            }
        }
        took
    }

    /// The handler took the next `n` events of the batch lent to it in one
    /// run of code, the last of them by `at_us`; `first_us`: when it took the
    /// first of them, if the embedder timed it (a run after the one that lent
    /// the batch), else they follow the lending or the time told last. Their
    /// queue waits end there, spread evenly over the run (see [`LentWaits`]).
    pub fn input_taken(&mut self, n: u64, first_us: Option<u64>, at_us: u64) {
        if self.lent_waits.pending() == 0 {
            return;
        }
        let (hist, gate) = (&mut self.queue_wait, &self.gate);
        self.lent_waits.taken(n, first_us, at_us, |micros, n, sum| {
            record_wait_sum(hist, gate, micros, n, sum)
        });
    }

    /// The handler has `unconsumed` events of its lent batch left at `now_us`:
    /// the others not told yet were taken in the run of code told last (the
    /// embedder tells the takes of earlier runs first), before metrics are
    /// read.
    pub fn input_consumed(&mut self, unconsumed: usize, now_us: u64) {
        let taken = self.lent_waits.pending().saturating_sub(unconsumed as u64);
        if taken > 0 {
            self.input_taken(taken, None, now_us);
        }
    }

    /// What is left of the lent batch was never taken: it counts as taken at
    /// its lending.
    fn give_back_lent(&mut self) {
        if self.lent_waits.pending() == 0 {
            return;
        }
        let (hist, gate) = (&mut self.queue_wait, &self.gate);
        self.lent_waits
            .give_back(|micros, n, sum| record_wait_sum(hist, gate, micros, n, sum));
    }

    /// The handler stopped reading its input for good: drop what is buffered
    /// and refuse later sends. Returns how many waiting sends were dropped.
    pub fn release_input(&mut self) -> usize {
        self.give_back_lent();
        self.disarm_idle();
        self.input.clear()
    }

    // ----- output side -----

    /// The handler yields one output.
    pub fn yield_output(&mut self, output: T, now_us: u64) -> Push<T> {
        let pushed = self.output.push(output, now_us);
        self.account();
        pushed
    }

    /// Room for [`StreamCore::yield_batch`] now: outputs the handler may yield
    /// without waiting. An embedder may hold up to this many yields itself
    /// and hand them over in one batch (they are within the bound).
    pub fn output_room(&self) -> usize {
        self.output.room()
    }

    /// The handler yields outputs that fit in [`StreamCore::output_room`];
    /// returns how many.
    pub fn yield_batch(&mut self, outputs: impl IntoIterator<Item = T>, now_us: u64) -> usize {
        let n = self.output.push_batch(outputs, now_us);
        self.account();
        n
    }

    /// Yield one output straight to a consumer that the caller knows waits
    /// (see [`Lane::try_handoff`]). False: use [`StreamCore::yield_output`].
    pub fn try_handoff_output(&mut self) -> bool {
        let handed = self.output.try_handoff(|_| {});
        if handed {
            self.account();
        }
        handed
    }

    /// The consumer has read `n` outputs of the batch it took (see
    /// [`Lane::consumed`]): a handler paused at a full output resumes once
    /// half the buffer is free, before the consumer comes back for more.
    /// Returns how many waiting outputs were admitted (1 resumes the handler).
    pub fn output_consumed(&mut self, n: usize) -> usize {
        let admitted = self.output.consumed(n);
        self.account();
        admitted
    }

    /// The consumer takes up to `max` outputs. `Ended` means every output
    /// was read; [`StreamCore::phase`] then says how the stream ended.
    pub fn take_output(&mut self, max: usize, now_us: u64, out: &mut impl Extend<T>) -> Take {
        self.take_output_run(max, now_us, out, |_| 0)
    }

    /// The consumer takes a run of up to `max` outputs of one `kind`.
    pub fn take_output_run(
        &mut self,
        max: usize,
        now_us: u64,
        out: &mut impl Extend<T>,
        kind: impl Fn(&T) -> u8,
    ) -> Take {
        let took = self.output.take_run(max, now_us, out, |_, _| {}, kind);
        self.account();
        if took == Take::Ended && self.phase == Phase::Ending && !self.handler_running {
            self.phase = Phase::Done;
        }
        took
    }

    // ----- endings -----

    fn handler_finished(&mut self, outcome: Outcome, now_us: u64) -> usize {
        self.give_back_lent();
        self.handler_running = false;
        self.finished_us.get_or_insert(now_us);
        self.permit.release(outcome);
        self.disarm_idle();
        self.output.close();
        self.input.clear()
    }

    /// The handler returned. Returns how many waiting sends were dropped
    /// (nobody will read them; their senders should be told the stream closed).
    pub fn handler_returned(&mut self, now_us: u64) -> usize {
        let dropped = self.handler_finished(Outcome::Completed, now_us);
        if self.phase == Phase::Open {
            self.phase = Phase::Ending;
        }
        // (Outputs lent to the consumer and not read yet are not read: see `output_unread`.)
        if self.phase == Phase::Ending && self.output.is_drained() && self.output.lent() == 0 {
            self.phase = Phase::Done;
        }
        dropped
    }

    /// The consumer has read every output of the batch it took but the last
    /// `unread` (told before [`StreamCore::handler_returned`], which finds the
    /// stream done only when nothing lent is left unread).
    pub fn output_unread(&mut self, unread: usize) {
        let read = self.output.lent().saturating_sub(unread);
        if read > 0 {
            self.output.consumed(read);
            self.account();
        }
    }

    /// The handler threw. Outputs it yielded before stay readable. Returns how
    /// many waiting sends were dropped.
    pub fn handler_failed(&mut self, now_us: u64) -> usize {
        let dropped = self.handler_finished(Outcome::Failed, now_us);
        if self.phase.is_live() {
            self.phase = Phase::Failed;
        }
        dropped
    }

    /// Cancel: drop everything buffered in both directions, refuse sends, free
    /// the permit. Returns `None` when the stream had already ended, else how
    /// many waiting sends were dropped.
    pub fn cancel(&mut self, now_us: u64) -> Option<usize> {
        if !self.phase.is_live() {
            return None;
        }
        self.phase = Phase::Cancelled;
        self.give_back_lent();
        if self.handler_running {
            self.permit.release(Outcome::Cancelled);
            self.finished_us.get_or_insert(now_us);
        }
        self.disarm_idle();
        self.output.clear();
        Some(self.input.clear())
    }

    // ----- idle -----

    fn disarm_idle(&mut self) {
        let key = self.key;
        if let Some(idle) = &mut self.idle {
            idle.disarm(key);
        }
    }

    /// The notifier reported this stream's deadline: end the input if the
    /// stream really was idle for the whole timeout, else arm again.
    pub fn idle_fire(&mut self, now_us: u64) -> IdleVerdict {
        let key = self.key;
        let waiting = self.input.waiting() > 0;
        let closed = self.input.is_closed();
        let Some(idle) = &mut self.idle else {
            return IdleVerdict::Off;
        };
        // Usually already taken out by `take_due`; removing it again is free.
        idle.disarm(key);
        if closed {
            return IdleVerdict::Off;
        }
        if waiting || idle.held {
            // A send waiting for room pauses the clock, as does a wait for admission (`hold_idle`).
            idle.last_activity_us = now_us;
        }
        let deadline = idle.last_activity_us + idle.timeout_us;
        if deadline <= now_us {
            self.end();
            return IdleVerdict::Expired;
        }
        idle.arm(key, deadline);
        IdleVerdict::Rearmed
    }

    // ----- metrics -----

    /// Metrics now. `in_unconsumed` / `out_unconsumed`: how many values of the
    /// batches lent to the handler / the consumer are still unconsumed (the
    /// embedder knows; the lane only knows the batch size).
    pub fn metrics(&self, now_us: u64, in_unconsumed: usize, out_unconsumed: usize) -> Metrics {
        let end_us = self.finished_us.unwrap_or(now_us);
        Metrics {
            events_in: self.input.accepted(),
            events_out: self.output.accepted(),
            buffered_in: (self.input.queued() + self.input.lent().min(in_unconsumed)) as u64,
            buffered_out: (self.output.queued() + self.output.lent().min(out_unconsumed)) as u64,
            backpressure_waits: self.input.waits(),
            opened_at: self.opened_at_ms,
            duration_ms: end_us.saturating_sub(self.opened_us) as f64 / 1000.0,
            queue_wait_p50_us: self.queue_wait.percentile(0.50),
            queue_wait_p99_us: self.queue_wait.percentile(0.99),
        }
    }
}

impl<T> Drop for StreamCore<T> {
    fn drop(&mut self) {
        self.disarm_idle();
    }
}
