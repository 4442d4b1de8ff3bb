//! The limiter core against an independent model: the rate as a leaky
//! bucket (a level that drains `limit` per µs, where the core keeps GCRA's
//! theoretical arrival time), permits and lines as plain lists, every key's
//! line re-checked from scratch. Plus the exact GCRA bound and the cases the
//! model does not reach (close, sweep). Fairness: the model's line is one
//! list in arrival order, a list of tenants in turn order and the list of all
//! grants made while a priority had waiters; the head is found by scanning:
//! the first waiter whose tenant, granted once more, would still have at most
//! its weight's part of the last `window` grants, else a weighted round robin written plainly. Priorities:
//! the head is looked for among the waiters of the highest priority that waits.

use proptest::prelude::*;
use velo_core::limiter::{Decision, LimiterCore, Limits, Rate, Tenant};

/// A throttling limiter of one concurrency slot, at most `max_waiting` in line.
fn one_slot(max_waiting: usize) -> LimiterCore {
    LimiterCore::new(
        Limits {
            concurrency: Some(1),
            rate: None,
        },
        false,
        max_waiting,
    )
}

fn rate(limit: u64, period_us: u64, burst: u64) -> Option<Rate> {
    Some(Rate {
        limit,
        period_us,
        burst,
    })
}

#[test]
fn concurrency_line_is_fifo_and_release_grants_the_head() {
    let mut l = LimiterCore::new(
        Limits {
            concurrency: Some(2),
            rate: None,
        },
        false,
        10,
    );
    assert_eq!(l.acquire(0, 1, 1, 0), Decision::GrantedHeld);
    assert_eq!(l.acquire(0, 1, 2, 0), Decision::GrantedHeld);
    for id in 3..6 {
        assert_eq!(l.acquire(0, 1, id, 0), Decision::Queued);
    }
    assert_eq!(
        l.try_acquire(0, 1, 0),
        None,
        "tryAcquire never jumps the line"
    );
    assert_eq!(l.release(0, 5), 1);
    assert_eq!(l.take_decided(), vec![(3, Decision::GrantedHeld)]);
    assert!(l.cancel(4, 6));
    assert_eq!(l.release(0, 7), 1);
    assert_eq!(l.take_decided(), vec![(5, Decision::GrantedHeld)]);
    let s = l.stats(8);
    assert_eq!((s.in_use, s.waiting, s.admitted, s.rejected), (2, 0, 4, 0));
}

#[test]
fn give_back_frees_permits_without_serving_the_line_until_the_next_poll() {
    let mut l = one_slot(10);
    assert_eq!(l.acquire(0, 1, 1, 0), Decision::GrantedHeld);
    assert_eq!(l.acquire(0, 1, 2, 0), Decision::Queued);
    assert!(l.give_back(0, 1));
    assert_eq!(l.take_decided(), vec![], "nothing decided without the time");
    assert_eq!(l.stats(5).in_use, 0);
    assert!(l.poll(10) > 0);
    assert_eq!(l.take_decided(), vec![(2, Decision::GrantedHeld)]);
    assert_eq!(l.stats(10).in_use, 1);
    assert!(!l.give_back(7, 1), "a key with no state");
    assert!(l.give_back(0, 5), "more than held: what is held");
    assert_eq!(l.stats(11).in_use, 0);
}

#[test]
fn keys_are_independent() {
    let mut l = one_slot(10);
    assert_eq!(l.acquire(1, 1, 1, 0), Decision::GrantedHeld);
    assert_eq!(l.acquire(1, 1, 2, 0), Decision::Queued);
    assert_eq!(
        l.acquire(2, 1, 3, 0),
        Decision::GrantedHeld,
        "key 2 does not wait behind key 1"
    );
    assert_eq!(l.stats(0).keys, 2);
}

#[test]
fn gcra_admits_exactly_burst_plus_elapsed_over_interval() {
    // 10 per 1000 µs (T = 100 µs), burst 4: by time t, 4 + floor(t / 100) grants.
    let mut l = LimiterCore::new(
        Limits {
            concurrency: None,
            rate: rate(10, 1000, 4),
        },
        true,
        0,
    );
    let mut admitted = 0u64;
    for t in 0..=5000u64 {
        while l.acquire(0, 1, 0, t) == Decision::GrantedHeld {
            admitted += 1;
        }
        assert_eq!(admitted, 4 + t / 100, "at t={t}");
    }
}

#[test]
fn gcra_with_fractional_interval_is_exact() {
    // 3 per 1000 µs: T = 333.33 µs, never rounded. Asked at whole µs, a grant comes up to 1 µs after its time,
    // and GCRA does not carry that lateness over: never above the bound, never more than one unit below it.
    let mut l = LimiterCore::new(
        Limits {
            concurrency: None,
            rate: rate(3, 1000, 1),
        },
        true,
        0,
    );
    let mut admitted = 0u64;
    for t in 0..=100_000u64 {
        while l.try_acquire(0, 1, t).is_some() {
            admitted += 1;
        }
        let bound = 1 + t * 3 / 1000;
        assert!(
            admitted <= bound && admitted + 1 >= bound * 2 / 3,
            "at t={t}: {admitted} of {bound}"
        );
    }
    // Asked exactly on time (every 1000 µs with a burst of 3), every unit of the period is granted.
    let mut l = LimiterCore::new(
        Limits {
            concurrency: None,
            rate: rate(3, 1000, 3),
        },
        true,
        0,
    );
    let mut admitted = 0u64;
    for k in 0..=100u64 {
        while l.try_acquire(0, 1, k * 1000).is_some() {
            admitted += 1;
        }
        assert_eq!(admitted, 3 + 3 * k, "at period {k}");
    }
}

#[test]
fn a_cost_above_the_burst_is_refused_not_queued() {
    let mut l = LimiterCore::new(
        Limits {
            concurrency: None,
            rate: rate(10, 1000, 5),
        },
        false,
        10,
    );
    assert_eq!(l.acquire(0, 6, 1, 0), Decision::TooCostly);
    assert_eq!(l.stats(0).waiting, 0);
    assert_eq!(l.stats(0).rejected, 1);
    // Lowering the burst refuses the waiters that can no longer go.
    assert_eq!(l.acquire(0, 5, 2, 0), Decision::GrantedHeld);
    assert_eq!(l.acquire(0, 4, 3, 0), Decision::Queued);
    assert_eq!(
        l.set_limits(
            Limits {
                concurrency: None,
                rate: rate(10, 1000, 3)
            },
            0
        ),
        1
    );
    assert_eq!(l.take_decided(), vec![(3, Decision::TooCostly)]);
}

#[test]
fn permits_granted_without_a_concurrency_limit_count_when_one_comes_back() {
    // A permit is held from its grant to its release whatever the limits: three granted while the limiter was
    // rate-only count against the concurrency of 2 set again, so a fourth waits until two of them are back.
    let both = Limits {
        concurrency: Some(2),
        rate: rate(1000, 1000, 1000),
    };
    let rate_only = Limits {
        concurrency: None,
        rate: rate(1000, 1000, 1000),
    };
    let mut l = LimiterCore::new(both, false, 10);
    l.set_limits(rate_only, 0);
    for id in 1..=3 {
        assert_eq!(l.acquire(0, 1, id, 0), Decision::GrantedHeld);
    }
    assert_eq!(l.stats(0).in_use, 3);
    assert_eq!(l.set_limits(both, 0), 0);
    assert_eq!(
        l.acquire(0, 1, 4, 0),
        Decision::Queued,
        "3 held, limit 2: the 4th waits"
    );
    assert_eq!(l.try_acquire(0, 1, 0), None);
    assert_eq!(l.stats(0).in_use, 3);
    assert_eq!(l.release(0, 0), 0, "2 still held: nothing granted");
    assert_eq!(l.release(0, 0), 1);
    assert_eq!(l.take_decided(), vec![(4, Decision::GrantedHeld)]);
    assert_eq!(l.stats(0).in_use, 2);
    // Lowering the limit while permits are held: nothing granted until they fall below it.
    l.set_limits(
        Limits {
            concurrency: Some(1),
            rate: rate(1000, 1000, 1000),
        },
        0,
    );
    assert_eq!(l.acquire(0, 1, 5, 0), Decision::Queued);
    assert_eq!(l.release(0, 0), 0, "1 held, limit 1: still none");
    assert_eq!(l.release(0, 0), 1);
    assert_eq!(l.take_decided(), vec![(5, Decision::GrantedHeld)]);
}

#[test]
fn wake_at_is_when_the_head_may_go() {
    let mut l = LimiterCore::new(
        Limits {
            concurrency: None,
            rate: rate(1, 1000, 1),
        },
        false,
        10,
    );
    assert_eq!(l.acquire(0, 1, 1, 0), Decision::GrantedHeld);
    assert_eq!(l.acquire(0, 1, 2, 10), Decision::Queued);
    assert_eq!(l.wake_at(), Some(1000));
    assert_eq!(l.poll(999), 0);
    assert_eq!(l.poll(1000), 1);
    assert_eq!(l.take_decided(), vec![(2, Decision::GrantedHeld)]);
    assert_eq!(l.wake_at(), None);
    let s = l.stats(1000);
    assert_eq!(
        (s.p50_us, s.p99_us),
        (0, 992),
        "two grants: one at once, one after 990 µs (the middle of its histogram bucket)"
    );
}

#[test]
fn set_limits_grants_waiters_at_once() {
    let mut l = one_slot(10);
    assert_eq!(l.acquire(0, 1, 1, 0), Decision::GrantedHeld);
    assert_eq!(l.acquire(0, 1, 2, 0), Decision::Queued);
    assert_eq!(l.acquire(0, 1, 3, 0), Decision::Queued);
    assert_eq!(
        l.set_limits(
            Limits {
                concurrency: Some(3),
                rate: None
            },
            1
        ),
        2
    );
    assert_eq!(l.stats(1).in_use, 3);
}

#[test]
fn reject_mode_and_full_line_count_as_rejected() {
    let mut l = LimiterCore::new(
        Limits {
            concurrency: Some(1),
            rate: None,
        },
        true,
        10,
    );
    assert_eq!(l.acquire(0, 1, 1, 0), Decision::GrantedHeld);
    assert_eq!(l.acquire(0, 1, 2, 0), Decision::Limited);
    assert_eq!(l.try_acquire(0, 1, 0), None);
    let mut t = one_slot(1);
    assert_eq!(t.acquire(0, 1, 1, 0), Decision::GrantedHeld);
    assert_eq!(t.acquire(0, 1, 2, 0), Decision::Queued);
    assert_eq!(t.acquire(0, 1, 3, 0), Decision::QueueFull);
    assert_eq!((l.stats(0).rejected, t.stats(0).rejected), (1, 1));
}

#[test]
fn close_refuses_waiters_and_new_acquires() {
    let mut l = one_slot(10);
    assert_eq!(l.acquire(7, 1, 1, 0), Decision::GrantedHeld);
    assert_eq!(l.acquire(7, 1, 2, 0), Decision::Queued);
    assert_eq!(l.close(), 1);
    assert_eq!(l.take_decided(), vec![(2, Decision::Closed)]);
    assert_eq!(l.acquire(7, 1, 3, 0), Decision::Closed);
    assert_eq!(l.release(7, 0), 0);
    assert_eq!(l.stats(0).in_use, 0);
}

#[test]
fn sweep_forgets_rested_keys_only() {
    let mut l = LimiterCore::new(
        Limits {
            concurrency: Some(1),
            rate: rate(1, 1000, 1),
        },
        false,
        10,
    );
    assert_eq!(l.acquire(1, 1, 1, 0), Decision::GrantedHeld);
    assert_eq!(l.acquire(2, 1, 2, 0), Decision::GrantedHeld);
    l.release(2, 0);
    assert!(
        l.sweep(500).is_empty(),
        "key 2 is not rested before its tat"
    );
    assert_eq!(l.sweep(1000), vec![2]);
}

/// A limiter of one concurrency slot whose every waiter's grant is counted; `fair` serves tenants round robin.
fn hot_tenant_grants(fair: bool) -> (Vec<u64>, u64) {
    // One hot tenant (0) queues 100 waiters per waiter of each of 4 others (1..=4); then the slot is released
    // 500 times. Returns, for each other tenant's waiter, the number of grants before it, and the count of grants.
    let mut l = one_slot(100_000);
    assert_eq!(l.acquire(0, 1, 0, 0), Decision::GrantedHeld);
    let mut id = 1;
    let mut others = std::collections::HashMap::new();
    for round in 0..3u64 {
        for _ in 0..100 {
            let t = if fair {
                Tenant { id: 0, weight: 1 }
            } else {
                Tenant::ALL
            };
            assert_eq!(l.acquire_as(0, 1, id, t, 0, 0), Decision::Queued);
            id += 1;
        }
        for tenant in 1..=4u32 {
            let t = if fair {
                Tenant {
                    id: tenant,
                    weight: 1,
                }
            } else {
                Tenant::ALL
            };
            assert_eq!(l.acquire_as(0, 1, id, t, 0, 0), Decision::Queued);
            others.insert(id, round + 1); // its position in its tenant's line
            id += 1;
        }
    }
    let mut after = vec![0; others.len()];
    let mut grants = 0u64;
    let mut seen = 0;
    while seen < others.len() as u64 && grants < 500 {
        l.release(0, 0);
        grants += 1;
        for (w, _) in l.take_decided() {
            if let Some(&p) = others.get(&w) {
                // T = 5 active tenants of weight 1: position p is granted within 5 * p grants.
                if fair {
                    assert!(
                        grants <= 5 * p,
                        "waiter {w} at position {p} granted after {grants} grants"
                    );
                }
                after[seen as usize] = grants;
                seen += 1;
            }
        }
    }
    (after, grants)
}

#[test]
fn fairness_bounds_the_others_wait_behind_a_hot_tenant() {
    let (fair, _) = hot_tenant_grants(true);
    assert_eq!(fair.len(), 12);
    assert!(fair.iter().all(|&g| g > 0 && g <= 15), "{fair:?}");
    // Without fairness the same line is first come, first served: the others' first waiters wait behind the
    // hot tenant's 100, their last behind its 300.
    let (fifo, _) = hot_tenant_grants(false);
    assert!(fifo.iter().all(|&g| g > 100), "{fifo:?}");
    assert!(fifo.iter().any(|&g| g > 300), "{fifo:?}");
}

#[test]
fn weights_give_grants_per_turn_and_a_returning_tenant_goes_to_the_back() {
    // The turns alone (no shares counted): the order the round robin gives.
    let mut l = one_slot(100);
    l.set_fair_window(0);
    assert_eq!(l.acquire(0, 1, 100, 0), Decision::GrantedHeld);
    let a = Tenant { id: 1, weight: 2 };
    let b = Tenant { id: 2, weight: 1 };
    for id in [1, 2, 3, 4, 5] {
        assert_eq!(l.acquire_as(0, 1, id, a, 0, 0), Decision::Queued);
    }
    for id in [11, 12] {
        assert_eq!(l.acquire_as(0, 1, id, b, 0, 0), Decision::Queued);
    }
    let mut order = Vec::new();
    for _ in 0..4 {
        l.release(0, 0);
        order.extend(l.take_decided().into_iter().map(|(id, _)| id));
    }
    assert_eq!(order, vec![1, 2, 11, 3]);
    // b's line is at 12; cancelling it takes b out of the ring; when b waits again it joins the back.
    assert!(l.cancel(12, 0));
    assert_eq!(l.acquire_as(0, 1, 13, b, 0, 0), Decision::Queued);
    for _ in 0..3 {
        l.release(0, 0);
        order.extend(l.take_decided().into_iter().map(|(id, _)| id));
    }
    assert_eq!(order, vec![1, 2, 11, 3, 4, 13, 5]);
}

/// Grants in order (waiter ids) after `n` releases of a one-slot limiter.
fn grant_order(l: &mut LimiterCore, n: usize) -> Vec<u64> {
    let mut order = Vec::new();
    for _ in 0..n {
        l.release(0, 0);
        order.extend(l.take_decided().into_iter().map(|(id, _)| id));
    }
    order
}

#[test]
fn a_tenant_under_its_share_of_the_recent_grants_goes_first_in_arrival_order() {
    let mut l = one_slot(1000);
    assert_eq!(l.acquire(0, 1, 1000, 0), Decision::GrantedHeld);
    let hot = Tenant { id: 0, weight: 1 };
    for id in 1..=20 {
        assert_eq!(l.acquire_as(0, 1, id, hot, 0, 0), Decision::Queued);
    }
    // The hot tenant takes the first grants by turn (nothing recent yet, then no one else waits).
    assert_eq!(grant_order(&mut l, 3), [1, 2, 3]);
    // Two calm tenants arrive: neither has a recent grant, so both are under their share and go first, in
    // arrival order (b's waiter came first), ahead of the hot tenant's 17 older waiters.
    let (a, b) = (Tenant { id: 1, weight: 1 }, Tenant { id: 2, weight: 1 });
    assert_eq!(l.acquire_as(0, 1, 101, b, 0, 0), Decision::Queued);
    assert_eq!(l.acquire_as(0, 1, 102, a, 0, 0), Decision::Queued);
    assert_eq!(l.acquire_as(0, 1, 103, a, 0, 0), Decision::Queued);
    // After 101 and 102: 5 recent grants, W = 3; a has 1, and one more would be past its share ((1 + 1) * 3 > 5):
    // the turn goes to the hot tenant (4); then, 6 recent grants, a's 103 fits its share ((1 + 1) * 3 <= 6).
    assert_eq!(grant_order(&mut l, 4), [101, 102, 4, 103]);
}

#[test]
fn backlogged_tenants_share_the_grants_by_weight_and_none_starves() {
    for window in [0, 8, 512] {
        let mut l = one_slot(10_000);
        l.set_fair_window(window);
        assert_eq!(l.acquire(0, 1, 100_000, 0), Decision::GrantedHeld);
        let (a, b, c) = (
            Tenant { id: 1, weight: 2 },
            Tenant { id: 2, weight: 1 },
            Tenant { id: 3, weight: 1 },
        );
        let mut id = 0;
        for t in [a, b, c] {
            for _ in 0..1000 {
                id += 1;
                assert_eq!(l.acquire_as(0, 1, id, t, 0, 0), Decision::Queued);
            }
        }
        // 1,200 grants: a, of weight 2 of 4, gets half; b and c a quarter each (ids 1-1000 are a's), within 2 %.
        let order = grant_order(&mut l, 1200);
        let of = |lo: u64, hi: u64| order.iter().filter(|&&w| (lo..=hi).contains(&w)).count();
        let (ga, gb, gc) = (of(1, 1000), of(1001, 2000), of(2001, 3000));
        assert!((588..=612).contains(&ga), "window {window}: {ga} {gb} {gc}");
        assert!(
            (288..=312).contains(&gb) && (288..=312).contains(&gc),
            "window {window}: {ga} {gb} {gc}"
        );
        // No tenant waits more than a few grants between two of its own (at most 4, 7 and 9 grants are seen).
        for range in [(1, 1000), (1001, 2000), (2001, 3000)] {
            let at: Vec<usize> = (0..order.len())
                .filter(|&i| (range.0..=range.1).contains(&order[i]))
                .collect();
            let gap = at.windows(2).map(|p| p[1] - p[0]).max().unwrap();
            assert!(
                gap <= 10,
                "window {window}: {range:?} waited {gap} grants between two of its own"
            );
        }
    }
}

#[test]
fn heavy_weights_hold_past_the_window() {
    // Two backlogged tenants of weights w:1 share the grants w:1, also for weights above the window's 512 grants
    // (where the light one never fits its share and is served by turns only).
    for (w, grants) in [
        (2u64, 3_000u64),
        (20, 21_000),
        (100, 20_200),
        (1000, 20_020),
        (10_000, 30_003),
    ] {
        let mut l = one_slot(100_000);
        assert_eq!(l.acquire(0, 1, 1_000_000, 0), Decision::GrantedHeld);
        let (a, b) = (Tenant { id: 1, weight: w }, Tenant { id: 2, weight: 1 });
        for id in 0..grants {
            assert_eq!(l.acquire_as(0, 1, id * 2, a, 0, 0), Decision::Queued);
            assert_eq!(l.acquire_as(0, 1, id * 2 + 1, b, 0, 0), Decision::Queued);
        }
        let order = grant_order(&mut l, grants as usize);
        let light = order.iter().filter(|&&id| id % 2 == 1).count() as u64;
        let want = grants / (w + 1);
        assert!(
            light.abs_diff(want) <= 2 + want / 50,
            "weight {w}: {light} light grants of {grants}, want {want}"
        );
    }
}

#[test]
fn a_higher_priority_goes_first_and_tenants_take_turns_within_a_priority() {
    let mut l = one_slot(100);
    assert_eq!(l.acquire(0, 1, 1, 0), Decision::GrantedHeld);
    let (a, b) = (Tenant { id: 1, weight: 1 }, Tenant { id: 2, weight: 1 });
    // Arrival: low a, low a, low b, high a, high b, high a, normal b.
    let plan = [
        (10, a, -1),
        (11, a, -1),
        (12, b, -1),
        (20, a, 5),
        (21, b, 5),
        (22, a, 5),
        (30, b, 0),
    ];
    for (id, t, p) in plan {
        assert_eq!(l.acquire_as(0, 1, id, t, p, 0), Decision::Queued);
    }
    // A cancelled waiter of the highest priority leaves it; the rest keep their order.
    assert!(l.cancel(22, 0));
    let mut order = Vec::new();
    for _ in 0..6 {
        l.release(0, 0);
        let d = l.take_decided();
        assert_eq!(d.len(), 1);
        order.push(d[0].0);
    }
    assert_eq!(order, [20, 21, 30, 10, 12, 11]);
    assert_eq!(l.stats(0).waiting, 0);
}

#[test]
fn waiting_keys_reports_each_keys_line_and_its_longest_wait() {
    let mut l = one_slot(100);
    assert_eq!(l.stats(0).oldest_wait_us, 0);
    // Key 1: held at 0, waiters from 10 and 30 (the later one of a higher priority: the head, not the oldest).
    assert_eq!(l.acquire(1, 1, 1, 0), Decision::GrantedHeld);
    assert_eq!(l.acquire(1, 1, 2, 10), Decision::Queued);
    assert_eq!(l.acquire_as(1, 1, 3, Tenant::ALL, 5, 30), Decision::Queued);
    // Key 2: held at 0, one waiter from 50. Key 3: held, none waiting.
    assert_eq!(l.acquire(2, 1, 4, 0), Decision::GrantedHeld);
    assert_eq!(l.acquire(2, 1, 5, 50), Decision::Queued);
    assert_eq!(l.acquire(3, 1, 6, 0), Decision::GrantedHeld);
    let keys = l.waiting_keys(10, 100);
    let got: Vec<(u32, u64, u64, u64)> = keys
        .iter()
        .map(|k| (k.key, k.waiting, k.held, k.oldest_wait_us))
        .collect();
    assert_eq!(got, [(1, 2, 1, 90), (2, 1, 1, 50)]);
    assert_eq!(l.waiting_keys(1, 100).len(), 1);
    assert_eq!(l.stats(100).oldest_wait_us, 90);
    // The oldest waiter (2) cancelled: key 1's longest wait is now its other waiter's.
    assert!(l.cancel(2, 100));
    assert_eq!(l.waiting_keys(10, 100)[0].oldest_wait_us, 70);
    assert_eq!(l.stats(100).oldest_wait_us, 70);
}

// ----- the model -----

#[derive(Debug, Default, Clone)]
struct MKey {
    held: u64,
    /// Leaky bucket level, in µs × limit units (each granted unit adds `period_us`).
    level: u128,
    last: u64,
    /// Waiters in arrival order: (id, cost, tenant, priority).
    line: Vec<(u64, u64, u32, i32)>,
    /// Per priority, the tenants with a waiter of it, in turn order, with the grants left in their turn:
    /// (priority, tenant, credits), in the order each joined.
    ring: Vec<(i32, u32, u64)>,
    /// Every grant from the line, (priority, tenant), since its priority last had no waiter.
    granted: Vec<(i32, u32)>,
}

/// The weight the tests give tenant `t`.
fn weight(t: u32) -> u64 {
    u64::from(t % 3) + 1
}

impl MKey {
    /// The tenants of priority `p` under their share of its last `window` grants: `(c + 1) / G <= w / W`.
    fn under_share(&self, p: i32, window: usize) -> Vec<u32> {
        let grants: Vec<u32> = self
            .granted
            .iter()
            .filter(|g| g.0 == p)
            .map(|g| g.1)
            .collect();
        let recent = &grants[grants.len().saturating_sub(window)..];
        let mut active: Vec<u32> = self.line.iter().filter(|w| w.3 == p).map(|w| w.2).collect();
        active.extend_from_slice(recent);
        active.sort_unstable();
        active.dedup();
        let total_weight: u64 = active.iter().map(|&t| weight(t)).sum();
        let g = recent.len() as u64;
        active
            .into_iter()
            .filter(|&t| self.line.iter().any(|w| w.2 == t && w.3 == p))
            .filter(|&t| {
                let c = recent.iter().filter(|&&r| r == t).count() as u64;
                (c + 1) * total_weight <= g * weight(t)
            })
            .collect()
    }
    /// The highest priority with a waiter; there, the first waiter of a tenant under its share, else its first
    /// ring tenant's oldest waiter.
    fn head(&self, window: usize) -> Option<(u64, u64, u32, i32)> {
        let p = self.line.iter().map(|w| w.3).max()?;
        let under = self.under_share(p, window);
        if let Some(&w) = self.line.iter().find(|w| w.3 == p && under.contains(&w.2)) {
            return Some(w);
        }
        let &(_, t, _) = self.ring.iter().find(|r| r.0 == p)?;
        self.line.iter().copied().find(|w| w.2 == t && w.3 == p)
    }
    fn push(&mut self, id: u64, cost: u64, t: u32, p: i32) {
        if !self.line.iter().any(|w| w.2 == t && w.3 == p) {
            self.ring.push((p, t, weight(t)));
        }
        self.line.push((id, cost, t, p));
    }
    /// After a waiter left the line: a tenant with none left of a priority leaves its ring; a priority with no
    /// waiter forgets its grants.
    fn forget_idle(&mut self) {
        let line = &self.line;
        self.ring
            .retain(|&(p, t, _)| line.iter().any(|w| w.2 == t && w.3 == p));
        self.granted.retain(|&(p, _)| line.iter().any(|w| w.3 == p));
    }
    /// Takes the head (by share or by turn): one of its tenant's credits in its priority.
    fn pop(&mut self, window: usize) {
        let (id, _, t, p) = self.head(window).unwrap();
        self.line.retain(|w| w.0 != id);
        self.granted.push((p, t));
        let at = self.ring.iter().position(|r| r.0 == p && r.1 == t).unwrap();
        self.ring[at].2 -= 1;
        if !self.line.iter().any(|w| w.2 == t && w.3 == p) {
            self.ring.remove(at);
        } else if self.ring[at].2 == 0 {
            self.ring.remove(at);
            self.ring.push((p, t, weight(t)));
        }
        self.forget_idle();
    }
}

struct Model {
    limits: Limits,
    window: usize,
    reject: bool,
    max_waiting: usize,
    keys: std::collections::BTreeMap<u32, MKey>,
    admitted: u64,
    rejected: u64,
    in_use: u64,
}

impl Model {
    fn drained(&self, k: &MKey, now: u64) -> u128 {
        let Some(r) = self.limits.rate else { return 0 };
        k.level
            .saturating_sub(u128::from(now - k.last) * u128::from(r.limit))
    }
    fn fits(&self, k: &MKey, cost: u64, now: u64) -> bool {
        if self.limits.concurrency.is_some_and(|c| k.held >= c) {
            return false;
        }
        match self.limits.rate {
            None => true,
            Some(r) => {
                self.drained(k, now) + u128::from(r.period_us) * u128::from(cost)
                    <= u128::from(r.period_us) * u128::from(r.burst)
            }
        }
    }
    fn take(&mut self, key: u32, cost: u64, now: u64) -> Decision {
        let mut k = self.keys.remove(&key).unwrap_or_default();
        if let Some(r) = self.limits.rate {
            k.level = self.drained(&k, now) + u128::from(r.period_us) * u128::from(cost);
            k.last = now;
        }
        self.admitted += 1;
        // Every permit is held until released, whatever the limits (a concurrency limit set later counts it).
        k.held += 1;
        self.in_use += 1;
        self.keys.insert(key, k);
        Decision::GrantedHeld
    }
    fn pump(&mut self, key: u32, now: u64, out: &mut Vec<(u64, Decision)>) {
        loop {
            let k = self.keys.get(&key).cloned().unwrap_or_default();
            let Some((id, cost, _, _)) = k.head(self.window) else {
                return;
            };
            if !self.fits(&k, cost, now) {
                return;
            }
            self.keys.get_mut(&key).unwrap().pop(self.window);
            let d = self.take(key, cost, now);
            out.push((id, d));
        }
    }
    fn waiting(&self) -> usize {
        self.keys.values().map(|k| k.line.len()).sum()
    }
    fn acquire(
        &mut self,
        key: u32,
        cost: u64,
        id: u64,
        (tenant, priority): (u32, i32),
        now: u64,
        out: &mut Vec<(u64, Decision)>,
    ) -> Decision {
        if self.limits.rate.is_some_and(|r| cost > r.burst) {
            self.rejected += 1;
            return Decision::TooCostly;
        }
        self.pump(key, now, out);
        let k = self.keys.get(&key).cloned().unwrap_or_default();
        if k.line.is_empty() && self.fits(&k, cost, now) {
            return self.take(key, cost, now);
        }
        if self.reject {
            self.rejected += 1;
            return Decision::Limited;
        }
        if self.waiting() >= self.max_waiting {
            self.rejected += 1;
            return Decision::QueueFull;
        }
        self.keys
            .entry(key)
            .or_default()
            .push(id, cost, tenant, priority);
        Decision::Queued
    }
}

#[derive(Debug, Clone)]
enum Op {
    Acquire(u32, u64, u32, i32),
    Try(u32, u64),
    /// `try_acquire_n`: as many tries in a row, stopping at the first refusal.
    TryN(u32, u64, usize),
    Release(usize),
    /// `release_n` of the key of a held permit: as many releases of that key in a row.
    ReleaseN(usize, u64),
    Cancel(usize),
    Advance(u64),
    Poll,
    Set(Option<u64>, Option<(u64, u64, u64)>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u32..3, 1u64..4, 0u32..4, -1i32..2).prop_map(|(k, c, t, p)| Op::Acquire(k, c, t, p)),
        1 => (0u32..3, 1u64..4).prop_map(|(k, c)| Op::Try(k, c)),
        1 => (0u32..3, 1u64..4, 0usize..5).prop_map(|(k, c, n)| Op::TryN(k, c, n)),
        3 => any::<usize>().prop_map(Op::Release),
        1 => (any::<usize>(), 0u64..5).prop_map(|(i, n)| Op::ReleaseN(i, n)),
        1 => any::<usize>().prop_map(Op::Cancel),
        3 => (0u64..1500).prop_map(Op::Advance),
        1 => Just(Op::Poll),
        1 => limits().prop_map(|l| Op::Set(l.concurrency, l.rate.map(|r| (r.limit, r.period_us, r.burst)))),
    ]
}

fn limits() -> impl Strategy<Value = Limits> {
    (
        proptest::option::of(1u64..4),
        proptest::option::of((1u64..7, 100u64..3000, 1u64..6)),
    )
        .prop_filter("at least one limit", |(c, r)| c.is_some() || r.is_some())
        .prop_map(|(c, r)| Limits {
            concurrency: c,
            rate: r.map(|(limit, period_us, burst)| Rate {
                limit,
                period_us,
                burst,
            }),
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 8 } else { 1000 }, ..ProptestConfig::default() })]
    #[test]
    fn core_matches_the_model(start in limits(), reject in any::<bool>(), max_waiting in 0usize..12, window in 0usize..6, ops in proptest::collection::vec(op(), 1..150)) {
        let mut core = LimiterCore::new(start, reject, max_waiting);
        core.set_fair_window(window);
        let mut m = Model { limits: start, window, reject, max_waiting, keys: Default::default(), admitted: 0, rejected: 0, in_use: 0 };
        let mut now = 0u64;
        let mut next_id = 1u64;
        let mut held: Vec<u32> = Vec::new(); // keys of permits held (every permit, until released)
        let mut waiters: Vec<(u64, u32)> = Vec::new();
        for op in ops {
            let mut expect: Vec<(u64, Decision)> = Vec::new();
            let note = |d: Decision, key: u32, held: &mut Vec<u32>| if d == Decision::GrantedHeld { held.push(key) };
            match op {
                Op::Acquire(key, cost, tenant, priority) => {
                    let id = next_id;
                    next_id += 1;
                    let got = core.acquire_as(key, cost, id, Tenant { id: tenant, weight: weight(tenant) }, priority, now);
                    let want = m.acquire(key, cost, id, (tenant, priority), now, &mut expect);
                    prop_assert_eq!(got, want);
                    note(got, key, &mut held);
                    if got == Decision::Queued { waiters.push((id, key)); }
                }
                Op::Try(key, cost) => {
                    let got = core.try_acquire(key, cost, now);
                    let k = m.keys.get(&key).cloned().unwrap_or_default();
                    let costly = m.limits.rate.is_some_and(|r| cost > r.burst);
                    let want = (!costly && k.line.is_empty() && m.fits(&k, cost, now)).then(|| m.take(key, cost, now));
                    prop_assert_eq!(got, want);
                    if let Some(d) = got { note(d, key, &mut held); }
                }
                Op::TryN(key, cost, n) => {
                    let got = core.try_acquire_n(key, cost, n, now);
                    let mut want = 0;
                    while want < n {
                        let k = m.keys.get(&key).cloned().unwrap_or_default();
                        let costly = m.limits.rate.is_some_and(|r| cost > r.burst);
                        if costly || !k.line.is_empty() || !m.fits(&k, cost, now) { break; }
                        m.take(key, cost, now);
                        want += 1;
                    }
                    prop_assert_eq!(got, want);
                    for _ in 0..got { held.push(key); }
                }
                Op::ReleaseN(i, n) if !held.is_empty() => {
                    let key = held[i % held.len()];
                    core.release_n(key, n, now);
                    for _ in 0..n {
                        let Some(at) = held.iter().position(|&k| k == key) else { break };
                        held.swap_remove(at);
                        let k = m.keys.get_mut(&key).unwrap();
                        if k.held > 0 { k.held -= 1; m.in_use -= 1; }
                        m.pump(key, now, &mut expect);
                    }
                }
                Op::Release(i) if !held.is_empty() => {
                    let key = held.swap_remove(i % held.len());
                    core.release(key, now);
                    let k = m.keys.get_mut(&key).unwrap();
                    if k.held > 0 { k.held -= 1; m.in_use -= 1; }
                    m.pump(key, now, &mut expect);
                }
                Op::Cancel(i) if !waiters.is_empty() => {
                    let (id, key) = waiters.swap_remove(i % waiters.len());
                    core.cancel(id, now);
                    let k = m.keys.get_mut(&key).unwrap();
                    k.line.retain(|&(w, _, _, _)| w != id);
                    k.forget_idle();
                    m.pump(key, now, &mut expect);
                }
                Op::Advance(dt) => now += dt,
                Op::Poll => {
                    core.poll(now);
                    for key in m.keys.keys().copied().collect::<Vec<_>>() { m.pump(key, now, &mut expect); }
                }
                Op::Set(c, r) => {
                    let new = Limits { concurrency: c, rate: r.map(|(limit, period_us, burst)| Rate { limit, period_us, burst }) };
                    core.set_limits(new, now);
                    let old = m.limits;
                    for key in m.keys.keys().copied().collect::<Vec<_>>() {
                        let level = { let k = &m.keys[&key]; m.drained(k, now) };
                        let k = m.keys.get_mut(&key).unwrap();
                        k.level = match (old.rate, new.rate) {
                            (Some(o), Some(n)) => (level * u128::from(n.limit)).div_ceil(u128::from(o.limit)),
                            _ => 0,
                        };
                        k.last = now;
                        if let Some(n) = new.rate {
                            let (gone, keep): (Vec<_>, Vec<_>) = k.line.iter().partition(|&&(_, c, _, _)| c > n.burst);
                            for (id, _, _, _) in &gone { expect.push((*id, Decision::TooCostly)); }
                            m.rejected += gone.len() as u64;
                            k.line = keep;
                            k.forget_idle();
                        }
                    }
                    m.limits = new;
                    for key in m.keys.keys().copied().collect::<Vec<_>>() { m.pump(key, now, &mut expect); }
                }
                _ => {}
            }
            let mut got = core.take_decided();
            // Within a key, grants come in the line's order (keys' lines are pumped in any order).
            let key_of: std::collections::HashMap<u64, u32> = waiters.iter().copied().collect();
            let per_key = |v: &[(u64, Decision)]| {
                let mut by: std::collections::BTreeMap<u32, Vec<u64>> = Default::default();
                for &(id, d) in v {
                    if d == Decision::GrantedHeld { by.entry(key_of[&id]).or_default().push(id); }
                }
                by
            };
            prop_assert_eq!(per_key(&got), per_key(&expect));
            for &(id, d) in &got {
                let at = waiters.iter().position(|&(w, _)| w == id).expect("a decided waiter was waiting");
                let (_, key) = waiters.swap_remove(at);
                if d == Decision::GrantedHeld { held.push(key); }
            }
            got.sort_by_key(|&(id, _)| id);
            expect.sort_by_key(|&(id, _)| id);
            prop_assert_eq!(got, expect);
            let s = core.stats(now);
            prop_assert_eq!((s.in_use, s.waiting as usize, s.admitted, s.rejected), (m.in_use, m.waiting(), m.admitted, m.rejected));
            prop_assert_eq!(s.in_use as usize, held.len());
        }
    }
}

/// `retry_after` is the wait a refused acquire can tell: one µs sooner is still refused, then it is granted.
#[test]
fn retry_after_is_the_first_time_the_rate_grants() {
    for (limit, period, burst, cost) in [
        (10, 1_000_000, 10, 1),
        (3, 1_000_000, 1, 1),
        (7, 999_983, 5, 4),
        (1, 60_000_000, 2, 2),
    ] {
        let mut l = LimiterCore::new(
            Limits {
                concurrency: None,
                rate: rate(limit, period, burst),
            },
            true,
            0,
        );
        let mut now = 12_345;
        for round in 0..20 {
            while l.acquire(3, cost, 0, now) == Decision::GrantedHeld {
                l.release(3, now);
            }
            let wait = l
                .retry_after(3, cost, now)
                .expect("the rate alone holds it back");
            assert!(
                wait > 0,
                "refused now, so a wait ({limit}/{period}, round {round})"
            );
            assert_eq!(
                l.acquire(3, cost, 0, now + wait - 1),
                Decision::Limited,
                "one µs sooner is refused"
            );
            assert_eq!(l.retry_after(3, cost, now + wait), Some(0));
            assert_eq!(
                l.acquire(3, cost, 0, now + wait),
                Decision::GrantedHeld,
                "granted at the wait"
            );
            l.release(3, now + wait);
            now += wait + round * 7;
        }
    }
    // Unknown: a full concurrency (a release frees it), no rate, a cost above the burst.
    let mut c = LimiterCore::new(
        Limits {
            concurrency: Some(1),
            rate: rate(100, 1_000_000, 100),
        },
        true,
        0,
    );
    assert_eq!(c.acquire(0, 1, 0, 0), Decision::GrantedHeld);
    assert_eq!(c.acquire(0, 1, 0, 0), Decision::Limited);
    assert_eq!(c.retry_after(0, 1, 0), None);
    assert_eq!(c.retry_after(0, 101, 0), None);
    assert_eq!(c.retry_after(1, 1, 0), Some(0), "another key is free");
    let o = one_slot(1);
    assert_eq!(o.retry_after(0, 1, 0), None);
}

#[test]
fn a_refunded_grant_leaves_the_key_as_it_was() {
    // 2 per 1000 µs, burst 2, at most 1 at once, 'reject': a grant refunded at once takes nothing from either limit
    // and is not in use; it stays admitted (a counter) and counts as refunded; grants made before it keep theirs.
    let mut l = LimiterCore::new(
        Limits {
            concurrency: Some(1),
            rate: rate(2, 1000, 2),
        },
        true,
        0,
    );
    for _ in 0..5 {
        assert_eq!(l.acquire(0, 1, 0, 0), Decision::GrantedHeld);
        l.refund(0, 1, 0);
    }
    let s = l.stats(0);
    assert_eq!((s.admitted, s.refunded, s.in_use, s.rejected), (5, 5, 0, 0));
    assert_eq!(l.acquire(0, 1, 0, 0), Decision::GrantedHeld);
    assert_eq!(l.acquire(0, 1, 0, 0), Decision::Limited, "one at once");
    l.release(0, 0);
    assert_eq!(
        l.acquire(0, 1, 0, 0),
        Decision::GrantedHeld,
        "the second unit of the burst"
    );
    l.release(0, 0);
    assert_eq!(
        l.acquire(0, 1, 0, 0),
        Decision::Limited,
        "the burst is spent"
    );
    // Another key's refund changes nothing of this one; a refund of a grant made later in time undoes that one.
    assert_eq!(l.acquire(1, 2, 0, 0), Decision::GrantedHeld);
    l.refund(1, 2, 0);
    assert_eq!(l.acquire(0, 1, 0, 499), Decision::Limited);
    assert_eq!(l.acquire(0, 1, 0, 500), Decision::GrantedHeld);
    l.refund(0, 1, 500);
    assert_eq!(l.acquire(0, 1, 0, 500), Decision::GrantedHeld);
    let s = l.stats(500);
    assert_eq!((s.admitted, s.refunded), (10, 7));
}
