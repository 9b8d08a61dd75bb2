//! A small log-linear latency histogram (the HdrHistogram layout, cut down to what the bench needs).
//!
//! Values below [`SUB_BUCKETS`] are counted exactly; above that every power of two is split into
//! [`SUB_BUCKETS`] equal slots, so any recorded value is known to within 1/128 (< 0.8 %) of itself while
//! the whole `u64` range fits in a fixed array of a few thousand counters. Recording is an index
//! computation and an increment, cheap enough to do on every request of every worker without locks:
//! each worker owns one histogram and they are merged once at the end.

/// log2 of the number of linear slots per power of two; 7 bits bound the relative error by 1/128.
const SUB_BITS: u32 = 7;
/// Linear slots per power of two, and the range `0..SUB_BUCKETS` that is counted exactly.
const SUB_BUCKETS: u64 = 1 << SUB_BITS;
/// Enough slots for the exact range plus one row of `SUB_BUCKETS` for every remaining exponent of a `u64`.
const LEN: usize = (SUB_BUCKETS + (64 - SUB_BITS as u64) * SUB_BUCKETS) as usize;

/// Counts of `u64` samples (the bench records nanoseconds) with bounded relative error.
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64]>,
    total: u64,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The raw counters are thousands of mostly zero slots: show the summary instead.
        f.debug_struct("Histogram")
            .field("count", &self.total)
            .field("min", &self.min())
            .field("max", &self.max)
            .finish()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Histogram { counts: vec![0; LEN].into_boxed_slice(), total: 0, min: u64::MAX, max: 0 }
    }

    /// Counts one sample.
    pub fn record(&mut self, value: u64) {
        self.counts[index_of(value)] += 1;
        self.total += 1;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// Adds all of `other`'s samples to this histogram.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine += theirs;
        }
        self.total += other.total;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// How many samples were recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The smallest sample, exactly (0 when empty).
    pub fn min(&self) -> u64 {
        if self.total == 0 { 0 } else { self.min }
    }

    /// The largest sample, exactly (0 when empty).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at a quantile given in parts per million (`500_000` = p50, `999_000` = p99.9).
    ///
    /// Returns the highest value that shares a slot with the sample of that rank (clamped to the exact
    /// min and max), so a reported percentile is never below the true one and at most 1/128 above it.
    /// Parts per million keep the rank arithmetic in integers. An empty histogram reports 0.
    pub fn value_at_ppm(&self, ppm: u64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let ppm = ppm.min(1_000_000);
        // The nearest-rank definition: the smallest sample with at least ppm/1e6 of the samples at or below it.
        let rank = (u128::from(self.total) * u128::from(ppm)).div_ceil(1_000_000).max(1);
        let rank = u64::try_from(rank).unwrap_or(self.total);
        let mut seen = 0u64;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return highest_in_slot(index).clamp(self.min, self.max);
            }
        }
        self.max
    }
}

/// The slot a value is counted in.
fn index_of(value: u64) -> usize {
    if value < SUB_BUCKETS {
        return value as usize;
    }
    let msb = 63 - value.leading_zeros();
    let shift = msb - SUB_BITS;
    // `value >> shift` keeps the top SUB_BITS + 1 bits, i.e. it lies in SUB_BUCKETS..2 * SUB_BUCKETS.
    let mantissa = value >> shift;
    (u64::from(shift) * SUB_BUCKETS + mantissa) as usize
}

/// The lowest value counted in a slot.
fn lowest_in_slot(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB_BUCKETS {
        return index;
    }
    let shift = (index - SUB_BUCKETS) / SUB_BUCKETS;
    let mantissa = SUB_BUCKETS + (index - SUB_BUCKETS) % SUB_BUCKETS;
    mantissa << shift
}

/// The highest value counted in a slot.
fn highest_in_slot(index: usize) -> u64 {
    let index_u64 = index as u64;
    if index_u64 < SUB_BUCKETS {
        return index_u64;
    }
    let shift = (index_u64 - SUB_BUCKETS) / SUB_BUCKETS;
    // Slot width is 2^shift; computed from the low end so the top slot does not overflow.
    lowest_in_slot(index) + ((1u64 << shift) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_histogram_reports_zero() {
        let h = Histogram::new();
        assert_eq!(h.count(), 0);
        assert_eq!(h.min(), 0);
        assert_eq!(h.max(), 0);
        assert_eq!(h.value_at_ppm(500_000), 0);
    }

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::new();
        for v in 1..=100 {
            h.record(v);
        }
        assert_eq!(h.count(), 100);
        assert_eq!(h.value_at_ppm(500_000), 50);
        assert_eq!(h.value_at_ppm(900_000), 90);
        assert_eq!(h.value_at_ppm(990_000), 99);
        assert_eq!(h.value_at_ppm(999_000), 100);
        assert_eq!(h.value_at_ppm(1_000_000), 100);
        assert_eq!(h.value_at_ppm(0), 1);
        assert_eq!(h.min(), 1);
        assert_eq!(h.max(), 100);
    }

    #[test]
    fn single_sample_is_every_quantile() {
        let mut h = Histogram::new();
        h.record(123_456_789);
        for ppm in [0, 500_000, 999_000, 1_000_000] {
            assert_eq!(h.value_at_ppm(ppm), 123_456_789);
        }
    }

    #[test]
    fn large_values_are_within_relative_error() {
        let mut h = Histogram::new();
        for v in 1..=1_000_000u64 {
            h.record(v * 1_000);
        }
        for (ppm, exact) in
            [(500_000u64, 500_000_000u64), (900_000, 900_000_000), (990_000, 990_000_000), (999_000, 999_000_000)]
        {
            let got = h.value_at_ppm(ppm);
            assert!(got >= exact, "p{ppm}: {got} < {exact}");
            assert!(got - exact <= exact / 128, "p{ppm}: {got} too far above {exact}");
        }
        assert_eq!(h.value_at_ppm(1_000_000), 1_000_000_000);
        assert_eq!(h.max(), 1_000_000_000);
        assert_eq!(h.min(), 1_000);
    }

    #[test]
    fn skewed_distribution_tail_is_found() {
        // 999 fast requests and one slow one: p99.9 is still fast, the max is the slow one.
        let mut h = Histogram::new();
        for _ in 0..999 {
            h.record(1_000_000);
        }
        h.record(2_000_000_000);
        assert!(h.value_at_ppm(999_000) <= 1_000_000 + 1_000_000 / 128);
        assert_eq!(h.value_at_ppm(1_000_000), 2_000_000_000);
    }

    #[test]
    fn every_value_lies_inside_its_slot() {
        let mut probes: Vec<u64> = (0..5_000).collect();
        probes.extend((7..64).flat_map(|bit| {
            let p = 1u64 << bit;
            [p - 1, p, p + 1, p + p / 3]
        }));
        probes.push(u64::MAX);
        for v in probes {
            let i = index_of(v);
            assert!(i < LEN, "{v} -> slot {i} out of range");
            let (lo, hi) = (lowest_in_slot(i), highest_in_slot(i));
            assert!(lo <= v && v <= hi, "{v} not in [{lo}, {hi}]");
            assert!(hi - lo <= lo / SUB_BUCKETS, "slot [{lo}, {hi}] too wide");
        }
    }

    #[test]
    fn merge_equals_recording_together() {
        let (mut a, mut b, mut both) = (Histogram::new(), Histogram::new(), Histogram::new());
        for v in 0..10_000u64 {
            let value = v * v;
            if v % 3 == 0 {
                a.record(value)
            } else {
                b.record(value)
            }
            both.record(value);
        }
        a.merge(&b);
        assert_eq!(a.count(), both.count());
        assert_eq!(a.min(), both.min());
        assert_eq!(a.max(), both.max());
        for ppm in [1, 500_000, 900_000, 990_000, 999_000, 1_000_000] {
            assert_eq!(a.value_at_ppm(ppm), both.value_at_ppm(ppm));
        }
    }
}
