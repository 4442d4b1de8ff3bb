//! Streams whose handler runs on a worker thread (`workerFn`): the two
//! [`CrossLane`]s of each such stream, and the wakes between threads.
//!
//! Every thread that loads the addon shares these process-wide tables: the
//! thread that opens a stream (the *caller*) and the worker thread that runs
//! its handler find the same lanes by the stream's pair id.
//!
//! - Lane 0 carries input (the caller sends, the worker takes); lane 1 carries
//!   output (the worker sends, the caller takes).
//! - A lane's values are *batches*: each is one serialization (made in
//!   JavaScript, `js/worker/codec.ts`) of an array of events, plus the large
//!   byte arrays it refers to, so a batch crosses in one push and one take,
//!   and each byte is copied once.
//! - A lane call that must wake a party posts the token `pair * 2 + lane` to
//!   that party's thread [`WakeInbox`], and signals the thread through its
//!   threadsafe function only when the inbox was empty. The thread's JavaScript
//!   gets every token posted since in one call, and knows its role on each
//!   lane. No event, and no batch after the first of a burst, costs a signal.
//! - The threadsafe functions are weak: they never keep a thread's event loop
//!   alive. The caller's thread is kept alive by its waiting reads (as for any
//!   stream); a worker thread by its message port.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use velo_core::cross_lane::{Closed, CrossLane, Push, Take, Wake};
use velo_core::wake_inbox::WakeInbox;

/// One serialized batch, and the large byte arrays it refers to, carried
/// beside it so that each is copied once (from the sender's memory into its
/// own allocation, which the receiver then uses in place).
struct Batch {
    bytes: Vec<u8>,
    attached: Vec<Vec<u8>>,
}
type Signal = ThreadsafeFunction<(), (), Vec<f64>, Status, false, true>;

/// What `crossPush` answers (the core's [`Push`], a closed lane's reason
/// spelled out).
#[napi]
pub enum CrossPushStatus {
    /// The whole batch was queued.
    Accepted = 0,
    /// The lane is full: what did not fit is kept, and the sender is woken
    /// when there is room.
    Parked = 1,
    /// The lane was ended: the batch was refused.
    Ended = 2,
    /// The lane was cancelled (or the pair freed): the batch was refused.
    Cancelled = 3,
}

/// What `crossTake` answers when it has no batch (the core's [`Take`]).
#[napi]
pub enum CrossTakeStatus {
    /// Nothing queued: the receiver is woken when a batch comes.
    Empty = 1,
    /// The lane was ended and every batch taken.
    Ended = 2,
    /// The lane was cancelled (or the pair freed).
    Cancelled = 3,
}

/// One thread's wake inbox and the signal that makes the thread drain it.
struct Inbox {
    wakes: WakeInbox,
    /// Bound by the thread itself (`crossListen`), once it runs JavaScript;
    /// wakes posted before then are delivered on binding.
    signal: Mutex<Option<Signal>>,
}

impl Inbox {
    fn wake(&self, token: u64) {
        if self.wakes.post(token) {
            if let Some(signal) = lock(&self.signal).as_ref() {
                // A thread that has exited answers `Closing`: it has nobody
                // left to wake, and its supervisor fails its streams.
                let _ = signal.call((), ThreadsafeFunctionCallMode::NonBlocking);
            }
        }
    }
}

/// A stream placed on a worker thread: its two lanes and its two threads.
struct Pair {
    lanes: [CrossLane<Batch>; 2],
    /// Per lane, the sender's batch that did not fit (kept until its wake).
    unsent: [Mutex<VecDeque<Batch>>; 2],
    /// `[caller, worker]`.
    inboxes: [Arc<Inbox>; 2],
    /// Bit per side that released the pair; removed from the table at both.
    released: AtomicU8,
}

const INPUT: usize = 0;
const CALLER: usize = 0;
const WORKER: usize = 1;

impl Pair {
    /// Posts the wakes a call on `lane` answered.
    fn deliver(&self, id: u64, lane: usize, wake: Wake) {
        let (sender, receiver) = if lane == INPUT {
            (CALLER, WORKER)
        } else {
            (WORKER, CALLER)
        };
        let token = id * 2 + lane as u64;
        if wake.sender {
            self.inboxes[sender].wake(token);
        }
        if wake.receiver {
            self.inboxes[receiver].wake(token);
        }
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static INBOXES: LazyLock<Mutex<HashMap<u64, Arc<Inbox>>>> = LazyLock::new(Default::default);
static PAIRS: LazyLock<Mutex<HashMap<u64, Arc<Pair>>>> = LazyLock::new(Default::default);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every holder leaves the table or slot consistent in one step.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn id_of(value: f64) -> u64 {
    value as u64
}

fn inbox(id: f64) -> Result<Arc<Inbox>> {
    lock(&INBOXES)
        .get(&id_of(id))
        .cloned()
        .ok_or_else(|| Error::from_reason(format!("velo-stream: no thread inbox {id}")))
}

/// The pair `id`, or `None` once both sides released it.
fn pair(id: f64) -> Option<Arc<Pair>> {
    lock(&PAIRS).get(&id_of(id)).cloned()
}

fn lane_index(lane: u32) -> Result<usize> {
    match lane {
        0 | 1 => Ok(lane as usize),
        _ => Err(Error::from_reason(format!("velo-stream: no lane {lane}"))),
    }
}

fn closed_status(why: Closed) -> CrossPushStatus {
    match why {
        Closed::Ended => CrossPushStatus::Ended,
        Closed::Cancelled => CrossPushStatus::Cancelled,
    }
}

/// A new thread inbox (the supervisor makes one per worker thread before it
/// starts, and the caller's thread one for itself).
#[napi(catch_unwind)]
pub(crate) fn cross_inbox() -> f64 {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let inbox = Arc::new(Inbox {
        wakes: WakeInbox::new(),
        signal: Mutex::new(None),
    });
    lock(&INBOXES).insert(id, inbox);
    id as f64
}

/// Binds inbox `id` to the calling thread: `callback(tokens)` runs on this
/// thread with the tokens posted since it last ran.
#[napi(catch_unwind)]
pub(crate) fn cross_listen(id: f64, callback: Function<Vec<f64>, ()>) -> Result<()> {
    let inbox = inbox(id)?;
    let drained = Arc::clone(&inbox);
    let signal: Signal = callback
        .build_threadsafe_function::<()>()
        .weak::<true>()
        .callee_handled::<false>()
        .build_callback(move |_| {
            let mut tokens = Vec::new();
            drained.wakes.drain(&mut tokens);
            Ok(tokens.into_iter().map(|t| t as f64).collect::<Vec<f64>>())
        })?;
    let mut slot = lock(&inbox.signal);
    *slot = Some(signal);
    if inbox.wakes.awaits_signal() {
        if let Some(signal) = slot.as_ref() {
            let _ = signal.call((), ThreadsafeFunctionCallMode::NonBlocking);
        }
    }
    Ok(())
}

/// Forgets inbox `id` (its thread has exited).
#[napi(catch_unwind)]
pub(crate) fn cross_close_inbox(id: f64) {
    lock(&INBOXES).remove(&id_of(id));
}

/// A new stream between the caller's thread (inbox `caller`) and a worker
/// thread (inbox `worker`), each lane holding at most `capacity` batches.
#[napi(catch_unwind)]
pub(crate) fn cross_open(caller: f64, worker: f64, capacity: u32) -> Result<f64> {
    let inboxes = [inbox(caller)?, inbox(worker)?];
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let capacity = capacity.max(1) as usize;
    let pair = Pair {
        lanes: [CrossLane::new(capacity), CrossLane::new(capacity)],
        unsent: Default::default(),
        inboxes,
        released: AtomicU8::new(0),
    };
    lock(&PAIRS).insert(id, Arc::new(pair));
    Ok(id as f64)
}

/// Sends `batch` (with the byte arrays it refers to, `attached`) on `lane`,
/// or, with none, the batch kept when the lane was full, after the sender's
/// wake. `Parked`: the lane keeps the batch and wakes the sender when there
/// is room.
#[napi(catch_unwind)]
pub(crate) fn cross_push(
    id: f64,
    lane: u32,
    batch: Option<&[u8]>,
    attached: Option<Vec<Uint8Array>>,
) -> Result<CrossPushStatus> {
    let lane = lane_index(lane)?;
    let Some(pair) = pair(id) else {
        return Ok(CrossPushStatus::Cancelled);
    };
    let mut unsent = lock(&pair.unsent[lane]);
    if let Some(bytes) = batch {
        unsent.push_back(Batch {
            bytes: bytes.to_vec(),
            attached: attached
                .unwrap_or_default()
                .iter()
                .map(|array| array.to_vec())
                .collect(),
        });
    }
    let (status, wake) = pair.lanes[lane].push(&mut unsent);
    if matches!(status, Push::Closed(_)) {
        unsent.clear();
    }
    drop(unsent);
    pair.deliver(id_of(id), lane, wake);
    Ok(match status {
        Push::Accepted => CrossPushStatus::Accepted,
        Push::Parked => CrossPushStatus::Parked,
        Push::Closed(why) => closed_status(why),
    })
}

/// Takes the oldest batch on `lane`, as `[bytes, ...attached]` (the receiver
/// owns the memory: no copy), or answers why there is none: `Empty` (the
/// receiver is woken when one comes), `Ended`, `Cancelled`.
#[napi(catch_unwind)]
pub(crate) fn cross_take(id: f64, lane: u32) -> Result<Either<Vec<Buffer>, CrossTakeStatus>> {
    let lane = lane_index(lane)?;
    let Some(pair) = pair(id) else {
        return Ok(Either::B(CrossTakeStatus::Cancelled));
    };
    let mut got = Vec::with_capacity(1);
    let (status, wake) = pair.lanes[lane].take(1, &mut got);
    pair.deliver(id_of(id), lane, wake);
    Ok(match status {
        Take::Taken { .. } => {
            let mut buffers = Vec::new();
            for batch in got {
                buffers.push(Buffer::from(batch.bytes));
                buffers.extend(batch.attached.into_iter().map(Buffer::from));
            }
            Either::A(buffers)
        }
        Take::Empty => Either::B(CrossTakeStatus::Empty),
        Take::Ended => Either::B(CrossTakeStatus::Ended),
        Take::Cancelled => Either::B(CrossTakeStatus::Cancelled),
    })
}

/// Ends `lane`: what was sent is still taken, then the receiver sees `Ended`.
#[napi(catch_unwind)]
pub(crate) fn cross_end(id: f64, lane: u32) -> Result<()> {
    let lane = lane_index(lane)?;
    if let Some(pair) = pair(id) {
        let wake = pair.lanes[lane].end();
        pair.deliver(id_of(id), lane, wake);
    }
    Ok(())
}

/// Cancels `lane` (or, with none, both): queued batches are dropped, every
/// parked party woken. The worker's thread is woken even when it is not
/// parked (a handler busy elsewhere sees its `ctx.signal` abort).
#[napi(catch_unwind)]
pub(crate) fn cross_cancel(id: f64, lane: Option<u32>) -> Result<()> {
    let lanes = match lane {
        Some(lane) => lane_index(lane)?..lane_index(lane)? + 1,
        None => 0..2,
    };
    if let Some(pair) = pair(id) {
        for lane in lanes {
            let mut wake = pair.lanes[lane].cancel();
            lock(&pair.unsent[lane]).clear();
            if lane == INPUT {
                wake.receiver = true;
            }
            pair.deliver(id_of(id), lane, wake);
        }
    }
    Ok(())
}

/// Whether `lane` was cancelled (or the pair freed).
#[napi(catch_unwind)]
pub(crate) fn cross_cancelled(id: f64, lane: u32) -> Result<bool> {
    let lane = lane_index(lane)?;
    Ok(pair(id).is_none_or(|pair| pair.lanes[lane].closed() == Some(Closed::Cancelled)))
}

/// `side` (0 the caller, 1 the worker; a supervisor releases for a thread
/// that died) is done with the pair; once both are, it is freed. Releasing
/// a side twice does nothing.
#[napi(catch_unwind)]
pub(crate) fn cross_release(id: f64, side: u32) {
    let key = id_of(id);
    let mut pairs = lock(&PAIRS);
    if let Some(pair) = pairs.get(&key) {
        let bit = if side == 0 { 1 } else { 2 };
        if pair.released.fetch_or(bit, Ordering::AcqRel) | bit == 3 {
            pairs.remove(&key);
        }
    }
}

/// Pairs not yet released by both sides (a test's leak check).
#[napi(catch_unwind)]
pub(crate) fn cross_open_pairs() -> u32 {
    lock(&PAIRS).len() as u32
}
