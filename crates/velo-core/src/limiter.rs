//! An in-process limiter's decisions: concurrency permits per key, a GCRA
//! rate per key, and each key's waiting line.
//!
//! Everything here is a pure function of the calls made and the time passed
//! in (microseconds on any monotonic clock): no clock is read, no timer is
//! armed. The embedder (in Node, `js/limits/local.ts`) keeps the promises of
//! the waiters, calls [`LimiterCore::poll`] when [`LimiterCore::wake_at`]
//! says a rate-blocked waiter may go, and settles the waiters the core
//! decided ([`LimiterCore::take_decided`]).
//!
//! # Semantics
//! - A permit counts 1 against `concurrency` (while held) and `cost` units
//!   against the rate (when granted). Every permit is held from its grant to
//!   its release, whatever the limits are meanwhile: one granted while the
//!   limiter had no concurrency limit still counts when `set_limits` brings
//!   one (back), so a limit restored or lowered grants nothing until the
//!   permits held fall below it.
//! - Keys are independent: each has its own permit count, its own GCRA state
//!   and its own line. Within a key the line is strictly first come, first
//!   served: a waiter is granted only once every earlier waiter of its key is.
//!   With fairness ([`LimiterCore::acquire_as`] with tenants), a key's line
//!   serves first the tenants under their share of its recent grants (in
//!   arrival order), else weighted round robin across tenants, first come
//!   first served within a tenant; with priorities (the same call), a waiter of a higher priority
//!   goes before every waiter of a lower one ([`line`] states the rule and its
//!   bound).
//! - GCRA, exactly (integer arithmetic, time scaled by the rate's limit): a
//!   grant of `cost` at `t` is allowed when `max(tat, t) + cost * T - t <=
//!   burst * T` (`T = period / limit`), so over any time `w` from a rested
//!   key at most `burst + floor(w / T)` units are granted.
//! - A cost above the burst can never be granted: refused
//!   ([`Decision::TooCostly`]) rather than queued for ever.
//! - Any call on a key first grants what its line may take by then; `poll`
//!   does so for every key.

mod line;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::histogram::Histogram;
use line::{Line, Waiter};

/// A GCRA rate: at most `limit` units per `period_us`, `burst` of them at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Units per period (at least 1).
    pub limit: u64,
    /// The period, µs (at least 1).
    pub period_us: u64,
    /// Units usable at once (at least 1).
    pub burst: u64,
}

/// What a limiter allows (at least one of the two, checked by the embedder).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Permits held at once, per key.
    pub concurrency: Option<u64>,
    /// Units per period, per key.
    pub rate: Option<Rate>,
}

/// An acquire's answer, or a waiter's final one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Decision {
    /// Granted: the permit is held until released (it counts against a concurrency limit, one set later too).
    /// (Code 0, a permit that held nothing, is no longer given: every permit is held.)
    GrantedHeld = 1,
    /// In line (throttle mode): decided later.
    Queued = 2,
    /// Refused in reject mode: no permit now (counted as rejected).
    Limited = 3,
    /// Refused: the line is full (counted as rejected).
    QueueFull = 4,
    /// Refused: the cost exceeds the burst, so it could never be granted (counted as rejected).
    TooCostly = 5,
    /// Refused: the limiter is closed.
    Closed = 6,
}

/// Keys and waiter ids are small numbers the embedder hands out: a multiplicative hash is enough (SipHash, the
/// default, was a tenth of a permit's cost, callgrind).
#[derive(Default)]
struct NumberHasher(u64);

impl Hasher for NumberHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

type NumberMap<K, V> = HashMap<K, V, BuildHasherDefault<NumberHasher>>;

/// A waiter's tenant: who it shares its key's grants with, and its weight (its share, and its grants per turn).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tenant {
    /// The embedder's number for the tenant (all waiters of one tenant: one number).
    pub id: u32,
    /// Grants per turn (at least 1; taken when the tenant starts waiting).
    pub weight: u64,
}

impl Tenant {
    /// Everyone, without fairness: one tenant, so the line is first come, first served.
    pub const ALL: Tenant = Tenant { id: 0, weight: 1 };
}

#[derive(Debug, Default)]
struct KeyState {
    held: u64,
    /// Theoretical arrival time, in µs × the rate's limit (0: rested).
    tat: u128,
    line: Line,
}

/// One limiter's state: every key's permits, GCRA state and line.
pub struct LimiterCore {
    limits: Limits,
    reject: bool,
    max_waiting: usize,
    /// Every key's state; a rested key's stays until `sweep` (the embedder sweeps as its keys grow), so a key in
    /// steady use is not made and dropped at every permit.
    keys: NumberMap<u32, KeyState>,
    /// Which key (and tenant and priority) each waiter is in the line of.
    waiter_key: NumberMap<u64, (u32, u32, i32)>,
    waiting: usize,
    in_use: u64,
    admitted: u64,
    /// Grants given back unused ([`Self::refund`]); counted in `admitted` too, which only grows.
    refunded: u64,
    rejected: u64,
    closed: bool,
    decided: Vec<(u64, Decision)>,
    /// Waits of granted waiters (µs), since creation, and over the current and previous minute.
    waits: Histogram,
    recent: [Histogram; 2],
    recent_start: u64,
    /// Grants without a wait not yet recorded in `waits` (recorded in bulk when read).
    unrecorded_immediate: u64,
    /// Units granted in the current and previous rate window.
    units: [u64; 2],
    units_start: u64,
    /// How many of a level's last grants its fairness counts shares over ([`line`]).
    fair_window: usize,
}

/// How many of a line level's last grants fairness counts tenants' shares over, unless set otherwise.
pub const FAIR_WINDOW: usize = 512;

const RECENT_US: u64 = 60_000_000;

impl LimiterCore {
    /// A limiter; `reject` refuses the excess instead of queueing it (at most `max_waiting` wait).
    pub fn new(limits: Limits, reject: bool, max_waiting: usize) -> Self {
        LimiterCore {
            limits,
            reject,
            max_waiting,
            keys: NumberMap::default(),
            waiter_key: NumberMap::default(),
            waiting: 0,
            in_use: 0,
            admitted: 0,
            refunded: 0,
            rejected: 0,
            closed: false,
            decided: Vec::new(),
            waits: Histogram::default(),
            recent: [Histogram::default(), Histogram::default()],
            recent_start: 0,
            unrecorded_immediate: 0,
            units: [0, 0],
            units_start: 0,
            fair_window: FAIR_WINDOW,
        }
    }

    /// Sets how many of a line level's last grants fairness counts tenants' shares over (0: none, so tenants are
    /// served by turns only). For tests and tuning; [`FAIR_WINDOW`] by default.
    pub fn set_fair_window(&mut self, window: usize) {
        self.fair_window = window;
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Asks for a permit of `cost` units on `key` for waiter `id` (used only if it waits), first come first served.
    pub fn acquire(&mut self, key: u32, cost: u64, id: u64, now_us: u64) -> Decision {
        self.acquire_as(key, cost, id, Tenant::ALL, 0, now_us)
    }

    /// [`Self::acquire`] for a waiter of `tenant` and `priority`: if it waits, it goes before every waiter of a
    /// lower priority, and is served fairly across the key's tenants within its own ([`line`]).
    pub fn acquire_as(
        &mut self,
        key: u32,
        cost: u64,
        id: u64,
        tenant: Tenant,
        priority: i32,
        now_us: u64,
    ) -> Decision {
        if self.closed {
            return Decision::Closed;
        }
        if self.too_costly(cost) {
            self.rejected += 1;
            return Decision::TooCostly;
        }
        if self.keys.get(&key).is_some_and(|s| !s.line.is_empty()) {
            self.pump_key(key, now_us);
        }
        let state = self.keys.entry(key).or_default();
        if state.line.is_empty() && Self::allows(&self.limits, state, cost, now_us) {
            let d = Self::grant(&self.limits, state, cost, now_us);
            self.in_use += 1;
            self.admitted += 1;
            self.unrecorded_immediate += 1;
            self.count_units(cost, now_us);
            return d;
        }
        if self.reject {
            self.rejected += 1;
            return Decision::Limited;
        }
        if self.waiting >= self.max_waiting {
            self.rejected += 1;
            return Decision::QueueFull;
        }
        state.line.push_back(
            Waiter {
                id,
                cost,
                since_us: now_us,
                tenant: tenant.id,
                priority,
                arrival: 0,
            },
            tenant.weight,
        );
        self.waiter_key.insert(id, (key, tenant.id, priority));
        self.waiting += 1;
        Decision::Queued
    }

    /// A permit now, or `None`: never waits, never jumps the line, never counts as rejected.
    pub fn try_acquire(&mut self, key: u32, cost: u64, now_us: u64) -> Option<Decision> {
        if self.closed || self.too_costly(cost) {
            return None;
        }
        let state = self.keys.entry(key).or_default();
        if !state.line.is_empty() || !Self::allows(&self.limits, state, cost, now_us) {
            return None;
        }
        let d = Self::grant(&self.limits, state, cost, now_us);
        self.in_use += 1;
        self.admitted += 1;
        self.unrecorded_immediate += 1;
        self.count_units(cost, now_us);
        Some(d)
    }

    /// Up to `n` permits of `cost` on `key` now, each decided as [`Self::try_acquire`] decides (so `n` calls of it
    /// in a row, stopping at the first refusal, grant the same): how many were granted. For an embedder that starts
    /// several calls at once (a task stage's window), in one lookup of the key.
    pub fn try_acquire_n(&mut self, key: u32, cost: u64, n: usize, now_us: u64) -> usize {
        if n == 0 || self.closed || self.too_costly(cost) {
            return 0;
        }
        let state = self.keys.entry(key).or_default();
        if !state.line.is_empty() {
            return 0;
        }
        let mut granted = 0;
        while granted < n && Self::allows(&self.limits, state, cost, now_us) {
            Self::grant(&self.limits, state, cost, now_us);
            granted += 1;
        }
        let g = granted as u64;
        self.in_use += g;
        self.admitted += g;
        self.unrecorded_immediate += g;
        if g > 0 {
            self.count_units(cost.saturating_mul(g), now_us);
        }
        granted
    }

    /// Gives back a permit of `key` (every permit is held until this call); its line may move (see [`Self::take_decided`]).
    pub fn release(&mut self, key: u32, now_us: u64) -> usize {
        self.release_n(key, 1, now_us)
    }

    /// Gives back `n` permits of `key` at once: the same as `n` calls of [`Self::release`] in a row (its line is
    /// granted what may go once they are all back, which is what the calls one by one would grant, in the same
    /// order).
    pub fn release_n(&mut self, key: u32, n: u64, now_us: u64) -> usize {
        if n == 0 {
            return self.decided.len();
        }
        if !self.give_back(key, n) {
            return 0;
        }
        if self.keys[&key].line.is_empty() {
            return self.decided.len();
        }
        self.pump_key(key, now_us)
    }

    /// Undoes a grant of `cost` on `key` made at `now_us` and never used (an open that a later limiter refused): its
    /// permit comes back, and the rate its units, as if it had not been asked. It stays counted in `admitted` (a
    /// counter never goes down; its wait stays in the histogram) and is counted in `refunded`. Made at once after the
    /// grant, it leaves the key as it was, and grants made in between keep theirs (each grant moves the key's rate
    /// state on by its own units). How many waiters are decided.
    pub fn refund(&mut self, key: u32, cost: u64, now_us: u64) -> usize {
        if let (Some(r), Some(state)) = (self.limits.rate, self.keys.get_mut(&key)) {
            // (A key rested before the grant is back at or below the time then: as rested, since a rate reads
            // `max(tat, now)`.)
            state.tat = state
                .tat
                .saturating_sub(u128::from(r.period_us) * u128::from(cost));
            self.units[0] = self.units[0].saturating_sub(cost);
        }
        self.refunded += 1;
        self.release_n(key, 1, now_us)
    }

    /// Gives back `n` permits of `key` without serving its line: for a holder freed where the time is not known
    /// (a task stage's stream collected); the next [`Self::poll`] serves the line. False if `key` has no state.
    pub fn give_back(&mut self, key: u32, n: u64) -> bool {
        let Some(state) = self.keys.get_mut(&key) else {
            return false;
        };
        let back = n.min(state.held);
        state.held -= back;
        self.in_use -= back;
        true
    }

    /// Takes waiter `id` out of its line (its acquire was aborted); true if it was waiting.
    pub fn cancel(&mut self, id: u64, now_us: u64) -> bool {
        let Some((key, tenant, priority)) = self.waiter_key.remove(&id) else {
            return false;
        };
        let state = self.keys.get_mut(&key).expect("a waiter's key has a state");
        if state.line.remove(id, tenant, priority) {
            self.waiting -= 1;
        }
        // The head may have been what held the rest back.
        self.pump_key(key, now_us);
        true
    }

    /// Grants every key's line what it may take by `now_us` (a rate-blocked waiter's time came).
    pub fn poll(&mut self, now_us: u64) -> usize {
        let keys: Vec<u32> = self
            .keys
            .iter()
            .filter(|(_, s)| !s.line.is_empty())
            .map(|(&k, _)| k)
            .collect();
        for key in keys {
            self.pump_key(key, now_us);
        }
        self.decided.len()
    }

    /// New limits; every waiter is decided again at once (a cost above the new burst is refused).
    pub fn set_limits(&mut self, limits: Limits, now_us: u64) -> usize {
        let old = self.limits;
        for state in self.keys.values_mut() {
            state.tat = match (old.rate, limits.rate) {
                (Some(o), Some(n)) if o.limit != n.limit => {
                    (state.tat * u128::from(n.limit)).div_ceil(u128::from(o.limit))
                }
                (Some(_), Some(_)) => state.tat,
                _ => 0,
            };
        }
        self.limits = limits;
        if let Some(rate) = limits.rate {
            for state in self.keys.values_mut() {
                let gone = state.line.retain(|w| w.cost <= rate.burst);
                let refused = gone.len();
                for w in gone {
                    self.decided.push((w.id, Decision::TooCostly));
                }
                self.waiting -= refused;
                self.rejected += refused as u64;
            }
            for &(id, _) in &self.decided {
                self.waiter_key.remove(&id);
            }
        }
        self.poll(now_us)
    }

    /// Refuses new acquires and every waiter ([`Decision::Closed`]).
    pub fn close(&mut self) -> usize {
        self.closed = true;
        for state in self.keys.values_mut() {
            for w in state.line.drain() {
                self.decided.push((w.id, Decision::Closed));
            }
        }
        self.waiter_key.clear();
        self.waiting = 0;
        self.decided.len()
    }

    /// The waiters decided since the last call, in the order decided (granted, or refused).
    pub fn take_decided(&mut self) -> Vec<(u64, Decision)> {
        std::mem::take(&mut self.decided)
    }

    /// When the earliest rate-blocked line head may be granted (µs), if any waits on the rate.
    pub fn wake_at(&self) -> Option<u64> {
        let rate = self.limits.rate?;
        let mut at: Option<u64> = None;
        for state in self.keys.values() {
            let Some(head) = state.line.front() else {
                continue;
            };
            if let Some(c) = self.limits.concurrency {
                if state.held >= c {
                    continue; // a release moves it
                }
            }
            // max(tat, tL) + P*cost - tL <= P*burst  <=>  tL >= tat + P*(cost - burst)
            let need = (state.tat + u128::from(rate.period_us) * u128::from(head.cost))
                .saturating_sub(u128::from(rate.period_us) * u128::from(rate.burst));
            let t = u64::try_from(need.div_ceil(u128::from(rate.limit))).unwrap_or(u64::MAX);
            at = Some(at.map_or(t, |a| a.min(t)));
        }
        at
    }

    /// How long from `now_us` until the rate could grant `cost` on `key` (µs), when the rate alone holds it back:
    /// the wait a refused acquire ([`Decision::Limited`]) can tell its caller. `None` when the wait is not known
    /// from the limits (the key's concurrency is full: a release frees it; its line is not empty; no rate; a cost
    /// above the burst; closed), and `Some(0)` when a permit could be granted now. Changes nothing.
    pub fn retry_after(&self, key: u32, cost: u64, now_us: u64) -> Option<u64> {
        let rate = self.limits.rate?;
        if self.closed || self.too_costly(cost) {
            return None;
        }
        let (tat, held, waiting) = self
            .keys
            .get(&key)
            .map_or((0, 0, false), |s| (s.tat, s.held, !s.line.is_empty()));
        if waiting || self.limits.concurrency.is_some_and(|c| held >= c) {
            return None;
        }
        // As `wake_at`: granted at tL >= tat + P*(cost - burst), in time scaled by the limit.
        let need = (tat + u128::from(rate.period_us) * u128::from(cost))
            .saturating_sub(u128::from(rate.period_us) * u128::from(rate.burst));
        let at = u64::try_from(need.div_ceil(u128::from(rate.limit))).unwrap_or(u64::MAX);
        Some(at.saturating_sub(now_us))
    }

    /// Forgets the state of keys that hold nothing, wait for nothing and are rested; returns them.
    pub fn sweep(&mut self, now_us: u64) -> Vec<u32> {
        let limit = self.limits.rate.map_or(1, |r| u128::from(r.limit));
        let now = u128::from(now_us) * limit;
        let mut gone = Vec::new();
        self.keys.retain(|&k, s| {
            let keep = s.held > 0 || !s.line.is_empty() || s.tat > now;
            if !keep {
                gone.push(k);
            }
            keep
        });
        gone
    }

    /// The `n` keys whose longest-waiting waiter has waited longest at `now_us` (most first, then by key): each
    /// key's waiters, permits held and that wait.
    pub fn waiting_keys(&self, n: usize, now_us: u64) -> Vec<KeyWait> {
        let mut out: Vec<KeyWait> = self
            .keys
            .iter()
            .filter_map(|(&key, s)| {
                s.line.oldest_since().map(|since| KeyWait {
                    key,
                    waiting: s.line.len() as u64,
                    held: s.held,
                    oldest_wait_us: now_us.saturating_sub(since),
                })
            })
            .collect();
        out.sort_by(|a, b| {
            b.oldest_wait_us
                .cmp(&a.oldest_wait_us)
                .then(a.key.cmp(&b.key))
        });
        out.truncate(n);
        out
    }

    /// Its figures at `now_us`.
    pub fn stats(&mut self, now_us: u64) -> LimiterStats {
        self.flush_immediate(now_us);
        // The current minute, or the previous one while the current has no records yet.
        let recent = if self.recent[0].percentile(1.0) == 0 && self.recent[1].percentile(1.0) > 0 {
            &self.recent[1]
        } else {
            &self.recent[0]
        };
        let (p50_us, p99_us) = (recent.percentile(0.5), recent.percentile(0.99));
        let period = self.limits.rate.map_or(1_000_000, |r| r.period_us).max(1);
        self.roll_units(now_us, period);
        let elapsed = now_us.saturating_sub(self.units_start).min(period);
        let prev_share = self.units[1] as f64 * (period - elapsed) as f64 / period as f64;
        LimiterStats {
            in_use: self.in_use,
            waiting: self.waiting as u64,
            admitted: self.admitted,
            refunded: self.refunded,
            rejected: self.rejected,
            p50_us,
            p99_us,
            rate_per_s: (self.units[0] as f64 + prev_share) * 1e6 / period as f64,
            keys: self
                .keys
                .values()
                .filter(|s| s.held > 0 || !s.line.is_empty())
                .count() as u64,
            oldest_wait_us: self
                .keys
                .values()
                .filter_map(|s| s.line.oldest_since())
                .min()
                .map_or(0, |since| now_us.saturating_sub(since)),
        }
    }

    /// The waits of every grant since creation (a grant without a wait counts 0).
    pub fn waits(&mut self, now_us: u64) -> &Histogram {
        self.flush_immediate(now_us);
        &self.waits
    }

    fn flush_immediate(&mut self, now_us: u64) {
        self.roll_recent(now_us);
        let n = std::mem::take(&mut self.unrecorded_immediate);
        self.waits.record_n(0, n);
        self.recent[0].record_n(0, n);
    }

    fn roll_recent(&mut self, now_us: u64) {
        if now_us.saturating_sub(self.recent_start) >= RECENT_US {
            self.recent[1] = std::mem::take(&mut self.recent[0]);
            self.recent_start = now_us;
        }
    }

    fn roll_units(&mut self, now_us: u64, period: u64) {
        let gone = now_us.saturating_sub(self.units_start);
        if gone >= 2 * period {
            self.units = [0, 0];
            self.units_start = now_us;
        } else if gone >= period {
            self.units = [0, self.units[0]];
            self.units_start += period;
        }
    }

    fn count_units(&mut self, cost: u64, now_us: u64) {
        let period = self.limits.rate.map_or(1_000_000, |r| r.period_us).max(1);
        self.roll_units(now_us, period);
        self.units[0] += cost;
    }

    fn too_costly(&self, cost: u64) -> bool {
        self.limits.rate.is_some_and(|r| cost > r.burst)
    }

    fn allows(limits: &Limits, state: &KeyState, cost: u64, now_us: u64) -> bool {
        if let Some(c) = limits.concurrency {
            if state.held >= c {
                return false;
            }
        }
        if let Some(r) = limits.rate {
            let now = u128::from(now_us) * u128::from(r.limit);
            let next = state.tat.max(now) + u128::from(r.period_us) * u128::from(cost);
            if next - now > u128::from(r.period_us) * u128::from(r.burst) {
                return false;
            }
        }
        true
    }

    fn grant(limits: &Limits, state: &mut KeyState, cost: u64, now_us: u64) -> Decision {
        if let Some(r) = limits.rate {
            let now = u128::from(now_us) * u128::from(r.limit);
            state.tat = state.tat.max(now) + u128::from(r.period_us) * u128::from(cost);
        }
        // Held whatever the limits: a concurrency limit set while it is held counts it.
        state.held += 1;
        Decision::GrantedHeld
    }

    /// Grants the heads of `key`'s line while they may go; the count of waiters decided so far.
    fn pump_key(&mut self, key: u32, now_us: u64) -> usize {
        if self.keys.get(&key).is_some_and(|s| !s.line.is_empty()) {
            let mut state = self.keys.remove(&key).expect("checked above");
            while let Some(head) = state.line.front() {
                if !Self::allows(&self.limits, &state, head.cost, now_us) {
                    break;
                }
                let w = state.line.pop_front(self.fair_window).expect("a head");
                let d = Self::grant(&self.limits, &mut state, w.cost, now_us);
                self.in_use += 1;
                self.admitted += 1;
                self.waiting -= 1;
                let waited = now_us.saturating_sub(w.since_us);
                self.roll_recent(now_us);
                self.waits.record(waited);
                self.recent[0].record(waited);
                self.count_units(w.cost, now_us);
                self.waiter_key.remove(&w.id);
                self.decided.push((w.id, d));
            }
            self.keys.insert(key, state);
        }
        self.decided.len()
    }
}

/// A limiter's figures (see `LimiterStats` in `js/limits/types.ts`).
#[derive(Debug, Clone, PartialEq)]
pub struct LimiterStats {
    /// Permits held (all keys).
    pub in_use: u64,
    /// Waiters in line (all keys).
    pub waiting: u64,
    /// Permits granted since creation (it only grows).
    pub admitted: u64,
    /// Of those, the ones given back unused ([`LimiterCore::refund`]); `admitted - refunded` were used.
    pub refunded: u64,
    /// Acquires refused (limited, full line, too costly).
    pub rejected: u64,
    /// Median wait of recent grants, µs.
    pub p50_us: u64,
    /// 99th percentile wait of recent grants, µs.
    pub p99_us: u64,
    /// Units granted per second over about the last period.
    pub rate_per_s: f64,
    /// Keys holding a permit or a waiter.
    pub keys: u64,
    /// How long the longest-waiting waiter (all keys) has waited, µs (0: none waits).
    pub oldest_wait_us: u64,
}

/// One key's line, as [`LimiterCore::waiting_keys`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyWait {
    /// The embedder's number for the key.
    pub key: u32,
    /// Waiters in its line.
    pub waiting: u64,
    /// Permits it holds.
    pub held: u64,
    /// How long its longest-waiting waiter has waited, µs.
    pub oldest_wait_us: u64,
}
