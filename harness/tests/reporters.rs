//! Reporter snapshots: JUnit XML, results.json and summary.md for a run with a pass, a failure and a
//! skip, so any change to what CI or a reader sees shows up as a reviewed snapshot diff.

use prism_conform::report::model::*;
use prism_conform::report::{json, junit, markdown, readme};

fn sample() -> RunReport {
    let pass = CaseReport {
        scenario: "get returns what set wrote".into(),
        file: "scenarios/keyvalue/set-get.yaml".into(),
        tags: vec!["basic".into()],
        status: CaseStatus::Passed,
        duration_ms: 12,
        reason: None,
        failure: None,
    };
    let fail = CaseReport {
        scenario: "overwrite replaces value".into(),
        file: "scenarios/keyvalue/overwrite.yaml".into(),
        tags: vec![],
        status: CaseStatus::Failed,
        duration_ms: 30,
        reason: None,
        failure: Some(FailureReport {
            file: "scenarios/keyvalue/overwrite.yaml".into(),
            line: 14,
            column: 5,
            step: "get \"conform/overwrite/1-0/k\"".into(),
            message: "value differs".into(),
            expected: Some("\"two\"".into()),
            actual: Some("\"one\"".into()),
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        }),
    };
    let skip = CaseReport {
        scenario: "scan pages".into(),
        file: "scenarios/keyvalue/scan.yaml".into(),
        tags: vec!["scan".into()],
        status: CaseStatus::Skipped,
        duration_ms: 3,
        reason: Some("backend does not declare keyvalue.scan; verified `scan_all prefix \"p\"` is refused with UNIMPLEMENTED naming keyvalue.scan".into()),
        failure: None,
    };
    let suite = |backend: &str, cases: Vec<CaseReport>| {
        let mut totals = Totals::default();
        cases.iter().for_each(|c| totals.add(c.status));
        SuiteReport {
            pattern: "keyvalue".into(),
            backend: backend.into(),
            backend_kind: backend.into(),
            capabilities: vec!["keyvalue.basic".into(), "keyvalue.ttl".into()],
            provisioning: Some(format!("process: {backend}-server on 127.0.0.1:40000")),
            provision_ms: Some(61),
            totals,
            duration_ms: cases.iter().map(|c| c.duration_ms).sum(),
            cases,
        }
    };
    RunReport {
        schema: SCHEMA_VERSION,
        tool_version: "0.1.0".into(),
        started_at_unix_ms: 1_790_000_000_000,
        duration_ms: 1234,
        totals: Totals {
            passed: 2,
            failed: 1,
            skipped: 1,
        },
        suites: vec![
            suite("memstore", vec![pass.clone(), fail, skip]),
            suite("sqlite", vec![pass]),
        ],
        unavailable: vec![UnavailableReport {
            backend: "postgres".into(),
            reason: "process: PostgreSQL server binaries not found".into(),
        }],
    }
}

#[test]
fn junit_snapshot() {
    insta::assert_snapshot!(junit::render(&sample()).unwrap());
}

#[test]
fn json_snapshot() {
    insta::assert_snapshot!(json::render(&sample()));
}

#[test]
fn markdown_snapshot() {
    insta::assert_snapshot!(markdown::render(&sample()));
}

#[test]
fn readme_block_snapshot() {
    insta::assert_snapshot!(readme::block(&sample()));
}

#[test]
fn results_json_reads_back() {
    let report = sample();
    let back: RunReport = serde_json::from_str(&json::render(&report)).unwrap();
    assert_eq!(back, report);
}
