//! `prism-conform load` end to end on memstore: a short run of a shipped profile through a real
//! `prism-proxy` process with the direct baseline on two client threads, and every report written;
//! a run against a proxy that was already running (`--target`). No timing is asserted — figures
//! belong in benchmarks (`ci/load-vs-h2load.sh`, `ci/proxy-hop.sh`), not tests.

use prism_conform::load::profile::LoadProfile;
use prism_conform::load::proxy_process::{ProxyProcess, proxy_binary};
use prism_conform::load::{self, DriverKind, ExternalProxy, LoadOptions};
use prism_conform::provision::Mode;
use std::path::Path;
use std::time::Duration;

fn profiles() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/load")
}

/// Options for a short memstore run of `profile` into `report_dir`; tests change what they test.
fn options(profile: LoadProfile, report_dir: &Path) -> LoadOptions {
    LoadOptions {
        profile,
        backend: "memstore".into(),
        mode: Mode::Auto,
        urls: Default::default(),
        users: Some(2),
        duration: Some(Duration::from_secs(1)),
        rate: None,
        connections: 1,
        proxy_threads: 1,
        client_threads: 1,
        baseline_direct: false,
        report_dir: report_dir.to_path_buf(),
        driver: DriverKind::Lean,
        target: None,
        progress: false,
    }
}

#[test]
fn every_shipped_profile_parses() {
    for name in [
        "kv-read-heavy",
        "kv-write-heavy",
        "kv-large-values",
        "kv-scan-mixed",
        "kv-get",
    ] {
        let p = LoadProfile::load(name, &profiles()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(p.name, name);
        assert!(!p.mix.is_empty());
    }
}

#[test]
fn the_messaging_profiles_parse_and_a_messaging_profile_needs_its_section() {
    for (name, pattern) in [("pubsub-fanout", "pubsub"), ("queue-work", "queue")] {
        let p = LoadProfile::load(name, &profiles()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((p.pattern.name(), p.mix.len()), (pattern, 0));
        assert!(
            p.messaging
                .is_some_and(|m| m.senders > 0 && m.receivers > 0)
        );
    }
    let err = LoadProfile::parse("name: x\ndescription: d\npattern: queue\n", "p.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("needs messaging: { senders: N, receivers: N }"),
        "{err}"
    );
    let err = LoadProfile::parse(
        "name: x\ndescription: d\npattern: pubsub\nmessaging: { senders: 1, receivers: 1, drian: 1s }\n",
        "p.yaml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("p.yaml:4:") && err.contains("drian"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_queue_run_balances_its_ledger_through_the_proxy_and_direct() {
    let dir = tempfile::tempdir().unwrap();
    let profile = LoadProfile::load("queue-work", &profiles()).unwrap();
    let summary = load::run(LoadOptions {
        baseline_direct: true,
        rate: Some(400.0),
        ..options(profile, dir.path())
    })
    .await
    .unwrap();
    for run in ["proxy", "direct"] {
        let l = &summary.ledgers[run];
        assert!(l.sent > 50, "{run}: {l:?}");
        assert_eq!((l.arrived, l.lost), (l.sent, 0), "{run}: {l:?}");
    }
    let ops: Vec<&str> = summary
        .proxy
        .operations
        .iter()
        .map(|o| o.op.as_str())
        .collect();
    assert_eq!(ops, ["ack", "deliver", "enqueue", "work"]);
    assert!(summary.violations.is_empty(), "{:?}", summary.violations);
    let md = std::fs::read_to_string(dir.path().join("load-summary.md")).unwrap();
    assert!(md.contains("## Delivery ledger"), "{md}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_registry_run_hears_every_reported_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let mut profile = LoadProfile::load("registry-mixed", &profiles()).unwrap();
    let r = profile.registry.as_mut().expect("a registry profile");
    // Small enough for a debug build, large enough to span two listener connections.
    (r.callers, r.listeners, r.fanout, r.fanout_calls) = (4, 20, 250, 3);
    // One backend named for a composite fills every slot.
    let summary = load::run(LoadOptions {
        backend: "memstore".into(),
        ..options(profile, dir.path())
    })
    .await
    .unwrap();
    let l = &summary.ledgers["proxy"];
    assert!(l.sent > 3 && l.expected >= 3 * 250, "{l:?}");
    assert_eq!((l.arrived, l.lost), (l.expected, 0), "{l:?}");
    let ops: Vec<&str> = summary
        .proxy
        .operations
        .iter()
        .map(|o| o.op.as_str())
        .collect();
    assert_eq!(ops, ["enumerate", "multicast", "multicast-250", "register"]);
    assert!(summary.violations.is_empty(), "{:?}", summary.violations);
    // A composite names a backend per slot (or one for all of them): three for two slots is refused.
    let err = load::run(LoadOptions {
        backend: "memstore+memstore+memstore".into(),
        ..options(
            LoadProfile::load("registry-mixed", &profiles()).unwrap(),
            dir.path(),
        )
    })
    .await
    .map(|_| ())
    .unwrap_err();
    assert!(err.to_string().contains("redis+nats"), "{err}");
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
        connections: 2,
        client_threads: 2,
        baseline_direct: true,
        ..options(profile, dir.path())
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
    assert_eq!(ops, ["cas", "get", "scan", "set"]);
    let direct = summary.direct.as_ref().expect("direct baseline ran");
    assert!(direct.calls > 0);
    assert_eq!(summary.added.len(), 5, "overall plus one row per operation");
    assert!(
        summary.proxy_peak_rss_mib.is_some_and(|m| m > 0.0),
        "peak RSS read from /proc"
    );
    assert_eq!(
        (summary.driver.as_str(), summary.client_threads),
        ("lean", 2)
    );
    assert!(
        summary.driver_cpu_seconds_per_1000 > 0.0,
        "the load generator's CPU read from /proc"
    );
    for file in ["load-summary.json", "load-summary.md", "index.html"] {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_against_a_running_proxy_measures_it_by_pid() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("proxy.yaml");
    std::fs::write(
        &config,
        "auth: { mode: none }\nbackends:\n  m: { type: memstore }\nnamespaces:\n  bench: { pattern: keyvalue, backend: m }\n",
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let binary = proxy_binary().expect("prism-proxy is built beside the tests");
    let mut proxy = ProxyProcess::start(&binary, &config, port, &dir.path().join("proxy.log"))
        .await
        .unwrap();
    let pid = proxy.pid();
    let profile = LoadProfile::load("kv-get", &profiles()).unwrap();
    let summary = load::run(LoadOptions {
        users: Some(4),
        duration: Some(Duration::from_millis(500)),
        proxy_threads: 0,
        target: Some(ExternalProxy {
            url: proxy.url.clone(),
            namespace: "bench".into(),
            token: String::new(),
            pid: Some(pid),
        }),
        ..options(profile, &dir.path().join("reports"))
    })
    .await
    .unwrap();
    proxy.stop();
    assert_eq!(summary.backend, "target");
    let get = &summary.proxy.operations[0];
    assert_eq!((get.op.as_str(), get.errors), ("get", 0));
    assert!(get.ok > 0, "Gets of the preloaded key went through");
    assert!(summary.proxy_cpu_seconds_per_1000.is_some_and(|c| c > 0.0));
    assert!(summary.direct.is_none());
}

#[cfg(feature = "goose")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goose_drives_the_users_and_writes_its_reports() {
    let dir = tempfile::tempdir().unwrap();
    let mut profile = LoadProfile::load("kv-read-heavy", &profiles()).unwrap();
    profile.keys.count = 100;
    let summary = load::run(LoadOptions {
        driver: DriverKind::Goose(Box::default()),
        ..options(profile, dir.path())
    })
    .await
    .unwrap();
    assert_eq!(summary.driver, "goose");
    assert!(summary.proxy.calls > 0);
    for file in ["goose-report.html", "goose-report.json", "goose-report.md"] {
        assert!(dir.path().join(file).is_file(), "{file} missing");
    }
}
