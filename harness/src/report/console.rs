//! The console reporter: a progress bar per backend while running (hidden when stderr is not a
//! terminal), each failure as it happens with `file:line:column`, expected and actual, then totals.

use super::model::{CaseReport, CaseStatus, RunReport};
use crate::events::{Event, EventKind, SuiteKey};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;

/// Follows events and prints.
pub struct Console {
    multi: MultiProgress,
    bars: HashMap<SuiteKey, ProgressBar>,
    verbose: bool,
}

impl Console {
    /// A console reporter; `verbose` also lists every passed and skipped case.
    pub fn new(verbose: bool) -> Self {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Self {
            multi: MultiProgress::with_draw_target(target),
            bars: HashMap::new(),
            verbose,
        }
    }

    fn print(&self, line: String) {
        if self.multi.is_hidden() {
            eprintln!("{line}");
        } else {
            let _ = self.multi.println(line);
        }
    }

    /// Handles one event.
    pub fn on_event(&mut self, event: &Event) {
        match &event.kind {
            EventKind::RunStarted { suites } => {
                let style =
                    ProgressStyle::with_template("{prefix:>20} [{bar:30}] {pos}/{len} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> ");
                for (key, count) in suites {
                    let bar = self.multi.add(ProgressBar::new(*count as u64));
                    bar.set_style(style.clone());
                    bar.set_prefix(format!("{}/{}", key.pattern, key.backend));
                    self.bars.insert(key.clone(), bar);
                }
                let total: usize = suites.iter().map(|(_, n)| n).sum();
                self.print(format!(
                    "running {total} scenario runs in {} suites",
                    suites.len()
                ));
            }
            EventKind::CaseFinished { suite, case } => {
                if let Some(bar) = self.bars.get(suite) {
                    bar.inc(1);
                    if case.status == CaseStatus::Failed {
                        bar.set_message("(failures)");
                    }
                }
                self.case(suite, case);
            }
            EventKind::Progress {
                suite,
                scenario,
                message,
            } => match self.bars.get(suite) {
                Some(bar) if !self.multi.is_hidden() => {
                    bar.set_message(format!("{scenario}: {message}"))
                }
                _ => self.print(format!(
                    "  … {}/{}: {scenario}: {message}",
                    suite.pattern, suite.backend
                )),
            },
            EventKind::RunFinished(report) => {
                for bar in self.bars.values() {
                    bar.finish();
                }
                self.summary(report);
            }
        }
    }

    fn case(&self, suite: &SuiteKey, case: &CaseReport) {
        let label = format!("{}/{}", suite.pattern, suite.backend);
        match case.status {
            CaseStatus::Failed => {
                let mut text = format!("FAIL {label}: {}", case.scenario);
                if let Some(f) = &case.failure {
                    text.push_str(&format!("\n  at {}: {}", f.location(), f.step));
                    if let Some(source) = source_line(&f.file, f.line) {
                        text.push_str(&format!("\n  {:>4} | {source}", f.line));
                    }
                    text.push_str(&format!("\n  {}", f.message));
                    if let Some(e) = &f.expected {
                        text.push_str(&format!("\n  expected: {e}"));
                    }
                    if let Some(a) = &f.actual {
                        text.push_str(&format!("\n  actual:   {a}"));
                    }
                    if let Some(t) = &f.trace_id {
                        text.push_str(&format!("\n  trace id: {t}"));
                    }
                }
                self.print(text);
            }
            CaseStatus::Skipped if self.verbose => self.print(format!(
                "SKIP {label}: {} ({})",
                case.scenario,
                case.reason.as_deref().unwrap_or("")
            )),
            CaseStatus::Passed if self.verbose => self.print(format!(
                "PASS {label}: {} ({} ms)",
                case.scenario, case.duration_ms
            )),
            _ => {}
        }
    }

    fn summary(&self, report: &RunReport) {
        for s in &report.suites {
            self.print(format!(
                "{}/{} ({}): {} passed, {} failed, {} skipped",
                s.pattern,
                s.backend,
                s.backend_kind,
                s.totals.passed,
                s.totals.failed,
                s.totals.skipped
            ));
        }
        let t = report.totals;
        self.print(format!(
            "prism-conform: {} passed, {} failed, {} skipped in {:.1}s",
            t.passed,
            t.failed,
            t.skipped,
            report.duration_ms as f64 / 1000.0
        ));
    }
}

/// The text of line `line` (1-based) of `file`, to show next to a failure.
fn source_line(file: &str, line: u64) -> Option<String> {
    let index = usize::try_from(line.checked_sub(1)?).ok()?;
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().nth(index).map(|l| l.trim_end().to_string())
}
