//! Criterion benches of the core alone: what each per-event and per-stream
//! decision costs without any JavaScript around it.
//!
//!     cargo bench -p velo-core

use std::cell::RefCell;
use std::collections::VecDeque;
use std::hint::black_box;
use std::rc::Rc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use velo_core::histogram::Histogram;
use velo_core::{Admission, IdleConfig, IdleDeadlines, Lane, StreamCore};

/// One value through a lane: push, then take a batch of one.
fn lane(c: &mut Criterion) {
    let mut g = c.benchmark_group("lane");
    g.throughput(Throughput::Elements(1));
    g.bench_function("push+take one", |b| {
        let mut lane = Lane::new(256);
        let mut out = Vec::with_capacity(256);
        b.iter(|| {
            lane.push(black_box(1u64), 0);
            out.clear();
            lane.take(usize::MAX, 0, &mut out, |_, _| {});
        })
    });
    g.throughput(Throughput::Elements(256));
    g.bench_function("push 256 + take batch", |b| {
        let mut lane = Lane::new(256);
        let mut out = Vec::with_capacity(256);
        b.iter(|| {
            lane.push_batch((0..256u64).map(black_box), 0);
            out.clear();
            lane.take(usize::MAX, 0, &mut out, |_, _| {});
            lane.take(usize::MAX, 0, &mut out, |_, _| {}); // acknowledge the batch
        })
    });
    g.bench_function("baseline: VecDeque push 256 + drain", |b| {
        let mut q = VecDeque::with_capacity(256);
        let mut out = Vec::with_capacity(256);
        b.iter(|| {
            q.extend((0..256u64).map(black_box));
            out.clear();
            out.extend(q.drain(..));
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("handoff", |b| {
        let mut lane: Lane<u64> = Lane::new(256);
        b.iter(|| black_box(lane.try_handoff(|_| {})))
    });
    g.finish();
}

/// A stream's per-event path: send, take, yield, take output.
fn stream(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream");
    g.throughput(Throughput::Elements(1));
    g.bench_function("send+take+yield+take_output", |b| {
        let gate = Admission::new(1);
        let mut s = StreamCore::new(gate.admit().unwrap(), 256, None, 0);
        let mut out = Vec::with_capacity(256);
        b.iter(|| {
            s.send(black_box(1u64), 0);
            out.clear();
            s.take_input(usize::MAX, 1, &mut out);
            s.yield_output(2, 1);
            s.take_output(usize::MAX, 1, &mut out);
        })
    });
    g.bench_function("open+close (no idle)", |b| {
        let gate = Admission::new(u64::MAX);
        b.iter(|| {
            let mut s: StreamCore<u64> = StreamCore::new(gate.admit().unwrap(), 256, None, 0);
            s.end();
            s.handler_returned(0);
            black_box(s.phase());
        })
    });
    g.bench_function("open+close (idle deadline)", |b| {
        let gate = Admission::new(u64::MAX);
        let deadlines = Rc::new(RefCell::new(IdleDeadlines::spawn(|| {}).unwrap()));
        let mut now = 1_000_000_000u64;
        b.iter(|| {
            now += 1;
            let idle = IdleConfig {
                deadlines: Rc::clone(&deadlines),
                timeout_us: 30_000_000,
            };
            let mut s: StreamCore<u64> =
                StreamCore::new(gate.admit().unwrap(), 256, Some(idle), now);
            s.end();
            s.handler_returned(now);
        })
    });
    g.finish();
}

/// Admission: take and give back a permit.
fn admission(c: &mut Criterion) {
    let mut g = c.benchmark_group("admission");
    let gate = Admission::new(u64::MAX);
    g.bench_function("admit+release", |b| {
        b.iter(|| {
            let mut p = gate.admit().unwrap();
            p.release(velo_core::Outcome::Completed);
        })
    });
    let full = Admission::new(0);
    g.bench_function("refuse at the limit", |b| {
        b.iter(|| black_box(full.admit().is_err()))
    });
    g.finish();
}

/// Idle bookkeeping: arm, disarm, and collect due keys among many.
fn idle(c: &mut Criterion) {
    let mut g = c.benchmark_group("idle");
    g.bench_function("arm+disarm among 10k armed", |b| {
        let mut d = IdleDeadlines::spawn(|| {}).unwrap();
        for k in 0..10_000u64 {
            d.arm(k, u64::MAX / 2 + k);
        }
        let mut key = 1_000_000u64;
        b.iter(|| {
            key += 1;
            d.arm(key, u64::MAX / 2 + key);
            d.disarm(key, u64::MAX / 2 + key);
        })
    });
    g.bench_function("take_due of 100 among 10k", |b| {
        b.iter_batched_ref(
            || {
                let mut d = IdleDeadlines::spawn(|| {}).unwrap();
                for k in 0..10_000u64 {
                    d.arm(k, k);
                }
                d
            },
            |d| black_box(d.take_due(99)),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// Metrics: recording a queue wait, reading percentiles.
fn metrics(c: &mut Criterion) {
    let mut g = c.benchmark_group("metrics");
    g.bench_function("histogram record", |b| {
        let mut h = Histogram::default();
        let mut v = 0u64;
        b.iter(|| {
            v = v.wrapping_add(7919) % 1_000_000;
            h.record(black_box(v));
        })
    });
    g.bench_function("histogram p50+p99", |b| {
        let mut h = Histogram::default();
        for v in 0..100_000u64 {
            h.record(v % 5000);
        }
        b.iter(|| black_box((h.percentile(0.5), h.percentile(0.99))))
    });
    g.bench_function("stream metrics snapshot", |b| {
        let gate = Admission::new(1);
        let mut s: StreamCore<u64> = StreamCore::new(gate.admit().unwrap(), 256, None, 0);
        let mut out = Vec::new();
        for i in 0..1000 {
            s.send(i, i);
            s.take_input(usize::MAX, i + 10, &mut out);
        }
        b.iter(|| black_box(s.metrics(5000, 0, 0)))
    });
    g.finish();
}

// criterion_group! defines an undocumented public function.
#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, lane, stream, admission, idle, metrics);
}
use group::benches;
criterion_main!(benches);
