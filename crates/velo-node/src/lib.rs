//! The napi-rs binding of velo-core: it translates, it does not decide.
//!
//! Every method is synchronous and returns a small status code; JavaScript
//! owns the promises of whoever waits (see `js/stream.ts`). Values cross as
//! [`slot::Slot`]s, never serialised. Every entry point catches Rust panics
//! and turns them into JavaScript errors.

#![allow(missing_docs)] // the public surface is documented in index.d.ts

mod idle;
mod slot;

use napi::bindgen_prelude::*;
use napi::sys;
use napi::JsValue;
use napi_derive::napi;
use velo_core::{clock, Admission, IdleConfig, IdleVerdict, Phase, Push, StreamCore, Take};

use crate::slot::{bind_env, Slot};

/// Status codes shared with `js/native.ts`.
const ACCEPTED: i32 = 0;
const ACCEPTED_WAKE: i32 = 1;
const PARKED: i32 = 2;
const CLOSED: i32 = 3;
const EMPTY: i32 = -1;
const ENDED: i32 = -2;

fn push_code<T>(p: Push<T>) -> i32 {
    match p {
        Push::Accepted {
            wake_receiver: false,
        } => ACCEPTED,
        Push::Accepted {
            wake_receiver: true,
        } => ACCEPTED_WAKE,
        Push::Parked => PARKED,
        Push::Closed(_) => CLOSED,
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

    /// A new stream, or `null` when `maxConcurrent` streams are open.
    #[napi(catch_unwind)]
    pub fn open(&self, env: Env, buffer: u32, idle_ms: f64) -> Result<Option<NativeStream>> {
        bind_env(env.raw());
        let Ok(permit) = self.gate.admit() else {
            return Ok(None);
        };
        let idle = if idle_ms > 0.0 {
            Some(IdleConfig {
                timer: idle::timer()?,
                timeout_us: (idle_ms * 1000.0).ceil() as u64,
            })
        } else {
            None
        };
        Ok(Some(NativeStream {
            core: StreamCore::new(permit, buffer as usize, idle, clock::now_us()),
            admitted: 0,
        }))
    }

    #[napi(catch_unwind)]
    pub fn stats(&self, env: Env) -> Result<Unknown<'_>> {
        env.to_js_value(&self.gate.stats())
    }
}

/// One stream: its core state, holding JS values as slots.
#[napi]
pub struct NativeStream {
    core: StreamCore<Slot>,
    /// Waiting senders admitted by the last take (read only when JS has some).
    admitted: u32,
}

/// Appends taken slots to a JS array as values.
struct JsArrayOut {
    env: sys::napi_env,
    array: sys::napi_value,
    len: u32,
    status: napi::Result<()>,
}

impl Extend<Slot> for JsArrayOut {
    fn extend<I: IntoIterator<Item = Slot>>(&mut self, iter: I) {
        for slot in iter {
            if self.status.is_err() {
                continue;
            }
            // SAFETY: env and array are live handles of the current call.
            self.status = unsafe { slot.to_js(self.env) }.and_then(|v| {
                let s = unsafe { sys::napi_set_element(self.env, self.array, self.len, v) };
                if s == sys::Status::napi_ok {
                    self.len += 1;
                    Ok(())
                } else {
                    Err(napi::Error::from_reason("velo-stream: set_element failed"))
                }
            });
        }
    }
}

impl NativeStream {
    fn take_into(
        &mut self,
        env: Env,
        buf: Unknown,
        take: impl FnOnce(&mut StreamCore<Slot>, &mut JsArrayOut) -> Take,
    ) -> Result<i32> {
        let mut out = JsArrayOut {
            env: env.raw(),
            array: buf.raw(),
            len: 0,
            status: Ok(()),
        };
        let took = take(&mut self.core, &mut out);
        out.status?;
        self.admitted = 0;
        Ok(match took {
            Take::Taken { count, admitted } => {
                self.admitted = admitted as u32;
                count as i32
            }
            Take::Empty => EMPTY,
            Take::Ended => ENDED,
        })
    }
}

#[napi]
impl NativeStream {
    #[napi(getter)]
    pub fn key(&self) -> f64 {
        self.core.key() as f64
    }

    #[napi(getter)]
    pub fn phase(&self) -> u32 {
        phase_code(self.core.phase())
    }

    #[napi(getter)]
    pub fn admitted(&self) -> u32 {
        self.admitted
    }

    #[napi(getter)]
    pub fn idle_running(&self) -> bool {
        self.core.idle_running()
    }

    /// Send one event: ACCEPTED, ACCEPTED_WAKE, PARKED or CLOSED.
    #[napi(catch_unwind)]
    pub fn send(&mut self, env: Env, value: Unknown) -> Result<i32> {
        // SAFETY: handles of this call.
        let slot = unsafe { Slot::from_js(env.raw(), value.raw()) }?;
        Ok(push_code(self.core.send(slot, clock::now_us())))
    }

    #[napi(catch_unwind)]
    pub fn room(&self) -> u32 {
        self.core.room() as u32
    }

    /// Send `count` elements of `array` from `start` (they must fit in
    /// `room()`). Returns whether the handler must be woken.
    #[napi(catch_unwind)]
    pub fn send_batch(&mut self, env: Env, array: Unknown, start: u32, count: u32) -> Result<bool> {
        let (env, array) = (env.raw(), array.raw());
        let mut slots = Vec::with_capacity(count as usize);
        for i in start..start + count {
            let mut v = std::ptr::null_mut();
            // SAFETY: handles of this call; out-pointer is local.
            let status = unsafe { sys::napi_get_element(env, array, i, &mut v) };
            if status != sys::Status::napi_ok {
                return Err(napi::Error::from_reason("velo-stream: get_element failed"));
            }
            slots.push(unsafe { Slot::from_js(env, v) }?);
        }
        Ok(self.core.send_batch(slots, clock::now_us()))
    }

    #[napi(catch_unwind)]
    pub fn end(&mut self) -> bool {
        self.core.end()
    }

    /// The handler takes up to `max` events into `buf` (from index 0).
    /// Returns the count, EMPTY (the handler must wait) or ENDED.
    #[napi(catch_unwind)]
    pub fn take_input(&mut self, env: Env, buf: Unknown, max: u32) -> Result<i32> {
        self.take_into(env, buf, |core, out| {
            core.take_input(max as usize, clock::now_us(), out)
        })
    }

    #[napi(catch_unwind)]
    pub fn release_input(&mut self) -> u32 {
        self.core.release_input() as u32
    }

    #[napi(catch_unwind)]
    pub fn yield_output(&mut self, env: Env, value: Unknown) -> Result<i32> {
        // SAFETY: handles of this call.
        let slot = unsafe { Slot::from_js(env.raw(), value.raw()) }?;
        Ok(push_code(self.core.yield_output(slot, clock::now_us())))
    }

    #[napi(catch_unwind)]
    pub fn take_output(&mut self, env: Env, buf: Unknown, max: u32) -> Result<i32> {
        self.take_into(env, buf, |core, out| {
            core.take_output(max as usize, clock::now_us(), out)
        })
    }

    #[napi(catch_unwind)]
    pub fn handler_returned(&mut self) -> u32 {
        self.core.handler_returned(clock::now_us()) as u32
    }

    #[napi(catch_unwind)]
    pub fn handler_failed(&mut self) -> u32 {
        self.core.handler_failed(clock::now_us()) as u32
    }

    /// -1 when the stream had already ended, else the dropped waiting sends.
    #[napi(catch_unwind)]
    pub fn cancel(&mut self) -> i32 {
        self.core
            .cancel(clock::now_us())
            .map_or(-1, |dropped| dropped as i32)
    }

    /// The notifier reported this stream: true when its input just ended.
    #[napi(catch_unwind)]
    pub fn idle_fire(&mut self) -> bool {
        self.core.idle_fire(clock::now_us()) == IdleVerdict::Expired
    }

    #[napi(catch_unwind)]
    pub fn metrics(
        &self,
        env: Env,
        in_unconsumed: u32,
        out_unconsumed: u32,
    ) -> Result<Unknown<'_>> {
        env.to_js_value(&self.core.metrics(
            clock::now_us(),
            in_unconsumed as usize,
            out_unconsumed as usize,
        ))
    }
}

/// Test hook: panics inside a native call, to prove a panic becomes a JS
/// error rather than a crash.
#[napi(js_name = "__panicForTest", catch_unwind)]
pub fn panic_for_test() {
    panic!("velo-stream: panic requested by __panicForTest");
}
