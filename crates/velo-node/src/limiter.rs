//! `NativeLimiter`: an in-process limiter's decisions (`velo_core::limiter`)
//! for `js/limits/local.ts`. It translates: times arrive in ms (as
//! JavaScript's clocks give them) and go to the core in µs; keys are the
//! numbers JavaScript gives each key string; decisions go back as codes
//! (`Decision`'s values).

use napi_derive::napi;
use velo_core::limiter::{Decision, LimiterCore, Limits, Rate};

fn us(ms: f64) -> u64 {
    // Clocks before 0 (a mock at its start) count as 0.
    (ms * 1000.0).round().max(0.0) as u64
}

fn limits(concurrency: f64, rate_limit: f64, rate_period_ms: f64, rate_burst: f64) -> Limits {
    // 0 means "none": the embedder checked every value (integers in range).
    Limits {
        concurrency: (concurrency > 0.0).then_some(concurrency as u64),
        rate: (rate_limit > 0.0).then(|| Rate {
            limit: rate_limit as u64,
            period_us: us(rate_period_ms).max(1),
            burst: rate_burst as u64,
        }),
    }
}

/// A limiter's figures (`LimiterStats` without its name).
#[napi(object, object_from_js = false)]
pub struct NativeLimiterStats {
    pub in_use: f64,
    pub waiting: f64,
    pub admitted: f64,
    pub rejected: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub rate: f64,
    pub keys: f64,
}

/// The wait histogram since creation at chosen bounds (µs), for exporters.
#[napi(object, object_from_js = false)]
pub struct NativeLimiterWaits {
    pub count: f64,
    pub sum_us: f64,
    /// Cumulative counts at each bound, in the bounds' order.
    pub counts: Vec<f64>,
}

/// One in-process limiter's state and decisions.
#[napi]
pub struct NativeLimiter {
    core: LimiterCore,
}

#[napi]
impl NativeLimiter {
    /// Limits of 0 are "none"; `reject` refuses the excess instead of queueing at most `max_waiting`.
    #[napi(constructor, catch_unwind)]
    pub fn new(
        concurrency: f64,
        rate_limit: f64,
        rate_period_ms: f64,
        rate_burst: f64,
        reject: bool,
        max_waiting: f64,
    ) -> Self {
        NativeLimiter {
            core: LimiterCore::new(
                limits(concurrency, rate_limit, rate_period_ms, rate_burst),
                reject,
                max_waiting as usize,
            ),
        }
    }

    /// A `Decision` code: 0/1 granted (1: holds a slot to release), 2 queued as waiter `id`, 3..6 refused.
    #[napi(catch_unwind)]
    pub fn acquire(&mut self, key: u32, cost: f64, id: f64, now_ms: f64) -> u32 {
        self.core.acquire(key, cost as u64, id as u64, us(now_ms)) as u32
    }

    /// 0/1 granted as in `acquire`, or -1: none now.
    #[napi(catch_unwind)]
    pub fn try_acquire(&mut self, key: u32, cost: f64, now_ms: f64) -> i32 {
        self.core
            .try_acquire(key, cost as u64, us(now_ms))
            .map_or(-1, |d| d as i32)
    }

    /// Gives back a held permit; the count of waiters decided since the last `takeDecided`.
    #[napi(catch_unwind)]
    pub fn release(&mut self, key: u32, now_ms: f64) -> u32 {
        self.core.release(key, us(now_ms)) as u32
    }

    /// Takes waiter `id` out of line; true if it was waiting.
    #[napi(catch_unwind)]
    pub fn cancel(&mut self, id: f64, now_ms: f64) -> bool {
        self.core.cancel(id as u64, us(now_ms))
    }

    /// Grants what the rate allows by now; the count of waiters decided.
    #[napi(catch_unwind)]
    pub fn poll(&mut self, now_ms: f64) -> u32 {
        self.core.poll(us(now_ms)) as u32
    }

    /// New limits (0: none); the count of waiters decided.
    #[napi(catch_unwind)]
    pub fn set_limits(
        &mut self,
        concurrency: f64,
        rate_limit: f64,
        rate_period_ms: f64,
        rate_burst: f64,
        now_ms: f64,
    ) -> u32 {
        self.core.set_limits(
            limits(concurrency, rate_limit, rate_period_ms, rate_burst),
            us(now_ms),
        ) as u32
    }

    /// Refuses new acquires and every waiter; the count of waiters decided.
    #[napi(catch_unwind)]
    pub fn close(&mut self) -> u32 {
        self.core.close() as u32
    }

    /// The waiters decided, as `[id, code, id, code, ...]`.
    #[napi(catch_unwind)]
    pub fn take_decided(&mut self) -> Vec<f64> {
        let mut out = Vec::new();
        for (id, d) in self.core.take_decided() {
            out.push(id as f64);
            out.push(f64::from(d as u8));
        }
        out
    }

    /// When a rate-blocked waiter may be granted (ms on the caller's clock), or -1.
    #[napi(catch_unwind)]
    pub fn wake_at(&self) -> f64 {
        self.core.wake_at().map_or(-1.0, |t| t as f64 / 1000.0)
    }

    /// Forgets rested keys that hold and wait for nothing; their numbers.
    #[napi(catch_unwind)]
    pub fn sweep(&mut self, now_ms: f64) -> Vec<u32> {
        self.core.sweep(us(now_ms))
    }

    #[napi(catch_unwind)]
    pub fn stats(&mut self, now_ms: f64) -> NativeLimiterStats {
        let s = self.core.stats(us(now_ms));
        NativeLimiterStats {
            in_use: s.in_use as f64,
            waiting: s.waiting as f64,
            admitted: s.admitted as f64,
            rejected: s.rejected as f64,
            p50_ms: s.p50_us as f64 / 1000.0,
            p99_ms: s.p99_us as f64 / 1000.0,
            rate: s.rate_per_s,
            keys: s.keys as f64,
        }
    }

    /// Waits since creation at `bounds_us` (ascending), for exporters.
    #[napi(catch_unwind)]
    pub fn waits(&mut self, bounds_us: Vec<f64>, now_ms: f64) -> NativeLimiterWaits {
        let bounds: Vec<u64> = bounds_us.iter().map(|&b| b as u64).collect();
        let snap = self.core.waits(us(now_ms)).snapshot(&bounds);
        NativeLimiterWaits {
            count: snap.count as f64,
            sum_us: snap.sum_us as f64,
            counts: snap.buckets.iter().map(|&(_, n)| n as f64).collect(),
        }
    }
}

// The codes JavaScript compares with (`Decision` in velo-core).
const _: () = {
    assert!(
        Decision::Granted as u8 == 0
            && Decision::GrantedHeld as u8 == 1
            && Decision::Queued as u8 == 2
    );
    assert!(Decision::Limited as u8 == 3 && Decision::QueueFull as u8 == 4);
    assert!(Decision::TooCostly as u8 == 5 && Decision::Closed as u8 == 6);
};
