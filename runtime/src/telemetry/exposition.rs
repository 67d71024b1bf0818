//! The text exposition formats a scrape asks for: Prometheus text 0.0.4 (the default) and
//! OpenMetrics 1.0 (when the scraper's `Accept` names `application/openmetrics-text`). The two
//! differ in a counter's family name (OpenMetrics drops `_total` from it), in `# UNIT` lines and in
//! the closing `# EOF`.

use super::histogram::{BOUNDS_SECONDS, HistogramSnapshot};
use std::fmt::Write;

/// The content type of Prometheus text.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The content type of OpenMetrics text.
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up; samples are `NAME_total`.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Buckets, sum and count.
    Histogram,
}

/// Label pairs of one sample.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

/// One exposition being written.
#[derive(Debug)]
pub struct Exposition {
    out: String,
    open_metrics: bool,
}

impl Exposition {
    /// An empty exposition in OpenMetrics (`true`) or Prometheus text.
    pub fn new(open_metrics: bool) -> Self {
        Self {
            out: String::with_capacity(16 * 1024),
            open_metrics,
        }
    }

    /// Its content type.
    pub fn content_type(&self) -> &'static str {
        if self.open_metrics {
            OPENMETRICS_TEXT
        } else {
            PROMETHEUS_TEXT
        }
    }

    /// Starts a family: `name` without `_total`, with the unit suffix (e.g. `_seconds`) when it
    /// has a `unit`.
    pub fn family(&mut self, name: &str, kind: Kind, unit: Option<&str>, help: &str) {
        let shown = if kind == Kind::Counter && !self.open_metrics {
            format!("{name}_total")
        } else {
            name.to_string()
        };
        let kind_name = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(self.out, "# HELP {shown} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {shown} {kind_name}");
        if let (true, Some(unit)) = (self.open_metrics, unit) {
            let _ = writeln!(self.out, "# UNIT {shown} {unit}");
        }
    }

    /// A counter's sample (`name` as given to [`Exposition::family`]).
    pub fn counter(&mut self, name: &str, labels: Labels<'_>, value: u64) {
        self.sample(name, "_total", labels, None, &value.to_string());
    }

    /// A counter's sample whose value is not a whole number (CPU seconds).
    pub fn counter_f64(&mut self, name: &str, labels: Labels<'_>, value: f64) {
        self.sample(name, "_total", labels, None, &number(value));
    }

    /// A gauge's sample.
    pub fn gauge(&mut self, name: &str, labels: Labels<'_>, value: f64) {
        self.sample(name, "", labels, None, &number(value));
    }

    /// A gauge family of one unlabelled sample.
    pub fn single_gauge(&mut self, name: &str, help: &str, value: f64) {
        self.family(name, Kind::Gauge, None, help);
        self.gauge(name, &[], value);
    }

    /// A counter family with one sample per value of the label `key`.
    pub fn counters_by<'a>(
        &mut self,
        name: &str,
        help: &str,
        key: &str,
        values: impl IntoIterator<Item = (&'a str, u64)>,
    ) {
        self.family(name, Kind::Counter, None, help);
        for (label, n) in values {
            self.counter(name, &[(key, label)], n);
        }
    }

    /// A histogram's buckets, sum and count.
    pub fn histogram(&mut self, name: &str, labels: Labels<'_>, h: &HistogramSnapshot) {
        for (i, count) in h.cumulative.iter().enumerate() {
            let le = BOUNDS_SECONDS
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| number(*b));
            self.sample(name, "_bucket", labels, Some(&le), &count.to_string());
        }
        self.sample(name, "_sum", labels, None, &number(h.sum_seconds));
        self.sample(name, "_count", labels, None, &h.count.to_string());
    }

    fn sample(&mut self, name: &str, suffix: &str, labels: Labels<'_>, le: Option<&str>, v: &str) {
        let out = &mut self.out;
        out.push_str(name);
        out.push_str(suffix);
        let mut pairs = labels
            .iter()
            .map(|(k, v)| (*k, *v))
            .chain(le.map(|le| ("le", le)));
        if let Some((k, v)) = pairs.next() {
            let _ = write!(out, "{{{k}=\"{}\"", escape_label(v));
            for (k, v) in pairs {
                let _ = write!(out, ",{k}=\"{}\"", escape_label(v));
            }
            out.push('}');
        }
        out.push(' ');
        out.push_str(v);
        out.push('\n');
    }

    /// The finished text.
    pub fn finish(mut self) -> String {
        if self.open_metrics {
            self.out.push_str("# EOF\n");
        }
        self.out
    }
}

/// A float as both formats read it: integers without a fraction's noise, `+Inf`, `NaN`.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::histogram::Histogram;
    use std::time::Duration;

    #[test]
    fn counters_are_named_as_each_format_wants() {
        let mut text = Exposition::new(false);
        text.family("prism_calls", Kind::Counter, None, "Calls.");
        text.counter("prism_calls", &[("namespace", "a\"b")], 3);
        assert_eq!(
            text.finish(),
            "# HELP prism_calls_total Calls.\n# TYPE prism_calls_total counter\nprism_calls_total{namespace=\"a\\\"b\"} 3\n"
        );
        let mut om = Exposition::new(true);
        om.family("prism_calls", Kind::Counter, None, "Calls.");
        om.counter("prism_calls", &[], 3);
        assert_eq!(
            om.finish(),
            "# HELP prism_calls Calls.\n# TYPE prism_calls counter\nprism_calls_total 3\n# EOF\n"
        );
    }

    #[test]
    fn a_histogram_has_every_bucket_then_sum_and_count() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(30));
        let mut om = Exposition::new(true);
        om.family("d_seconds", Kind::Histogram, Some("seconds"), "D.");
        om.histogram("d_seconds", &[("m", "x")], &h.snapshot());
        let text = om.finish();
        assert!(text.contains("# UNIT d_seconds seconds\n"));
        assert!(
            text.contains("d_seconds_bucket{m=\"x\",le=\"0.000025\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("d_seconds_bucket{m=\"x\",le=\"0.00005\"} 1\n"));
        assert!(text.contains("d_seconds_bucket{m=\"x\",le=\"1.0\"} 1\n"));
        assert!(text.contains("d_seconds_bucket{m=\"x\",le=\"+Inf\"} 1\n"));
        assert!(text.contains("d_seconds_count{m=\"x\"} 1\n"));
        assert!(text.ends_with("# EOF\n"));
    }
}
