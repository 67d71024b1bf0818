//! The whole scenario corpus on the embedded backends (memstore, sqlite) through the real proxy over
//! gRPC: every scenario must pass on each.

use prism_conform::provision::start_embedded;
use prism_conform::report::model::CaseStatus;
use prism_conform::runner::{self, RunOptions};
use prism_conform::scenario::load::{find_files, load_corpus};
use std::path::Path;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_corpus_passes_on_memstore_and_sqlite() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let corpus: Vec<_> = load_corpus(&find_files(&root).unwrap())
        .unwrap()
        .into_iter()
        .map(Arc::new)
        .collect();
    let backends = vec!["memstore".to_string(), "sqlite".to_string()];
    let (proxy, targets) = start_embedded(&backends).await.unwrap();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let report = runner::run(&targets, &corpus, &RunOptions::default(), tx).await;
    proxy.stop().await;

    let failures: Vec<String> = report
        .suites
        .iter()
        .flat_map(|s| s.cases.iter().map(move |c| (s, c)))
        .filter(|(_, c)| c.status != CaseStatus::Passed)
        .map(|(s, c)| {
            format!(
                "{}/{}: {} {:?} {:?} {:?}",
                s.pattern, s.backend, c.scenario, c.status, c.reason, c.failure
            )
        })
        .collect();
    assert!(failures.is_empty(), "not passed:\n{}", failures.join("\n"));
    let keyvalue = corpus.iter().filter(|s| s.pattern == "keyvalue").count();
    assert!(keyvalue >= 40);
    for suite in &report.suites {
        assert_eq!(suite.totals.passed, keyvalue, "{}", suite.backend);
    }
    assert_eq!(report.suites.len(), 2);
}
