//! How the core holds a JavaScript value (a [`Slot`]): never serialised,
//! never copied through N-API. (The type `Slot` means this and nothing else
//! in the binding: a place of the streams' slab is an entry (`slab.rs`), an
//! admission is a permit; a task stage's call slot (`task.rs`) is a number,
//! the core's `TaskWindow`'s.)
//!
//! - Numbers are copied (`Slot::Number`): they cross in bulk through the
//!   shared `Float64Array` (see `ffi::Scratch`).
//! - Every other value (object, function, string, symbol, bigint, boolean,
//!   `null`, `undefined`) stays in a JS-side value table, one per JS thread
//!   (in `js/core/native-stream.ts`), and the core holds its index (`Slot::Value`). The
//!   index is the reference: the table entry lives exactly as long as the
//!   slot, so the handler receives the very value that was sent (`===`).
//!
//! This replaced `napi_ref`s: creating, reading and deleting a reference plus
//! reading and writing array elements cost ~150 ns per object (measured),
//! while a table index costs a few. A dropped `Value` slot (a cancelled
//! stream's buffered events, say) cannot clear the JS table itself, so its
//! index joins the thread's released list, which JavaScript reaps (clears
//! and reuses) after every operation that can drop slots.

use std::cell::RefCell;

/// A held JavaScript value.
#[derive(Debug)]
pub(crate) enum Slot {
    /// A number, copied.
    Number(f64),
    /// Any other value: its index in this thread's JS value table.
    Value(u32),
}

impl Slot {
    /// Which run of a take this slot belongs to (see `take_*_run`).
    pub(crate) fn kind(&self) -> u8 {
        match self {
            Slot::Number(_) => 0,
            Slot::Value(_) => 1,
        }
    }

    /// Give up the slot without releasing its table entry: its value was
    /// handed to JavaScript, which frees the entry itself as it reads it.
    pub(crate) fn into_delivered(self) -> Delivered {
        let bits = match &self {
            Slot::Number(n) => Delivered::Number(if n.is_nan() { f64::NAN } else { *n }),
            Slot::Value(i) => Delivered::Value(*i),
        };
        std::mem::forget(self);
        bits
    }
}

/// A slot's content once delivered to JavaScript.
pub(crate) enum Delivered {
    /// The number.
    Number(f64),
    /// The value's table index; JavaScript now frees the entry.
    Value(u32),
}

thread_local! {
    static RELEASED: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Slot::Value(index) = *self {
            // When the thread ends (process exit, a worker's end), its
            // thread-locals are destroyed in an order we do not choose: the
            // streams' slab may drop its slots after `RELEASED` is gone. The
            // JS table dies with the thread then, so there is nothing left to
            // release into; touching the destroyed list would abort the
            // process instead. Hence `try_with`, never `with`, in a drop.
            // (Nothing else borrows the list while a slot drops:
            // `take_released` drops no slot.)
            let _ = RELEASED.try_with(|r| r.borrow_mut().push(index));
        }
    }
}

/// Move up to `out.len()` released table indices into `out`; returns how many.
pub(crate) fn take_released(out: &mut [u32]) -> usize {
    RELEASED.with(|r| {
        let mut released = r.borrow_mut();
        let n = out.len().min(released.len());
        let from = released.len() - n;
        out[..n].copy_from_slice(&released[from..]);
        released.truncate(from);
        n
    })
}
