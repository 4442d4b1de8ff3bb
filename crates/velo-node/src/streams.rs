//! The open streams of one JS thread: each stream's native record, the
//! thread's table of them (a [`Slab`] addressed by handles), and
//! [`open_stream`], which admits and creates one.

use std::cell::RefCell;

use napi::Result;
use velo_core::{clock, Admission, IdleConfig, Share, Start, StreamCore};

use crate::idle;
use crate::slab::Slab;
use crate::slot::Slot;
use crate::task_state::TaskState;

/// One stream's native state.
pub(crate) struct Stream {
    pub(crate) core: StreamCore<Slot>,
    /// Waiting senders (or the paused handler) admitted by the last take.
    pub(crate) admitted: u32,
    /// A task stage's window (`taskInit`), for task stages only.
    pub(crate) task: Option<Box<TaskState>>,
}

thread_local! {
    static STREAMS: RefCell<Slab<Stream>> = RefCell::new(Slab::new());
}

/// Admits a stream to `gate` (`share`: also counted in `tally`'s totals) and
/// creates it: its handle, or -1 at the gate's limit.
pub(crate) fn open_stream(
    gate: &Admission,
    tally: Option<(&Admission, Share)>,
    buffer: u32,
    idle_ms: f64,
) -> Result<f64> {
    let admitted = match tally {
        None => gate.admit(),
        Some((other, share)) => gate.admit_also(other, share),
    };
    let Ok(permit) = admitted else {
        return Ok(-1.0);
    };
    insert(Stream {
        core: StreamCore::new(
            permit,
            buffer as usize,
            idle_config(idle_ms)?,
            clock::now_us(),
        ),
        admitted: 0,
        task: None,
    })
}

/// Admits to `gate` a stream JavaScript kept without native state since `start` (see `StreamCore::adopt`): its
/// handle, or -1 at the gate's limit (JavaScript admitted it within the limit, so that is a bug there).
pub(crate) fn adopt_stream(
    gate: &Admission,
    buffer: u32,
    idle_ms: f64,
    start: Start,
) -> Result<f64> {
    let Ok(permit) = gate.admit() else {
        return Ok(-1.0);
    };
    let idle = idle_config(idle_ms)?;
    insert(Stream {
        core: StreamCore::adopt(permit, buffer as usize, idle, clock::now_us(), start),
        admitted: 0,
        task: None,
    })
}

fn idle_config(idle_ms: f64) -> Result<Option<IdleConfig>> {
    Ok(if idle_ms > 0.0 {
        Some(IdleConfig {
            deadlines: idle::deadlines()?,
            timeout_us: (idle_ms * 1000.0).ceil() as u64,
        })
    } else {
        None
    })
}

/// Store a new stream; returns its handle.
fn insert(stream: Stream) -> Result<f64> {
    STREAMS.with(|s| {
        s.borrow_mut()
            .insert(stream)
            .map_err(|_| napi::Error::from_reason("velo-stream: too many streams on one thread"))
    })
}

/// Run `f` on the stream behind `handle`.
pub(crate) fn with<R>(handle: f64, f: impl FnOnce(&mut Stream) -> R) -> Result<R> {
    STREAMS.with(|s| {
        let mut slab = s.borrow_mut();
        let stream = slab.get_mut(handle).ok_or_else(|| {
            napi::Error::from_reason("velo-stream: no such stream (stale handle)")
        })?;
        Ok(f(stream))
    })
}

/// Drop the stream behind `handle` (its permit is given back if still held,
/// its task deadline disarmed): its key. A stale or unknown handle is
/// ignored (`None`): frees come from finalizers, also for streams retired
/// before they were collected.
pub(crate) fn remove(handle: f64) -> Option<u64> {
    // Take the stream out first and drop it after the borrow ends, so that
    // nothing run by the drop can find the slab borrowed.
    let taken = STREAMS.with(|s| s.borrow_mut().remove(handle));
    let key = taken.as_ref().map(|stream| stream.core.key());
    drop(taken);
    key
}

/// How many streams the table holds (for tests).
pub(crate) fn count() -> u32 {
    STREAMS.with(|s| s.borrow().len())
}
