//! `--proxies 2` really spreads a scenario's calls over both proxies, and keeps a scenario that acts
//! on one proxy to the proxy it names: with the second proxy stopped, a plain KeyValue scenario
//! fails when spread and passes when not, and a `restart_proxy` scenario passes either way.

use prism_conform::provision::{Mode, start_environment};
use prism_conform::report::model::CaseStatus;
use prism_conform::runner::{self, RunOptions};
use prism_conform::scenario::parse_scenario;
use std::path::Path;

const PLAIN: &str = r#"
name: a write read back
description: One set and one get.
pattern: keyvalue
requires: [keyvalue.basic]
steps:
  - set: { key: "${prefix}a", value: one }
  - get: { key: "${prefix}a" }
    expect: { found: true, value: one }
"#;

const RESTARTS: &str = r#"
name: a write survives a restart of the run's proxy
description: A set, a restart of proxy a, a get.
pattern: keyvalue
requires: [keyvalue.basic, keyvalue.durable]
steps:
  - set: { key: "${prefix}a", value: one }
  - restart_proxy: a
  - get: { key: "${prefix}a" }
    expect: { found: true, value: one }
"#;

async fn status(
    env: &prism_conform::provision::Environment,
    yaml: &str,
    spread: bool,
) -> (CaseStatus, String) {
    let scenario = parse_scenario(yaml, Path::new("inline.yaml")).expect("parses");
    let target = env
        .targets
        .iter()
        .find(|t| t.pattern.name() == "keyvalue")
        .expect("a keyvalue target");
    let options = RunOptions {
        spread,
        ..RunOptions::default()
    };
    let progress = prism_conform::ops::messaging::exec::Progress(std::sync::Arc::new(|_| {}));
    let case = runner::run_case(target, &scenario, &options, progress).await;
    (
        case.status,
        format!("{:?} {:?}", case.reason, case.failure.map(|f| f.message)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spread_calls_reach_the_second_proxy_and_one_proxy_scenarios_keep_to_theirs() {
    let env = start_environment(&["sqlite".to_string()], Mode::Embedded, &Default::default())
        .await
        .expect("sqlite provisions");
    assert_eq!(status(&env, PLAIN, true).await.0, CaseStatus::Passed);
    env.second
        .clone()
        .expect("sqlite is shared, so the run has a second proxy")
        .stop()
        .await;
    let (spread, why) = status(&env, PLAIN, true).await;
    assert_eq!(
        spread,
        CaseStatus::Failed,
        "spread over a stopped proxy: {why}"
    );
    let (single, why) = status(&env, PLAIN, false).await;
    assert_eq!(single, CaseStatus::Passed, "{why}");
    let (restarts, why) = status(&env, RESTARTS, true).await;
    assert_eq!(restarts, CaseStatus::Passed, "{why}");
    env.stop().await;
}
