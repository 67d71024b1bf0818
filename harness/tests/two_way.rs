//! The two-way capability check through a real proxy: a namespace that does not offer a capability
//! must refuse it (scenarios needing it are skipped with the reason), and a target that claims less
//! than it serves is caught (those scenarios fail).

use prism_conform::provision::{ProxyMode, RunningProxy, proxy_config, start_proxy, target};
use prism_conform::report::model::{CaseStatus, RunReport};
use prism_conform::runner::{self, RunOptions, Target};
use prism_conform::scenario::Scenario;
use prism_conform::scenario::load::{find_files, load_corpus};
use prism_proto::client::PrismClient;
use prism_runtime::backends::BackendConfig;
use prism_runtime::config::ProxyConfig;
use prism_runtime::patterns::capability::Capability;
use std::path::Path;
use std::sync::Arc;

fn corpus() -> Vec<Arc<Scenario>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/keyvalue");
    load_corpus(&find_files(&root).unwrap())
        .unwrap()
        .into_iter()
        .map(Arc::new)
        .collect()
}

async fn run(targets: &[Target], scenarios: &[Arc<Scenario>]) -> RunReport {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    runner::run(targets, scenarios, &RunOptions::default(), tx).await
}

/// An in-process proxy for `config` (kept while the temp dir is) and a client of it.
async fn serve(config: &ProxyConfig) -> (tempfile::TempDir, RunningProxy, PrismClient) {
    let dir = tempfile::tempdir().unwrap();
    let proxy = start_proxy(config, &dir.path().join("proxy.yaml"), ProxyMode::InProcess)
        .await
        .unwrap();
    let client = PrismClient::connect(proxy.url.clone()).await.unwrap();
    (dir, proxy, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeclared_capabilities_are_refused_and_reported_as_skips() {
    let mut config = proxy_config(&[(
        "memstore".to_string(),
        BackendConfig::Memstore(Default::default()),
    )]);
    let disabled = [Capability::KvScan, Capability::KvCas];
    for ns in config.namespaces.values_mut() {
        ns.disable = disabled.to_vec();
    }
    let (_dir, proxy, client) = serve(&config).await;
    let t = target(
        &client,
        "memstore-limited",
        "conform-memstore",
        Some("conform-memstore-other".into()),
        None,
    )
    .await
    .unwrap();
    assert!(!t.capabilities.contains(&Capability::KvScan));
    let scenarios = corpus();
    let report = run(&[t], &scenarios).await;
    proxy.stop().await;

    let suite = &report.suites[0];
    let needing: usize = scenarios
        .iter()
        .filter(|s| s.requires.iter().any(|c| disabled.contains(c)))
        .count();
    assert!(needing > 10, "the corpus exercises scan and cas");
    assert_eq!(
        suite.totals.failed,
        0,
        "{:#?}",
        suite
            .cases
            .iter()
            .filter(|c| c.status == CaseStatus::Failed)
            .collect::<Vec<_>>()
    );
    assert_eq!(suite.totals.skipped, needing);
    assert_eq!(suite.totals.passed, scenarios.len() - needing);
    for case in suite
        .cases
        .iter()
        .filter(|c| c.status == CaseStatus::Skipped)
    {
        let reason = case.reason.as_deref().unwrap();
        assert!(
            reason.contains("refused with UNIMPLEMENTED naming keyvalue."),
            "{}: {reason}",
            case.scenario
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_doing_more_than_it_declares_fails() {
    let config = proxy_config(&[(
        "memstore".to_string(),
        BackendConfig::Memstore(Default::default()),
    )]);
    let (_dir, proxy, client) = serve(&config).await;
    let mut lying = target(
        &client,
        "memstore",
        "conform-memstore",
        Some("conform-memstore-other".into()),
        None,
    )
    .await
    .unwrap();
    // Claim ttl is not offered, while the namespace really serves it.
    lying.capabilities.retain(|c| *c != Capability::KvTtl);
    let scenarios: Vec<_> = corpus()
        .into_iter()
        .filter(|s| s.requires.contains(&Capability::KvTtl))
        .collect();
    assert!(!scenarios.is_empty());
    let report = run(&[lying], &scenarios).await;
    proxy.stop().await;

    let suite = &report.suites[0];
    assert_eq!(
        suite.totals.failed,
        scenarios.len(),
        "every ttl scenario must fail"
    );
    for case in &suite.cases {
        let f = case.failure.as_ref().unwrap();
        assert!(
            f.message
                .contains("does not offer keyvalue.ttl, yet this call was not refused"),
            "{}",
            f.message
        );
        assert!(f.line > 0, "the failing step is located");
    }
}
