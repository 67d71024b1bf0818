//! `junit.xml`: one testsuite per pattern × backend (`keyvalue/memstore`), one testcase per scenario;
//! failures carry the step location and expected vs actual, skips carry their reason.

use super::model::{CaseStatus, RunReport};
use junit_report::{Duration, OffsetDateTime, ReportBuilder, TestCase, TestSuiteBuilder};

fn failure_text(f: &super::model::FailureReport) -> String {
    let mut text = format!("{}: {}: {}", f.location(), f.step, f.message);
    if let Some(e) = &f.expected {
        text.push_str(&format!("\nexpected: {e}"));
    }
    if let Some(a) = &f.actual {
        text.push_str(&format!("\nactual:   {a}"));
    }
    if let Some(t) = &f.trace_id {
        text.push_str(&format!("\ntrace id: {t}"));
    }
    text
}

/// Renders the report as JUnit XML.
pub fn render(report: &RunReport) -> std::io::Result<String> {
    let timestamp = OffsetDateTime::from_unix_timestamp_nanos(
        i128::from(report.started_at_unix_ms) * 1_000_000,
    )
    .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let mut builder = ReportBuilder::new();
    for suite in &report.suites {
        let name = format!("{}/{}", suite.pattern, suite.backend);
        let mut ts = TestSuiteBuilder::new(&name);
        ts.set_timestamp(timestamp);
        for case in &suite.cases {
            let time = Duration::milliseconds(i64::try_from(case.duration_ms).unwrap_or(i64::MAX));
            let mut tc = match (case.status, &case.failure) {
                (CaseStatus::Failed, Some(f)) => {
                    let mut tc = TestCase::failure(
                        &case.scenario,
                        time,
                        "mismatch",
                        &format!("{}: {}", f.location(), f.message),
                    );
                    tc.set_system_out(&failure_text(f));
                    tc
                }
                (CaseStatus::Failed, None) => {
                    TestCase::failure(&case.scenario, time, "failure", "failed")
                }
                (CaseStatus::Skipped, _) => TestCase::skipped_with_cause(
                    &case.scenario,
                    "capability",
                    case.reason.as_deref().unwrap_or("skipped"),
                ),
                (CaseStatus::Passed, _) => TestCase::success(&case.scenario, time),
            };
            tc.set_classname(&name);
            tc.set_filepath(&case.file);
            ts.add_testcase(tc);
        }
        builder.add_testsuite(ts.build());
    }
    let mut out = Vec::new();
    builder
        .build()
        .write_xml(&mut out)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut text = String::from_utf8(out).map_err(std::io::Error::other)?;
    text.push('\n');
    Ok(text)
}
