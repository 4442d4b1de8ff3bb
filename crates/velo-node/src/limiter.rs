//! `NativeLimiter`: an in-process limiter's decisions (`velo_core::limiter`)
//! for `js/limits/local.ts`. It translates: times arrive in ms (as
//! JavaScript's clocks give them) and go to the core in µs; keys are the
//! numbers JavaScript gives each key string; decisions go back as codes
//! (`Decision`'s values).

use std::cell::RefCell;
use std::rc::Rc;

use napi::Result;
use napi_derive::napi;
use velo_core::limiter::{Decision, LimiterCore, Limits, Rate, Tenant};

use crate::slab::Slab;

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
    pub refunded: f64,
    pub rejected: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub rate: f64,
    pub keys: f64,
    pub oldest_wait_ms: f64,
}

/// One key's line (`LimiterCore::waiting_keys`).
#[napi(object, object_from_js = false)]
pub struct NativeKeyWait {
    pub key: u32,
    pub waiting: f64,
    pub held: f64,
    pub oldest_wait_ms: f64,
}

/// The wait histogram since creation at chosen bounds (µs), for exporters.
#[napi(object, object_from_js = false)]
pub struct NativeLimiterWaits {
    pub count: f64,
    pub sum_us: f64,
    /// Cumulative counts at each bound, in the bounds' order.
    pub counts: Vec<f64>,
}

/// A limiter's state, shared by its `NativeLimiter` (through the table) and the task stages that take its permits
/// in their own calls ([`TaskPermits`]).
type SharedCore = Rc<RefCell<LimiterCore>>;

thread_local! {
    /// The limiters of this thread, by handle: the per-permit entry points (`limiterTry`, `limiterRelease` in
    /// `exports.stream`, raw N-API callbacks: `raw.rs`) find them by a number, as the per-event ones find streams.
    static LIMITERS: RefCell<Slab<SharedCore>> = RefCell::new(Slab::new());
}

fn stale() -> napi::Error {
    napi::Error::from_reason("velo-stream: no such limiter (stale handle)")
}

/// Runs `f` on the limiter behind `handle`.
pub(crate) fn with<R>(handle: f64, f: impl FnOnce(&mut LimiterCore) -> R) -> Result<R> {
    LIMITERS.with(|l| {
        let mut slab = l.borrow_mut();
        let core = slab.get_mut(handle).ok_or_else(stale)?;
        let mut core = core.borrow_mut();
        Ok(f(&mut core))
    })
}

/// `limiterTry` (raw N-API, `raw.rs`): a permit now (`Decision` 1: held until released) or -1.
pub(crate) fn try_now(handle: f64, key: f64, cost: f64, now_ms: f64) -> Result<i32> {
    with(handle, |core| {
        core.try_acquire(key as u32, cost as u64, us(now_ms))
            .map_or(-1, |d| d as i32)
    })
}

/// `limiterRelease` (raw N-API): a held permit comes back; how many waiters are decided (see `takeDecided`).
pub(crate) fn release_now(handle: f64, key: f64, now_ms: f64) -> Result<u32> {
    with(handle, |core| core.release(key as u32, us(now_ms)) as u32)
}

/// The permits of one limiter that a task stage's calls hold (`taskInit`'s `limiter`, `task_state.rs`): taken as
/// calls start (`taskStart`) and given back as they settle (`taskSettle`, `taskSettleDone`), inside the native calls
/// the task window makes anyway, so a permit granted at once costs no crossing of its own. Each grant and release
/// is the limiter core's decision, as `limiterTry` and `limiterRelease` ask it (key 0, cost 1: `js/limits/use.ts`
/// gives only a limiter without `key`, `cost`, `fairness` and `priority`).
pub(crate) struct TaskPermits {
    core: SharedCore,
    /// Whether the call in each slot holds a permit.
    held: Vec<bool>,
}

impl TaskPermits {
    /// The permits of the limiter behind `handle`.
    pub(crate) fn new(handle: f64) -> Result<Self> {
        let core = LIMITERS.with(|l| l.borrow_mut().get_mut(handle).cloned());
        Ok(TaskPermits {
            core: core.ok_or_else(stale)?,
            held: Vec::new(),
        })
    }

    /// A permit for each call starting in `slots`, in order, until one is refused (`now_ms` on the limiter's clock):
    /// how many were granted (the first ones).
    pub(crate) fn take(&mut self, slots: &[u32], now_ms: f64) -> usize {
        let granted = self
            .core
            .borrow_mut()
            .try_acquire_n(0, 1, slots.len(), us(now_ms));
        for &slot in &slots[..granted] {
            let slot = slot as usize;
            if slot >= self.held.len() {
                self.held.resize(slot + 1, false);
            }
            self.held[slot] = true;
        }
        granted
    }

    /// The calls in `slots` settled: the permits they hold come back, together (`now_ms` on the limiter's clock).
    pub(crate) fn give_back(&mut self, slots: &[u32], now_ms: f64) {
        let mut back = 0;
        for &slot in slots {
            if let Some(held) = self.held.get_mut(slot as usize) {
                back += u64::from(std::mem::take(held));
            }
        }
        if back > 0 {
            self.core.borrow_mut().release_n(0, back, us(now_ms));
        }
    }

    /// Whether any call holds a permit.
    pub(crate) fn any_held(&self) -> bool {
        self.held.contains(&true)
    }
}

impl Drop for TaskPermits {
    /// The stage's stream is freed (collected with a call that never settled): its permits come back, as a dead
    /// holder's do. Its line is not served here, where the limiter's clock is not known: the stream's finalizer
    /// asks the limiter to serve it next (`WindowPermits.collected` in `js/limits/local.ts`). Nothing is done while
    /// the core is in use (a collection inside a limiter call).
    fn drop(&mut self) {
        let Ok(mut core) = self.core.try_borrow_mut() else {
            return;
        };
        let back = self.held.iter().filter(|&&h| h).count();
        core.give_back(0, back as u64);
    }
}

/// One in-process limiter (its state in this thread's table, by `handle`): everything but the per-permit calls.
#[napi]
pub struct NativeLimiter {
    handle: f64,
}

impl Drop for NativeLimiter {
    fn drop(&mut self) {
        // Taken out first and dropped after the borrow ends.
        let taken = LIMITERS.with(|l| l.borrow_mut().remove(self.handle));
        drop(taken);
    }
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
    ) -> Result<Self> {
        let core = Rc::new(RefCell::new(LimiterCore::new(
            limits(concurrency, rate_limit, rate_period_ms, rate_burst),
            reject,
            max_waiting as usize,
        )));
        let handle = LIMITERS
            .with(|l| l.borrow_mut().insert(core))
            .map_err(|_| {
                napi::Error::from_reason("velo-stream: too many limiters on one thread")
            })?;
        Ok(NativeLimiter { handle })
    }

    /// Its handle for `stream.limiterTry` and `stream.limiterRelease`.
    #[napi(getter)]
    pub fn handle(&self) -> f64 {
        self.handle
    }

    /// A `Decision` code: 0/1 granted (1: holds a slot to release), 2 queued as waiter `id`, 3..6 refused.
    #[napi(catch_unwind)]
    pub fn acquire(&self, key: u32, cost: f64, id: f64, now_ms: f64) -> Result<u32> {
        with(self.handle, |core| {
            core.acquire(key, cost as u64, id as u64, us(now_ms)) as u32
        })
    }

    /// `acquire` for a waiter of tenant number `tenant` (weight `weight`, a whole number >= 1, checked by the
    /// embedder) and `priority` (an integer, checked by the embedder): if it waits, it goes before every waiter
    /// of a lower priority, and its key's line serves tenants by share, then by turns, within a priority.
    #[napi(catch_unwind)]
    #[allow(clippy::too_many_arguments)]
    pub fn acquire_fair(
        &self,
        key: u32,
        cost: f64,
        id: f64,
        tenant: u32,
        weight: f64,
        priority: i32,
        now_ms: f64,
    ) -> Result<u32> {
        let tenant = Tenant {
            id: tenant,
            weight: weight as u64,
        };
        with(self.handle, |core| {
            core.acquire_as(key, cost as u64, id as u64, tenant, priority, us(now_ms)) as u32
        })
    }

    /// Undoes a grant of `cost` on `key` just made and never used: its permit and its rate units come back, and it
    /// counts as refunded (still admitted); the count of waiters decided.
    #[napi(catch_unwind)]
    pub fn refund(&self, key: u32, cost: f64, now_ms: f64) -> Result<u32> {
        with(self.handle, |core| {
            core.refund(key, cost as u64, us(now_ms)) as u32
        })
    }

    /// Takes waiter `id` out of line; true if it was waiting.
    #[napi(catch_unwind)]
    pub fn cancel(&self, id: f64, now_ms: f64) -> Result<bool> {
        with(self.handle, |core| core.cancel(id as u64, us(now_ms)))
    }

    /// Grants what the rate allows by now; the count of waiters decided.
    #[napi(catch_unwind)]
    pub fn poll(&self, now_ms: f64) -> Result<u32> {
        with(self.handle, |core| core.poll(us(now_ms)) as u32)
    }

    /// New limits (0: none); the count of waiters decided.
    #[napi(catch_unwind)]
    pub fn set_limits(
        &self,
        concurrency: f64,
        rate_limit: f64,
        rate_period_ms: f64,
        rate_burst: f64,
        now_ms: f64,
    ) -> Result<u32> {
        let limits = limits(concurrency, rate_limit, rate_period_ms, rate_burst);
        with(self.handle, |core| {
            core.set_limits(limits, us(now_ms)) as u32
        })
    }

    /// Refuses new acquires and every waiter; the count of waiters decided.
    #[napi(catch_unwind)]
    pub fn close(&self) -> Result<u32> {
        with(self.handle, |core| core.close() as u32)
    }

    /// The waiters decided, as `[id, code, id, code, ...]`.
    #[napi(catch_unwind)]
    pub fn take_decided(&self) -> Result<Vec<f64>> {
        with(self.handle, |core| {
            let mut out = Vec::new();
            for (id, d) in core.take_decided() {
                out.push(id as f64);
                out.push(f64::from(d as u8));
            }
            out
        })
    }

    /// When a rate-blocked waiter may be granted (ms on the caller's clock), or -1.
    #[napi(catch_unwind)]
    pub fn wake_at(&self) -> Result<f64> {
        with(self.handle, |core| {
            core.wake_at().map_or(-1.0, |t| t as f64 / 1000.0)
        })
    }

    /// How long until the rate could grant `cost` on `key` (ms), when the rate alone holds it back; -1 when
    /// that is not known (a full concurrency, no rate, a waiter in line, closed).
    #[napi(catch_unwind)]
    pub fn retry_after(&self, key: u32, cost: f64, now_ms: f64) -> Result<f64> {
        with(self.handle, |core| {
            core.retry_after(key, cost as u64, us(now_ms))
                .map_or(-1.0, |t| t as f64 / 1000.0)
        })
    }

    /// Forgets rested keys that hold and wait for nothing; their numbers.
    #[napi(catch_unwind)]
    pub fn sweep(&self, now_ms: f64) -> Result<Vec<u32>> {
        with(self.handle, |core| core.sweep(us(now_ms)))
    }

    #[napi(catch_unwind)]
    pub fn stats(&self, now_ms: f64) -> Result<NativeLimiterStats> {
        let s = with(self.handle, |core| core.stats(us(now_ms)))?;
        Ok(NativeLimiterStats {
            in_use: s.in_use as f64,
            waiting: s.waiting as f64,
            admitted: s.admitted as f64,
            refunded: s.refunded as f64,
            rejected: s.rejected as f64,
            p50_ms: s.p50_us as f64 / 1000.0,
            p99_ms: s.p99_us as f64 / 1000.0,
            rate: s.rate_per_s,
            keys: s.keys as f64,
            oldest_wait_ms: s.oldest_wait_us as f64 / 1000.0,
        })
    }

    /// The `n` keys waiting longest (their longest-waiting waiter), most first.
    #[napi(catch_unwind)]
    pub fn waiting_keys(&self, n: u32, now_ms: f64) -> Result<Vec<NativeKeyWait>> {
        let keys = with(self.handle, |core| {
            core.waiting_keys(n as usize, us(now_ms))
        })?;
        Ok(keys
            .into_iter()
            .map(|k| NativeKeyWait {
                key: k.key,
                waiting: k.waiting as f64,
                held: k.held as f64,
                oldest_wait_ms: k.oldest_wait_us as f64 / 1000.0,
            })
            .collect())
    }

    /// Waits since creation at `bounds_us` (ascending), for exporters.
    #[napi(catch_unwind)]
    pub fn waits(&self, bounds_us: Vec<f64>, now_ms: f64) -> Result<NativeLimiterWaits> {
        let bounds: Vec<u64> = bounds_us.iter().map(|&b| b as u64).collect();
        let snap = with(self.handle, |core| core.waits(us(now_ms)).snapshot(&bounds))?;
        Ok(NativeLimiterWaits {
            count: snap.count as f64,
            sum_us: snap.sum_us as f64,
            counts: snap.buckets.iter().map(|&(_, n)| n as f64).collect(),
        })
    }
}

// The codes JavaScript compares with (`Decision` in velo-core).
const _: () = {
    assert!(Decision::GrantedHeld as u8 == 1 && Decision::Queued as u8 == 2);
    assert!(Decision::Limited as u8 == 3 && Decision::QueueFull as u8 == 4);
    assert!(Decision::TooCostly as u8 == 5 && Decision::Closed as u8 == 6);
};
