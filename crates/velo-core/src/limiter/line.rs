//! One key's waiting line: waiters of a higher priority first; within a
//! priority, weighted round robin across tenants, first come, first served
//! within a tenant.
//!
//! Without fairness every waiter is of tenant 0, weight 1: one tenant, so the
//! line is plain first come, first served (the same order as a `VecDeque`).
//! Without priorities every waiter is of priority 0: one level.
//!
//! # The rule
//! The line's head is the head of its highest priority with a waiter: a
//! waiter of a higher priority goes before every waiter of a lower one, even
//! one that came earlier (a lower priority waits while a higher one waits).
//!
//! Within one priority, tenants with a waiter are in a ring, in the order each
//! last became active. The ring's front tenant is served: its oldest waiter is
//! the level's head. Each grant uses one of its credits (it starts with
//! `weight`); with none left it goes to the back of the ring with `weight`
//! credits again. A tenant whose last waiter of that priority leaves
//! (granted, cancelled, refused) leaves the ring and comes back, when it waits
//! again, at the back with full credits.
//!
//! So with tenants of weights `w_i` active in one priority (sum `W`), and no
//! waiter of a higher one, a waiter at position `p` of its tenant's line
//! (weight `w`) is granted within `ceil(p / w) * W` grants of that key: each
//! turn of the ring grants at most `W`, and each grants it `w` of its own
//! tenant's (or all that wait).

use std::collections::VecDeque;

use super::NumberMap;

#[derive(Debug)]
pub(crate) struct Waiter {
    pub(crate) id: u64,
    pub(crate) cost: u64,
    pub(crate) since_us: u64,
    pub(crate) tenant: u32,
    pub(crate) priority: i32,
}

#[derive(Debug, Default)]
struct TenantLine {
    weight: u64,
    credit: u64,
    waiters: VecDeque<Waiter>,
}

/// The waiters of one priority: weighted round robin across tenants.
#[derive(Debug, Default)]
struct Ring {
    tenants: NumberMap<u32, TenantLine>,
    /// Tenants with a waiter, in turn order; the front is served.
    ring: VecDeque<u32>,
    len: usize,
}

impl Ring {
    /// The waiter served next.
    fn front(&self) -> Option<&Waiter> {
        let t = self.ring.front()?;
        self.tenants.get(t).and_then(|l| l.waiters.front())
    }

    /// Puts `w` at the back of its tenant's line; a tenant new to the ring joins its back with `weight` credits
    /// (a waiting tenant keeps the weight it joined with).
    fn push_back(&mut self, w: Waiter, weight: u64) {
        let t = w.tenant;
        let line = self.tenants.entry(t).or_default();
        if line.waiters.is_empty() {
            line.weight = weight.max(1);
            line.credit = line.weight;
            self.ring.push_back(t);
        }
        line.waiters.push_back(w);
        self.len += 1;
    }

    /// Takes the head (see the rule above).
    fn pop_front(&mut self) -> Option<Waiter> {
        let t = *self.ring.front()?;
        let line = self.tenants.get_mut(&t).expect("a ring tenant has a line");
        let w = line.waiters.pop_front().expect("a ring tenant waits");
        self.len -= 1;
        line.credit -= 1;
        if line.waiters.is_empty() {
            self.tenants.remove(&t);
            self.ring.pop_front();
        } else if line.credit == 0 {
            line.credit = line.weight;
            self.ring.rotate_left(1);
        }
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
            self.tenants.remove(&tenant);
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
        let tenants = &mut self.tenants;
        self.ring.retain(|t| {
            let empty = tenants[t].waiters.is_empty();
            if empty {
                tenants.remove(t);
            }
            !empty
        });
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

    /// Takes the head (see the rule above).
    pub(crate) fn pop_front(&mut self) -> Option<Waiter> {
        let ring = &mut self.levels.first_mut()?.1;
        let w = ring.pop_front()?;
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
