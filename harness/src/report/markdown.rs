//! `summary.md`: the pattern × backend matrices, then each failure with its location and a diff, then skips.

use super::model::{CaseStatus, RunReport, SuiteReport};
use prism_runtime::patterns::{Pattern, Slot};
use std::collections::BTreeSet;
use std::fmt::Write;

/// The compatibility matrices (also what the README's compatibility section shows): plain
/// patterns × backends, then one matrix per composite pattern over its slots' backends (rows: the
/// first slot's backend, columns: the second's; a one-slot composite is one row).
pub fn matrix(report: &RunReport) -> String {
    let composite = |p: &str| {
        Pattern::from_name(p)
            .is_some_and(|p| p.spec().slots.iter().all(|s| s.slot != Slot::Backend))
    };
    let plain: Vec<&SuiteReport> = report
        .suites
        .iter()
        .filter(|s| !composite(&s.pattern))
        .collect();
    let mut out = String::new();
    if !plain.is_empty() {
        let backends: BTreeSet<&str> = plain.iter().map(|s| s.backend.as_str()).collect();
        let patterns: BTreeSet<&str> = plain.iter().map(|s| s.pattern.as_str()).collect();
        let rows: Vec<(String, Vec<Option<&SuiteReport>>)> = patterns
            .iter()
            .map(|p| {
                let cells = backends
                    .iter()
                    .map(|b| {
                        plain
                            .iter()
                            .copied()
                            .find(|s| s.pattern == *p && s.backend == *b)
                    })
                    .collect();
                (p.to_string(), cells)
            })
            .collect();
        table(&mut out, "pattern", &backends, &rows);
    }
    let composites: BTreeSet<&str> = report
        .suites
        .iter()
        .map(|s| s.pattern.as_str())
        .filter(|p| composite(p))
        .collect();
    for p in composites {
        let Some(spec) = Pattern::from_name(p).map(Pattern::spec) else {
            continue;
        };
        let suites: Vec<&SuiteReport> = report.suites.iter().filter(|s| s.pattern == p).collect();
        let parts =
            |s: &SuiteReport| -> Vec<String> { s.backend.split('+').map(str::to_string).collect() };
        if !out.is_empty() {
            out.push('\n');
        }
        match spec.slots {
            [first, second] => {
                let _ = writeln!(
                    out,
                    "**{p}** (rows: the `{}` slot's backend, columns: the `{}` slot's)\n",
                    first.slot.name(),
                    second.slot.name()
                );
                let columns: BTreeSet<String> = suites
                    .iter()
                    .filter_map(|s| parts(s).get(1).cloned())
                    .collect();
                let row_names: BTreeSet<String> = suites
                    .iter()
                    .filter_map(|s| parts(s).first().cloned())
                    .collect();
                let columns_ref: BTreeSet<&str> = columns.iter().map(String::as_str).collect();
                let rows: Vec<(String, Vec<Option<&SuiteReport>>)> = row_names
                    .iter()
                    .map(|r| {
                        let cells = columns
                            .iter()
                            .map(|c| {
                                suites
                                    .iter()
                                    .copied()
                                    .find(|s| parts(s) == [r.clone(), c.clone()])
                            })
                            .collect();
                        (r.clone(), cells)
                    })
                    .collect();
                table(&mut out, first.slot.name(), &columns_ref, &rows);
            }
            slots => {
                let names: Vec<&str> = slots.iter().map(|s| s.slot.name()).collect();
                let _ = writeln!(
                    out,
                    "**{p}** (columns: the `{}` slot's backend)\n",
                    names.join("+")
                );
                let columns: BTreeSet<&str> = suites.iter().map(|s| s.backend.as_str()).collect();
                let cells = columns
                    .iter()
                    .map(|c| suites.iter().copied().find(|s| s.backend == *c))
                    .collect();
                table(&mut out, "pattern", &columns, &[(p.to_string(), cells)]);
            }
        }
    }
    out
}

/// One Markdown table: a header cell, the column names, then each row's name and cells.
fn table(
    out: &mut String,
    corner: &str,
    columns: &BTreeSet<&str>,
    rows: &[(String, Vec<Option<&SuiteReport>>)],
) {
    let _ = write!(out, "| {corner} |");
    for c in columns {
        let _ = write!(out, " {c} |");
    }
    out.push_str("\n|---|");
    for _ in columns {
        out.push_str("---|");
    }
    out.push('\n');
    for (name, cells) in rows {
        let _ = write!(out, "| {name} |");
        for cell in cells {
            match cell {
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
                if let Some(t) = &f.trace_id {
                    let _ = writeln!(out, "Trace id: `{t}`\n");
                }
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
