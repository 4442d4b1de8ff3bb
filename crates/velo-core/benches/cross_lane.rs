//! Criterion bench of the cross-thread lane: values pushed in batches on one
//! thread and taken in batches on another, parking and waking both ways
//! (`thread::park`/`unpark` stands in for the binding's threadsafe function).
//! Baseline in the same group: std's bounded `sync_channel`, one value a call.
//!
//!     cargo bench -p velo-core --bench cross_lane

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use velo_core::cross_lane::{CrossLane, Push, Take, Wake};

const EVENTS: u64 = 100_000;
const CAPACITY: usize = 1024;

/// A parked thread and the flag its wake raises (park may return spuriously).
struct Waiter {
    thread: thread::Thread,
    woken: AtomicBool,
}

impl Waiter {
    fn new() -> Self {
        Waiter {
            thread: thread::current(),
            woken: AtomicBool::new(false),
        }
    }
    fn wake(&self) {
        self.woken.store(true, Ordering::Release);
        self.thread.unpark();
    }
    fn wait(&self) {
        while !self.woken.swap(false, Ordering::Acquire) {
            thread::park();
        }
    }
}

fn transfer(batch: usize) {
    let lane = Arc::new(CrossLane::new(CAPACITY));
    let receiver = Arc::new(Waiter::new());
    let (tx, rx) = mpsc::channel::<Arc<Waiter>>();
    let sending = {
        let lane = Arc::clone(&lane);
        let receiver = Arc::clone(&receiver);
        thread::spawn(move || {
            let sender = Arc::new(Waiter::new());
            tx.send(Arc::clone(&sender)).unwrap();
            let wake = |w: Wake| {
                if w.receiver {
                    receiver.wake();
                }
            };
            let mut next = 0u64;
            let mut values = VecDeque::with_capacity(batch);
            while next < EVENTS {
                let end = (next + batch as u64).min(EVENTS);
                values.extend(next..end);
                next = end;
                loop {
                    let (push, w) = lane.push(&mut values);
                    wake(w);
                    match push {
                        Push::Accepted => break,
                        Push::Parked => sender.wait(),
                        Push::Closed(_) => unreachable!(),
                    }
                }
            }
            wake(lane.end());
        })
    };
    let sender = rx.recv().unwrap();
    let mut out = Vec::with_capacity(CAPACITY);
    let mut sum = 0u64;
    loop {
        out.clear();
        let (take, w) = lane.take(CAPACITY, &mut out);
        if w.sender {
            sender.wake();
        }
        match take {
            Take::Taken { .. } => sum += out.iter().sum::<u64>(),
            Take::Empty => receiver.wait(),
            Take::Ended => break,
            Take::Cancelled => unreachable!(),
        }
    }
    sending.join().unwrap();
    assert_eq!(sum, EVENTS * (EVENTS - 1) / 2);
}

fn baseline_sync_channel() {
    let (tx, rx) = mpsc::sync_channel::<u64>(CAPACITY);
    let sending = thread::spawn(move || {
        for i in 0..EVENTS {
            tx.send(i).unwrap();
        }
    });
    let sum: u64 = rx.iter().sum();
    sending.join().unwrap();
    assert_eq!(sum, EVENTS * (EVENTS - 1) / 2);
}

fn cross_lane(c: &mut Criterion) {
    let mut g = c.benchmark_group("cross_lane two threads");
    g.throughput(Throughput::Elements(EVENTS));
    g.sample_size(20);
    for batch in [1, 64, 1024] {
        g.bench_function(
            format!("push batches of {batch}, take up to {CAPACITY}"),
            |b| b.iter(|| transfer(black_box(batch))),
        );
    }
    g.bench_function("baseline: std sync_channel, one value a call", |b| {
        b.iter(baseline_sync_channel)
    });
    g.finish();
}

// criterion_group! defines an undocumented public function.
mod group {
    #![allow(missing_docs)]
    use super::*;
    criterion_group!(benches, cross_lane);
}
use group::benches;
criterion_main!(benches);
