//! Drives one stream with an arbitrary sequence of operations and checks it
//! against the model (velo_core::model): no loss, no duplicate, no reorder,
//! no overflow, exact permit accounting.
//!
//!     cargo +nightly fuzz run stream_ops -- -max_total_time=60
#![no_main]

use libfuzzer_sys::fuzz_target;
use velo_core::model::{decode, run};

fuzz_target!(|data: &[u8]| {
    let (capacity, ops) = decode(data);
    run(capacity, ops);
});
