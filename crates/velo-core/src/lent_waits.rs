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
//! more than the rest of the hot path): it tells how many of the batch the
//! handler took in the run of code that lent it (their wait ends at the
//! lending, see [`wait_us`]) and how many it took since, in one call per
//! later run, timed at the end of that run. Whatever it has not told when the
//! batch is given back (the next take, the handler's end, a cancel) counts as
//! taken at the lending, as every event of a batch was before this existed.

use std::collections::VecDeque;

/// The queue wait of an event accepted at `accepted_us`, lent to the
/// handler's side at `lent_us` and taken by the handler at `taken_us`: it
/// ends when the handler takes it, and never before it was lent (a time
/// reported for a take is no earlier than the lending it belongs to).
pub fn wait_us(accepted_us: u64, lent_us: u64, taken_us: u64) -> u64 {
    taken_us.max(lent_us).saturating_sub(accepted_us)
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
}

impl LentWaits {
    /// A new batch is lent at `now_us`. Whatever is left of the one before
    /// must have been given back first ([`LentWaits::give_back`]).
    pub fn lend(&mut self, now_us: u64) {
        debug_assert_eq!(self.pending, 0, "the previous batch was not given back");
        self.lent_us = now_us;
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

    /// The handler took the next `early` events in the run of code that lent
    /// them, then `late` more by `at_us`: tells `record(wait_us, n)` their
    /// waits, a run of equal waits at a time. Counts beyond what is pending
    /// are cut to it.
    pub fn taken(&mut self, early: u64, late: u64, at_us: u64, mut record: impl FnMut(u64, u64)) {
        let lent = self.lent_us;
        self.take_front(early, lent, &mut record);
        self.take_front(late, at_us, &mut record);
    }

    /// The batch is given back (the next take, the handler's end, a cancel):
    /// what is left counts as taken at the lending.
    pub fn give_back(&mut self, record: impl FnMut(u64, u64)) {
        let (n, lent) = (self.pending, self.lent_us);
        let mut record = record;
        self.take_front(n, lent, &mut record);
    }

    fn take_front(&mut self, mut n: u64, taken_us: u64, record: &mut impl FnMut(u64, u64)) {
        while n > 0 {
            let Some((accepted, count)) = self.runs.front_mut() else {
                return;
            };
            let k = n.min(*count);
            record(wait_us(*accepted, self.lent_us, taken_us), k);
            *count -= k;
            if *count == 0 {
                self.runs.pop_front();
            }
            self.pending -= k;
            n -= k;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Records as a list of single waits, for comparing with the model.
    fn waits(f: impl FnOnce(&mut dyn FnMut(u64, u64))) -> Vec<u64> {
        let mut out = Vec::new();
        f(&mut |w, n| out.extend(std::iter::repeat_n(w, n as usize)));
        out
    }

    #[test]
    fn early_late_and_given_back_events_each_get_their_own_end() {
        let mut l = LentWaits::default();
        l.lend(100);
        l.push(10, 2);
        l.push(40, 3);
        assert_eq!(l.pending(), 5);
        // One taken in the lending's run, two by 300.
        assert_eq!(waits(|r| l.taken(1, 2, 300, r)), [90, 290, 260]);
        // Two more by 500, only one of them is left... cut to what is pending.
        assert_eq!(waits(|r| l.taken(0, 1, 500, r)), [460]);
        assert_eq!(waits(|r| l.give_back(r)), [60]);
        assert_eq!(l.pending(), 0);
        assert_eq!(waits(|r| l.taken(3, 3, 900, r)), Vec::<u64>::new());
    }

    proptest::proptest! {
        /// Against a list of every event lent with when it was accepted, each
        /// taken (early, late or given back) at its own time.
        #[test]
        fn matches_a_per_event_model(
            lent_us in 0u64..1000,
            runs in proptest::collection::vec((0u64..1000, 0u64..4), 0..6),
            steps in proptest::collection::vec((0u64..4, 0u64..4, 0u64..3000), 0..6),
        ) {
            let mut l = LentWaits::default();
            l.lend(lent_us);
            let mut model: std::collections::VecDeque<u64> = std::collections::VecDeque::new();
            for &(at, n) in &runs {
                l.push(at, n);
                model.extend(std::iter::repeat_n(at, n as usize));
            }
            for &(early, late, at) in &steps {
                let mut want = Vec::new();
                for k in 0..early + late {
                    let Some(accepted) = model.pop_front() else { break };
                    let end = if k < early { lent_us } else { at.max(lent_us) };
                    want.push(end.saturating_sub(accepted));
                }
                proptest::prop_assert_eq!(waits(|r| l.taken(early, late, at, r)), want);
                proptest::prop_assert_eq!(l.pending(), model.len() as u64);
            }
            let want: Vec<u64> = model.iter().map(|&a| lent_us.saturating_sub(a)).collect();
            proptest::prop_assert_eq!(waits(|r| l.give_back(r)), want);
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
        l.taken(0, 8, 70, |w, n| calls.push((w, n)));
        assert_eq!(calls, [(60, 8)]);
    }
}
