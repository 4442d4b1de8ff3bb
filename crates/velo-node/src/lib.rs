//! The napi-rs binding of velo-core: it translates, it does not decide.
//!
//! - [`NativeFunction`]: a stream function's admission gate and counters
//!   (napi-rs class; called once per open, not per event).
//! - `exports.stream` ([`raw`]): the per-stream entry points, hand-written
//!   N-API callbacks on a slab handle ([`streams`]); each returns a small
//!   status code, and JavaScript owns the promises of whoever waits.
//! - Idle notification ([`idle`]).
//!
//! Values are held as [`slot::Slot`]s: numbers copied, everything else by
//! index into a JS-side value table; never serialised, never converted.
//! Every entry point catches Rust panics and turns them into JavaScript
//! errors.

#![allow(missing_docs)] // the public surface is documented in index.d.ts

mod idle;
mod raw;
mod shared;
mod slot;
mod streams;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use velo_core::{clock, Admission, IdleConfig, Share, StreamCore};

/// The admission gate and counters of one stream function.
#[napi]
pub struct NativeFunction {
    gate: Admission,
}

#[napi]
impl NativeFunction {
    #[napi(constructor, catch_unwind)]
    pub fn new(max_concurrent: f64) -> Self {
        NativeFunction {
            gate: Admission::new(max_concurrent as u64),
        }
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
        let admitted = match tally {
            None => self.gate.admit(),
            Some(other) => {
                let share = share.unwrap_or(0);
                let share = Share {
                    input: share & 1 != 0,
                    output: share & 2 != 0,
                };
                self.gate.admit_also(&other.gate, share)
            }
        };
        let Ok(permit) = admitted else {
            return Ok(-1.0);
        };
        let idle = if idle_ms > 0.0 {
            Some(IdleConfig {
                deadlines: idle::deadlines()?,
                timeout_us: (idle_ms * 1000.0).ceil() as u64,
            })
        } else {
            None
        };
        streams::insert(streams::Entry {
            core: StreamCore::new(permit, buffer as usize, idle, clock::now_us()),
            admitted: 0,
        })
    }

    #[napi(catch_unwind)]
    pub fn stats(&self, env: Env) -> Result<Unknown<'_>> {
        env.to_js_value(&self.gate.stats())
    }

    /// Totals over every stream of this function (events in/out, queue-wait
    /// histogram at `bounds_us`), for metrics exporters.
    #[napi(catch_unwind)]
    pub fn totals(&self, env: Env, bounds_us: Vec<f64>) -> Result<Unknown<'_>> {
        let bounds: Vec<u64> = bounds_us.iter().map(|&b| b as u64).collect();
        env.to_js_value(&self.gate.totals(&bounds))
    }
}

/// Test hook: panics inside a native call, to prove a panic becomes a JS
/// error rather than a crash.
#[napi(js_name = "__panicForTest", catch_unwind)]
pub fn panic_for_test() {
    panic!("velo-stream: panic requested by __panicForTest");
}
