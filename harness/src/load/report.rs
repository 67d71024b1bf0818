//! Load reports: `load-summary.json` (the full [`LoadSummary`]), `load-summary.md` (tables), and
//! `index.html` with a latency-over-time plot and a percentile plot per operation, as inline SVG so
//! it opens without a network. Also the threshold check.

use super::LoadSummary;
use super::stats::{OpSummary, RunStats};
use std::fmt::Write;
use std::path::Path;

/// Each violated threshold, named with its limit and the measured value.
pub fn violations(s: &LoadSummary) -> Vec<String> {
    let t = &s.thresholds;
    let mut out = Vec::new();
    if let Some(max) = t.p50_us.filter(|m| s.proxy.latency.p50_us > *m) {
        out.push(format!("p50_us: {} µs > {max}", s.proxy.latency.p50_us));
    }
    if let Some(max) = t.p99_us.filter(|m| s.proxy.latency.p99_us > *m) {
        out.push(format!("p99_us: {} µs > {max}", s.proxy.latency.p99_us));
    }
    if let Some(max) = t.added_p99_us {
        match s.added.iter().find(|a| a.op == "all") {
            Some(a) if a.p99_us > max => out.push(format!("added_p99_us: {} µs > {max}", a.p99_us)),
            Some(_) => {}
            None => out.push("added_p99_us: needs --baseline direct".into()),
        }
    }
    for (run, l) in &s.ledgers {
        if l.lost > 0 {
            out.push(format!(
                "ledger ({run}): {} of {} expected deliveries lost (accepted by the backend, never delivered nor reported dropped)",
                l.lost, l.expected
            ));
        }
    }
    let failed: u64 = s.proxy.errors.values().sum();
    let rate = failed as f64 / s.proxy.calls.max(1) as f64;
    if let Some(max) = t.error_rate.filter(|m| rate > *m) {
        out.push(format!("error_rate: {rate:.4} > {max}"));
    }
    if let Some(min) = t.min_ops_per_sec.filter(|m| s.proxy.ops_per_sec < *m) {
        out.push(format!(
            "min_ops_per_sec: {:.0} < {min}",
            s.proxy.ops_per_sec
        ));
    }
    out
}

fn table(run: &RunStats) -> String {
    let mut out = String::from(
        "| op | calls ok | errors | ops/s | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for o in &run.operations {
        let l = o.latency;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} |",
            o.op, o.ok, o.errors, o.ops_per_sec, l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us
        );
    }
    let l = run.latency;
    let _ = writeln!(
        out,
        "| **all** | {} | {} | {:.0} | {} | {} | {} | {} | {} |",
        run.calls - run.errors.values().sum::<u64>(),
        run.errors.values().sum::<u64>(),
        run.ops_per_sec,
        l.p50_us,
        l.p90_us,
        l.p99_us,
        l.p999_us,
        l.max_us
    );
    out
}

/// The Markdown summary.
pub fn markdown(s: &LoadSummary) -> String {
    let mut out = format!(
        "# Load: {} on {}\n\n{} users{}, {:.1} s through the proxy: {:.0} ops/s, {} calls.\n\n",
        s.profile,
        s.backend,
        s.users,
        s.rate
            .map(|r| format!(", target {r} ops/s"))
            .unwrap_or_default(),
        s.proxy.seconds,
        s.proxy.ops_per_sec,
        s.proxy.calls
    );
    out.push_str("## Through the proxy\n\n");
    out.push_str(&table(&s.proxy));
    if !s.ledgers.is_empty() {
        out.push_str("\n## Delivery ledger\n\nOps: `publish`/`enqueue` are the send calls; `deliver` is send→arrival at a receiver; `ack` is the ack call and `work` enqueue→ack.\n\n| run | sent | expected | arrived | dropped (reported) | lost | duplicates | redeliveries |\n|---|---|---|---|---|---|---|---|\n");
        for (run, l) in &s.ledgers {
            let _ = writeln!(
                out,
                "| {run} | {} | {} | {} | {} | {} | {} | {} |",
                l.sent, l.expected, l.arrived, l.dropped, l.lost, l.duplicates, l.redeliveries
            );
        }
    }
    if let Some(d) = &s.direct {
        out.push_str("\n## Direct (adapter in-process, no gRPC)\n\n");
        out.push_str(&table(d));
        out.push_str("\n## Added latency (proxy − direct)\n\n| op | p50 µs | p90 µs | p99 µs | p99.9 µs |\n|---|---|---|---|---|\n");
        for a in &s.added {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                a.op, a.p50_us, a.p90_us, a.p99_us, a.p999_us
            );
        }
    }
    match (s.proxy_cpu_seconds_per_1000, s.proxy_peak_rss_mib) {
        (Some(cpu), Some(rss)) => {
            let _ = write!(
                out,
                "\nProxy process: {cpu:.4} CPU seconds per 1,000 calls, peak RSS {rss:.1} MiB."
            );
        }
        _ => out.push_str("\nProxy process: not measured (--target without --proxy-pid)."),
    }
    let _ = writeln!(
        out,
        " Load generator ({} driver, {} client thread{}): {:.4} CPU seconds per 1,000 calls.",
        s.driver,
        s.client_threads,
        if s.client_threads == 1 { "" } else { "s" },
        s.driver_cpu_seconds_per_1000
    );
    if !s.proxy.errors.is_empty() {
        out.push_str("\nErrors by status: ");
        out.push_str(
            &s.proxy
                .errors
                .iter()
                .map(|(c, n)| format!("{c} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        out.push('\n');
    }
    if s.violations.is_empty() {
        out.push_str("\nThresholds: none violated.\n");
    } else {
        out.push_str("\nThresholds violated:\n");
        for v in &s.violations {
            let _ = writeln!(out, "- {v}");
        }
    }
    out
}

/// One plotted line: label, (x, y) points, dashed.
type Series = (String, Vec<(f64, f64)>, bool);

const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

fn polyline(points: &[(f64, f64)], color: &str, dashed: bool) -> String {
    let pts: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect();
    format!(
        "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\"{} points=\"{}\"/>",
        if dashed {
            " stroke-dasharray=\"4 3\""
        } else {
            ""
        },
        pts.join(" ")
    )
}

/// An SVG line chart: series of (x, y) with labels; y on a log scale when it spans decades.
fn chart(title: &str, x_label: &str, series: &[Series]) -> String {
    let (w, h, left, bottom) = (640.0, 300.0, 60.0, 40.0);
    let xs = series.iter().flat_map(|s| s.1.iter().map(|p| p.0));
    let ys = series.iter().flat_map(|s| s.1.iter().map(|p| p.1.max(1.0)));
    let (x_max, y_max) = (xs.fold(1.0f64, f64::max), ys.fold(1.0f64, f64::max));
    let log = |y: f64| y.max(1.0).log10();
    let ly_max = log(y_max).max(1.0);
    let sx = |x: f64| left + x / x_max * (w - left - 10.0);
    let sy = |y: f64| h - bottom - log(y) / ly_max * (h - bottom - 20.0);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\
         <text x=\"{left}\" y=\"14\" font-weight=\"bold\">{title}</text>\
         <line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\"/>\
         <line x1=\"{left}\" y1=\"20\" x2=\"{left}\" y2=\"{}\" stroke=\"#999\"/>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{x_label}</text>",
        h - bottom,
        w - 10.0,
        h - bottom,
        h - bottom,
        (w + left) / 2.0,
        h - 8.0
    );
    let mut decade = 1.0;
    while decade <= y_max * 10.0 {
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text><line x1=\"{left}\" y1=\"{:.1}\" x2=\"{}\" y2=\"{:.1}\" stroke=\"#eee\"/>",
            left - 4.0,
            sy(decade) + 4.0,
            if decade >= 1000.0 {
                format!("{} ms", decade / 1000.0)
            } else {
                format!("{decade} µs")
            },
            sy(decade),
            w - 10.0,
            sy(decade)
        );
        decade *= 10.0;
    }
    for (i, (label, points, dashed)) in series.iter().enumerate() {
        let color = COLORS[i / 2 % COLORS.len()];
        let scaled: Vec<(f64, f64)> = points.iter().map(|(x, y)| (sx(*x), sy(*y))).collect();
        svg.push_str(&polyline(&scaled, color, *dashed));
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" fill=\"{color}\">{label}</text>",
            w - 150.0,
            30.0 + 13.0 * i as f64
        );
    }
    svg.push_str("</svg>");
    svg
}

fn over_time(op: &OpSummary, label: &str) -> Vec<Series> {
    vec![
        (
            format!("{label} {} p50", op.op),
            op.series
                .iter()
                .map(|p| (p.second as f64, p.p50_us as f64))
                .collect(),
            false,
        ),
        (
            format!("{label} {} p99", op.op),
            op.series
                .iter()
                .map(|p| (p.second as f64, p.p99_us as f64))
                .collect(),
            true,
        ),
    ]
}

/// The HTML report with plots.
pub fn html(s: &LoadSummary) -> String {
    let mut body = String::new();
    for op in &s.proxy.operations {
        let mut time = over_time(op, "proxy");
        let mut curve = vec![(
            format!("proxy {}", op.op),
            op.curve.iter().map(|(p, us)| (*p, *us as f64)).collect(),
            false,
        )];
        if let Some(d) = s
            .direct
            .as_ref()
            .and_then(|d| d.operations.iter().find(|o| o.op == op.op))
        {
            time.extend(over_time(d, "direct"));
            curve.push((
                format!("direct {}", d.op),
                d.curve.iter().map(|(p, us)| (*p, *us as f64)).collect(),
                true,
            ));
        }
        let _ = write!(
            body,
            "<h2>{}</h2>{}{}",
            op.op,
            chart(&format!("{}: latency over time", op.op), "seconds", &time),
            chart(
                &format!("{}: latency by percentile", op.op),
                "percentile",
                &curve
            )
        );
    }
    let md = markdown(s).replace('&', "&amp;").replace('<', "&lt;");
    let goose = if s.driver == "goose" {
        "<p>Goose's own reports: <a href=\"goose-report.html\">goose-report.html</a></p>"
    } else {
        ""
    };
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Prism load: {} on {}</title></head>\
         <body style=\"font-family:sans-serif;max-width:1000px;margin:auto\"><h1>Prism load: {} on {}</h1>\
         <pre>{md}</pre>{body}{goose}</body></html>\n",
        s.profile, s.backend, s.profile, s.backend
    )
}

/// Writes `load-summary.json`, `load-summary.md` and `index.html` into `dir`.
pub fn write(s: &LoadSummary, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(s).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("load-summary.json"), json + "\n")?;
    std::fs::write(dir.join("load-summary.md"), markdown(s))?;
    std::fs::write(dir.join("index.html"), html(s))?;
    Ok(())
}
