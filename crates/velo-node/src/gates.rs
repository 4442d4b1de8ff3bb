//! The admission gates of this thread's stream functions, by id, so that the
//! per-stream entry point `openStream` (`raw.rs`) finds a function's gate
//! from a plain number: opening a stream then skips napi-rs' class-method
//! glue (type-tag checks, unwrap, borrow guard: about 3,500 of the 4,900
//! instructions `NativeFunction.open` took, callgrind).

use std::cell::RefCell;

use velo_core::Admission;

#[derive(Default)]
struct Gates {
    entries: Vec<Option<Admission>>,
    free: Vec<u32>,
}

thread_local! {
    static GATES: RefCell<Gates> = RefCell::new(Gates::default());
}

/// Registers a function's gate (a shared handle to it); returns its id.
pub(crate) fn register(gate: Admission) -> u32 {
    GATES.with(|g| {
        let mut g = g.borrow_mut();
        match g.free.pop() {
            Some(id) => {
                g.entries[id as usize] = Some(gate);
                id
            }
            None => {
                g.entries.push(Some(gate));
                (g.entries.len() - 1) as u32
            }
        }
    })
}

/// Forgets a gate (its function was collected). Its streams keep their permits.
pub(crate) fn unregister(id: u32) {
    GATES.with(|g| {
        let mut g = g.borrow_mut();
        if let Some(entry) = g.entries.get_mut(id as usize) {
            if entry.take().is_some() {
                g.free.push(id);
            }
        }
    });
}

/// Runs `f` on the gate with this id.
pub(crate) fn with<R>(id: u32, f: impl FnOnce(&Admission) -> R) -> napi::Result<R> {
    GATES.with(|g| {
        let g = g.borrow();
        match g.entries.get(id as usize) {
            Some(Some(gate)) => Ok(f(gate)),
            _ => Err(napi::Error::from_reason(format!(
                "velo-stream: no stream function with id {id} on this thread"
            ))),
        }
    })
}
