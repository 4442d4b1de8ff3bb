//! A small log-linear histogram of microsecond durations.
//!
//! Values below 8 have a bucket each; above, every power of two is split into
//! 8 buckets, so a reported percentile is within 12.5 % of the true value.
//! Buckets are allocated on the first record: an idle stream pays nothing.

const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
/// Durations are clamped to 2^35 µs (about 9.5 hours).
const MAX_BIT: u32 = 35;
const BUCKETS: usize = (MAX_BIT as usize - SUB_BITS as usize + 2) * SUB;

/// Counts of durations in log-linear buckets.
#[derive(Default, Clone, Debug, PartialEq, Eq)]
pub struct Histogram {
    buckets: Option<Box<[u32; BUCKETS]>>,
    count: u64,
    sum: u64,
}

/// Cumulative counts at chosen bounds, for exporters (Prometheus `le`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// How many durations were recorded.
    pub count: u64,
    /// Their sum, microseconds.
    pub sum_us: u64,
    /// `(bound_us, durations at or below it)`, in the bounds' order.
    pub buckets: Vec<(u64, u64)>,
}

fn bucket_of(value: u64) -> usize {
    let v = value.min((1u64 << (MAX_BIT + 1)) - 1);
    if v < SUB as u64 {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let group = (msb - SUB_BITS + 1) as usize;
    group * SUB + ((v >> (msb - SUB_BITS)) as usize & (SUB - 1))
}

/// The values that share `value`'s bucket, `lo..hi` (`hi` is `u64::MAX` for
/// the last bucket, which takes every larger value too): a histogram cannot
/// tell them apart, except by its sum.
pub fn bucket_range(value: u64) -> (u64, u64) {
    let v = value.min((1u64 << (MAX_BIT + 1)) - 1);
    if v < SUB as u64 {
        return (v, v + 1);
    }
    let shift = 63 - v.leading_zeros() - SUB_BITS;
    let lo = (v >> shift) << shift;
    let hi = lo + (1u64 << shift);
    (
        lo,
        if hi >> (MAX_BIT + 1) != 0 {
            u64::MAX
        } else {
            hi
        },
    )
}

/// The value a bucket stands for: the middle of its range.
fn value_of(bucket: usize) -> u64 {
    if bucket < SUB {
        return bucket as u64;
    }
    let group = (bucket / SUB) as u32;
    let shift = group - 1;
    let low = ((SUB + bucket % SUB) as u64) << shift;
    low + ((1u64 << shift) >> 1)
}

impl Histogram {
    /// Record one duration in microseconds.
    pub fn record(&mut self, micros: u64) {
        self.record_n(micros, 1);
    }

    /// Records `n` samples of the same value (`n` may be 0).
    pub fn record_n(&mut self, micros: u64, n: u64) {
        self.record_sum(micros, n, micros.saturating_mul(n));
    }

    /// Records `n` samples that share `micros`'s bucket (see
    /// [`bucket_range`]) and add up to `sum` (`n` may be 0).
    pub fn record_sum(&mut self, micros: u64, n: u64, sum: u64) {
        if n == 0 {
            return;
        }
        let buckets = self.buckets.get_or_insert_with(|| Box::new([0; BUCKETS]));
        let b = &mut buckets[bucket_of(micros)];
        *b = b.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
        self.count += n;
        self.sum = self.sum.saturating_add(sum);
    }

    /// Cumulative counts at `bounds_us` (ascending). A bucket counts under a
    /// bound when the value it stands for is at or below it, so each count is
    /// exact to within a bucket (12.5 %).
    pub fn snapshot(&self, bounds_us: &[u64]) -> HistogramSnapshot {
        let mut buckets = Vec::with_capacity(bounds_us.len());
        let mut seen = 0u64;
        let mut i = 0;
        for &bound in bounds_us {
            if let Some(counts) = &self.buckets {
                while i < BUCKETS && value_of(i) <= bound {
                    seen += u64::from(counts[i]);
                    i += 1;
                }
            }
            buckets.push((bound, seen));
        }
        HistogramSnapshot {
            count: self.count,
            sum_us: self.sum,
            buckets,
        }
    }

    /// The duration below which a fraction `q` (0..=1) of the records fall;
    /// 0 when nothing was recorded.
    pub fn percentile(&self, q: f64) -> u64 {
        let Some(buckets) = &self.buckets else {
            return 0;
        };
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, n) in buckets.iter().enumerate() {
            seen += u64::from(*n);
            if seen >= rank {
                return value_of(i);
            }
        }
        value_of(BUCKETS - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_monotonic() {
        let mut last = 0;
        for v in 0..100_000u64 {
            let b = bucket_of(v);
            assert!(b == last || b == last + 1, "gap at {v}");
            last = b;
        }
        assert!(bucket_of(u64::MAX) < BUCKETS);
    }

    #[test]
    fn a_bucket_range_holds_exactly_the_values_of_the_bucket() {
        let mut values: Vec<u64> = (0..5_000).collect();
        values.extend((0..64).flat_map(|bit| [1u64 << bit, (1u64 << bit) - 1, (1u64 << bit) + 1]));
        values.push(u64::MAX);
        for v in values {
            let (lo, hi) = bucket_range(v);
            assert!(lo <= v && v < hi || hi == u64::MAX, "{v} in {lo}..{hi}");
            assert_eq!(bucket_of(lo), bucket_of(v), "{v}: lo {lo}");
            if lo > 0 {
                assert_ne!(bucket_of(lo - 1), bucket_of(v), "{v}: below lo {lo}");
            }
            if hi != u64::MAX {
                assert_eq!(bucket_of(hi - 1), bucket_of(v), "{v}: hi {hi}");
                assert_ne!(bucket_of(hi), bucket_of(v), "{v}: hi {hi}");
            } else {
                assert_eq!(bucket_of(u64::MAX), bucket_of(v), "{v}: the last bucket");
            }
        }
    }

    #[test]
    fn percentile_is_within_an_eighth() {
        let mut h = Histogram::default();
        for v in 1..=1000u64 {
            h.record(v);
        }
        for (q, exact) in [(0.5, 500.0), (0.99, 990.0)] {
            let got = h.percentile(q) as f64;
            assert!((got - exact).abs() / exact <= 0.125, "q{q}: {got}");
        }
        assert_eq!(Histogram::default().percentile(0.5), 0);
    }

    #[test]
    fn snapshot_is_cumulative_with_sum() {
        let mut h = Histogram::default();
        for v in [1, 2, 3, 100, 5000] {
            h.record(v);
        }
        let s = h.snapshot(&[2, 10, 1000, 10_000]);
        assert_eq!((s.count, s.sum_us), (5, 5106));
        assert_eq!(s.buckets, vec![(2, 2), (10, 3), (1000, 4), (10_000, 5)]);
    }
}
