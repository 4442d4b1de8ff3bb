//! A small log-linear histogram of microsecond durations.
//!
//! Values below 8 have a bucket each; above, every power of two is split into
//! 8 buckets, so a reported percentile is within 12.5 % of the true value.
//! Until records fall in two buckets, the histogram holds only which bucket
//! they share: most streams' events all wait about the same (a live stream's
//! handed-over events wait 0 µs), and a stream's histogram then costs no
//! allocation (its 272 buckets are about 1 KiB, zeroed, then scanned and freed:
//! about 400 instructions of a short stream's life, callgrind).

const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
/// Durations are clamped to 2^35 µs (about 9.5 hours).
const MAX_BIT: u32 = 35;
const BUCKETS: usize = (MAX_BIT as usize - SUB_BITS as usize + 2) * SUB;

/// Counts of durations in log-linear buckets.
///
/// (The derived equality compares contents: whether `buckets` is allocated
/// depends only on how many buckets were ever recorded in.)
#[derive(Default, Clone, Debug, PartialEq, Eq)]
pub struct Histogram {
    /// The counts per bucket, once records fell in two buckets or more.
    buckets: Option<Box<[u32; BUCKETS]>>,
    /// Until then, the bucket every record fell in (0 while `count` is 0 and once `buckets` is allocated).
    only: u16,
    count: u64,
    sum: u64,
}

/// A count as a bucket holds it: buckets saturate at `u32::MAX`.
fn saturated(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
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
        let bucket = bucket_of(micros);
        if self.buckets.is_none() && (self.count == 0 || usize::from(self.only) == bucket) {
            self.only = bucket as u16;
        } else {
            // (`only` is zeroed once unused, so that equal contents compare equal.)
            let (only, before) = (usize::from(std::mem::take(&mut self.only)), self.count);
            let buckets = self.buckets.get_or_insert_with(|| {
                let mut counts = Box::new([0; BUCKETS]);
                counts[only] = saturated(before);
                counts
            });
            buckets[bucket] = buckets[bucket].saturating_add(saturated(n));
        }
        self.count += n;
        self.sum = self.sum.saturating_add(sum);
    }

    /// Calls `f(bucket, count)` for the buckets in order (those with a count,
    /// at least), until it returns true.
    fn scan(&self, mut f: impl FnMut(usize, u32) -> bool) {
        match &self.buckets {
            Some(counts) => {
                for (i, n) in counts.iter().enumerate() {
                    if f(i, *n) {
                        return;
                    }
                }
            }
            None if self.count > 0 => {
                f(usize::from(self.only), saturated(self.count));
            }
            None => {}
        }
    }

    /// Cumulative counts at `bounds_us` (ascending). A bucket counts under a
    /// bound when the value it stands for is at or below it, so each count is
    /// exact to within a bucket (12.5 %).
    pub fn snapshot(&self, bounds_us: &[u64]) -> HistogramSnapshot {
        let mut buckets = Vec::with_capacity(bounds_us.len());
        let mut bounds = bounds_us.iter().copied().peekable();
        let mut seen = 0u64;
        self.scan(|i, n| {
            // Every bound below this bucket's value has seen all it will.
            while let Some(bound) = bounds.next_if(|&bound| bound < value_of(i)) {
                buckets.push((bound, seen));
            }
            seen += u64::from(n);
            bounds.peek().is_none()
        });
        buckets.extend(bounds.map(|bound| (bound, seen)));
        HistogramSnapshot {
            count: self.count,
            sum_us: self.sum,
            buckets,
        }
    }

    /// The duration below which a fraction `q` (0..=1) of the records fall;
    /// 0 when nothing was recorded.
    pub fn percentile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        // (Saturated buckets may add up to less than `count`: then the last bucket's value.)
        let mut at = BUCKETS - 1;
        self.scan(|i, n| {
            seen += u64::from(n);
            let reached = seen >= rank;
            if reached {
                at = i;
            }
            reached
        });
        value_of(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The histogram as it was before the one-bucket form: every bucket
    /// allocated from the first record (the reference the compact form must match).
    struct Dense {
        counts: Vec<u32>,
        count: u64,
        sum: u64,
    }

    impl Dense {
        fn record_sum(&mut self, micros: u64, n: u64, sum: u64) {
            if n == 0 {
                return;
            }
            let b = &mut self.counts[bucket_of(micros)];
            *b = b.saturating_add(saturated(n));
            self.count += n;
            self.sum = self.sum.saturating_add(sum);
        }

        fn percentile(&self, q: f64) -> u64 {
            if self.count == 0 {
                return 0;
            }
            let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
            let mut seen = 0u64;
            for (i, n) in self.counts.iter().enumerate() {
                seen += u64::from(*n);
                if seen >= rank {
                    return value_of(i);
                }
            }
            value_of(BUCKETS - 1)
        }

        fn cumulative(&self, bound: u64) -> u64 {
            (0..BUCKETS)
                .filter(|&i| value_of(i) <= bound)
                .map(|i| u64::from(self.counts[i]))
                .sum()
        }
    }

    fn duration() -> impl Strategy<Value = u64> {
        prop_oneof![0..4u64, 0..20u64, 0..5_000u64, any::<u64>()]
    }

    fn samples() -> impl Strategy<Value = u64> {
        prop_oneof![8 => 0..4u64, 1 => Just(u64::from(u32::MAX) - 1), 1 => Just(u64::from(u32::MAX) + 7)]
    }

    proptest! {
        #[test]
        fn the_compact_form_answers_as_every_bucket_would(
            records in prop::collection::vec((duration(), samples(), any::<u32>()), 0..12),
            bounds in prop::collection::vec(duration(), 0..6),
        ) {
            let mut h = Histogram::default();
            let mut dense = Dense { counts: vec![0; BUCKETS], count: 0, sum: 0 };
            for &(micros, n, extra) in &records {
                let sum = micros.saturating_mul(n).saturating_add(u64::from(extra) % 3);
                h.record_sum(micros, n, sum);
                dense.record_sum(micros, n, sum);
            }
            for q in [0.0, 0.01, 0.5, 0.9, 0.99, 1.0] {
                prop_assert_eq!(h.percentile(q), dense.percentile(q), "q {}", q);
            }
            let mut bounds = bounds;
            bounds.sort_unstable();
            let snapshot = h.snapshot(&bounds);
            prop_assert_eq!((snapshot.count, snapshot.sum_us), (dense.count, dense.sum));
            let expected: Vec<(u64, u64)> = bounds.iter().map(|&b| (b, dense.cumulative(b))).collect();
            prop_assert_eq!(snapshot.buckets, expected);
            // Allocated only once two buckets were recorded in.
            let used = dense.counts.iter().filter(|&&n| n > 0).count();
            prop_assert_eq!(h.buckets.is_some(), used >= 2);
        }
    }

    #[test]
    fn equal_contents_compare_equal_whatever_the_order() {
        let (mut a, mut b) = (Histogram::default(), Histogram::default());
        for v in [0, 0, 500] {
            a.record(v);
        }
        for v in [500, 0, 0] {
            b.record(v);
        }
        assert_eq!(a, b);
        let (mut c, mut d) = (Histogram::default(), Histogram::default());
        c.record_n(7, 3);
        d.record(7);
        d.record_n(7, 2);
        assert_eq!(c, d);
        assert!(c.buckets.is_none());
    }

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
