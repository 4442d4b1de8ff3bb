//! A slab addressed by handles: the table that holds one thread's open
//! streams (`streams.rs`), generic over what it holds.
//!
//! A handle is a plain number (entry index plus a generation), so opening a
//! stream creates no native JS object (a napi class instance costs ~1.5 µs,
//! measured) and every call finds its stream with one bounds-checked index.
//! The generation makes a stale handle (of a removed value) find nothing
//! instead of a stranger's value.

const INDEX_BITS: u32 = 24;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;
/// Generations wrap below 2^29 so a handle stays an exact f64 integer.
const GENERATION_MASK: u32 = (1 << 29) - 1;

/// A place of the slab: a value, or a free place, and the generation that a
/// handle to it must carry.
struct Entry<T> {
    generation: u32,
    value: Option<T>,
}

/// Values addressed by handles; removed places are reused under a new
/// generation.
pub(crate) struct Slab<T> {
    entries: Vec<Entry<T>>,
    /// Indices of free entries.
    free: Vec<u32>,
}

/// The slab holds 2^24 values at most.
pub(crate) struct Full;

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

impl<T> Slab<T> {
    /// An empty slab.
    pub(crate) fn new() -> Self {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
        }
    }

    /// Stores `value`; returns its handle.
    pub(crate) fn insert(&mut self, value: T) -> Result<f64, Full> {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                let i = self.entries.len() as u32;
                if u64::from(i) > INDEX_MASK {
                    return Err(Full);
                }
                self.entries.push(Entry {
                    generation: 0,
                    value: None,
                });
                i
            }
        };
        let entry = &mut self.entries[index as usize];
        entry.value = Some(value);
        Ok(encode(index, entry.generation))
    }

    /// How many values it holds.
    pub(crate) fn len(&self) -> u32 {
        (self.entries.len() - self.free.len()) as u32
    }

    /// The value behind `handle`, or `None` for a stale or unknown handle.
    pub(crate) fn get_mut(&mut self, handle: f64) -> Option<&mut T> {
        decode(handle)
            .and_then(|(index, generation)| {
                self.entries
                    .get_mut(index)
                    .filter(|e| e.generation == generation)
            })
            .and_then(|e| e.value.as_mut())
    }

    /// Takes the value behind `handle` out (its place is free for another,
    /// under the next generation), or `None` for a stale or unknown handle.
    pub(crate) fn remove(&mut self, handle: f64) -> Option<T> {
        let (index, generation) = decode(handle)?;
        let entry = self
            .entries
            .get_mut(index)
            .filter(|e| e.generation == generation)?;
        let value = entry.value.take()?;
        entry.generation = (entry.generation + 1) & GENERATION_MASK;
        self.free.push(index as u32);
        Some(value)
    }
}
