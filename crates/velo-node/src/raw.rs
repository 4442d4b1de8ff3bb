//! The per-stream entry points, as hand-written N-API callbacks.
//!
//! These run once or more per event, so they skip napi-rs' generated glue
//! (argument conversion, class unwrap and type-tag checks: ~240 ns a call,
//! measured, against ~35 ns here) for direct `napi_*` calls on a slab handle.
//! Values never pass through N-API value conversions: numbers travel as
//! plain number arguments or through the shared scratch buffer, and other
//! values as indices into the JS value table (see `slot.rs`). Each entry
//! point catches panics and reports errors as thrown JS errors. They are
//! installed on `exports.stream` by [`install`].

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use napi::bindgen_prelude::*;
use napi::sys;
use napi::JsValue;
use napi_derive::napi;
use velo_core::{clock, IdleVerdict, Phase, Push, StreamCore, Take};

use crate::slot::{take_released, Slot, SlotBits};
use crate::streams;

/// Status codes shared with `js/native.ts`.
const ACCEPTED: i32 = 0;
const PARKED: i32 = 2;
/// The stream refused the value; the caller still owns it.
const CLOSED: i32 = 3;
/// The other side was parked waiting: the core counted the value, and the
/// caller hands it over itself (nothing was stored).
const HANDOFF: i32 = 4;
const EMPTY: i32 = -1;
const ENDED: i32 = -2;
/// Added to a take's count when the run is values (table indices in the
/// scratch buffer's `u32` view) rather than numbers (its `f64` view).
const VALUES: i32 = 1 << 30;

thread_local! {
    /// The buffer registered by `setScratch` (address, length in f64s).
    /// Numbers and table indices cross in bulk through its memory instead of
    /// one N-API element access each (~25-30 ns apiece, measured). An
    /// ArrayBuffer's backing store never moves.
    static SCRATCH: Cell<(*mut f64, usize)> = const { Cell::new((ptr::null_mut(), 0)) };
}

/// The scratch buffer, seen as f64s or as u32s (the same memory).
struct Scratch {
    data: *mut f64,
    len: usize,
}

impl Scratch {
    fn get() -> Result<Scratch> {
        let (data, len) = SCRATCH.with(Cell::get);
        if data.is_null() {
            return Err(fail("scratch buffer not registered"));
        }
        Ok(Scratch { data, len })
    }

    fn f64s(&mut self) -> &mut [f64] {
        // SAFETY: set by `set_scratch` from a live Float64Array (8-aligned,
        // `len` elements) kept alive by a strong reference for the life of
        // the thread. Only this thread touches it, and each entry point uses
        // one view at a time and none after it returns.
        unsafe { std::slice::from_raw_parts_mut(self.data, self.len) }
    }

    fn u32s(&mut self) -> &mut [u32] {
        // SAFETY: as above; the same bytes seen as twice as many u32s.
        unsafe { std::slice::from_raw_parts_mut(self.data.cast(), self.len * 2) }
    }
}

fn push_code(p: Push<Slot>) -> i32 {
    match p {
        Push::Accepted => ACCEPTED,
        Push::Parked => PARKED,
        Push::Closed(slot) => {
            // Refused: the caller keeps the value (and its table entry).
            slot.into_delivered();
            CLOSED
        }
    }
}

fn phase_code(p: Phase) -> u32 {
    match p {
        Phase::Open => 0,
        Phase::Ending => 1,
        Phase::Done => 2,
        Phase::Failed => 3,
        Phase::Cancelled => 4,
    }
}

fn fail(what: &str) -> Error {
    Error::from_reason(format!("velo-stream: {what}"))
}

fn ok(status: sys::napi_status, what: &str) -> Result<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(fail(what))
    }
}

/// Runs a callback body; an error or a panic becomes a thrown JS error.
unsafe fn guard(
    env: sys::napi_env,
    body: impl FnOnce() -> Result<sys::napi_value>,
) -> sys::napi_value {
    let message = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => return value,
        Ok(Err(error)) => error.reason,
        Err(panic) => panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "velo-stream: panic in native code".to_owned()),
    };
    let message = std::ffi::CString::new(message.replace('\0', " ")).unwrap_or_default();
    // SAFETY: env is the live env of this callback; the message is a valid C string.
    unsafe { sys::napi_throw_error(env, ptr::null(), message.as_ptr()) };
    ptr::null_mut()
}

/// The first `N` arguments (missing ones are `undefined`).
unsafe fn args<const N: usize>(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> Result<[sys::napi_value; N]> {
    let mut argv = [ptr::null_mut(); N];
    let mut argc = N;
    // SAFETY: argv has room for argc values.
    ok(
        unsafe {
            sys::napi_get_cb_info(
                env,
                info,
                &mut argc,
                argv.as_mut_ptr(),
                ptr::null_mut(),
                ptr::null_mut(),
            )
        },
        "arguments",
    )?;
    Ok(argv)
}

unsafe fn number(env: sys::napi_env, value: sys::napi_value) -> Result<f64> {
    let mut n = 0.0;
    // SAFETY: live handles; writes only `n`.
    ok(
        unsafe { sys::napi_get_value_double(env, value, &mut n) },
        "expected a number",
    )?;
    Ok(n)
}

unsafe fn index(env: sys::napi_env, value: sys::napi_value) -> Result<u32> {
    let mut i = 0;
    // SAFETY: live handles; writes only `i`.
    ok(
        unsafe { sys::napi_get_value_uint32(env, value, &mut i) },
        "expected an index",
    )?;
    Ok(i)
}

unsafe fn flag(env: sys::napi_env, value: sys::napi_value) -> Result<bool> {
    let mut b = false;
    // SAFETY: live handles; writes only `b`.
    ok(
        unsafe { sys::napi_get_value_bool(env, value, &mut b) },
        "expected a boolean",
    )?;
    Ok(b)
}

unsafe fn int(env: sys::napi_env, i: i32) -> Result<sys::napi_value> {
    let mut out = ptr::null_mut();
    // SAFETY: live env; writes only `out`.
    ok(unsafe { sys::napi_create_int32(env, i, &mut out) }, "int")?;
    Ok(out)
}

unsafe fn boolean(env: sys::napi_env, b: bool) -> Result<sys::napi_value> {
    let mut out = ptr::null_mut();
    // SAFETY: live env; writes only `out`.
    ok(
        unsafe { sys::napi_get_boolean(env, b, &mut out) },
        "boolean",
    )?;
    Ok(out)
}

unsafe fn undefined(env: sys::napi_env) -> Result<sys::napi_value> {
    let mut out = ptr::null_mut();
    // SAFETY: live env; writes only `out`.
    ok(
        unsafe { sys::napi_get_undefined(env, &mut out) },
        "undefined",
    )?;
    Ok(out)
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
                SlotBits::Number(n) => self.scratch.f64s()[self.len] = n,
                SlotBits::Value(i) => {
                    self.values = true;
                    self.scratch.u32s()[self.len] = i;
                }
            }
            self.len += 1;
        }
    }
}

/// Takes one run of at most `max` (and at most the scratch size) values.
unsafe fn take_run(
    env: sys::napi_env,
    h: sys::napi_value,
    max: sys::napi_value,
    take: impl FnOnce(&mut StreamCore<Slot>, usize, &mut RunOut) -> Take,
) -> Result<sys::napi_value> {
    let scratch = Scratch::get()?;
    // SAFETY: live handles of the calling entry point.
    let max = (unsafe { number(env, max) }? as usize).min(scratch.len);
    let mut out = RunOut {
        scratch,
        len: 0,
        values: false,
    };
    let code = streams::with(unsafe { number(env, h) }?, |e| {
        let took = take(&mut e.core, max, &mut out);
        e.admitted = 0;
        match took {
            Take::Taken { count, admitted } => {
                e.admitted = admitted as u32;
                count as i32
            }
            Take::Empty => EMPTY,
            Take::Ended => ENDED,
        }
    })?;
    // SAFETY: live env.
    unsafe { int(env, if out.values { code + VALUES } else { code }) }
}

/// One event or output, for `send*` and `yield*`. `waiting`: the caller
/// knows the receiving side waits right now, so the value may go straight to
/// it if nothing is ahead (HANDOFF).
unsafe fn push_one(
    env: sys::napi_env,
    h: sys::napi_value,
    slot: Slot,
    waiting: sys::napi_value,
    push: impl FnOnce(&mut StreamCore<Slot>, Slot, bool, u64) -> Option<Push<Slot>>,
) -> Result<sys::napi_value> {
    let now = clock::now_us();
    // SAFETY: live handles of the calling entry point.
    let waiting = unsafe { flag(env, waiting) }?;
    let code = streams::with(unsafe { number(env, h) }?, |e| {
        match push(&mut e.core, slot, waiting, now) {
            Some(pushed) => push_code(pushed),
            None => HANDOFF,
        }
    })?;
    // SAFETY: live env.
    unsafe { int(env, code) }
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

/// Which lane a batch from the scratch buffer goes into.
#[derive(Clone, Copy)]
enum Lane {
    Input,
    Output,
}

/// Pushes `count` slots read from the scratch buffer into a lane (they must
/// fit in its room): events sent, or outputs yielded.
unsafe fn push_run(
    env: sys::napi_env,
    h: sys::napi_value,
    count: sys::napi_value,
    values: bool,
    lane: Lane,
) -> Result<sys::napi_value> {
    // SAFETY: live handles of the calling entry point.
    let count = unsafe { number(env, count) }? as usize;
    let mut scratch = Scratch::get()?;
    if count > scratch.len {
        return Err(fail("batch over the scratch size"));
    }
    let now = clock::now_us();
    let pushed = streams::with(unsafe { number(env, h) }?, |e| {
        let room = match lane {
            Lane::Input => e.core.room(),
            Lane::Output => e.core.output_room(),
        };
        if count > room {
            return Err(fail("batch over the free room"));
        }
        let slots: Box<dyn Iterator<Item = Slot>> = if values {
            Box::new(scratch.u32s()[..count].iter().map(|&i| Slot::Value(i)))
        } else {
            Box::new(scratch.f64s()[..count].iter().map(|&n| Slot::Number(n)))
        };
        Ok(match lane {
            Lane::Input => e.core.send_batch(slots, now),
            Lane::Output => e.core.yield_batch(slots, now),
        })
    })??;
    // SAFETY: live env.
    unsafe { int(env, pushed as i32) }
}

/// How many identifiers were given (for `raw!`'s argument count).
macro_rules! count {
    () => { 0 };
    ($head:ident $($tail:ident)*) => { 1 + count!($($tail)*) };
}

macro_rules! raw {
    ($(#[$doc:meta])* fn $name:ident($env:ident $(, $arg:ident)*) $body:block) => {
        $(#[$doc])*
        unsafe extern "C" fn $name(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
            // SAFETY: called by Node with a live env and callback info.
            unsafe {
                guard(env, || {
                    let $env = env;
                    #[allow(unused_variables)]
                    let [$($arg),*] = args::<{ count!($($arg)*) }>(env, info)?;
                    $body
                })
            }
        }
    };
}

raw! {
    /// sendNumber(h, n, handlerWaiting) -> ACCEPTED | PARKED | CLOSED | HANDOFF
    fn send_number(env, h, n, waiting) {
        push_one(env, h, Slot::Number(number(env, n)?), waiting, send_to)
    }
}

raw! {
    /// sendValue(h, index) -> as sendNumber; on CLOSED or HANDOFF the caller
    /// still owns the table entry
    fn send_value(env, h, i, waiting) {
        push_one(env, h, Slot::Value(index(env, i)?), waiting, send_to)
    }
}

raw! {
    /// sendNumbers(h, count): send scratch.f64[0..count] (must fit in room(h)) -> count
    fn send_numbers(env, h, count) {
        push_run(env, h, count, false, Lane::Input)
    }
}

raw! {
    /// sendValues(h, count): send the table indices scratch.u32[0..count] -> count
    fn send_values(env, h, count) {
        push_run(env, h, count, true, Lane::Input)
    }
}

raw! {
    /// yieldNumbers(h, count): yield scratch.f64[0..count] (must fit in outputRoom(h)) -> count
    fn yield_numbers(env, h, count) {
        push_run(env, h, count, false, Lane::Output)
    }
}

raw! {
    /// yieldValues(h, count): yield the table indices scratch.u32[0..count] -> count
    fn yield_values(env, h, count) {
        push_run(env, h, count, true, Lane::Output)
    }
}

raw! {
    /// outputRoom(h) -> outputs the handler may yield now without waiting
    fn output_room(env, h) {
        let room = streams::with(number(env, h)?, |e| e.core.output_room())?;
        int(env, room.min(i32::MAX as usize) as i32)
    }
}

raw! {
    /// room(h) -> free slots usable by a batch now
    fn room(env, h) {
        let room = streams::with(number(env, h)?, |e| e.core.room())?;
        int(env, room.min(i32::MAX as usize) as i32)
    }
}

raw! {
    /// end(h) -> true the first time
    fn end(env, h) {
        let changed = streams::with(number(env, h)?, |e| e.core.end())?;
        boolean(env, changed)
    }
}

raw! {
    /// takeInput(h, max) -> count | count + VALUES | EMPTY | ENDED (run in scratch)
    fn take_input(env, h, max) {
        let now = clock::now_us();
        take_run(env, h, max, |core, max, out| core.take_input_run(max, now, out, Slot::kind))
    }
}

raw! {
    /// yieldNumber(h, n, readerWaiting) -> as sendNumber, for outputs
    fn yield_number(env, h, n, waiting) {
        push_one(env, h, Slot::Number(number(env, n)?), waiting, yield_to)
    }
}

raw! {
    /// yieldValue(h, index) -> as sendValue, for outputs
    fn yield_value(env, h, i, waiting) {
        push_one(env, h, Slot::Value(index(env, i)?), waiting, yield_to)
    }
}

raw! {
    /// takeOutput(h, max) -> as takeInput, for outputs
    fn take_output(env, h, max) {
        let now = clock::now_us();
        take_run(env, h, max, |core, max, out| core.take_output_run(max, now, out, Slot::kind))
    }
}

raw! {
    /// takeReleased() -> count: table indices of dropped values, in scratch.u32[0..count]
    fn released(env) {
        let mut scratch = Scratch::get()?;
        let n = take_released(scratch.u32s());
        int(env, n as i32)
    }
}

raw! {
    /// admitted(h) -> waiting senders admitted by the last take
    fn admitted(env, h) {
        let n = streams::with(number(env, h)?, |e| e.admitted)?;
        int(env, n as i32)
    }
}

raw! {
    /// phase(h) -> 0 open, 1 ending, 2 done, 3 failed, 4 cancelled
    fn phase(env, h) {
        let p = streams::with(number(env, h)?, |e| phase_code(e.core.phase()))?;
        int(env, p as i32)
    }
}

raw! {
    /// key(h) -> the stream's process-unique key (its id and idle key)
    fn key(env, h) {
        let k = streams::with(number(env, h)?, |e| e.core.key())?;
        let mut out = ptr::null_mut();
        ok(sys::napi_create_double(env, k as f64, &mut out), "key")?;
        Ok(out)
    }
}

raw! {
    /// handlerReturned(h) -> waiting sends dropped
    fn handler_returned(env, h) {
        let n = streams::with(number(env, h)?, |e| e.core.handler_returned(clock::now_us()))?;
        int(env, n as i32)
    }
}

raw! {
    /// handlerFailed(h) -> waiting sends dropped
    fn handler_failed(env, h) {
        let n = streams::with(number(env, h)?, |e| e.core.handler_failed(clock::now_us()))?;
        int(env, n as i32)
    }
}

raw! {
    /// cancel(h) -> -1 if the stream had already ended, else waiting sends dropped
    fn cancel(env, h) {
        let n = streams::with(number(env, h)?, |e| e.core.cancel(clock::now_us()).map_or(-1, |n| n as i32))?;
        int(env, n)
    }
}

raw! {
    /// releaseInput(h) -> waiting sends dropped (the handler left its input loop)
    fn release_input(env, h) {
        let n = streams::with(number(env, h)?, |e| e.core.release_input())?;
        int(env, n as i32)
    }
}

raw! {
    /// idleFire(h) -> true when the stream was idle and its input just ended
    fn idle_fire(env, h) {
        let expired = streams::with(number(env, h)?, |e| e.core.idle_fire(clock::now_us()) == IdleVerdict::Expired)?;
        boolean(env, expired)
    }
}

raw! {
    /// metrics(h, inUnconsumed, outUnconsumed) -> StreamMetrics
    fn metrics(env, h, in_unconsumed, out_unconsumed) {
        let (a, b) = (number(env, in_unconsumed)? as usize, number(env, out_unconsumed)? as usize);
        let m = streams::with(number(env, h)?, |e| e.core.metrics(clock::now_us(), a, b))?;
        Ok(Env::from_raw(env).to_js_value(&m)?.raw())
    }
}

raw! {
    /// free(h): drop the stream's native state (stale handles are ignored)
    fn free(env, h) {
        streams::remove(number(env, h)?);
        undefined(env)
    }
}

raw! {
    /// setScratch(float64Array): the buffer runs cross in (once per thread:
    /// every copy of the JS module shares it, see `shared.rs`)
    fn set_scratch(env, array) {
        if !SCRATCH.with(Cell::get).0.is_null() {
            return Err(fail("setScratch: a scratch buffer is already registered on this thread"));
        }
        let mut ty = 0;
        let mut len = 0;
        let mut data = ptr::null_mut();
        let mut buffer = ptr::null_mut();
        let mut offset = 0;
        ok(
            sys::napi_get_typedarray_info(env, array, &mut ty, &mut len, &mut data, &mut buffer, &mut offset),
            "expected a Float64Array",
        )?;
        if ty != sys::TypedarrayType::float64_array {
            return Err(fail("expected a Float64Array"));
        }
        // Keep it alive for the life of the thread: the views point into it.
        let mut keep = ptr::null_mut();
        ok(sys::napi_create_reference(env, array, 1, &mut keep), "reference")?;
        SCRATCH.with(|s| s.set((data.cast(), len)));
        undefined(env)
    }
}

type Callback = unsafe extern "C" fn(sys::napi_env, sys::napi_callback_info) -> sys::napi_value;

const ENTRY_POINTS: &[(&str, Callback)] = &[
    ("sendNumber", send_number),
    ("sendValue", send_value),
    ("sendNumbers", send_numbers),
    ("sendValues", send_values),
    ("room", room),
    ("yieldNumbers", yield_numbers),
    ("yieldValues", yield_values),
    ("outputRoom", output_room),
    ("end", end),
    ("takeInput", take_input),
    ("yieldNumber", yield_number),
    ("yieldValue", yield_value),
    ("takeOutput", take_output),
    ("released", released),
    ("admitted", admitted),
    ("phase", phase),
    ("key", key),
    ("handlerReturned", handler_returned),
    ("handlerFailed", handler_failed),
    ("cancel", cancel),
    ("releaseInput", release_input),
    ("idleFire", idle_fire),
    ("metrics", metrics),
    ("free", free),
    ("setScratch", set_scratch),
];

/// Installs `exports.stream = { sendNumber, ... }`.
#[napi(module_exports)]
pub fn install(exports: Object, env: Env) -> Result<()> {
    let env = env.raw();
    let mut ops = ptr::null_mut();
    // SAFETY: live env and exports during module registration; every call
    // writes only its out-pointer.
    unsafe {
        ok(sys::napi_create_object(env, &mut ops), "create_object")?;
        for (name, cb) in ENTRY_POINTS {
            let mut f = ptr::null_mut();
            ok(
                sys::napi_create_function(
                    env,
                    name.as_ptr().cast(),
                    name.len() as isize,
                    Some(*cb),
                    ptr::null_mut(),
                    &mut f,
                ),
                "create_function",
            )?;
            let mut key = ptr::null_mut();
            ok(
                sys::napi_create_string_utf8(
                    env,
                    name.as_ptr().cast(),
                    name.len() as isize,
                    &mut key,
                ),
                "name",
            )?;
            ok(sys::napi_set_property(env, ops, key, f), "set_property")?;
        }
        let mut key = ptr::null_mut();
        ok(
            sys::napi_create_string_utf8(env, c"stream".as_ptr(), 6, &mut key),
            "name",
        )?;
        ok(
            sys::napi_set_property(env, exports.raw(), key, ops),
            "set_property",
        )?;
    }
    Ok(())
}
