//! `prism-conform load` end to end on memstore: a short run of a shipped profile through a real
//! `prism-proxy` process with the direct baseline, and every report written. No timing is asserted —
//! figures belong in benchmarks, not tests.

use prism_conform::load::profile::LoadProfile;
use prism_conform::load::{self, LoadOptions};
use prism_conform::provision::Mode;
use std::path::Path;
use std::time::Duration;

fn profiles() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/load")
}

#[test]
fn every_shipped_profile_parses() {
    for name in [
        "kv-read-heavy",
        "kv-write-heavy",
        "kv-large-values",
        "kv-scan-mixed",
    ] {
        let p = LoadProfile::load(name, &profiles()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(p.name, name);
        assert!(!p.mix.is_empty());
    }
}

#[test]
fn profile_mistakes_are_located() {
    let err = LoadProfile::parse(
        "name: x\ndescription: d\npattern: keyvalue\nmix:\n  - { op: get, wieght: 1 }\n",
        "p.yaml",
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("p.yaml:5:"), "{err}");
    assert!(err.contains("unknown field `wieght`"), "{err}");
    let err = LoadProfile::parse(
        "name: x\ndescription: d\npattern: keyvalue\nmix: [ { op: teleport, weight: 1 } ]\n",
        "p.yaml",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown variant `teleport`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_run_writes_every_report() {
    let dir = tempfile::tempdir().unwrap();
    let mut profile = LoadProfile::load("kv-scan-mixed", &profiles()).unwrap();
    profile.keys.count = 200;
    let summary = load::run(LoadOptions {
        profile,
        backend: "memstore".into(),
        mode: Mode::Auto,
        urls: Default::default(),
        users: Some(2),
        duration: Some(Duration::from_secs(1)),
        rate: None,
        connections: 2,
        proxy_threads: 1,
        baseline_direct: true,
        report_dir: dir.path().to_path_buf(),
        goose: Default::default(),
        progress: false,
    })
    .await
    .unwrap();
    assert!(summary.proxy.calls > 0, "calls went through the proxy");
    assert_eq!(
        summary.proxy.errors.values().sum::<u64>(),
        0,
        "{:?}",
        summary.proxy.errors
    );
    let ops: Vec<&str> = summary
        .proxy
        .operations
        .iter()
        .map(|o| o.op.as_str())
        .collect();
    assert_eq!(ops, ["get", "set", "scan", "cas"]);
    let direct = summary.direct.as_ref().expect("direct baseline ran");
    assert!(direct.calls > 0);
    assert_eq!(summary.added.len(), 5, "overall plus one row per operation");
    assert!(summary.proxy_peak_rss_mib > 0.0, "peak RSS read from /proc");
    assert!(
        summary.driver_cpu_seconds_per_1000 > 0.0,
        "the load generator's CPU read from /proc"
    );
    for file in [
        "load-summary.json",
        "load-summary.md",
        "index.html",
        "goose-report.html",
        "goose-report.json",
        "goose-report.md",
    ] {
        let path = dir.path().join(file);
        assert!(
            path.is_file() && std::fs::metadata(&path).unwrap().len() > 0,
            "{file} missing"
        );
    }
    let html = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
    assert!(
        html.contains("<svg")
            && html.contains("latency over time")
            && html.contains("latency by percentile")
    );
}
