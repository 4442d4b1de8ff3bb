//! Property tests of the task window: whatever order calls settle in, the
//! gate and the window bounds hold, ordered results come out in input order
//! exactly once, and nothing is lost.

use proptest::prelude::*;
use velo_core::{Admission, Attempt, RetryPolicy, Settled, TaskPolicy, TaskWindow};

#[derive(Clone, Debug)]
enum Step {
    /// Start as many calls as the gate allows (up to `n`).
    Start(u8),
    /// Settle the `i`-th call in flight (modulo), as done or skipped.
    Settle(u8, bool),
    /// Emit up to `n` ready results.
    Emit(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1u8..8).prop_map(Step::Start),
        (any::<u8>(), any::<bool>()).prop_map(|(i, s)| Step::Settle(i, s)),
        (1u8..8).prop_map(Step::Emit),
    ]
}

proptest! {
    #[test]
    fn bounds_hold_and_results_leave_once_in_order(
        concurrency in 1u32..6,
        buffer in 1u32..10,
        ordered in any::<bool>(),
        steps in proptest::collection::vec(step(), 1..200),
    ) {
        let gate = Admission::new(10);
        let mut w = TaskWindow::new(TaskPolicy {
            concurrency,
            buffer,
            ordered,
            retry: RetryPolicy { attempts: 1, delay_us: 0, factor: 1.0, max_delay_us: 0 },
            batch: None,
        }, Some(gate.clone()));
        let window = buffer.max(concurrency);
        // (slot, seq) of calls in flight; seqs settled and not yet ready (ordered); ready seqs; emitted seqs.
        let mut running: Vec<(u32, u64)> = Vec::new();
        let mut settled: Vec<u64> = Vec::new();
        let mut ready: std::collections::VecDeque<u64> = Default::default();
        let mut emitted: Vec<u64> = Vec::new();
        let mut next_seq = 0u64;
        let mut now = 0;
        for s in steps {
            now += 1;
            match s {
                Step::Start(n) => {
                    for _ in 0..n {
                        match w.start(now) {
                            Some(slot) => { running.push((slot, next_seq)); next_seq += 1; }
                            None => break,
                        }
                    }
                }
                Step::Settle(i, skip) if !running.is_empty() => {
                    let (slot, seq) = running.remove(usize::from(i) % running.len());
                    let how = if skip { Attempt::Skipped } else { Attempt::Done };
                    let Settled::Ready { count, failed } = w.settle(slot, how, now) else {
                        panic!("no retries configured");
                    };
                    prop_assert!(!failed);
                    if ordered {
                        settled.push(seq);
                        settled.sort_unstable();
                        // The head is the smallest seq not yet ready.
                        for _ in 0..count {
                            ready.push_back(settled.remove(0));
                        }
                    } else {
                        prop_assert_eq!(count, 1);
                        ready.push_back(seq);
                    }
                }
                Step::Settle(..) => {}
                Step::Emit(n) => {
                    let k = (n as usize).min(ready.len());
                    for _ in 0..k { emitted.push(ready.pop_front().unwrap()); }
                    w.emitted(k as u32);
                }
            }
            prop_assert!(w.in_flight() <= concurrency);
            prop_assert_eq!(gate.totals(&[]).task.map(|t| t.in_flight), Some(u64::from(w.in_flight())));
            prop_assert_eq!(w.in_flight() as usize, running.len());
            prop_assert!(w.in_flight() + w.held() <= window);
            prop_assert_eq!(w.held() as usize, settled.len() + ready.len());
            if ordered {
                // Every emitted seq is smaller than every seq still running.
                let low = running.iter().map(|r| r.1).min().unwrap_or(u64::MAX);
                prop_assert!(emitted.iter().all(|&e| e < low));
                prop_assert!(emitted.windows(2).all(|p| p[0] + 1 == p[1]));
            }
        }
        drop(w);
        prop_assert_eq!(gate.totals(&[]).task.map(|t| t.in_flight), Some(0), "a dropped window leaves the totals");
        let mut all = emitted.clone();
        all.sort_unstable();
        all.dedup();
        prop_assert_eq!(all.len(), emitted.len(), "no result twice");
    }
}
