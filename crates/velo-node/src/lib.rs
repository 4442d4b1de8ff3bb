//! The napi-rs binding of velo-core: it translates, it does not decide.
//!
//! # The seam
//! JavaScript (`js/core/addon.ts` loads this addon; `js/core/native-stream.ts`
//! is the only caller of the per-stream entry points) sees:
//!
//! - [`NativeFunction`], once per stream function: its admission gate and
//!   counters. `open` admits a stream and returns its *handle* (a number;
//!   -1 at the limit); `stats`/`totals` read the counters (`dto.rs`);
//!   `admitGroup`/`refuse` serve a pipe's own gate ([`GroupPermit`]). A napi
//!   class: called once per open, not per event.
//! - `exports.stream` (`raw.rs`): the per-stream entry points on a handle,
//!   plain N-API callbacks (~35 ns a call instead of ~240 ns through
//!   napi-rs' glue): send, yield, take, end, cancel, the handler's
//!   outcome, phase, metrics, free, and a task stage's (`task.rs`). Their
//!   TypeScript signatures are the generated `StreamOps` interface.
//! - The codes those answer with, `PushStatus`, `TakeStatus` and `PhaseCode`
//!   (`raw.rs`), `TaskAttempt`, `TaskStartCode` and `TaskSettleCode` (`task.rs`), generated
//!   into `native/index.d.ts` as enums.
//! - The cross-thread lanes of `workerFn` streams (`cross.rs`): `crossOpen`,
//!   `crossPush`, `crossTake`, ..., answering `CrossPushStatus` and
//!   `CrossTakeStatus`.
//! - The idle notifier (`idle.rs`): `setIdleHandler`, `idleDue`, `keepAlive`.
//! - `threadState` (`shared.rs`): the one JS-side state object of a thread.
//! - `NativeLimiter` (`limiter.rs`): an in-process limiter's decisions (`velo_core::limiter`).
//!
//! # Who owns what
//! - The core ([`velo_core::StreamCore`], [`velo_core::TaskWindow`]) owns
//!   each stream's lanes, lifecycle, permit, idle clock and task window, and
//!   decides; this crate keeps the open streams of a thread in a table
//!   (`streams.rs`, a slab of `slab.rs`) and frees one on `retire(h)` (done) or `free(h)`
//!   (JavaScript calls it when its stream object is done or collected).
//! - JavaScript owns every value: the core holds numbers by copy and other
//!   values by index into the JS value table (`slot.rs`); indices of values
//!   the core dropped come back through `released()`.
//! - JavaScript owns every promise: an entry point answers with a code
//!   (parked, empty, ...) and JavaScript makes its caller wait, until a
//!   later answer (`admitted`, a take) says the wait is over.
//! - Numbers and indices cross in bulk through one scratch buffer per thread
//!   (`setScratch`, `ffi::Scratch`).
//!
//! # Modules
//! They depend one way, each only on those above it:
//! - `ffi.rs`, `dto.rs`, `slot.rs`, `slab.rs`, `gates.rs`, `shared.rs`,
//!   `cross.rs`: depend on no other module;
//! - `idle.rs`: the thread's deadline set (on `ffi.rs`);
//! - `limiter.rs`: the thread's limiters (`NativeLimiter`, on `slab.rs`) and
//!   the permits a task stage's calls hold of one;
//! - `task_state.rs`: a task stage's window and its deadline, which it
//!   disarms when dropped, and its calls' permits (on `limiter.rs`);
//! - `streams.rs`: the stream record, the thread's table of them, and
//!   `open_stream`;
//! - `task.rs`, then `raw.rs`: the entry points on a handle;
//! - this root: [`NativeFunction`] and [`GroupPermit`].
//!
//! All `unsafe` code is in `ffi.rs`. Every entry point catches Rust panics and
//! turns them, and errors, into thrown JavaScript errors.

#![allow(missing_docs)] // the public surface is documented in native/index.d.ts

mod cross;
mod dto;
mod ffi;
mod gates;
mod idle;
mod limiter;
mod raw;
mod shared;
mod slab;
mod slot;
mod streams;
mod task;
mod task_state;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use velo_core::{Admission, Permit, Share};

use crate::dto::{Outcome, Stats, Totals};

/// The admission gate and counters of one stream function.
#[napi]
pub struct NativeFunction {
    gate: Admission,
    /// The gate's id for `openStream` (`gates.rs`).
    id: u32,
}

impl Drop for NativeFunction {
    fn drop(&mut self) {
        gates::unregister(self.id);
    }
}

#[napi]
impl NativeFunction {
    #[napi(constructor, catch_unwind)]
    pub fn new(max_concurrent: f64) -> Self {
        let gate = Admission::new(max_concurrent as u64);
        let id = gates::register(gate.clone());
        NativeFunction { gate, id }
    }

    /// This function's id for `stream.openStream` (per thread).
    #[napi(getter)]
    pub fn id(&self) -> u32 {
        self.id
    }

    /// A new stream's handle, or -1 when `maxConcurrent` streams are open.
    /// With `tally`, the stream's input (`share` bit 1) and outputs (bit 2)
    /// also count in `tally`'s totals: a pipe's own figures.
    #[napi(catch_unwind)]
    pub fn open(
        &self,
        buffer: u32,
        idle_ms: f64,
        tally: Option<&NativeFunction>,
        share: Option<u32>,
    ) -> Result<f64> {
        let tally = tally.map(|other| {
            let share = share.unwrap_or(0);
            let share = Share {
                input: share & 1 != 0,
                output: share & 2 != 0,
            };
            (&other.gate, share)
        });
        streams::open_stream(&self.gate, tally, buffer, idle_ms)
    }

    /// A permit of this gate for a group of streams that counts as one (a
    /// pipe's stages), or null when `maxConcurrent` are open (counted as
    /// rejected).
    #[napi(catch_unwind)]
    pub fn admit_group(&self) -> Option<GroupPermit> {
        self.gate.admit().ok().map(|permit| GroupPermit { permit })
    }

    /// Counts an open refused for a reason outside this gate (a pipe's stage
    /// at its own limit).
    #[napi(catch_unwind)]
    pub fn refuse(&self) {
        self.gate.refuse();
    }

    #[napi(catch_unwind)]
    pub fn stats(&self) -> Stats {
        self.gate.stats().into()
    }

    /// Totals over every stream of this function (events in/out, queue-wait
    /// histogram at `bounds_us`), for metrics exporters.
    #[napi(catch_unwind)]
    pub fn totals(&self, bounds_us: Vec<f64>) -> Totals {
        let bounds: Vec<u64> = bounds_us.iter().map(|&b| b as u64).collect();
        self.gate.totals(&bounds).into()
    }
}

/// A group's hold on its gate (`NativeFunction.admitGroup`). Given back by
/// `release`; one collected without that counts as cancelled.
#[napi]
pub struct GroupPermit {
    permit: Permit,
}

#[napi]
impl GroupPermit {
    /// Gives the permit back with the group's outcome; true the first time,
    /// later calls do nothing.
    #[napi(catch_unwind)]
    pub fn release(&mut self, outcome: Outcome) -> bool {
        self.permit.release(outcome.into())
    }
}

/// Test hook: panics inside a native call, to prove a panic becomes a JS
/// error rather than a crash.
#[napi(js_name = "__panicForTest", catch_unwind)]
pub fn panic_for_test() {
    panic!("velo-stream: panic requested by __panicForTest");
}

/// For tests: how many streams hold native state on this thread (not yet
/// retired nor freed by their finalizer).
#[napi(js_name = "__nativeStreamsForTest")]
pub fn native_streams_for_test() -> u32 {
    streams::count()
}
