//! The core of velo-stream: everything a stream function's runtime decides,
//! with no JavaScript in sight.
//!
//! A *stream function* runs one handler instance per stream. Each stream
//! ([`StreamCore`]) has a bounded input lane (sender -> handler) and a bounded
//! output lane (handler -> consumer) ([`Lane`]), a lifecycle ([`Phase`]), a
//! permit taken from its function's admission gate ([`Admission`]), an optional
//! idle clock whose deadline a notifier thread reports ([`IdleDeadlines`]), and
//! metrics.
//!
//! The core decides and the embedder acts: a push that finds no room returns
//! [`Push::Parked`] and the embedder makes its caller wait (in Node, a
//! promise); a take that finds nothing returns [`Take::Empty`] and the
//! receiver waits until the embedder sees values arrive. Nothing here blocks, allocates per event beyond
//! the lanes' own buffers, or crosses threads on the per-event path.
//!
//! # Threads
//! A stream and its function's gate belong to one thread (they are `!Send`).
//! Only [`IdleDeadlines`]' notifier runs on a thread of its own; it shares one
//! mutex-guarded wake time with the owner.
//!
//! # Examples
//! ```
//! use velo_core::{Admission, Push, StreamCore, Take, Phase};
//!
//! let gate = Admission::new(10);
//! let mut s = StreamCore::new(gate.admit().unwrap(), 2, None, 0);
//! assert_eq!(s.send("a", 0), Push::Accepted);
//! assert_eq!(s.send("b", 0), Push::Accepted);
//! assert_eq!(s.send("c", 0), Push::Parked); // full: the caller waits
//!
//! let mut got = Vec::new();
//! s.take_input(usize::MAX, 5, &mut got);
//! assert_eq!(got, ["a", "b"]);
//! s.end();
//! s.take_input(usize::MAX, 6, &mut got); // admits "c", the parked send
//! assert_eq!(got, ["a", "b", "c"]);
//! assert_eq!(s.take_input(usize::MAX, 7, &mut got), Take::Ended);
//!
//! s.yield_output("A", 8);
//! s.handler_returned(9);
//! let mut out = Vec::new();
//! s.take_output(usize::MAX, 10, &mut out);
//! assert_eq!(s.take_output(usize::MAX, 11, &mut out), Take::Ended);
//! assert_eq!(s.phase(), Phase::Done);
//! assert_eq!(gate.stats().completed, 1);
//! ```

pub mod admission;
pub mod clock;
pub mod cross_lane;
pub mod histogram;
pub mod idle;
pub mod lane;
pub mod lent_waits;
pub mod limiter;
#[cfg(feature = "model")]
#[doc(hidden)]
pub mod model;
pub mod stream;
pub mod task;
pub mod wake_inbox;

pub use admission::{Admission, LimitError, Outcome, Permit, Share, Stats, TaskTotals, Totals};
pub use cross_lane::CrossLane;
pub use idle::IdleDeadlines;
pub use lane::{Lane, Push, Take};
pub use limiter::{Decision, LimiterCore, LimiterStats, Limits, Rate};
pub use stream::{reserve_keys, IdleConfig, IdleVerdict, Metrics, Phase, Start, StreamCore};
pub use task::{Attempt, BatchPolicy, RetryPolicy, Settled, TaskPolicy, TaskWindow};
