//! Microsecond HDR histograms per operation, per-second series for the latency-over-time plot, error
//! counts by status, and the summaries the reports are written from.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Highest latency tracked (60 s), in µs.
const MAX_US: u64 = 60_000_000;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

#[derive(Default)]
struct OpStats {
    all: Option<Histogram<u64>>,
    per_second: Vec<Histogram<u64>>,
    errors: BTreeMap<String, u64>,
}

/// Collects every call's latency and outcome; shared by all users of a run.
pub struct Recorder {
    start: Instant,
    /// By operation name (`get`, `publish`, `deliver`, …).
    ops: Mutex<BTreeMap<&'static str, OpStats>>,
    calls: AtomicU64,
    failures: AtomicU64,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// A recorder whose clock starts now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            ops: Mutex::default(),
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// Records one call.
    pub fn record(&self, op: &'static str, latency: Duration, outcome: Result<(), String>) {
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(MAX_US)
            .clamp(1, MAX_US);
        let second = usize::try_from(self.start.elapsed().as_secs()).unwrap_or(0);
        self.calls.fetch_add(1, Ordering::Relaxed);
        let Ok(mut ops) = self.ops.lock() else { return };
        let stats = ops.entry(op).or_default();
        match outcome {
            Ok(()) => {
                stats
                    .all
                    .get_or_insert_with(histogram)
                    .saturating_record(us);
                while stats.per_second.len() <= second {
                    stats.per_second.push(histogram());
                }
                stats.per_second[second].saturating_record(us);
            }
            Err(code) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                *stats.errors.entry(code).or_default() += 1;
            }
        }
    }

    /// Counts a call of `op` given up at the end of the run (no answer within the grace period)
    /// as a `DEADLINE_EXCEEDED` failure.
    pub fn record_abandoned(&self, op: &'static str) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.failures.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut ops) = self.ops.lock() {
            *ops.entry(op)
                .or_default()
                .errors
                .entry("DEADLINE_EXCEEDED".into())
                .or_default() += 1;
        }
    }

    /// Adds everything `other` recorded (another client thread's calls) to this recorder.
    pub fn merge(&self, other: &Recorder) {
        let (Ok(mut mine), Ok(theirs)) = (self.ops.lock(), other.ops.lock()) else {
            return;
        };
        for (op, stats) in theirs.iter() {
            let into = mine.entry(*op).or_default();
            if let Some(all) = &stats.all {
                let _ = into.all.get_or_insert_with(histogram).add(all);
            }
            while into.per_second.len() < stats.per_second.len() {
                into.per_second.push(histogram());
            }
            for (i, h) in stats.per_second.iter().enumerate() {
                let _ = into.per_second[i].add(h);
            }
            for (code, n) in &stats.errors {
                *into.errors.entry(code.clone()).or_default() += n;
            }
        }
        let (calls, failures) = other.counts();
        self.calls.fetch_add(calls, Ordering::Relaxed);
        self.failures.fetch_add(failures, Ordering::Relaxed);
    }

    /// Calls so far and failures so far (for the progress bar).
    pub fn counts(&self) -> (u64, u64) {
        (
            self.calls.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        )
    }

    /// The summary of everything recorded, over `elapsed`.
    pub fn summary(&self, label: &str, elapsed: Duration) -> RunStats {
        let ops = self.ops.lock().map(|o| {
            o.iter()
                .map(|(op, s)| (*op, s.all.clone(), s.per_second.clone(), s.errors.clone()))
                .collect::<Vec<_>>()
        });
        let ops = ops.unwrap_or_default();
        let secs = elapsed.as_secs_f64().max(1e-9);
        let mut overall = histogram();
        let mut errors: BTreeMap<String, u64> = BTreeMap::new();
        let mut operations = Vec::new();
        for (op, all, per_second, errs) in ops {
            let all = all.unwrap_or_else(histogram);
            let _ = overall.add(&all);
            let failed: u64 = errs.values().sum();
            for (code, n) in &errs {
                *errors.entry(code.clone()).or_default() += n;
            }
            operations.push(OpSummary {
                op: op.to_string(),
                ok: all.len(),
                errors: failed,
                ops_per_sec: (all.len() + failed) as f64 / secs,
                latency: Percentiles::of(&all),
                series: per_second
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| !h.is_empty())
                    .map(|(i, h)| SeriesPoint {
                        second: i as u64,
                        p50_us: h.value_at_quantile(0.5),
                        p99_us: h.value_at_quantile(0.99),
                        count: h.len(),
                    })
                    .collect(),
                curve: [
                    0.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.99, 100.0,
                ]
                .iter()
                .map(|p| {
                    (
                        *p,
                        if all.is_empty() {
                            0
                        } else {
                            all.value_at_percentile(*p)
                        },
                    )
                })
                .collect(),
            });
        }
        let failed: u64 = errors.values().sum();
        RunStats {
            label: label.to_string(),
            seconds: elapsed.as_secs_f64(),
            calls: overall.len() + failed,
            ops_per_sec: (overall.len() + failed) as f64 / secs,
            errors,
            latency: Percentiles::of(&overall),
            operations,
        }
    }
}

/// Latency percentiles in µs.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50_us: u64,
    /// 90th.
    pub p90_us: u64,
    /// 99th.
    pub p99_us: u64,
    /// 99.9th.
    pub p999_us: u64,
    /// Slowest.
    pub max_us: u64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// One second of one operation.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct SeriesPoint {
    /// Seconds since start.
    pub second: u64,
    /// Median that second.
    pub p50_us: u64,
    /// 99th that second.
    pub p99_us: u64,
    /// Successful calls that second.
    pub count: u64,
}

/// One operation's results.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct OpSummary {
    /// Operation name.
    pub op: String,
    /// Successful calls.
    pub ok: u64,
    /// Failed calls.
    pub errors: u64,
    /// Calls per second.
    pub ops_per_sec: f64,
    /// Latency of successful calls.
    pub latency: Percentiles,
    /// Per-second p50 / p99.
    pub series: Vec<SeriesPoint>,
    /// (percentile, µs) points for the percentile plot.
    pub curve: Vec<(f64, u64)>,
}

/// One measured run (through the proxy, or direct).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunStats {
    /// `proxy` or `direct`.
    pub label: String,
    /// Measured seconds.
    pub seconds: f64,
    /// Calls made.
    pub calls: u64,
    /// Calls per second.
    pub ops_per_sec: f64,
    /// Failed calls by status code.
    pub errors: BTreeMap<String, u64>,
    /// Latency over all operations.
    pub latency: Percentiles,
    /// Per operation.
    pub operations: Vec<OpSummary>,
}
