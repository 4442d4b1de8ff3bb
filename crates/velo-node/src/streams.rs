//! The open streams of one JS thread, in a slab addressed by handles.
//!
//! A handle is a plain number (entry index plus a generation), so opening a
//! stream creates no native JS object (a napi class instance costs ~1.5 µs,
//! measured) and every call finds its stream with one bounds-checked index.
//! The generation makes a stale handle (of a freed stream) find nothing
//! instead of a stranger's stream.

use std::cell::RefCell;

use velo_core::StreamCore;

use crate::slot::Slot;

/// One stream's native state.
pub(crate) struct Stream {
    pub(crate) core: StreamCore<Slot>,
    /// Waiting senders (or the paused handler) admitted by the last take.
    pub(crate) admitted: u32,
    /// A task stage's window (`taskInit`), for task stages only.
    pub(crate) task: Option<Box<crate::task::TaskState>>,
}

/// A place of the slab: a stream, or a free place, and the generation that
/// a handle to it must carry.
struct Entry {
    generation: u32,
    stream: Option<Stream>,
}

#[derive(Default)]
struct Slab {
    entries: Vec<Entry>,
    /// Indices of free entries.
    free: Vec<u32>,
}

thread_local! {
    static STREAMS: RefCell<Slab> = RefCell::new(Slab::default());
}

const INDEX_BITS: u32 = 24;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;
/// Generations wrap below 2^29 so a handle stays an exact f64 integer.
const GENERATION_MASK: u32 = (1 << 29) - 1;

fn encode(index: u32, generation: u32) -> f64 {
    ((u64::from(generation) << INDEX_BITS) | u64::from(index)) as f64
}

fn decode(handle: f64) -> Option<(usize, u32)> {
    if !(handle >= 0.0 && handle.fract() == 0.0) {
        return None;
    }
    let h = handle as u64;
    Some(((h & INDEX_MASK) as usize, (h >> INDEX_BITS) as u32))
}

/// Store a new stream; returns its handle.
pub(crate) fn insert(stream: Stream) -> napi::Result<f64> {
    STREAMS.with(|s| {
        let mut slab = s.borrow_mut();
        let index = match slab.free.pop() {
            Some(i) => i,
            None => {
                let i = slab.entries.len() as u32;
                if u64::from(i) > INDEX_MASK {
                    return Err(napi::Error::from_reason(
                        "velo-stream: too many streams on one thread",
                    ));
                }
                slab.entries.push(Entry {
                    generation: 0,
                    stream: None,
                });
                i
            }
        };
        let entry = &mut slab.entries[index as usize];
        entry.stream = Some(stream);
        Ok(encode(index, entry.generation))
    })
}

/// Run `f` on the stream behind `handle`.
pub(crate) fn with<R>(handle: f64, f: impl FnOnce(&mut Stream) -> R) -> napi::Result<R> {
    STREAMS.with(|s| {
        let mut slab = s.borrow_mut();
        let stream = decode(handle)
            .and_then(|(index, generation)| {
                slab.entries
                    .get_mut(index)
                    .filter(|e| e.generation == generation)
            })
            .and_then(|e| e.stream.as_mut())
            .ok_or_else(|| {
                napi::Error::from_reason("velo-stream: no such stream (stale handle)")
            })?;
        Ok(f(stream))
    })
}

/// Drop the stream behind `handle` (its permit is given back if still held).
/// A stale or unknown handle is ignored: frees come from finalizers.
pub(crate) fn remove(handle: f64) {
    // Take the stream out first and drop it after the borrow ends, so that
    // nothing run by the drop can find the slab borrowed.
    let taken = STREAMS.with(|s| {
        let mut slab = s.borrow_mut();
        let (index, generation) = decode(handle)?;
        let entry = slab
            .entries
            .get_mut(index)
            .filter(|e| e.generation == generation)?;
        let stream = entry.stream.take()?;
        entry.generation = (entry.generation + 1) & GENERATION_MASK;
        slab.free.push(index as u32);
        Some(stream)
    });
    if let Some(stream) = &taken {
        crate::task::on_free(stream);
    }
    drop(taken);
}
