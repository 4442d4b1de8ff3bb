//! The per-stream entry points (`exports.stream`), as plain N-API callbacks,
//! and the codes they answer with.
//!
//! These run once or more per event, so they skip napi-rs' generated glue
//! (argument conversion, class unwrap and type-tag checks: ~240 ns a call,
//! measured, against ~35 ns here) for direct N-API calls (`ffi.rs`) on a
//! stream's handle (`streams.rs`, `slab.rs`). Values never pass through N-API value
//! conversions: numbers travel as plain number arguments or through the
//! shared scratch buffer, and other values as indices into the JS value
//! table (see `slot.rs`).
//!
//! [`stream_ops!`] declares every entry point once: its JS name, its
//! TypeScript signature (the generated `StreamOps` interface of
//! `native/index.d.ts`) and the safe Rust function that is its body.

use napi::bindgen_prelude::*;
use napi::sys;
use napi_derive::napi;
use velo_core::{clock, IdleVerdict, Phase, Push, Start, StreamCore, Take};

use crate::dto::Metrics;
use crate::ffi::{self, fail, Scope, Scratch, Value};
use crate::gates;
use crate::limiter;
use crate::slot::{take_released, Delivered, Slot};
use crate::streams;
use crate::task::{
    task_batch_add, task_drop_retries, task_due, task_emitted, task_end_input, task_settle,
    task_settle_done, task_start, task_start_batch,
};

/// What a push (`sendNumber`, `sendValue`, `yieldNumber`, `yieldValue`)
/// answers.
#[napi]
pub enum PushStatus {
    /// In the buffer.
    Accepted = 0,
    /// No room: the value waits in the core's line, and its sender waits
    /// until `admitted` says it went in.
    Parked = 2,
    /// The lane is closed: the core took nothing, the caller still owns the
    /// value (and its table entry).
    Closed = 3,
    /// The other side was parked waiting: the core counted the value and
    /// stored nothing; the caller hands the value over itself (and still
    /// owns its table entry).
    Handoff = 4,
}

/// What a take (`takeInput`, `takeOutput`) answers besides a count.
#[napi]
pub enum TakeStatus {
    /// Nothing to take now: the taker waits until values arrive.
    Empty = -1,
    /// Nothing to take ever again.
    Ended = -2,
    /// Added to a take's count (`1 << 30`) when the run is values (table
    /// indices in the scratch buffer's `u32` view) rather than numbers (its
    /// `f64` view).
    Values = 1_073_741_824,
}

/// A stream's lifecycle phase, as `phase(h)` answers it (see
/// `velo_core::stream`).
#[napi]
pub enum PhaseCode {
    /// Accepting events.
    Open = 0,
    /// Input ended; the handler runs to its end or outputs wait to be read.
    Ending = 1,
    /// The handler returned and every output was read.
    Done = 2,
    /// The handler threw.
    Failed = 3,
    /// Cancelled.
    Cancelled = 4,
}

impl From<Phase> for PhaseCode {
    fn from(phase: Phase) -> Self {
        match phase {
            Phase::Open => PhaseCode::Open,
            Phase::Ending => PhaseCode::Ending,
            Phase::Done => PhaseCode::Done,
            Phase::Failed => PhaseCode::Failed,
            Phase::Cancelled => PhaseCode::Cancelled,
        }
    }
}

fn push_code(pushed: Push<Slot>) -> PushStatus {
    match pushed {
        Push::Accepted => PushStatus::Accepted,
        Push::Parked => PushStatus::Parked,
        Push::Closed(slot) => {
            // Refused: the caller keeps the value (and its table entry).
            slot.into_delivered();
            PushStatus::Closed
        }
    }
}

/// A count as a JS int (counts here are bounded by buffer sizes).
fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Receives a taken run into the scratch buffer: numbers as f64s, values as
/// u32 table indices. A run is one kind only (`take_*_run` by `Slot::kind`).
struct RunOut {
    scratch: Scratch,
    len: usize,
    values: bool,
}

impl Extend<Slot> for RunOut {
    fn extend<I: IntoIterator<Item = Slot>>(&mut self, iter: I) {
        for slot in iter {
            match slot.into_delivered() {
                Delivered::Number(n) => self.scratch.f64s()[self.len] = n,
                Delivered::Value(i) => {
                    self.values = true;
                    self.scratch.u32s()[self.len] = i;
                }
            }
            self.len += 1;
        }
    }
}

/// Takes one run of at most `max` (and at most the scratch size) values.
fn take_run<'s>(
    cx: Scope<'s>,
    h: Value<'s>,
    max: Value<'s>,
    take: impl FnOnce(&mut StreamCore<Slot>, usize, &mut RunOut) -> Take,
) -> Result<Value<'s>> {
    let scratch = Scratch::lend()?;
    let max = (cx.number(max)? as usize).min(scratch.len());
    let mut out = RunOut {
        scratch,
        len: 0,
        values: false,
    };
    let code = streams::with(cx.number(h)?, |stream| {
        let took = take(&mut stream.core, max, &mut out);
        stream.admitted = 0;
        match took {
            Take::Taken { count, admitted } => {
                stream.admitted = admitted as u32;
                count as i32
            }
            Take::Empty => TakeStatus::Empty as i32,
            Take::Ended => TakeStatus::Ended as i32,
        }
    })?;
    cx.int(if out.values {
        code + TakeStatus::Values as i32
    } else {
        code
    })
}

/// One event or output, for `send*` and `yield*`. `waiting`: the caller
/// knows the receiving side waits right now, so the value may go straight to
/// it if nothing is ahead (HANDOFF).
fn push_one<'s>(
    cx: Scope<'s>,
    h: Value<'s>,
    slot: Slot,
    waiting: Value<'s>,
    push: impl FnOnce(&mut StreamCore<Slot>, Slot, bool, u64) -> Option<Push<Slot>>,
) -> Result<Value<'s>> {
    let now = clock::now_us();
    let waiting = cx.flag(waiting)?;
    let code = streams::with(cx.number(h)?, |stream| {
        match push(&mut stream.core, slot, waiting, now) {
            Some(pushed) => push_code(pushed),
            None => PushStatus::Handoff,
        }
    })?;
    cx.int(code as i32)
}

fn send_to(core: &mut StreamCore<Slot>, slot: Slot, waiting: bool, now: u64) -> Option<Push<Slot>> {
    if waiting && core.try_handoff_input(now) {
        slot.into_delivered();
        return None;
    }
    Some(core.send(slot, now))
}

fn yield_to(
    core: &mut StreamCore<Slot>,
    slot: Slot,
    waiting: bool,
    now: u64,
) -> Option<Push<Slot>> {
    if waiting && core.try_handoff_output() {
        slot.into_delivered();
        return None;
    }
    Some(core.yield_output(slot, now))
}

/// Which way a batch from the scratch buffer goes.
#[derive(Clone, Copy)]
enum Direction {
    /// Events sent into the input lane.
    Input,
    /// Outputs yielded into the output lane.
    Output,
}

/// Pushes `count` slots read from the scratch buffer into a lane (they must
/// fit in its room).
fn push_run<'s>(
    cx: Scope<'s>,
    h: Value<'s>,
    count: Value<'s>,
    values: bool,
    direction: Direction,
) -> Result<Value<'s>> {
    let count = cx.number(count)? as usize;
    let mut scratch = Scratch::lend()?;
    if count > scratch.len() {
        return Err(fail("batch over the scratch size"));
    }
    let now = clock::now_us();
    let pushed = streams::with(cx.number(h)?, |stream| {
        let room = match direction {
            Direction::Input => stream.core.room(),
            Direction::Output => stream.core.output_room(),
        };
        if count > room {
            return Err(fail("batch over the free room"));
        }
        let slots: Box<dyn Iterator<Item = Slot>> = if values {
            Box::new(scratch.u32s()[..count].iter().map(|&i| Slot::Value(i)))
        } else {
            Box::new(scratch.f64s()[..count].iter().map(|&n| Slot::Number(n)))
        };
        Ok(match direction {
            Direction::Input => stream.core.send_batch(slots, now),
            Direction::Output => stream.core.yield_batch(slots, now),
        })
    })??;
    cx.int(self::count(pushed))
}

fn send_number<'s>(cx: Scope<'s>, [h, n, waiting]: [Value<'s>; 3]) -> Result<Value<'s>> {
    push_one(cx, h, Slot::Number(cx.number(n)?), waiting, send_to)
}

fn send_value<'s>(cx: Scope<'s>, [h, i, waiting]: [Value<'s>; 3]) -> Result<Value<'s>> {
    push_one(cx, h, Slot::Value(cx.index(i)?), waiting, send_to)
}

fn send_numbers<'s>(cx: Scope<'s>, [h, count]: [Value<'s>; 2]) -> Result<Value<'s>> {
    push_run(cx, h, count, false, Direction::Input)
}

fn send_values<'s>(cx: Scope<'s>, [h, count]: [Value<'s>; 2]) -> Result<Value<'s>> {
    push_run(cx, h, count, true, Direction::Input)
}

fn yield_numbers<'s>(cx: Scope<'s>, [h, count]: [Value<'s>; 2]) -> Result<Value<'s>> {
    push_run(cx, h, count, false, Direction::Output)
}

fn yield_values<'s>(cx: Scope<'s>, [h, count]: [Value<'s>; 2]) -> Result<Value<'s>> {
    push_run(cx, h, count, true, Direction::Output)
}

fn output_room<'s>(cx: Scope<'s>, [h]: [Value<'s>; 1]) -> Result<Value<'s>> {
    let room = streams::with(cx.number(h)?, |stream| stream.core.output_room())?;
    cx.int(count(room))
}

fn room<'s>(cx: Scope<'s>, [h]: [Value<'s>; 1]) -> Result<Value<'s>> {
    let room = streams::with(cx.number(h)?, |stream| stream.core.room())?;
    cx.int(count(room))
}

fn end<'s>(cx: Scope<'s>, [h]: [Value<'s>; 1]) -> Result<Value<'s>> {
    let changed = streams::with(cx.number(h)?, |stream| stream.core.end())?;
    cx.boolean(changed)
}

fn take_input<'s>(cx: Scope<'s>, [h, max]: [Value<'s>; 2]) -> Result<Value<'s>> {
    let now = clock::now_us();
    take_run(cx, h, max, |core, max, out| {
        core.take_input_run(max, now, out, Slot::kind)
    })
}

fn yield_number<'s>(cx: Scope<'s>, [h, n, waiting]: [Value<'s>; 3]) -> Result<Value<'s>> {
    push_one(cx, h, Slot::Number(cx.number(n)?), waiting, yield_to)
}

fn yield_value<'s>(cx: Scope<'s>, [h, i, waiting]: [Value<'s>; 3]) -> Result<Value<'s>> {
    push_one(cx, h, Slot::Value(cx.index(i)?), waiting, yield_to)
}

fn take_output<'s>(cx: Scope<'s>, [h, max]: [Value<'s>; 2]) -> Result<Value<'s>> {
    let now = clock::now_us();
    take_run(cx, h, max, |core, max, out| {
        core.take_output_run(max, now, out, Slot::kind)
    })
}

fn released<'s>(cx: Scope<'s>, []: [Value<'s>; 0]) -> Result<Value<'s>> {
    let mut scratch = Scratch::lend()?;
    let n = take_released(scratch.u32s());
    cx.int(count(n))
}

fn handed_over<'s>(cx: Scope<'s>, [h, inputs, outputs, ago]: [Value<'s>; 4]) -> Result<Value<'s>> {
    let now = clock::now_us();
    let (inputs, outputs) = (cx.index(inputs)?, cx.index(outputs)?);
    // (A float to integer cast saturates: a negative or NaN age is 0.)
    let at = now.saturating_sub(cx.number(ago)? as u64);
    streams::with(cx.number(h)?, |stream| {
        stream.core.handed_over(inputs.into(), outputs.into(), at)
    })?;
    cx.undefined()
}

fn output_consumed<'s>(cx: Scope<'s>, [h, n]: [Value<'s>; 2]) -> Result<Value<'s>> {
    let n = cx.number(n)? as usize;
    let admitted = streams::with(cx.number(h)?, |stream| stream.core.output_consumed(n))?;
    cx.int(count(admitted))
}

fn admitted<'s>(cx: Scope<'s>, [h]: [Value<'s>; 1]) -> Result<Value<'s>> {
    let n = streams::with(cx.number(h)?, |stream| stream.admitted)?;
    cx.int(n as i32)
}

fn phase<'s>(cx: Scope<'s>, [h]: [Value<'s>; 1]) -> Result<Value<'s>> {
    let code = streams::with(cx.number(h)?, |stream| PhaseCode::from(stream.core.phase()))?;
    cx.int(code as i32)
}

fn key<'s>(cx: Scope<'s>, [h]: [Value<'s>; 1]) -> Result<Value<'s>> {
    let key = streams::with(cx.number(h)?, |stream| stream.core.key())?;
    cx.double(key as f64)
}

fn handler_returned<'s>(
    cx: Scope<'s>,
    [h, retire, inputs, outputs, unread]: [Value<'s>; 5],
) -> Result<Value<'s>> {
    let now = clock::now_us();
    let handle = cx.number(h)?;
    let retire = cx.flag(retire)?;
    let (inputs, outputs) = (cx.index(inputs)?, cx.index(outputs)?);
    let unread = cx.index(unread)?;
    let done = streams::with(handle, |stream| {
        if inputs > 0 || outputs > 0 {
            // (The idle clock stops with the handler: the handoffs' time is now.)
            stream.core.handed_over(inputs.into(), outputs.into(), now);
        }
        stream.core.output_unread(unread as usize);
        stream.core.handler_returned(now);
        retire && stream.core.phase() == Phase::Done
    })?;
    cx.boolean(done && retire_done(handle, now)?)
}

/// Where `retire` and `handlerReturned` write a retired stream's last
/// state in the scratch buffer (`f64`s): its key, then its final metrics,
/// then a task stage's window counters (`TaskState::last_counts`).
/// `js/core/native-stream.ts` reads them in this order.
const RETIRED_FIELDS: usize = 8;
const RETIRED_TASK_FIELDS: usize = 4;

/// Frees a stream that is done (the handler returned and every output was
/// read), and for a task stage whose window is idle (`TaskState::is_idle`),
/// after writing its key and final metrics to the scratch buffer (see
/// [`RETIRED_FIELDS`]); false, and nothing done, for any other stream. A
/// done stream's metrics no longer change (its buffers are empty, its
/// duration ends at the handler's return), so JavaScript answers from the
/// copy from then on, and the stream needs no finalizer to free it.
fn retire_done(handle: f64, now: u64) -> Result<bool> {
    let last = streams::with(handle, |stream| {
        if stream.core.phase() != Phase::Done {
            return None;
        }
        let task = match stream.task.as_deref() {
            None => None,
            Some(task) if task.is_idle() => Some(task.last_counts()),
            Some(_) => return None,
        };
        Some((stream.core.key(), stream.core.metrics(now, 0, 0), task))
    })?;
    let Some((key, m, task)) = last else {
        return Ok(false);
    };
    let mut scratch = Scratch::lend()?;
    let fields: [f64; RETIRED_FIELDS] = [
        key as f64,
        m.events_in as f64,
        m.events_out as f64,
        m.backpressure_waits as f64,
        m.opened_at,
        m.duration_ms,
        m.queue_wait_p50_us as f64,
        m.queue_wait_p99_us as f64,
    ];
    let f64s = scratch.f64s();
    f64s[..RETIRED_FIELDS].copy_from_slice(&fields);
    if let Some(counts) = task {
        f64s[RETIRED_FIELDS..RETIRED_FIELDS + RETIRED_TASK_FIELDS].copy_from_slice(&counts);
    }
    drop(scratch);
    streams::remove(handle);
    Ok(true)
}

fn retire<'s>(cx: Scope<'s>, [h]: [Value<'s>; 1]) -> Result<Value<'s>> {
    let retired = retire_done(cx.number(h)?, clock::now_us())?;
    cx.boolean(retired)
}

fn handler_failed<'s>(cx: Scope<'s>, [h]: [Value<'s>; 1]) -> Result<Value<'s>> {
    let now = clock::now_us();
    let dropped = streams::with(cx.number(h)?, |stream| stream.core.handler_failed(now))?;
    cx.int(count(dropped))
}

fn cancel<'s>(cx: Scope<'s>, [h]: [Value<'s>; 1]) -> Result<Value<'s>> {
    let now = clock::now_us();
    let dropped = streams::with(cx.number(h)?, |stream| stream.core.cancel(now))?;
    cx.int(dropped.map_or(-1, count))
}

fn release_input<'s>(cx: Scope<'s>, [h]: [Value<'s>; 1]) -> Result<Value<'s>> {
    let dropped = streams::with(cx.number(h)?, |stream| stream.core.release_input())?;
    cx.int(count(dropped))
}

fn idle_fire<'s>(cx: Scope<'s>, [h]: [Value<'s>; 1]) -> Result<Value<'s>> {
    let now = clock::now_us();
    let verdict = streams::with(cx.number(h)?, |stream| stream.core.idle_fire(now))?;
    cx.boolean(verdict == IdleVerdict::Expired)
}

fn limiter_try<'s>(cx: Scope<'s>, [l, key, cost, now]: [Value<'s>; 4]) -> Result<Value<'s>> {
    let code = limiter::try_now(
        cx.number(l)?,
        cx.number(key)?,
        cx.number(cost)?,
        cx.number(now)?,
    )?;
    cx.int(code)
}

fn limiter_release<'s>(cx: Scope<'s>, [l, key, now]: [Value<'s>; 3]) -> Result<Value<'s>> {
    let decided = limiter::release_now(cx.number(l)?, cx.number(key)?, cx.number(now)?)?;
    cx.int(count(decided as usize))
}

fn idle_hold<'s>(cx: Scope<'s>, [h, held]: [Value<'s>; 2]) -> Result<Value<'s>> {
    let now = clock::now_us();
    let held = cx.number(held)? != 0.0;
    streams::with(cx.number(h)?, |stream| stream.core.hold_idle(held, now))?;
    cx.undefined()
}

fn input_taken<'s>(cx: Scope<'s>, [h, n, first_ago]: [Value<'s>; 3]) -> Result<Value<'s>> {
    let now = clock::now_us();
    let n = cx.index(n)?;
    // (Negative or NaN: the first take was not timed. A float to integer cast saturates.)
    let first_ago = cx.number(first_ago)?;
    let first = (first_ago >= 0.0).then(|| now.saturating_sub(first_ago as u64));
    streams::with(cx.number(h)?, |stream| {
        stream.core.input_taken(n.into(), first, now)
    })?;
    cx.undefined()
}

fn metrics<'s>(cx: Scope<'s>, [h, in_lent, out_lent]: [Value<'s>; 3]) -> Result<Value<'s>> {
    let in_lent = cx.number(in_lent)? as usize;
    let out_lent = cx.number(out_lent)? as usize;
    let now = clock::now_us();
    let metrics = streams::with(cx.number(h)?, |stream| {
        stream.core.input_consumed(in_lent, now);
        let mut m = Metrics::from(stream.core.metrics(now, in_lent, out_lent));
        if let Some(task) = stream.task.as_deref() {
            task.add_metrics(&mut m);
        }
        m
    })?;
    cx.convert(metrics)
}

fn open_stream<'s>(
    cx: Scope<'s>,
    [function, buffer, idle_ms]: [Value<'s>; 3],
) -> Result<Value<'s>> {
    let (buffer, idle_ms) = (cx.index(buffer)?, cx.number(idle_ms)?);
    let handle = gates::with(cx.index(function)?, |gate| {
        streams::open_stream(gate, None, buffer, idle_ms)
    })??;
    cx.double(handle)
}

/// Where `adoptStream` reads a first-turn stream's figures in the scratch buffer (`f64`s), in this order;
/// `js/core/native-stream.ts` writes them.
const ADOPT_FIELDS: usize = 6;

/// How a first-turn stream's input stands when it is adopted (`ADOPT_FIELDS`' last).
const INPUT_ENDED: f64 = 1.0;
const INPUT_RELEASED: f64 = 2.0;

fn adopt_stream<'s>(
    cx: Scope<'s>,
    [function, buffer, idle_ms]: [Value<'s>; 3],
) -> Result<Value<'s>> {
    let (buffer, idle_ms) = (cx.index(buffer)?, cx.number(idle_ms)?);
    let mut fields = [0.0; ADOPT_FIELDS];
    fields.copy_from_slice(&Scratch::lend()?.f64s()[..ADOPT_FIELDS]);
    let [key, opened_at_ms, opened_ago_us, inputs, outputs, input] = fields;
    let now = clock::now_us();
    let start = Start {
        key: (key >= 1.0).then_some(key as u64),
        // (A float to integer cast saturates: a negative or NaN age is 0.)
        opened_us: now.saturating_sub(opened_ago_us as u64),
        opened_at_ms,
    };
    let handle = gates::with(cx.index(function)?, |gate| {
        streams::adopt_stream(gate, buffer, idle_ms, start)
    })??;
    if handle >= 0.0 {
        streams::with(handle, |stream| {
            let core = &mut stream.core;
            if inputs > 0.0 || outputs > 0.0 {
                core.handed_over(inputs as u64, outputs as u64, now);
            }
            if input == INPUT_ENDED {
                core.end();
            } else if input == INPUT_RELEASED {
                core.release_input();
            }
        })?;
    }
    cx.double(handle)
}

/// Where `reportDone` reads each function's record in the scratch buffer (`f64`s): its id, streams, events in,
/// outputs.
const DONE_FIELDS: usize = 4;

fn report_done<'s>(cx: Scope<'s>, [n]: [Value<'s>; 1]) -> Result<Value<'s>> {
    let n = cx.index(n)? as usize;
    let mut scratch = Scratch::lend()?;
    let records = scratch.f64s();
    if n * DONE_FIELDS > records.len() {
        return Err(fail("report over the scratch size"));
    }
    for record in records[..n * DONE_FIELDS].chunks_exact(DONE_FIELDS) {
        let [id, streams, events_in, events_out] = [record[0], record[1], record[2], record[3]];
        // (A function collected since: nobody can read its figures any more.)
        let _ = gates::with(id as u32, |gate| {
            gate.count_completed(streams as u64, events_in as u64, events_out as u64)
        });
    }
    cx.undefined()
}

fn reserve_keys<'s>(cx: Scope<'s>, [n]: [Value<'s>; 1]) -> Result<Value<'s>> {
    let n = cx.index(n)?;
    cx.double(velo_core::reserve_keys(n.into()) as f64)
}

fn free<'s>(cx: Scope<'s>, [h]: [Value<'s>; 1]) -> Result<Value<'s>> {
    let key = streams::remove(cx.number(h)?);
    cx.double(key.map_or(-1.0, |key| key as f64))
}

fn set_scratch<'s>(cx: Scope<'s>, [array]: [Value<'s>; 1]) -> Result<Value<'s>> {
    cx.register_scratch(array)?;
    cx.undefined()
}

/// Declares the entry points: for each, its doc, its JS name, its
/// TypeScript signature, and its body. (Docs are `#[doc = "..."]`: napi-rs
/// reads a `///` comment passed through a `macro_rules!` as a raw string and
/// would keep its `r"` in the declaration.) Makes [`StreamOps`] (a type only: the generated
/// declaration of `exports.stream`) and [`ENTRY_POINTS`] (what [`install`]
/// installs) from the one list.
macro_rules! stream_ops {
    ($($(#[doc = $doc:tt])* $js:literal: $ts:literal => $body:ident,)*) => {
        /// `exports.stream`: the per-stream entry points. `h` is a stream
        /// handle from `NativeFunction.open`. A type for TypeScript only
        /// (`js/core/addon.ts`); the functions are installed by `install`.
        #[napi(object, object_to_js = false, object_from_js = false)]
        #[allow(dead_code)] // never made: it only declares `exports.stream`
        pub(crate) struct StreamOps {
            $(
                $(#[doc = $doc])*
                #[napi(js_name = $js, ts_type = $ts)]
                pub $body: (),
            )*
        }

        /// Every entry point, under its JS name.
        const ENTRY_POINTS: &[(&str, napi::Callback)] = &[$(
            ($js, {
                unsafe extern "C" fn entry(
                    env: sys::napi_env,
                    info: sys::napi_callback_info,
                ) -> sys::napi_value {
                    // SAFETY: Node calls an N-API callback with its own env
                    // and callback info.
                    unsafe { ffi::callback(env, info, $body) }
                }
                entry
            }),
        )*];
    };
}

stream_ops! {
    #[doc = " Sends one event; `handlerWaiting`: the handler waits for input now."]
    "sendNumber": "(h: number, n: number, handlerWaiting: boolean) => PushStatus" => send_number,
    #[doc = " As `sendNumber`, for a value-table index; on `Closed` or `Handoff` the"]
    #[doc = " caller still owns the table entry."]
    "sendValue": "(h: number, index: number, handlerWaiting: boolean) => PushStatus" => send_value,
    #[doc = " Sends `scratch.f64[0..count]` (must fit in `room(h)`); returns `count`."]
    "sendNumbers": "(h: number, count: number) => number" => send_numbers,
    #[doc = " Sends the table indices `scratch.u32[0..count]`; returns `count`."]
    "sendValues": "(h: number, count: number) => number" => send_values,
    #[doc = " Room for a batch now: free places of the input buffer (0 while a send waits)."]
    "room": "(h: number) => number" => room,
    #[doc = " Yields `scratch.f64[0..count]` (must fit in `outputRoom(h)`); returns `count`."]
    "yieldNumbers": "(h: number, count: number) => number" => yield_numbers,
    #[doc = " Yields the table indices `scratch.u32[0..count]`; returns `count`."]
    "yieldValues": "(h: number, count: number) => number" => yield_values,
    #[doc = " Outputs the handler may yield now without waiting."]
    "outputRoom": "(h: number) => number" => output_room,
    #[doc = " Ends the input; true the first time."]
    "end": "(h: number) => boolean" => end,
    #[doc = " The handler takes a run of at most `max` events into the scratch"]
    #[doc = " buffer: a count (plus `TakeStatus.Values` if the run is table"]
    #[doc = " indices), `TakeStatus.Empty` or `TakeStatus.Ended`."]
    "takeInput": "(h: number, max: number) => number" => take_input,
    #[doc = " Yields one output; `readerWaiting`: a read waits for output now."]
    "yieldNumber": "(h: number, n: number, readerWaiting: boolean) => PushStatus" => yield_number,
    #[doc = " As `yieldNumber`, for a value-table index."]
    "yieldValue": "(h: number, index: number, readerWaiting: boolean) => PushStatus" => yield_value,
    #[doc = " As `takeInput`, for outputs."]
    "takeOutput": "(h: number, max: number) => number" => take_output,
    #[doc = " Table indices of values the core dropped, into `scratch.u32[0..count]`;"]
    #[doc = " returns `count`."]
    "released": "() => number" => released,
    #[doc = " Counts events and outputs JS handed over itself to a waiting handler"]
    #[doc = " or reader, where `sendNumber`/`yieldNumber` would have answered"]
    #[doc = " `Handoff`: one call for many (see `StreamCore::handed_over`). `agoUs`:"]
    #[doc = " how long ago the last of the inputs was handed over (the idle clock's"]
    #[doc = " restart)."]
    "handedOver": "(h: number, inputs: number, outputs: number, agoUs: number) => void" => handed_over,
    #[doc = " The handler took the next `n` events of its lent batch in one run of"]
    #[doc = " code, the last of them by now, the first `firstAgoUs` µs ago (negative:"]
    #[doc = " not timed, in the run that lent the batch): their queue waits end there,"]
    #[doc = " spread evenly over the run (see `StreamCore::input_taken`)."]
    "inputTaken": "(h: number, n: number, firstAgoUs: number) => void" => input_taken,
    #[doc = " Waiting senders (or the paused handler) admitted by the last take."]
    "admitted": "(h: number) => number" => admitted,
    #[doc = " The consumer read `n` outputs of the batch it took: returns how many"]
    #[doc = " waiting outputs were admitted (the paused handler resumes on 1)."]
    "outputConsumed": "(h: number, n: number) => number" => output_consumed,
    #[doc = " The stream's lifecycle phase."]
    "phase": "(h: number) => PhaseCode" => phase,
    #[doc = " The stream's process-unique key (its id and idle key)."]
    "key": "(h: number) => number" => key,
    #[doc = " The handler returned, after `inputs` and `outputs` handoffs not"]
    #[doc = " reported yet (as `handedOver`). With `retire`, a stream that is now"]
    #[doc = " done (every output read) is freed as `retire` frees it: true then."]
    "handlerReturned": "(h: number, retire: boolean, inputs: number, outputs: number, unread: number) => boolean" => handler_returned,
    #[doc = " Frees a done stream (a task stage's once its window is idle) after"]
    #[doc = " writing its key and final metrics to `scratch.f64[0..8]` (key,"]
    #[doc = " eventsIn, eventsOut, backpressureWaits, openedAt, durationMs,"]
    #[doc = " queueWaitP50Us, queueWaitP99Us), and a task stage's window counters"]
    #[doc = " to `scratch.f64[8..12]` (retries, skipped, taskP50Us, taskP99Us):"]
    #[doc = " true; false, and nothing done, for any other stream."]
    "retire": "(h: number) => boolean" => retire,
    #[doc = " The handler threw; returns how many waiting sends were dropped."]
    "handlerFailed": "(h: number) => number" => handler_failed,
    #[doc = " Cancels; -1 if the stream had already ended, else how many waiting"]
    #[doc = " sends were dropped."]
    "cancel": "(h: number) => number" => cancel,
    #[doc = " The handler left its input loop: drops what is buffered; returns how"]
    #[doc = " many waiting sends were dropped."]
    "releaseInput": "(h: number) => number" => release_input,
    #[doc = " The idle notifier reported the stream: true when it was idle and its"]
    #[doc = " input just ended."]
    "idleFire": "(h: number) => boolean" => idle_fire,
    #[doc = " Holds the idle clock while the stream waits for a limiter's permit (`held` 1), or lets it run again from now (0)."]
    "idleHold": "(h: number, held: number) => void" => idle_hold,
    #[doc = " A permit of the limiter whose `NativeLimiter.handle` is `l`, for `key` and `cost`, now (`nowMs`):"]
    #[doc = " 1 (a permit, held until released, whatever the limits), or -1: none now. Never waits, never jumps the line."]
    "limiterTry": "(l: number, key: number, cost: number, nowMs: number) => number" => limiter_try,
    #[doc = " Gives back a held permit of `key`: how many waiters were decided (see `NativeLimiter.takeDecided`)."]
    "limiterRelease": "(l: number, key: number, nowMs: number) => number" => limiter_release,
    #[doc = " The stream's metrics now; `inUnconsumed`/`outUnconsumed`: values of the batches"]
    #[doc = " lent to the handler / the consumer that are still unconsumed."]
    "metrics": "(h: number, inUnconsumed: number, outUnconsumed: number) => Metrics" => metrics,
    #[doc = " Opens a stream of the function whose `NativeFunction.id` is `fn` (as"]
    #[doc = " `NativeFunction.open` without a tally): its handle, or -1 at the limit."]
    "openStream": "(fn: number, buffer: number, idleMs: number) => number" => open_stream,
    #[doc = " Opens a stream of the function `fn` that JavaScript kept without native state for its first turn"]
    #[doc = " (admitted within the limit there), from `scratch.f64[0..6]`: its key (from `reserveKeys`; 0: a new"]
    #[doc = " one), when it opened (ms since the Unix epoch) and how long ago (µs), the events and outputs handed"]
    #[doc = " over since, and its input (0 open, 1 ended, 2 released by the handler): its handle, or -1 at the limit."]
    "adoptStream": "(fn: number, buffer: number, idleMs: number) => number" => adopt_stream,
    #[doc = " Counts streams that opened and completed within their first turn without native state, from"]
    #[doc = " `scratch.f64[0..4 * n]`: per function, its `NativeFunction.id`, streams, events in (each handed"]
    #[doc = " straight to the handler: a queue wait of 0), outputs."]
    "reportDone": "(n: number) => void" => report_done,
    #[doc = " Reserves `n` stream keys: the first of them (process-unique, as every stream's)."]
    "reserveKeys": "(n: number) => number" => reserve_keys,
    #[doc = " Drops the stream's native state: its key, or -1 for a stale handle (a"]
    #[doc = " stream retired already), which is ignored."]
    "free": "(h: number) => number" => free,
    #[doc = " Task stages (`task.rs`): starts up to `max` calls, their slots in"]
    #[doc = " `scratch.u32[0..n]`; returns `n`."]
    #[doc = " `emitted`: ready results emitted or dropped since the last report."]
    #[doc = " With a limiter the window takes permits from (`TaskPolicy.limiter`), each call asks for one"]
    #[doc = " (`limiterNow`: ms on the limiter's clock; NaN: none asked for) until one is refused: plus"]
    #[doc = " `TaskStartCode.NoPermit` per call started without (the last ones)."]
    "taskStart": "(h: number, max: number, emitted: number, limiterNow: number) => number" => task_start,
    #[doc = " Settles the task slots in `scratch.u32[0..n]` as done: the ready count"]
    #[doc = " (plus `TaskSettleCode.Failed` when the stage fails now); `emitted` as"]
    #[doc = " for `taskStart`. The permits the calls hold come back (`limiterNow`: ms on the limiter's clock)."]
    "taskSettleDone": "(h: number, n: number, emitted: number, limiterNow: number) => number" => task_settle_done,
    #[doc = " How the attempt in `slot` ended: ready results (plus"]
    #[doc = " `TaskSettleCode.Failed` when the stage fails now), or"]
    #[doc = " `TaskSettleCode.Retry` / `TaskSettleCode.Exhausted`. A permit the call holds comes back"]
    #[doc = " (`limiterNow` as for `taskSettleDone`)."]
    "taskSettle": "(h: number, slot: number, how: TaskAttempt, limiterNow: number) => number" => task_settle,
    #[doc = " `n` ready task results were emitted or dropped."]
    "taskEmitted": "(h: number, n: number) => void" => task_emitted,
    #[doc = " Task slots whose retry is due, into `scratch.u32[0..n]`; returns `n`."]
    "taskDue": "(h: number) => number" => task_due,
    #[doc = " Drops the task retries waiting."]
    "taskDropRetries": "(h: number) => void" => task_drop_retries,
    #[doc = " `n` items joined the batch being filled."]
    "taskBatchAdd": "(h: number, n: number) => void" => task_batch_add,
    #[doc = " Starts the batch being filled if due and a call may start: its slot, or -1."]
    "taskStartBatch": "(h: number) => number" => task_start_batch,
    #[doc = " The task stage's input ended."]
    "taskEndInput": "(h: number) => void" => task_end_input,
    #[doc = " Registers the buffer runs cross in, once per thread (every copy of"]
    #[doc = " the JS module shares it, see `shared.rs`)."]
    "setScratch": "(buffer: Float64Array) => void" => set_scratch,
}

/// Installs `exports.stream = { sendNumber, ... }`.
#[napi(module_exports)]
pub(crate) fn install(mut exports: Object, env: Env) -> Result<()> {
    let mut ops = Object::new(&env)?;
    for &(name, callback) in ENTRY_POINTS {
        let function = env.create_function::<(), ()>(name, callback)?;
        ops.set_named_property(name, function)?;
    }
    exports.set_named_property("stream", ops)
}
