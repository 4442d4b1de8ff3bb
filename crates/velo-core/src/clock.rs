//! The core's clock: microseconds on a monotonic clock since the first use in
//! this process. Every time-taking method of the core takes `now_us` as an
//! argument, so tests can drive time by hand; this is the real source.

use std::sync::OnceLock;
use std::time::Instant;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Microseconds since the process epoch.
pub fn now_us() -> u64 {
    epoch().elapsed().as_micros() as u64
}
