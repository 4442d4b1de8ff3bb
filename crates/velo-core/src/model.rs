//! A model of a stream, for property tests and fuzzing (feature `model`).
//!
//! [`run`] drives a [`StreamCore`] with a sequence of [`Op`]s and checks it
//! against a plain model after every step: an accepted event (or output) is
//! delivered exactly once and in order unless an ending drops it, nothing is
//! held beyond capacity, and the permit is held exactly while the handler runs
//! and is given back once with one outcome.

use std::collections::VecDeque;

use crate::{Admission, Phase, Push, StreamCore, Take};

/// One operation on a stream.
#[derive(Debug, Clone)]
pub enum Op {
    /// Send one event.
    Send,
    /// Send up to n events in one batch (as far as there is room).
    SendBatch(usize),
    /// Offer one event to a handler that waits.
    Handoff,
    /// The handler takes up to max events.
    TakeInput(usize),
    /// End the input.
    End,
    /// The handler stops reading its input.
    ReleaseInput,
    /// The handler yields one output.
    Yield,
    /// Yield up to n outputs in one batch (as far as there is room).
    YieldBatch(usize),
    /// Offer one output to a reader that waits.
    HandoffOutput,
    /// The consumer takes up to max outputs.
    TakeOutput(usize),
    /// The handler returns.
    HandlerReturned,
    /// The handler throws.
    HandlerFailed,
    /// Cancel the stream.
    Cancel,
}

/// One direction as the model sees it: what was accepted (or is waiting)
/// and not yet delivered, in order.
#[derive(Default)]
struct Direction {
    pending: VecDeque<u64>,
    delivered: Vec<u64>,
    dropped: Vec<u64>,
    next: u64,
}

impl Direction {
    fn deliver(&mut self, got: &[u64]) {
        for &v in got {
            assert_eq!(
                self.pending.pop_front(),
                Some(v),
                "delivered out of order or twice"
            );
            self.delivered.push(v);
        }
    }

    fn drop_all(&mut self) {
        self.dropped.extend(self.pending.drain(..));
    }

    fn check_complete(&self) {
        // Every value ever accepted is delivered exactly once or dropped, and
        // delivery is in acceptance order.
        let mut all: Vec<u64> = self
            .delivered
            .iter()
            .chain(&self.dropped)
            .chain(&self.pending)
            .copied()
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(
            all.len(),
            self.delivered.len() + self.dropped.len() + self.pending.len(),
            "a value twice"
        );
        assert!(
            self.delivered.windows(2).all(|w| w[0] < w[1]),
            "out of order"
        );
    }
}

/// Runs `ops` on a stream of `capacity` and checks every invariant against
/// the model; panics on the first violation.
pub fn run(capacity: usize, ops: Vec<Op>) {
    let gate = Admission::new(1);
    let mut s: StreamCore<u64> = StreamCore::new(gate.admit().unwrap(), capacity, None, 0);
    let (mut input, mut output) = (Direction::default(), Direction::default());
    let mut handler_running = true;
    let mut cancelled = false;
    let mut now = 0u64;
    for op in ops {
        now += 1;
        match op {
            Op::Send => {
                let v = input.next;
                input.next += 1;
                match s.send(v, now) {
                    Push::Accepted | Push::Parked => input.pending.push_back(v),
                    Push::Closed(back) => assert_eq!(back, v),
                }
            }
            Op::SendBatch(n) => {
                let n = n.min(s.room());
                let vals: Vec<u64> = (input.next..input.next + n as u64).collect();
                input.next += n as u64;
                assert_eq!(s.send_batch(vals.iter().copied(), now), n);
                input.pending.extend(vals);
            }
            Op::Handoff => {
                let v = input.next;
                if s.try_handoff_input(now) {
                    input.next += 1;
                    assert!(input.pending.is_empty(), "handoff overtook a queued event");
                    input.delivered.push(v);
                }
            }
            Op::TakeInput(max) => {
                let mut got = Vec::new();
                match s.take_input(max, now, &mut got) {
                    Take::Taken { count, .. } => assert_eq!(count, got.len()),
                    Take::Empty => assert!(got.is_empty()),
                    Take::Ended => assert!(got.is_empty() && input.pending.is_empty()),
                }
                assert!(got.len() <= max);
                input.deliver(&got);
            }
            Op::End => {
                s.end();
            }
            Op::ReleaseInput => {
                s.release_input();
                input.drop_all();
            }
            Op::Yield => {
                let v = output.next;
                output.next += 1;
                match s.yield_output(v, now) {
                    Push::Accepted | Push::Parked => output.pending.push_back(v),
                    Push::Closed(back) => assert_eq!(back, v),
                }
            }
            Op::YieldBatch(n) => {
                let n = n.min(s.output_room());
                let vals: Vec<u64> = (output.next..output.next + n as u64).collect();
                output.next += n as u64;
                assert_eq!(s.yield_batch(vals.iter().copied(), now), n);
                output.pending.extend(vals);
            }
            Op::HandoffOutput => {
                let v = output.next;
                if s.try_handoff_output() {
                    output.next += 1;
                    assert!(
                        output.pending.is_empty(),
                        "handoff overtook a queued output"
                    );
                    output.delivered.push(v);
                }
            }
            Op::TakeOutput(max) => {
                let mut got = Vec::new();
                let t = s.take_output(max, now, &mut got);
                if t == Take::Ended {
                    assert!(output.pending.is_empty(), "ended with outputs left");
                    assert!(!handler_running || cancelled);
                }
                output.deliver(&got);
            }
            Op::HandlerReturned | Op::HandlerFailed if handler_running => {
                handler_running = false;
                if matches!(op, Op::HandlerReturned) {
                    s.handler_returned(now);
                } else {
                    s.handler_failed(now);
                }
                // Nobody will read the input any more; outputs stay readable.
                input.drop_all();
            }
            Op::HandlerReturned | Op::HandlerFailed => {}
            Op::Cancel => {
                if s.cancel(now).is_some() {
                    cancelled = true;
                    input.drop_all();
                    output.drop_all();
                }
            }
        }
        // Never more held than the capacity, in either direction.
        let m = s.metrics(now, usize::MAX, usize::MAX);
        assert!(
            m.buffered_in as usize <= capacity,
            "input over capacity: {}",
            m.buffered_in
        );
        assert!(
            m.buffered_out as usize <= capacity,
            "output over capacity: {}",
            m.buffered_out
        );
        // The permit is held exactly while the handler runs and nobody cancelled.
        let open = gate.stats().open;
        assert_eq!(
            open,
            u64::from(handler_running && !cancelled),
            "permit accounting"
        );
    }
    input.check_complete();
    output.check_complete();
    // Whatever the ending, draining both directions delivers what is left.
    let mut got = Vec::new();
    while let Take::Taken { .. } = s.take_output(usize::MAX, now, &mut got) {}
    output.deliver(&got);
    let stats = gate.stats();
    assert_eq!(
        stats.completed + stats.failed + stats.cancelled + stats.open,
        1,
        "one outcome per stream"
    );
    if !handler_running && !cancelled {
        assert!(matches!(
            s.phase(),
            Phase::Done | Phase::Failed | Phase::Ending
        ));
    }
}

/// Decodes arbitrary bytes into a capacity and operations (for fuzzing).
pub fn decode(bytes: &[u8]) -> (usize, Vec<Op>) {
    let Some((&first, rest)) = bytes.split_first() else {
        return (1, Vec::new());
    };
    let capacity = usize::from(first % 8) + 1;
    let ops = rest
        .chunks(2)
        .map(|c| {
            let n = usize::from(c.get(1).copied().unwrap_or(1) % 9) + 1;
            match c[0] % 13 {
                0 => Op::Send,
                1 => Op::SendBatch(n),
                2 => Op::Handoff,
                3 => Op::TakeInput(n),
                4 => Op::End,
                5 => Op::ReleaseInput,
                6 => Op::Yield,
                7 => Op::YieldBatch(n),
                8 => Op::HandoffOutput,
                9 => Op::TakeOutput(n),
                10 => Op::HandlerReturned,
                11 => Op::HandlerFailed,
                _ => Op::Cancel,
            }
        })
        .collect();
    (capacity, ops)
}
