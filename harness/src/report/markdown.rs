//! `summary.md`: the pattern × backend matrix, then each failure with its location and a diff, then skips.

use super::model::{CaseStatus, RunReport};
use std::collections::BTreeSet;
use std::fmt::Write;

/// The pattern × backend matrix alone (also what the README's compatibility section shows).
pub fn matrix(report: &RunReport) -> String {
    let backends: BTreeSet<&str> = report.suites.iter().map(|s| s.backend.as_str()).collect();
    let patterns: BTreeSet<&str> = report.suites.iter().map(|s| s.pattern.as_str()).collect();
    let mut out = String::new();
    let _ = write!(out, "| pattern |");
    for b in &backends {
        let _ = write!(out, " {b} |");
    }
    out.push_str("\n|---|");
    for _ in &backends {
        out.push_str("---|");
    }
    out.push('\n');
    for p in &patterns {
        let _ = write!(out, "| {p} |");
        for b in &backends {
            match report
                .suites
                .iter()
                .find(|s| s.pattern == *p && s.backend == *b)
            {
                Some(s) => {
                    let mark = if s.totals.failed > 0 { "❌" } else { "✅" };
                    let _ = write!(
                        out,
                        " {mark} {}/{} passed",
                        s.totals.passed,
                        s.totals.total()
                    );
                    if s.totals.skipped > 0 {
                        let _ = write!(out, ", {} skipped", s.totals.skipped);
                    }
                    if s.totals.failed > 0 {
                        let _ = write!(out, ", {} failed", s.totals.failed);
                    }
                    out.push_str(" |");
                }
                None => out.push_str(" — |"),
            }
        }
        out.push('\n');
    }
    out
}

/// Renders the whole summary.
pub fn render(report: &RunReport) -> String {
    let t = report.totals;
    let mut out = String::new();
    let _ = writeln!(out, "# Prism conformance summary\n");
    let _ = writeln!(
        out,
        "{} passed, {} failed, {} skipped in {:.1}s (prism-conform {}).\n",
        t.passed,
        t.failed,
        t.skipped,
        report.duration_ms as f64 / 1000.0,
        report.tool_version
    );
    out.push_str(&matrix(report));
    for suite in &report.suites {
        let _ = writeln!(
            out,
            "\n**{}/{}** ({}): capabilities {}",
            suite.pattern,
            suite.backend,
            suite.backend_kind,
            suite.capabilities.join(", ")
        );
        if let (Some(how), Some(ms)) = (&suite.provisioning, suite.provision_ms) {
            let _ = writeln!(out, "provisioned by {how} in {:.2}s", ms as f64 / 1000.0);
        }
    }
    if !report.unavailable.is_empty() {
        out.push_str("\n## Unavailable backends\n\n");
        for u in &report.unavailable {
            let _ = writeln!(out, "- {}: {}", u.backend, u.reason);
        }
    }
    let failures: Vec<_> = report
        .suites
        .iter()
        .flat_map(|s| s.cases.iter().map(move |c| (s, c)))
        .filter(|(_, c)| c.status == CaseStatus::Failed)
        .collect();
    if !failures.is_empty() {
        out.push_str("\n## Failures\n");
        for (suite, case) in failures {
            let _ = writeln!(
                out,
                "\n### {}/{}: {}\n",
                suite.pattern, suite.backend, case.scenario
            );
            if let Some(f) = &case.failure {
                let _ = writeln!(out, "`{}` — `{}`: {}\n", f.location(), f.step, f.message);
                if f.expected.is_some() || f.actual.is_some() {
                    out.push_str("```diff\n");
                    if let Some(e) = &f.expected {
                        let _ = writeln!(out, "- expected: {e}");
                    }
                    if let Some(a) = &f.actual {
                        let _ = writeln!(out, "+ actual:   {a}");
                    }
                    out.push_str("```\n");
                }
            }
        }
    }
    let skips: Vec<_> = report
        .suites
        .iter()
        .flat_map(|s| s.cases.iter().map(move |c| (s, c)))
        .filter(|(_, c)| c.status == CaseStatus::Skipped)
        .collect();
    if !skips.is_empty() {
        out.push_str("\n## Skipped\n\n");
        for (suite, case) in skips {
            let _ = writeln!(
                out,
                "- {}/{}: {} — {}",
                suite.pattern,
                suite.backend,
                case.scenario,
                case.reason.as_deref().unwrap_or("no reason given")
            );
        }
    }
    out
}
