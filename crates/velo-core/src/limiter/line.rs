//! One key's waiting line: waiters of a higher priority first; within a
//! priority, tenants under their share of the recent grants first (oldest
//! waiter first among them), else weighted round robin across tenants; first
//! come, first served within a tenant.
//!
//! Without fairness every waiter is of tenant 0, weight 1: one tenant, never
//! under its share, so the line is plain first come, first served (the same
//! order as a `VecDeque`). Without priorities every waiter is of priority 0:
//! one level.
//!
//! # The rule
//! The line's head is the head of its highest priority with a waiter: a
//! waiter of a higher priority goes before every waiter of a lower one, even
//! one that came earlier (a lower priority waits while a higher one waits).
//!
//! Within one priority, the level keeps the tenants of its last `window`
//! grants (the *recent* grants; `window` is the limiter's, 512 by default),
//! for as long as the level has a waiter (a level whose last waiter leaves is
//! gone, with its recent grants). With `G` recent grants, `c` of them of a
//! tenant of weight `w`, and `W` the sum of the weights of the tenants that
//! wait in the level or have a recent grant (each once, with the weight it
//! last waited with), a waiting tenant is *under its share* when
//! `(c + 1) * W <= G * w`: one more grant keeps it within `w / W` of the
//! recent grants (so shares hold by weight, a heavy tenant's too).
//!
//! - If a waiting tenant is under its share, the head is the waiter that came
//!   first among the oldest waiters of the tenants under their share: a tenant
//!   that asks for less than its share (a calm one beside a hot one) is served
//!   in arrival order, as if the hot one were not there.
//! - Otherwise the level's round robin decides: tenants with a waiter are in a
//!   ring, in the order each last became active. The ring's front tenant is
//!   served: its oldest waiter is the head.
//! - Every grant (by share or by turn) uses one of its tenant's credits (it
//!   starts with `weight`); with none left the tenant goes to the back of the
//!   ring with `weight` credits again.
//! - A tenant whose last waiter of that priority leaves (granted, cancelled,
//!   refused) leaves the ring and comes back, when it waits again, at the back
//!   with full credits.
//!
//! No waiting tenant is starved. One granted nothing for `window` grants has
//! no recent grant (`c = 0`): from then on it is under its share whenever a
//! tenant of no greater weight with no more recent grants is, and it goes
//! before every waiter that came after its own; when no tenant is under its
//! share, the turns reach it within one round of the ring. Tenants that all
//! ask for more than their share get grants by weight.

use std::collections::VecDeque;

use super::NumberMap;

#[derive(Debug)]
pub(crate) struct Waiter {
    pub(crate) id: u64,
    pub(crate) cost: u64,
    pub(crate) since_us: u64,
    pub(crate) tenant: u32,
    pub(crate) priority: i32,
    /// Its place in its level's arrival order (set when it joins the line).
    pub(crate) arrival: u64,
}

#[derive(Debug, Default)]
struct TenantLine {
    weight: u64,
    credit: u64,
    waiters: VecDeque<Waiter>,
}

/// A tenant of a level's recent grants: how many it has, and the weight it last waited with.
#[derive(Debug, Clone, Copy)]
struct Share {
    grants: u64,
    weight: u64,
}

/// The waiters of one priority: tenants under their share first, else weighted round robin (the rule above).
#[derive(Debug, Default)]
struct Ring {
    tenants: NumberMap<u32, TenantLine>,
    /// Tenants with a waiter, in turn order; the front is served when no tenant is under its share.
    ring: VecDeque<u32>,
    len: usize,
    /// The tenant of each recent grant, oldest first (at most the window).
    recent: VecDeque<u32>,
    /// The tenants of the recent grants, with their counts there.
    shares: NumberMap<u32, Share>,
    /// `W`: the sum of the weights of the tenants that wait or have a recent grant.
    active_weight: u64,
    /// The next waiter's arrival number.
    arrivals: u64,
}

impl Ring {
    /// The tenant served next, and whether by share (else by the ring's turn).
    fn next_tenant(&self) -> Option<(u32, bool)> {
        let g = self.recent.len() as u64;
        if g > 0 {
            let mut best: Option<(u64, u32)> = None;
            for &t in &self.ring {
                let line = &self.tenants[&t];
                let c = self.shares.get(&t).map_or(0, |s| s.grants);
                if (c + 1) * self.active_weight <= g * line.weight {
                    let arrival = line.waiters.front().expect("a ring tenant waits").arrival;
                    if best.is_none_or(|(a, _)| arrival < a) {
                        best = Some((arrival, t));
                    }
                }
            }
            if let Some((_, t)) = best {
                return Some((t, true));
            }
        }
        self.ring.front().map(|&t| (t, false))
    }

    /// The waiter served next.
    fn front(&self) -> Option<&Waiter> {
        let (t, _) = self.next_tenant()?;
        self.tenants.get(&t).and_then(|l| l.waiters.front())
    }

    /// Puts `w` at the back of its tenant's line; a tenant new to the ring joins its back with `weight` credits
    /// (a waiting tenant keeps the weight it joined with).
    fn push_back(&mut self, mut w: Waiter, weight: u64) {
        let t = w.tenant;
        w.arrival = self.arrivals;
        self.arrivals += 1;
        let line = self.tenants.entry(t).or_default();
        if line.waiters.is_empty() {
            line.weight = weight.max(1);
            line.credit = line.weight;
            self.ring.push_back(t);
            // It counts in `W` with this weight from now on (once, if it has recent grants too).
            match self.shares.get_mut(&t) {
                Some(share) => {
                    self.active_weight = self.active_weight - share.weight + line.weight;
                    share.weight = line.weight;
                }
                None => self.active_weight += line.weight,
            }
        }
        line.waiters.push_back(w);
        self.len += 1;
    }

    /// Tenant `t` has no waiter left: it leaves the ring, and `W` unless it has recent grants.
    fn tenant_left(&mut self, t: u32) {
        let line = self.tenants.remove(&t).expect("a ring tenant has a line");
        if !self.shares.contains_key(&t) {
            self.active_weight -= line.weight;
        }
    }

    /// Records a grant of tenant `t` (weight `weight`) among the recent ones, the oldest leaving past `window`.
    fn record_grant(&mut self, t: u32, weight: u64, window: usize) {
        if window == 0 {
            return;
        }
        self.recent.push_back(t);
        let share = self.shares.entry(t).or_insert(Share { grants: 0, weight });
        share.grants += 1;
        if self.recent.len() > window {
            let old = self.recent.pop_front().expect("past the window");
            let share = self
                .shares
                .get_mut(&old)
                .expect("a recent tenant has a share");
            share.grants -= 1;
            if share.grants == 0 {
                let weight = share.weight;
                self.shares.remove(&old);
                if !self.tenants.contains_key(&old) {
                    self.active_weight -= weight;
                }
            }
        }
    }

    /// Takes the head (see the rule above), recording its grant among the last `window`.
    fn pop_front(&mut self, window: usize) -> Option<Waiter> {
        let (t, by_share) = self.next_tenant()?;
        let line = self.tenants.get_mut(&t).expect("a ring tenant has a line");
        let w = line.waiters.pop_front().expect("a ring tenant waits");
        let weight = line.weight;
        self.len -= 1;
        if line.waiters.is_empty() {
            // (Recorded first: it stays in `W` through its recent grant.)
            self.record_grant(t, weight, window);
            self.tenant_left(t);
            self.ring.retain(|&r| r != t);
            return Some(w);
        }
        line.credit -= 1;
        if line.credit == 0 {
            line.credit = line.weight;
            if by_share {
                self.ring.retain(|&r| r != t);
                self.ring.push_back(t);
            } else {
                self.ring.rotate_left(1);
            }
        }
        self.record_grant(t, weight, window);
        Some(w)
    }

    /// Takes waiter `id` of `tenant` out; true if it was there.
    fn remove(&mut self, id: u64, tenant: u32) -> bool {
        let Some(line) = self.tenants.get_mut(&tenant) else {
            return false;
        };
        let Some(at) = line.waiters.iter().position(|w| w.id == id) else {
            return false;
        };
        line.waiters.remove(at);
        self.len -= 1;
        if line.waiters.is_empty() {
            self.tenant_left(tenant);
            self.ring.retain(|&r| r != tenant);
        }
        true
    }

    /// Keeps the waiters `keep` says to, in order; the rest are added to `gone` in turn order.
    fn retain(&mut self, keep: &mut impl FnMut(&Waiter) -> bool, gone: &mut Vec<Waiter>) {
        let before = gone.len();
        for t in &self.ring {
            let line = self.tenants.get_mut(t).expect("a ring tenant has a line");
            let mut kept = VecDeque::with_capacity(line.waiters.len());
            for w in line.waiters.drain(..) {
                if keep(&w) {
                    kept.push_back(w);
                } else {
                    gone.push(w);
                }
            }
            line.waiters = kept;
        }
        self.len -= gone.len() - before;
        let empty: Vec<u32> = self
            .ring
            .iter()
            .copied()
            .filter(|t| self.tenants[t].waiters.is_empty())
            .collect();
        for t in empty {
            self.tenant_left(t);
            self.ring.retain(|&r| r != t);
        }
    }
}

/// One key's line: a ring per priority with a waiter, the highest first.
#[derive(Debug, Default)]
pub(crate) struct Line {
    /// By priority, highest first; none empty.
    levels: Vec<(i32, Ring)>,
    len: usize,
}

impl Line {
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The waiter served next.
    pub(crate) fn front(&self) -> Option<&Waiter> {
        self.levels.first().and_then(|(_, ring)| ring.front())
    }

    /// Puts `w` at the back of its tenant's line in its priority (see [`Ring::push_back`] for `weight`).
    pub(crate) fn push_back(&mut self, w: Waiter, weight: u64) {
        let p = w.priority;
        let at = match self.levels.iter().position(|&(q, _)| q <= p) {
            Some(i) if self.levels[i].0 == p => i,
            Some(i) => {
                self.levels.insert(i, (p, Ring::default()));
                i
            }
            None => {
                self.levels.push((p, Ring::default()));
                self.levels.len() - 1
            }
        };
        self.levels[at].1.push_back(w, weight);
        self.len += 1;
    }

    /// Takes the head (see the rule above); its level keeps the tenants of its last `window` grants.
    pub(crate) fn pop_front(&mut self, window: usize) -> Option<Waiter> {
        let ring = &mut self.levels.first_mut()?.1;
        let w = ring.pop_front(window)?;
        if ring.len == 0 {
            self.levels.remove(0);
        }
        self.len -= 1;
        Some(w)
    }

    /// Takes waiter `id` of `tenant` and `priority` out; true if it was there.
    pub(crate) fn remove(&mut self, id: u64, tenant: u32, priority: i32) -> bool {
        let Some(at) = self.levels.iter().position(|&(q, _)| q == priority) else {
            return false;
        };
        if !self.levels[at].1.remove(id, tenant) {
            return false;
        }
        if self.levels[at].1.len == 0 {
            self.levels.remove(at);
        }
        self.len -= 1;
        true
    }

    /// Keeps the waiters `keep` says to, in order; the rest are returned in line order (priority, then turn).
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&Waiter) -> bool) -> Vec<Waiter> {
        let mut gone = Vec::new();
        for (_, ring) in &mut self.levels {
            ring.retain(&mut keep, &mut gone);
        }
        self.levels.retain(|(_, ring)| ring.len > 0);
        self.len -= gone.len();
        gone
    }

    /// Takes every waiter, in line order.
    pub(crate) fn drain(&mut self) -> Vec<Waiter> {
        self.retain(|_| false)
    }

    /// Waiters in line.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// When its longest-waiting waiter started waiting (µs), if any waits: with priorities and tenants the head is
    /// not always the oldest, so every waiter is looked at.
    pub(crate) fn oldest_since(&self) -> Option<u64> {
        self.levels
            .iter()
            .flat_map(|(_, ring)| ring.tenants.values())
            .flat_map(|t| t.waiters.iter())
            .map(|w| w.since_us)
            .min()
    }
}
