//! The wakes addressed to one thread, collected so that the thread is
//! signalled once for many of them.
//!
//! A [`CrossLane`](crate::cross_lane::CrossLane) call answers whom to wake; the
//! embedder posts a *token* (which lane, which party) to that party's thread
//! inbox. Signalling a thread is the expensive part (in Node, a threadsafe
//! function call: a queue, a uv async handle, a trip through the target's
//! event loop), so the inbox asks for a signal only when it goes from having
//! nothing to deliver to having something. Until the thread drains it, later
//! posts only add their token: a thread busy with one stream's batch is
//! signalled once for the wakes of all its other streams.
//!
//! # Examples
//! ```
//! use velo_core::wake_inbox::WakeInbox;
//!
//! let inbox = WakeInbox::new();
//! assert!(inbox.post(7)); // first wake: signal the thread
//! assert!(!inbox.post(9)); // already signalled: the token rides along
//!
//! let mut got = Vec::new();
//! inbox.drain(&mut got); // on the thread, when the signal arrives
//! assert_eq!(got, [7, 9]);
//! assert!(inbox.post(7)); // drained: the next wake signals again
//! ```

use std::sync::{Mutex, MutexGuard, PoisonError};

/// A thread's wake tokens, and whether a signal for them is on its way.
#[derive(Debug, Default)]
pub struct WakeInbox {
    state: Mutex<InboxState>,
}

#[derive(Debug, Default)]
struct InboxState {
    tokens: Vec<u64>,
    /// A signal was asked for and the thread has not drained since.
    signalled: bool,
}

impl WakeInbox {
    /// An empty inbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a wake. Answers whether the caller must signal the thread: true
    /// for the first token since the thread last drained, false while a
    /// signal is already on its way (the drain will find this token too).
    pub fn post(&self, token: u64) -> bool {
        let mut state = self.lock();
        state.tokens.push(token);
        !std::mem::replace(&mut state.signalled, true)
    }

    /// Moves every posted token to `out`, oldest first, on the inbox's
    /// thread. The next post asks for a signal again.
    pub fn drain(&self, out: &mut Vec<u64>) {
        let mut state = self.lock();
        out.append(&mut state.tokens);
        state.signalled = false;
    }

    /// Whether tokens wait for a signal that may not have been sent: the
    /// thread bound its signal after a post asked for one.
    pub fn awaits_signal(&self) -> bool {
        let state = self.lock();
        state.signalled && !state.tokens.is_empty()
    }

    fn lock(&self) -> MutexGuard<'_, InboxState> {
        // The state stays consistent whatever a panicking holder did: each
        // method changes it in one step.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn signals_once_per_drain() {
        let inbox = WakeInbox::new();
        let mut got = Vec::new();
        inbox.drain(&mut got);
        assert!(got.is_empty());
        assert!(inbox.post(1));
        assert!(!inbox.post(2));
        assert!(inbox.awaits_signal());
        inbox.drain(&mut got);
        assert_eq!(got, [1, 2]);
        assert!(!inbox.awaits_signal());
        assert!(inbox.post(3));
    }

    #[test]
    fn no_token_is_lost_between_threads() {
        // Posters on four threads, one drainer: every token arrives once, and
        // the signals asked for are exactly the empty -> non-empty steps the
        // drainer saw, plus at most one for the last post.
        let inbox = Arc::new(WakeInbox::new());
        let per_thread = 20_000u64;
        let posters: Vec<_> = (0..4u64)
            .map(|t| {
                let inbox = Arc::clone(&inbox);
                std::thread::spawn(move || {
                    (0..per_thread)
                        .filter(|i| inbox.post(t * per_thread + i))
                        .count()
                })
            })
            .collect();
        let mut got = Vec::new();
        let mut drains_with_tokens = 0;
        while posters.iter().any(|p| !p.is_finished()) {
            let before = got.len();
            inbox.drain(&mut got);
            drains_with_tokens += usize::from(got.len() > before);
        }
        let signals: usize = posters.into_iter().map(|p| p.join().unwrap()).sum();
        let before = got.len();
        inbox.drain(&mut got);
        drains_with_tokens += usize::from(got.len() > before);
        assert_eq!(signals, drains_with_tokens);
        got.sort_unstable();
        assert_eq!(got, (0..4 * per_thread).collect::<Vec<_>>());
    }
}
