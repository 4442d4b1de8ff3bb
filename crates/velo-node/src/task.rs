//! Task stages' entry points: they reach a stream's task state
//! (`task_state.rs`: the core's [`TaskWindow`] and its deadline) through the
//! stream's handle.
//!
//! JavaScript (`js/core/task.ts`) starts the calls and settles them; every
//! decision (may a call start, which results are ready, when to retry, when a
//! batch is due) is the window's. A per-item stage with a limiter the window
//! takes permits from (`TaskPolicy::limiter`) asks the limiter's core for a
//! permit as each call starts (`taskStart`) and gives it back as the call
//! settles (`taskSettle`, `taskSettleDone`), in the same native call.

use napi::bindgen_prelude::*;
use napi_derive::napi;
use velo_core::{clock, Attempt, BatchPolicy, RetryPolicy, Settled, TaskWindow};

use crate::ffi::{fail, Scope, Scratch, Value};
use crate::limiter::TaskPermits;
use crate::streams;
use crate::task_state::TaskState;

/// A task stage's settings (`taskInit`). Times are milliseconds.
#[napi(object, object_to_js = false)]
pub(crate) struct TaskPolicy {
    pub concurrency: u32,
    pub buffer: u32,
    pub ordered: bool,
    pub attempts: u32,
    pub delay_ms: f64,
    pub factor: f64,
    pub max_delay_ms: f64,
    /// 0 for a per-item stage.
    pub max_size: u32,
    pub min_size: u32,
    pub max_wait_ms: f64,
    /// The handle (`NativeLimiter.handle`) of a limiter each call takes a
    /// permit of (key 0, cost 1) as it starts, held until it settles; a
    /// per-item stage's only.
    pub limiter: Option<f64>,
}

fn micros(ms: f64) -> u64 {
    if ms.is_finite() && ms > 0.0 {
        (ms * 1000.0).ceil() as u64
    } else if ms.is_infinite() && ms > 0.0 {
        u64::MAX
    } else {
        0
    }
}

/// Makes the stream behind `handle` a task stage's.
#[napi(catch_unwind)]
pub(crate) fn task_init(handle: f64, policy: TaskPolicy) -> Result<()> {
    streams::with(handle, |stream| -> Result<()> {
        let gate = stream.core.gate().cloned();
        let window = TaskWindow::new(task_policy(&policy), gate);
        let permits = policy.limiter.map(TaskPermits::new).transpose()?;
        stream.task = Some(Box::new(TaskState::new(window, stream.core.key(), permits)));
        Ok(())
    })?
}

fn task_policy(policy: &TaskPolicy) -> velo_core::TaskPolicy {
    velo_core::TaskPolicy {
        concurrency: policy.concurrency,
        buffer: policy.buffer,
        ordered: policy.ordered,
        retry: RetryPolicy {
            attempts: policy.attempts,
            delay_us: micros(policy.delay_ms),
            factor: policy.factor,
            max_delay_us: micros(policy.max_delay_ms),
        },
        batch: (policy.max_size > 0).then_some(BatchPolicy {
            max_size: policy.max_size,
            min_size: policy.min_size,
            max_wait_us: micros(policy.max_wait_ms),
        }),
    }
}

/// Runs `f` on the task window of the stream behind `h`, then arms (or moves)
/// its deadline to the window's next one.
fn with_task<'s, R>(
    cx: Scope<'s>,
    h: Value<'s>,
    f: impl FnOnce(&mut TaskWindow, u64) -> R,
) -> Result<R> {
    with_task_permits(cx, h, |w, _, now| f(w, now))
}

/// [`with_task`], with the permits the stage's calls hold (if it has a
/// limiter the window takes permits from).
fn with_task_permits<'s, R>(
    cx: Scope<'s>,
    h: Value<'s>,
    f: impl FnOnce(&mut TaskWindow, Option<&mut TaskPermits>, u64) -> R,
) -> Result<R> {
    let now = clock::now_us();
    streams::with(cx.number(h)?, |stream| {
        let task = stream
            .task
            .as_deref_mut()
            .ok_or_else(|| fail("not a task stage's stream"))?;
        task.with_window(|w, permits| f(w, permits, now))
    })?
}

/// What `taskStart` answers besides the count of calls started.
#[napi]
pub enum TaskStartCode {
    /// Added to the count once per call started without a permit of the
    /// stage's limiter (the last ones started: the first refusal stops the
    /// asking). Such a call waits for its permit in JavaScript, as any
    /// limiter's waiter does.
    NoPermit = 65_536,
}

/// Starts up to `max` calls (at most the scratch size): their slots in
/// `scratch.u32[0..n]`; returns `n`. `emitted`: ready results emitted (or
/// dropped) since the last report, counted first. With a limiter the window
/// takes permits from, each call asks for one as it starts (`limiterNow`: the
/// time in ms on the limiter's clock; NaN: none is asked for), until one is
/// refused: plus [`TaskStartCode::NoPermit`] per call started without.
pub(crate) fn task_start<'s>(
    cx: Scope<'s>,
    [h, max, emitted, limiter_now]: [Value<'s>; 4],
) -> Result<Value<'s>> {
    let mut scratch = Scratch::lend()?;
    let max = (cx.number(max)? as usize).min(scratch.len());
    let emitted = cx.index(emitted)?;
    let limiter_now = cx.number(limiter_now)?;
    let slots = scratch.u32s();
    let (n, without) = with_task_permits(cx, h, |w, permits, now| {
        w.emitted(emitted);
        let mut n = 0;
        while n < max {
            let Some(slot) = w.start(now) else { break };
            slots[n] = slot;
            n += 1;
        }
        let granted = match permits {
            Some(p) if !limiter_now.is_nan() => p.take(&slots[..n], limiter_now),
            Some(_) => 0,
            None => n,
        };
        (n, n - granted)
    })?;
    cx.int((n + without * TaskStartCode::NoPermit as usize) as i32)
}

/// How a task attempt ended, as `taskSettle` takes it (the core's
/// [`Attempt`]; generated into the declarations, so JavaScript never
/// mirrors these numbers by hand).
#[napi]
pub enum TaskAttempt {
    /// A result (or a filtered one: JavaScript knows which).
    Done = 0,
    /// It threw: retried while attempts are left, else the item is exhausted.
    Error = 1,
    /// Dropped by the skip policy (after its last attempt).
    Skipped = 2,
    /// Failed for good (`onError: 'fail'`, after its last attempt).
    Failed = 3,
    /// Settled after the stage stopped: discarded, counted nowhere.
    Dropped = 4,
}

/// What `taskSettle` and `taskSettleDone` answer besides a count of ready
/// results: `Failed` is a flag added to the count (the stage fails now);
/// `Retry` and `Exhausted` are answers of their own.
#[napi]
pub enum TaskSettleCode {
    /// Added to the ready count: the stage must fail now.
    Failed = 536_870_912,
    /// The attempt will be retried (its deadline is armed).
    Retry = -1,
    /// No attempt is left.
    Exhausted = -2,
}

const SETTLE_FAILED: i32 = TaskSettleCode::Failed as i32;

/// Reports how the attempt in `slot` ended (a [`TaskAttempt`]); a permit the
/// call holds comes back (`limiterNow`: the time in ms on the limiter's clock).
pub(crate) fn task_settle<'s>(
    cx: Scope<'s>,
    [h, slot, how, limiter_now]: [Value<'s>; 4],
) -> Result<Value<'s>> {
    let slot = cx.index(slot)?;
    let limiter_now = cx.number(limiter_now)?;
    let how = match cx.number(how)? as i64 {
        x if x == TaskAttempt::Done as i64 => Attempt::Done,
        x if x == TaskAttempt::Error as i64 => Attempt::Error,
        x if x == TaskAttempt::Skipped as i64 => Attempt::Skipped,
        x if x == TaskAttempt::Failed as i64 => Attempt::Failed,
        x if x == TaskAttempt::Dropped as i64 => Attempt::Dropped,
        _ => return Err(fail("unknown attempt outcome")),
    };
    let settled = with_task_permits(cx, h, |w, permits, now| {
        if let Some(p) = permits {
            p.give_back(&[slot], limiter_now);
        }
        w.settle(slot, how, now)
    })?;
    cx.int(match settled {
        Settled::Ready { count, failed } => {
            count.min(SETTLE_FAILED as u32 - 1) as i32 + if failed { SETTLE_FAILED } else { 0 }
        }
        Settled::Retry { .. } => TaskSettleCode::Retry as i32,
        Settled::Exhausted => TaskSettleCode::Exhausted as i32,
    })
}

/// Settles the calls in `scratch.u32[0..n]` as done (a batch of results):
/// the ready count, plus `SETTLE_FAILED` if the stage fails now. `emitted`
/// as for `task_start`; the permits the calls hold come back (`limiterNow`
/// as for `task_settle`).
pub(crate) fn task_settle_done<'s>(
    cx: Scope<'s>,
    [h, n, emitted, limiter_now]: [Value<'s>; 4],
) -> Result<Value<'s>> {
    let mut scratch = Scratch::lend()?;
    let n = cx.number(n)? as usize;
    let emitted = cx.index(emitted)?;
    let limiter_now = cx.number(limiter_now)?;
    let slots = scratch.u32s();
    if n > slots.len() {
        return Err(fail("more settles than the scratch holds"));
    }
    let (ready, failed) = with_task_permits(cx, h, |w, permits, now| {
        w.emitted(emitted);
        if let Some(p) = permits {
            p.give_back(&slots[..n], limiter_now);
        }
        let (mut ready, mut failed) = (0u32, false);
        for &slot in &slots[..n] {
            if let Settled::Ready { count, failed: f } = w.settle(slot, Attempt::Done, now) {
                ready += count;
                failed |= f;
            }
        }
        (ready, failed)
    })?;
    cx.int(ready.min(SETTLE_FAILED as u32 - 1) as i32 + if failed { SETTLE_FAILED } else { 0 })
}

/// `n` ready results were emitted (or dropped, if filtered).
pub(crate) fn task_emitted<'s>(cx: Scope<'s>, [h, n]: [Value<'s>; 2]) -> Result<Value<'s>> {
    let n = cx.index(n)?;
    with_task(cx, h, |w, _| w.emitted(n))?;
    cx.undefined()
}

/// Slots whose retry is due, into `scratch.u32[0..n]`; returns `n` (the
/// rest stay due: call again while it returns the scratch size).
pub(crate) fn task_due<'s>(cx: Scope<'s>, [h]: [Value<'s>; 1]) -> Result<Value<'s>> {
    let mut scratch = Scratch::lend()?;
    let mut due = Vec::new();
    with_task(cx, h, |w, now| w.take_due(now, &mut due))?;
    let slots = scratch.u32s();
    if due.len() > slots.len() {
        return Err(fail("more retries due than the scratch holds"));
    }
    slots[..due.len()].copy_from_slice(&due);
    cx.int(due.len() as i32)
}

/// Drops the retries waiting (the stage is failing or cancelled).
pub(crate) fn task_drop_retries<'s>(cx: Scope<'s>, [h]: [Value<'s>; 1]) -> Result<Value<'s>> {
    with_task(cx, h, |w, _| w.drop_retries())?;
    cx.undefined()
}

/// `n` items joined the batch being filled.
pub(crate) fn task_batch_add<'s>(cx: Scope<'s>, [h, n]: [Value<'s>; 2]) -> Result<Value<'s>> {
    let n = cx.index(n)?;
    with_task(cx, h, |w, now| w.batch_add(n, now))?;
    cx.undefined()
}

/// Starts the batch being filled if it is due and a call may start: its
/// slot; else -1, or -2 when no call may start (the window is full).
pub(crate) fn task_start_batch<'s>(cx: Scope<'s>, [h]: [Value<'s>; 1]) -> Result<Value<'s>> {
    let slot = with_task(cx, h, |w, now| match w.start_batch(now) {
        Some(slot) => slot as i32,
        None if !w.may_start() => -2,
        None => -1,
    })?;
    cx.int(slot)
}

/// The stage's input ended (the last batch is due whatever its size).
pub(crate) fn task_end_input<'s>(cx: Scope<'s>, [h]: [Value<'s>; 1]) -> Result<Value<'s>> {
    with_task(cx, h, |w, _| w.end_input())?;
    cx.undefined()
}
