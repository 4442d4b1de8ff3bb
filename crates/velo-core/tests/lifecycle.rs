//! The stream lifecycle, driven by hand with a fake clock.

use std::cell::RefCell;
use std::rc::Rc;

use velo_core::{
    reserve_keys, Admission, IdleConfig, IdleDeadlines, IdleVerdict, Phase, Push, Start,
    StreamCore, Take,
};

fn stream(gate: &Admission, buffer: usize) -> StreamCore<u32> {
    StreamCore::new(gate.admit().unwrap(), buffer, None, 0)
}

type Deadlines = Rc<RefCell<IdleDeadlines>>;

/// A notifier that wakes nobody, and a gate for one stream.
fn idle_parts() -> (Deadlines, Admission) {
    let deadlines = Rc::new(RefCell::new(IdleDeadlines::spawn(|| {}).unwrap()));
    (deadlines, Admission::new(1))
}

/// A stream of buffer 1 opened at 0 with an idle timeout of 1000 µs.
fn idle_stream(deadlines: &Deadlines, gate: &Admission) -> StreamCore<u32> {
    let idle = IdleConfig {
        deadlines: Rc::clone(deadlines),
        timeout_us: 1000,
    };
    StreamCore::new(gate.admit().unwrap(), 1, Some(idle), 0)
}

fn take_in(s: &mut StreamCore<u32>) -> (Vec<u32>, Take) {
    let mut out = Vec::new();
    let t = s.take_input(usize::MAX, 0, &mut out);
    (out, t)
}

fn take_out(s: &mut StreamCore<u32>) -> (Vec<u32>, Take) {
    let mut out = Vec::new();
    let t = s.take_output(usize::MAX, 0, &mut out);
    (out, t)
}

#[test]
fn end_delivers_buffered_and_waiting_then_ends() {
    let gate = Admission::new(1);
    let mut s = stream(&gate, 1);
    s.send(1, 0);
    assert_eq!(s.send(2, 0), Push::Parked);
    assert!(s.end());
    assert!(!s.end());
    assert_eq!(s.phase(), Phase::Ending);
    assert!(matches!(s.send(3, 0), Push::Closed(3)));
    assert_eq!(take_in(&mut s).0, vec![1]);
    assert_eq!(take_in(&mut s).0, vec![2]);
    assert_eq!(take_in(&mut s).1, Take::Ended);
}

#[test]
fn done_only_after_handler_returned_and_outputs_read() {
    let gate = Admission::new(1);
    let mut s = stream(&gate, 4);
    s.end();
    s.yield_output(10, 0);
    assert_eq!(s.handler_returned(0), 0);
    assert_eq!(gate.stats().open, 0, "permit given back at return");
    assert_eq!(s.phase(), Phase::Ending);
    assert_eq!(take_out(&mut s).0, vec![10]);
    assert_eq!(take_out(&mut s).1, Take::Ended);
    assert_eq!(s.phase(), Phase::Done);
}

#[test]
fn handler_return_with_open_input_drops_waiting_sends() {
    let gate = Admission::new(1);
    let mut s = stream(&gate, 1);
    s.send(1, 0);
    s.send(2, 0);
    s.send(3, 0);
    assert_eq!(s.handler_returned(0), 2);
    assert!(matches!(s.send(4, 0), Push::Closed(4)));
    assert_eq!(take_out(&mut s).1, Take::Ended);
    assert_eq!(s.phase(), Phase::Done);
}

#[test]
fn failure_keeps_earlier_outputs() {
    let gate = Admission::new(1);
    let mut s = stream(&gate, 4);
    s.yield_output(1, 0);
    s.yield_output(2, 0);
    s.send(9, 0);
    s.handler_failed(0);
    assert_eq!(s.phase(), Phase::Failed);
    assert_eq!(gate.stats().failed, 1);
    assert_eq!(take_out(&mut s).0, vec![1, 2]);
    assert_eq!(take_out(&mut s).1, Take::Ended);
    assert_eq!(s.phase(), Phase::Failed);
}

#[test]
fn cancel_drops_everything_frees_slot_once() {
    let gate = Admission::new(1);
    let mut s = stream(&gate, 1);
    s.send(1, 0);
    s.send(2, 0);
    s.yield_output(7, 0);
    assert_eq!(s.cancel(0), Some(1));
    assert_eq!(s.cancel(0), None);
    assert_eq!(gate.stats().cancelled, 1);
    assert_eq!(gate.stats().open, 0);
    assert_eq!(take_in(&mut s).1, Take::Ended);
    assert_eq!(take_out(&mut s).1, Take::Ended);
    // The handler returning later changes nothing.
    s.handler_returned(0);
    assert_eq!(s.phase(), Phase::Cancelled);
    assert_eq!(gate.stats().completed, 0);
}

#[test]
fn cancel_after_done_or_failed_is_a_no_op() {
    let gate = Admission::new(2);
    let mut done = stream(&gate, 1);
    done.handler_returned(0);
    assert_eq!(done.phase(), Phase::Done);
    assert_eq!(done.cancel(0), None);
    let mut failed = stream(&gate, 1);
    failed.handler_failed(0);
    assert_eq!(failed.cancel(0), None);
    assert_eq!(failed.phase(), Phase::Failed);
}

#[test]
fn dropped_open_stream_gives_its_slot_back() {
    let gate = Admission::new(1);
    drop(stream(&gate, 1));
    assert_eq!(gate.stats().open, 0);
    assert_eq!(gate.stats().cancelled, 1);
}

#[test]
fn idle_clock_expires_rearms_and_pauses_for_waiting_senders() {
    let (deadlines, gate) = idle_parts();
    let mut s = idle_stream(&deadlines, &gate);
    assert_eq!(deadlines.borrow().len(), 1, "armed at open");
    assert!(s.idle_running());
    s.send(1, 600); // moves the deadline to 1600
    assert_eq!(s.idle_fire(1000), IdleVerdict::Rearmed);
    s.send(2, 1200); // waits for room: the clock pauses
    assert!(!s.idle_running());
    assert_eq!(s.idle_fire(5000), IdleVerdict::Rearmed);
    let mut out = Vec::new();
    s.take_input(usize::MAX, 5500, &mut out);
    s.take_input(usize::MAX, 5500, &mut out); // admits the waiting send: activity at 5500
    assert_eq!(out, vec![1, 2]);
    assert_eq!(s.idle_fire(6000), IdleVerdict::Rearmed);
    assert_eq!(s.idle_fire(6500), IdleVerdict::Expired);
    assert_eq!(s.phase(), Phase::Ending);
    assert_eq!(s.idle_fire(9000), IdleVerdict::Off);
    assert!(
        deadlines.borrow().is_empty(),
        "nothing left armed once the input ended"
    );
    drop(s);
    let mut s2: StreamCore<u32> = StreamCore::new(
        gate.admit().unwrap(),
        1,
        Some(IdleConfig {
            deadlines: Rc::clone(&deadlines),
            timeout_us: 1000,
        }),
        0,
    );
    s2.cancel(10);
    assert!(deadlines.borrow().is_empty(), "cancel disarms");
}

#[test]
fn metrics_count() {
    let gate = Admission::new(1);
    let mut s = stream(&gate, 2);
    s.send(1, 0);
    s.send(2, 10);
    s.send(3, 20);
    let mut out = Vec::new();
    s.take_input(1, 1000, &mut out);
    s.yield_output(1, 1000);
    let m = s.metrics(2000, 1, 0);
    assert_eq!((m.events_in, m.events_out), (2, 1));
    assert_eq!(m.buffered_in, 2, "one queued, one lent and unconsumed");
    assert_eq!(m.buffered_out, 1);
    assert_eq!(m.backpressure_waits, 1);
    assert!((875..=1125).contains(&m.queue_wait_p50_us));
    assert_eq!(gate.stats().open, 1);
}

#[test]
fn function_totals_sum_every_stream_and_survive_it() {
    let gate = Admission::new(2);
    let mut a = stream(&gate, 4);
    let mut b = stream(&gate, 4);
    a.send(1, 0);
    a.send(2, 0);
    b.send(3, 0);
    assert!(!b.try_handoff_input(0), "b has an event queued: no handoff");
    let mut out = Vec::new();
    a.take_input(usize::MAX, 100, &mut out);
    a.yield_output(10, 100);
    a.handler_returned(100);
    drop(a); // totals outlive the stream
    let t = gate.totals(&[50, 1_000]);
    assert_eq!((t.events_in, t.events_out), (3, 1));
    assert_eq!(t.queue_wait.count, 2, "two events taken by a handler");
    assert_eq!(t.queue_wait.buckets, vec![(50, 0), (1_000, 2)]);
    drop(b);
}

#[test]
fn handoffs_reported_in_one_call_count_as_one_call_each() {
    // One stream hands over one by one, the other reports the same handoffs
    // at once: the stream's metrics and the function's totals agree.
    let one_by_one = Admission::new(1);
    let mut a = stream(&one_by_one, 4);
    for _ in 0..3 {
        assert!(a.try_handoff_input(0));
    }
    for _ in 0..2 {
        assert!(a.try_handoff_output());
    }
    let reported = Admission::new(1);
    let mut b = stream(&reported, 4);
    b.handed_over(3, 2, 0);
    let (ma, mb) = (a.metrics(0, 0, 0), b.metrics(0, 0, 0));
    assert_eq!((mb.events_in, mb.events_out), (3, 2));
    assert_eq!((ma.events_in, ma.events_out), (mb.events_in, mb.events_out));
    assert_eq!((mb.buffered_in, mb.buffered_out), (0, 0));
    assert_eq!(ma.queue_wait_p50_us, mb.queue_wait_p50_us);
    let (ta, tb) = (one_by_one.totals(&[0, 50]), reported.totals(&[0, 50]));
    assert_eq!((tb.events_in, tb.events_out), (3, 2));
    assert_eq!(tb.queue_wait.count, 3, "each event handed over waited 0 µs");
    assert_eq!(ta.queue_wait.buckets, tb.queue_wait.buckets);
    assert_eq!(ta.queue_wait.sum_us, tb.queue_wait.sum_us);
    b.handed_over(0, 0, 0);
    assert_eq!(
        reported.totals(&[]).events_in,
        3,
        "nothing reported, nothing counted"
    );
}

#[test]
fn reported_handoffs_restart_the_idle_clock_at_the_time_given() {
    let (deadlines, gate) = idle_parts();
    let mut s = idle_stream(&deadlines, &gate);
    // Events handed over at 300..=700, reported at 900 (before the deadline
    // at 1000 is looked at): the stream is idle from 700, until 1700.
    s.handed_over(5, 5, 700);
    assert_eq!(s.idle_fire(1000), IdleVerdict::Rearmed);
    assert_eq!(s.idle_fire(1650), IdleVerdict::Rearmed);
    // An older time never moves the clock back; outputs alone never move it.
    s.handed_over(1, 0, 100);
    s.handed_over(0, 3, 1690);
    assert_eq!(s.idle_fire(1700), IdleVerdict::Expired);
}

#[test]
fn the_queue_wait_of_a_lent_event_ends_when_the_handler_takes_it() {
    let gate = Admission::new(1);
    let mut s = stream(&gate, 8);
    for e in 0..6 {
        s.send(e, 0);
    }
    let mut out = Vec::new();
    // Lent at 100: the first is the handler's now, the others wait in the batch.
    s.take_input(usize::MAX, 100, &mut out);
    assert_eq!(gate.totals(&[]).queue_wait.count, 1);
    // Two more taken in the run that lent them, which ended at 400: spread evenly after the first, at 200 and 300.
    s.input_taken(2, None, 400);
    // One in a later run whose first take was timed at 5,000, told at 5,100.
    s.input_taken(1, Some(5_000), 5_100);
    // (A bucket counts under a bound when the value it stands for does: bounds between the waits.)
    let t = gate.totals(&[150, 250, 350, 5_500]);
    assert_eq!(t.queue_wait.count, 4);
    assert_eq!(
        t.queue_wait.buckets,
        vec![(150, 1), (250, 2), (350, 3), (5_500, 4)],
        "cumulative counts"
    );
    // Before a metrics read at 7,000: the ones consumed and not told were taken in the run told last, by then.
    s.input_consumed(1, 7_000);
    assert_eq!(gate.totals(&[]).queue_wait.count, 5);
    assert_eq!(
        gate.totals(&[5_500, 6_500]).queue_wait.buckets,
        vec![(5_500, 4), (6_500, 5)],
        "the fifth at 6,050, half way from 5,100 to 7,000"
    );
    // The next take, at 9,000, says the last one was taken too, in the run told last: half way from 7,000.
    s.take_input(usize::MAX, 9_000, &mut out);
    let t = gate.totals(&[7_500, 8_500]);
    assert_eq!(t.queue_wait.count, 6, "nothing left lent");
    assert_eq!(t.queue_wait.buckets, vec![(7_500, 5), (8_500, 6)]);
}

#[test]
fn a_batch_taken_in_the_run_that_lent_it_is_spread_over_that_run_up_to_the_next_take() {
    let gate = Admission::new(1);
    let mut s = stream(&gate, 8);
    for e in 0..4 {
        s.send(e, 0);
    }
    let mut out = Vec::new();
    s.take_input(usize::MAX, 1_000, &mut out);
    // Nothing told: the handler took all four in the run that lent them, 1,000 µs each, and asks again at 5,000.
    s.take_input(usize::MAX, 5_000, &mut out);
    let t = gate.totals(&[1_500, 2_500, 3_500, 4_500]);
    assert_eq!(
        t.queue_wait.count, 4,
        "waits of 1,000, 2,000, 3,000 and 4,000"
    );
    assert_eq!(
        t.queue_wait.buckets,
        vec![(1_500, 1), (2_500, 2), (3_500, 3), (4_500, 4)]
    );
}

#[test]
fn an_event_that_waited_for_room_waited_from_its_send() {
    let gate = Admission::new(1);
    let mut s = stream(&gate, 1);
    s.send(1, 0);
    assert!(matches!(s.send(2, 100), Push::Parked));
    let mut out = Vec::new();
    s.take_input(usize::MAX, 1_000, &mut out);
    // Taken at 3,000: it was let in at 1,000, but sent at 100.
    s.take_input(usize::MAX, 3_000, &mut out);
    assert_eq!(out, vec![1, 2]);
    let m = s.metrics(3_000, 0, 0);
    assert!(
        (2_900 * 7 / 8..=2_900 * 9 / 8).contains(&m.queue_wait_p99_us),
        "{}",
        m.queue_wait_p99_us
    );
}

#[test]
fn a_lent_batch_given_back_counts_what_is_left_as_taken_at_the_lending() {
    for end in [0, 1, 2] {
        let gate = Admission::new(1);
        let mut s = stream(&gate, 8);
        s.send(1, 0);
        s.send(2, 0);
        let mut out = Vec::new();
        s.take_input(usize::MAX, 100, &mut out);
        match end {
            0 => drop(s.handler_returned(7_000)),
            1 => drop(s.cancel(7_000)),
            _ => drop(s.release_input()),
        }
        let t = gate.totals(&[150]);
        assert_eq!(
            (t.queue_wait.count, t.queue_wait.buckets.clone()),
            (2, vec![(150, 2)]),
            "end {end}"
        );
    }
}

#[test]
fn a_handler_returning_while_its_reader_holds_unread_outputs_leaves_the_stream_ending() {
    let gate = Admission::new(2);
    let mut s = stream(&gate, 4);
    s.end();
    s.yield_output(1, 0);
    s.yield_output(2, 0);
    // The reader took both (they are lent to it) and has read neither.
    assert_eq!(take_out(&mut s).0, vec![1, 2]);
    s.output_unread(2);
    s.handler_returned(0);
    assert_eq!(s.phase(), Phase::Ending);
    // It can still be cancelled, dropping them.
    assert_eq!(s.cancel(0), Some(0));
    assert_eq!(s.phase(), Phase::Cancelled);
    // Read both before the return: done at once.
    let mut read = stream(&gate, 4);
    read.end();
    read.yield_output(1, 0);
    assert_eq!(take_out(&mut read).0, vec![1]);
    read.output_unread(0);
    read.handler_returned(0);
    assert_eq!(read.phase(), Phase::Done);
}

#[test]
fn streams_completed_without_a_permit_count_as_handed_over_streams_do() {
    // The same two one-event streams, one through a permit and handoffs, the other counted in one call: the
    // function's stats and totals agree, and the limit was never taken by the second.
    let with_permits = Admission::new(1);
    for _ in 0..2 {
        let mut s = stream(&with_permits, 4);
        s.handed_over(1, 1, 0);
        s.end();
        s.handler_returned(0);
    }
    let counted = Admission::new(1);
    counted.count_completed(2, 2, 2);
    let (sa, sb) = (with_permits.stats(), counted.stats());
    assert_eq!((sb.open, sb.opened, sb.completed), (0, 2, 2));
    assert_eq!(sa, sb);
    let (ta, tb) = (with_permits.totals(&[0, 50]), counted.totals(&[0, 50]));
    assert_eq!((tb.events_in, tb.events_out), (2, 2));
    assert_eq!(ta.queue_wait, tb.queue_wait);
    counted.count_completed(1, 0, 0);
    assert_eq!(
        counted.totals(&[0]).queue_wait.count,
        2,
        "no event, no wait"
    );
}

#[test]
fn an_adopted_stream_keeps_its_key_and_open_time_and_idles_from_its_adoption() {
    let (deadlines, gate) = idle_parts();
    let key = reserve_keys(2);
    assert_eq!(
        reserve_keys(1),
        key + 2,
        "a reserved block is given to no other stream"
    );
    let idle = IdleConfig {
        deadlines: Rc::clone(&deadlines),
        timeout_us: 1000,
    };
    let start = Start {
        key: Some(key + 1),
        opened_us: 100,
        opened_at_ms: 5.0,
    };
    let mut s: StreamCore<u32> =
        StreamCore::adopt(gate.admit().unwrap(), 4, Some(idle), 400, start);
    assert_eq!(s.key(), key + 1);
    s.handed_over(2, 1, 400);
    let m = s.metrics(600, 0, 0);
    assert_eq!((m.opened_at, m.duration_ms), (5.0, 0.5));
    assert_eq!((m.events_in, m.events_out), (2, 1));
    // Idle from its adoption at 400 (no earlier: its sends were before it), so not at 1300.
    assert_eq!(s.idle_fire(1300), IdleVerdict::Rearmed);
    assert_eq!(s.idle_fire(1400), IdleVerdict::Expired);
    assert_eq!(gate.stats().open, 1);
}
