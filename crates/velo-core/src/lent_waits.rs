//! Queue waits of the events lent to a handler and not yet taken by it.
//!
//! A take hands the handler's side a whole batch of events at once, but the
//! handler takes them one by one: an event's wait in the queue ends when the
//! handler takes it, which for the later events of a batch is after the
//! handler has worked through the earlier ones. So the core records the first
//! event's wait at the take and keeps the rest here, by when they were
//! accepted, until the embedder says when the handler took them.
//!
//! The embedder does not time each event (a clock read per event would cost
//! more than the rest of the hot path). It tells, once per run of code (the
//! code of one callback and the promise jobs it led to), how many events the
//! handler took in that run, by a time no earlier than the last of them: the
//! run's end, or the handler's next take, end or metrics read if that comes
//! first. The run's first take is known exactly: the lending itself, for the
//! run that lent the batch (that take is the batch's first event), or a
//! clock read the embedder makes at the first take of a later run (once per
//! run). The run's takes are spread evenly from there to the time told
//! ([`spread_us`]): exact for a handler that spends the same time on each
//! event, and never outside the run. What the embedder has not told when the
//! batch is given back unused (the handler's end, a cancel, a release of its
//! input) was never taken and counts as taken at the lending.
//!
//! Waits are recorded a group at a time: the waits in a row that fall in one
//! bucket of the histogram, with their exact sum (a histogram keeps no more
//! of them), so a batch of a few hundred events costs a few records.

use std::collections::VecDeque;

use crate::histogram::bucket_range;

/// The queue wait of an event accepted at `accepted_us`, lent to the
/// handler's side at `lent_us` and taken by the handler at `taken_us`: it
/// ends when the handler takes it, and never before it was lent (a time
/// reported for a take is no earlier than the lending it belongs to).
pub fn wait_us(accepted_us: u64, lent_us: u64, taken_us: u64) -> u64 {
    taken_us.max(lent_us).saturating_sub(accepted_us)
}

/// When the `i`-th of `n` takes spread evenly over a run from `from_us` to
/// `to_us` happened. `first_at_start`: the run's first take was at `from_us`
/// (takes `0..n` then sit at `from + i * span / n`); otherwise a take before
/// the `n` was at `from_us` (takes `1..=n` at `from + i * span / (n + 1)`).
/// Each take is one even step of the handler's work after the one before it,
/// and the last step ends at `to_us`.
pub fn spread_us(from_us: u64, to_us: u64, i: u64, n: u64, first_at_start: bool) -> u64 {
    let span = to_us.saturating_sub(from_us);
    if span == 0 {
        return from_us;
    }
    let (step, steps) = if first_at_start {
        (i, n.max(1))
    } else {
        (i + 1, n.saturating_add(1))
    };
    let offset = match span.checked_mul(step) {
        Some(product) => product / steps,
        None => (u128::from(span) * u128::from(step) / u128::from(steps)) as u64,
    };
    from_us + offset
}

/// The events of the batch lent to the handler whose wait is not recorded
/// yet, oldest first.
#[derive(Debug, Default)]
pub struct LentWaits {
    /// Runs of `(accepted_us, count)`: events accepted together share one.
    runs: VecDeque<(u64, u64)>,
    /// Events in `runs`.
    pending: u64,
    /// When the batch was lent.
    lent_us: u64,
    /// The time told last (the lending at first): later takes come after it.
    since_us: u64,
}

impl LentWaits {
    /// A new batch is lent at `now_us`. Whatever is left of the one before
    /// must have been told or given back first.
    pub fn lend(&mut self, now_us: u64) {
        debug_assert_eq!(self.pending, 0, "the previous batch was not given back");
        self.lent_us = now_us;
        self.since_us = now_us;
    }

    /// `n` more events of the batch, accepted at `accepted_us`.
    pub fn push(&mut self, accepted_us: u64, n: u64) {
        if n == 0 {
            return;
        }
        self.pending += n;
        match self.runs.back_mut() {
            Some((at, count)) if *at == accepted_us => *count += n,
            _ => self.runs.push_back((accepted_us, n)),
        }
    }

    /// Events lent whose wait is not recorded yet.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// The handler took the next `n` events in one run of code, the last of
    /// them by `at_us`; `first_us`: when it took the first of them, if that
    /// was timed (else they follow the time told last: the lending, for the
    /// run that lent the batch, whose first event was taken then). Their
    /// waits are spread evenly over the run (see [`spread_us`]) and told to
    /// `record(wait_us, n, sum_us)`: `n` waits that share `wait_us`'s
    /// histogram bucket, adding up to `sum_us`. Counts beyond what is pending
    /// are cut to it.
    pub fn taken(
        &mut self,
        n: u64,
        first_us: Option<u64>,
        at_us: u64,
        mut record: impl FnMut(u64, u64, u64),
    ) {
        let at_us = at_us.max(self.since_us);
        // A first take timed before the time told last came before that tell: the run was told in two parts.
        let (from, first_at_start) = match first_us {
            Some(first) if first > self.since_us => (first.min(at_us), true),
            _ => (self.since_us, false),
        };
        self.since_us = at_us;
        let mut n = n.min(self.pending);
        if n == 0 {
            return;
        }
        // Every take is at or after the lending (`since_us` starts there), and every event was accepted before it.
        debug_assert!(from >= self.lent_us);
        let mut steps = Steps::new(from, at_us, n, first_at_start);
        self.pending -= n;
        while n > 0 {
            let Some((accepted, left)) = self.runs.front_mut() else {
                break;
            };
            let (accepted, k) = (*accepted, n.min(*left));
            // The waits of these `k` events grow with their takes: a group per histogram bucket, ended by the first
            // take past the bucket's end.
            let mut i = 0;
            while i < k {
                let wait = steps.next().saturating_sub(accepted);
                let end = accepted.saturating_add(bucket_range(wait).1);
                let (mut count, mut sum) = (1, wait);
                i += 1;
                while i < k && steps.at < end {
                    sum += steps.next().saturating_sub(accepted);
                    count += 1;
                    i += 1;
                }
                record(wait, count, sum);
            }
            *left -= k;
            if *left == 0 {
                self.runs.pop_front();
            }
            n -= k;
        }
    }

    /// The batch is given back unused (the handler's end, a cancel, a
    /// release of its input): what is left was never taken, and counts as
    /// taken at the lending. Tells `record` as [`LentWaits::taken`] does.
    pub fn give_back(&mut self, mut record: impl FnMut(u64, u64, u64)) {
        let lent = self.lent_us;
        for (accepted, k) in self.runs.drain(..) {
            let wait = wait_us(accepted, lent, lent);
            record(wait, k, wait.saturating_mul(k));
        }
        self.pending = 0;
    }
}

/// The times of `n` takes spread evenly over a run, one after the other (as
/// [`spread_us`], without a division per take).
struct Steps {
    at: u64,
    /// The remainder carried, in units of 1/`steps` µs.
    carry: u64,
    whole: u64,
    part: u64,
    steps: u64,
}

impl Steps {
    fn new(from_us: u64, to_us: u64, n: u64, first_at_start: bool) -> Self {
        let span = to_us.saturating_sub(from_us);
        let steps = if first_at_start {
            n.max(1)
        } else {
            n.saturating_add(1)
        };
        let mut s = Steps {
            at: from_us,
            carry: 0,
            whole: span / steps,
            part: span % steps,
            steps,
        };
        if !first_at_start {
            s.advance();
        }
        s
    }

    fn advance(&mut self) {
        self.at += self.whole;
        self.carry += self.part;
        if self.carry >= self.steps {
            self.at += 1;
            self.carry -= self.steps;
        }
    }

    /// The time of the next take.
    fn next(&mut self) -> u64 {
        let at = self.at;
        self.advance();
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::Histogram;

    #[test]
    fn a_wait_ends_at_the_take_and_never_before_the_lending() {
        assert_eq!(wait_us(10, 20, 50), 40);
        assert_eq!(
            wait_us(10, 20, 15),
            10,
            "a take reported before its lending counts from the lending"
        );
        assert_eq!(wait_us(30, 20, 25), 0, "never negative");
    }

    #[test]
    fn takes_are_spread_evenly_over_their_run() {
        // The run that lent the batch: its first event was taken at 100, three more by 400.
        let at: Vec<u64> = (0..3).map(|i| spread_us(100, 400, i, 3, false)).collect();
        assert_eq!(at, [175, 250, 325]);
        // A later run whose first take was timed at 1000, three takes by 1300.
        let at: Vec<u64> = (0..3).map(|i| spread_us(1000, 1300, i, 3, true)).collect();
        assert_eq!(at, [1000, 1100, 1200]);
        assert_eq!(
            spread_us(5, 5, 0, 0, true),
            5,
            "no take: no division by zero"
        );
        assert_eq!(
            spread_us(0, u64::MAX, 2, 3, true),
            u64::MAX / 3 * 2,
            "no overflow"
        );
    }

    /// What a histogram keeps of the waits told: their buckets and their sum.
    fn waits(f: impl FnOnce(&mut dyn FnMut(u64, u64, u64))) -> Histogram {
        let mut h = Histogram::default();
        f(&mut |w, n, sum| {
            assert!(n > 0, "no empty group");
            h.record_sum(w, n, sum);
        });
        h
    }

    /// A histogram of single waits, for comparing with `waits`.
    fn each(waits: &[u64]) -> Histogram {
        let mut h = Histogram::default();
        for &w in waits {
            h.record(w);
        }
        h
    }

    #[test]
    fn steps_are_the_spread_without_a_division_each() {
        for (from, to) in [(0, 0), (100, 400), (7, 1_000_003), (5, 3)] {
            for n in 1..40 {
                for first_at_start in [false, true] {
                    let mut steps = Steps::new(from, to, n, first_at_start);
                    for i in 0..n {
                        assert_eq!(
                            steps.next(),
                            spread_us(from, to, i, n, first_at_start),
                            "{from}..{to} {i}/{n}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn waits_in_one_bucket_are_told_together_with_their_sum() {
        let mut l = LentWaits::default();
        l.lend(0);
        l.push(0, 8);
        let mut calls = Vec::new();
        // Taken at 1000, 1010, ..., 1070: three in the bucket 960..1024, five in 1024..1152.
        l.taken(8, Some(1000), 1080, |w, n, sum| calls.push((w, n, sum)));
        assert_eq!(calls, [(1000, 3, 3030), (1030, 5, 5250)]);
    }

    #[test]
    fn each_run_of_takes_and_what_is_given_back_get_their_own_ends() {
        let mut l = LentWaits::default();
        l.lend(100);
        l.push(10, 2);
        l.push(40, 4);
        assert_eq!(l.pending(), 6);
        // Two taken in the run that lent them, which ended at 400: at 200 and 300 (the batch's first at 100).
        assert_eq!(waits(|r| l.taken(2, None, 400, r)), each(&[190, 290]));
        // Two in a later run, the first at 1000, by 1200: at 1000 and 1100.
        assert_eq!(
            waits(|r| l.taken(2, Some(1000), 1200, r)),
            each(&[960, 1060])
        );
        // Its first take timed before the last time told (the run was told in two parts): they follow the tell.
        assert_eq!(waits(|r| l.taken(1, Some(1100), 1300, r)), each(&[1210]));
        assert_eq!(waits(|r| l.give_back(r)), each(&[60]));
        assert_eq!(l.pending(), 0);
        assert_eq!(waits(|r| l.taken(3, None, 900, r)), each(&[]));
    }

    proptest::proptest! {
        /// Against a list of every event lent with when it was accepted, each
        /// taken (in a run, or given back) at its own time.
        #[test]
        fn matches_a_per_event_model(
            lent_us in 0u64..1000,
            runs in proptest::collection::vec((0u64..1000, 0u64..4), 0..6),
            steps in proptest::collection::vec((0u64..5, proptest::option::of(0u64..3000), 0u64..3000), 0..6),
        ) {
            let mut l = LentWaits::default();
            l.lend(lent_us);
            let mut model: std::collections::VecDeque<u64> = std::collections::VecDeque::new();
            for &(at, n) in &runs {
                l.push(at, n);
                model.extend(std::iter::repeat_n(at, n as usize));
            }
            let mut since = lent_us;
            for &(n, first, at) in &steps {
                let end = at.max(since);
                let n_taken = n.min(model.len() as u64);
                let mut want = Vec::new();
                for i in 0..n_taken {
                    let accepted = model.pop_front().unwrap();
                    // Exactly: the k-th step of the run's even steps ends the wait.
                    let taken = match first {
                        Some(f) if f > since => {
                            let f = f.min(end);
                            f + (end - f) * i / n_taken
                        }
                        _ => since + (end - since) * (i + 1) / (n_taken + 1),
                    };
                    proptest::prop_assert!(taken >= since && taken <= end, "within the run");
                    want.push(taken.max(lent_us).saturating_sub(accepted));
                }
                since = end;
                proptest::prop_assert_eq!(waits(|r| l.taken(n, first, at, r)), each(&want));
                proptest::prop_assert_eq!(l.pending(), model.len() as u64);
            }
            let want: Vec<u64> = model.iter().map(|&a| lent_us.saturating_sub(a)).collect();
            proptest::prop_assert_eq!(waits(|r| l.give_back(r)), each(&want));
            proptest::prop_assert_eq!(l.pending(), 0);
        }
    }

    #[test]
    fn equal_waits_are_told_in_one_call() {
        let mut l = LentWaits::default();
        l.lend(50);
        l.push(10, 4);
        l.push(10, 4);
        let mut calls = Vec::new();
        // Taken in no time: one wait for all eight.
        l.taken(8, Some(70), 70, |w, n, sum| calls.push((w, n, sum)));
        assert_eq!(calls, [(60, 8, 480)]);
    }
}
