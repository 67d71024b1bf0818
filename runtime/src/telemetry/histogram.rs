//! A fixed-bucket latency histogram of atomics: recording is a handful of relaxed adds, no lock and
//! no allocation, so it can sit on every call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds: 1-2.5-5 steps from 5 µs to 10 s. The
/// conventions' defaults start at 5 ms, where a 20 µs proxy hop would fall in the first bucket;
/// these resolve it, and 50 ms and 100 ms (the shipped alert thresholds) are bounds.
pub const BOUNDS_SECONDS: [f64; 20] = [
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The same bounds in nanoseconds, for the recording side.
const BOUNDS_NANOS: [u64; 20] = [
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Counts per bucket (not cumulative; the exposition sums them), their total and the sum.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BOUNDS_NANOS.len() + 1],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

/// A histogram's values at one moment, cumulative as Prometheus exposes them.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Observations at or under each of [`BOUNDS_SECONDS`], then all of them (`+Inf`).
    pub cumulative: Vec<u64>,
    /// Number of observations.
    pub count: u64,
    /// Sum of the observations, in seconds.
    pub sum_seconds: f64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_NANOS.partition_point(|&bound| bound < nanos);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The values now. Concurrent observations may land between the reads; the count is taken
    /// from the buckets so the exposition's `+Inf` bucket always equals `_count`.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let cumulative: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| {
                running += b.load(Ordering::Relaxed);
                running
            })
            .collect();
        HistogramSnapshot {
            count: running,
            cumulative,
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(20));
        h.observe(Duration::from_micros(25));
        h.observe(Duration::from_millis(60));
        h.observe(Duration::from_secs(30));
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.cumulative[1], 0, "nothing at or under 10 µs");
        assert_eq!(
            s.cumulative[2], 2,
            "20 µs and 25 µs are under the 25 µs bound"
        );
        assert_eq!(s.cumulative[12], 2, "60 ms is above 50 ms");
        assert_eq!(s.cumulative[13], 3, "and at or under 100 ms");
        assert_eq!(s.cumulative[19], 3, "30 s is above every bound");
        assert_eq!(s.cumulative[20], 4);
        assert!((s.sum_seconds - 30.060_045).abs() < 1e-9);
        assert_eq!(BOUNDS_SECONDS.len(), BOUNDS_NANOS.len());
        for (s, n) in BOUNDS_SECONDS.iter().zip(BOUNDS_NANOS) {
            assert_eq!((s * 1e9).round() as u64, n);
        }
    }
}
