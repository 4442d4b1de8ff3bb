//! The open streams of one JS thread, in a slab addressed by handles.
//!
//! A handle is a plain number (slot index plus a generation), so opening a
//! stream creates no native JS object (a napi class instance costs ~1.5 µs,
//! measured) and every call finds its stream with one bounds-checked index.
//! The generation makes a stale handle (of a freed stream) find nothing
//! instead of a stranger's stream.

use std::cell::RefCell;

use velo_core::StreamCore;

use crate::slot::Slot;

/// One stream's native state.
pub struct Entry {
    pub core: StreamCore<Slot>,
    /// Waiting senders (or the paused handler) admitted by the last take.
    pub admitted: u32,
}

struct Cell {
    generation: u32,
    entry: Option<Entry>,
}

#[derive(Default)]
struct Slab {
    cells: Vec<Cell>,
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
pub fn insert(entry: Entry) -> napi::Result<f64> {
    STREAMS.with(|s| {
        let mut slab = s.borrow_mut();
        let index = match slab.free.pop() {
            Some(i) => i,
            None => {
                let i = slab.cells.len() as u32;
                if u64::from(i) > INDEX_MASK {
                    return Err(napi::Error::from_reason(
                        "velo-stream: too many streams on one thread",
                    ));
                }
                slab.cells.push(Cell {
                    generation: 0,
                    entry: None,
                });
                i
            }
        };
        let cell = &mut slab.cells[index as usize];
        cell.entry = Some(entry);
        Ok(encode(index, cell.generation))
    })
}

/// Run `f` on the stream behind `handle`.
pub fn with<R>(handle: f64, f: impl FnOnce(&mut Entry) -> R) -> napi::Result<R> {
    STREAMS.with(|s| {
        let mut slab = s.borrow_mut();
        let entry = decode(handle)
            .and_then(|(index, generation)| {
                slab.cells
                    .get_mut(index)
                    .filter(|c| c.generation == generation)
            })
            .and_then(|c| c.entry.as_mut())
            .ok_or_else(|| {
                napi::Error::from_reason("velo-stream: no such stream (stale handle)")
            })?;
        Ok(f(entry))
    })
}

/// Drop the stream behind `handle` (its slot is given back if still held).
/// A stale or unknown handle is ignored: frees come from finalizers.
pub fn remove(handle: f64) {
    // Take the entry out first and drop it after the borrow ends, so that
    // nothing run by the drop can find the slab borrowed.
    let taken = STREAMS.with(|s| {
        let mut slab = s.borrow_mut();
        let (index, generation) = decode(handle)?;
        let cell = slab
            .cells
            .get_mut(index)
            .filter(|c| c.generation == generation)?;
        let entry = cell.entry.take()?;
        cell.generation = (cell.generation + 1) & GENERATION_MASK;
        slab.free.push(index as u32);
        Some(entry)
    });
    drop(taken);
}
