//! The whole scenario corpus through the real proxy over gRPC, once per backend: memstore and sqlite
//! (embedded), Redis, PostgreSQL and NATS (servers started from this machine's binaries). A networked
//! backend whose binaries are missing is skipped with a message, unless `PRISM_REQUIRE_BACKENDS` names
//! it (or is `all`), as CI does: then the test fails.

use prism_conform::provision::{Mode, start_environment};
use prism_conform::report::model::CaseStatus;
use prism_conform::runner::{self, RunOptions};
use prism_conform::scenario::load::{find_files, load_corpus};
use std::path::Path;
use std::sync::Arc;

fn required(backend: &str) -> bool {
    std::env::var("PRISM_REQUIRE_BACKENDS")
        .unwrap_or_default()
        .split(',')
        .any(|b| b.trim() == backend || b.trim() == "all")
}

async fn corpus_passes_on(backend: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let corpus: Vec<_> = load_corpus(&find_files(&root).unwrap())
        .unwrap()
        .into_iter()
        .map(Arc::new)
        .collect();
    let env = match start_environment(&[backend.to_string()], Mode::Auto, &Default::default()).await
    {
        Ok(env) => env,
        Err(e) if !required(backend) => {
            eprintln!(
                "SKIPPED: {backend} cannot be provisioned here ({e}); set PRISM_REQUIRE_BACKENDS={backend} to make this fatal"
            );
            return;
        }
        Err(e) => panic!("{backend} is required but cannot be provisioned: {e}"),
    };
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    // The bound only catches a hang: five backends' corpora share two cores in this suite, and the
    // volume scenarios (10,000 messages) are CPU-bound there.
    let options = RunOptions {
        scenario_timeout: std::time::Duration::from_secs(400),
        ..RunOptions::default()
    };
    let report = runner::run(&env.targets, &corpus, &options, tx).await;
    env.stop().await;

    assert!(!report.suites.is_empty(), "{backend}: no suite ran");
    for suite in &report.suites {
        // Passed, or skipped by the two-way check: after the refusal was verified, or for a
        // property (ordering, durability) the backend does not declare; fault scenarios are
        // skipped only on the embedded backends, which have no server to fault, and two-proxy
        // scenarios only where a slot is memstore, which no second proxy can share; scenarios that
        // kill a proxy need `--proxy-mode process` (the CI script runs them so).
        let embedded = matches!(backend, "memstore" | "sqlite");
        let failures: Vec<String> = suite
            .cases
            .iter()
            .filter(|c| {
                c.status != CaseStatus::Passed
                    && !(c.status == CaseStatus::Skipped
                        && c.reason.as_deref().is_some_and(|r| {
                            r.contains("verified")
                                || r.contains("a property no call can be refused")
                                || (embedded && r.contains("injects backend faults"))
                                || r.contains("memstore keeps its data per proxy")
                                || r.contains("--proxy-mode process")
                        }))
            })
            .map(|c| {
                format!(
                    "{}: {:?} {:?} {:?}",
                    c.scenario, c.status, c.reason, c.failure
                )
            })
            .collect();
        assert!(
            failures.is_empty(),
            "{backend}/{}: not passed:\n{}",
            suite.pattern,
            failures.join("\n")
        );
        let of_pattern = corpus
            .iter()
            .filter(|s| s.pattern.name() == suite.pattern)
            .count();
        assert!(
            of_pattern >= 15,
            "{}: {of_pattern} scenarios",
            suite.pattern
        );
        assert_eq!(
            suite.totals.passed + suite.totals.skipped,
            of_pattern,
            "{backend}/{}",
            suite.pattern
        );
        assert_eq!(suite.backend_kind, backend);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_corpus_passes_on_memstore() {
    corpus_passes_on("memstore").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_corpus_passes_on_sqlite() {
    corpus_passes_on("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_corpus_passes_on_redis() {
    corpus_passes_on("redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_corpus_passes_on_postgres() {
    corpus_passes_on("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_corpus_passes_on_nats() {
    corpus_passes_on("nats").await;
}
