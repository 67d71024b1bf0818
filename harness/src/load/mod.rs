//! `prism-conform load`: a load profile through a `prism-proxy` process (goose drives the users and
//! writes its own reports), optionally the same profile straight on the adapter in-process
//! (`--baseline direct`), HDR microsecond percentiles for both, the added latency between them, and
//! the proxy's CPU and peak memory read from the OS.

pub mod driver;
pub mod profile;
pub mod proxy_process;
pub mod report;
pub mod stats;

use crate::provision::{self, Mode, ProvisionError};
use crate::tokens::TokenMint;
use driver::{DirectDriver, Driver, GrpcDriver, Workload};
use goose::config::GooseConfiguration;
use goose::prelude::*;
use prism_proto::client::PrismClient;
use prism_runtime::backends::BackendConfig;
use profile::{LoadProfile, Thresholds};
use proxy_process::{ProxyProcess, proxy_binary, usage_of};
use serde::{Deserialize, Serialize};
use stats::RunStats;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to run.
pub struct LoadOptions {
    /// The profile.
    pub profile: LoadProfile,
    /// Backend name.
    pub backend: String,
    /// How to provision it.
    pub mode: Mode,
    /// `--backend-url` values.
    pub urls: BTreeMap<String, String>,
    /// Override of the profile's users.
    pub users: Option<usize>,
    /// Override of the profile's duration.
    pub duration: Option<Duration>,
    /// Override of the profile's target rate.
    pub rate: Option<f64>,
    /// HTTP/2 connections to the proxy, shared round robin by the users.
    pub connections: usize,
    /// The proxy's `server.worker_threads` (0: one per core).
    pub proxy_threads: usize,
    /// Also run the direct baseline.
    pub baseline_direct: bool,
    /// Where reports go.
    pub report_dir: PathBuf,
    /// Goose's own settings (from the CLI); Prism fills host, users, run time and report files.
    pub goose: GooseConfiguration,
    /// Show a live progress line.
    pub progress: bool,
}

/// Why a load run could not happen.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Provisioning failed.
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    /// The environment (proxy binary, files, goose) failed.
    #[error("{0}")]
    Environment(String),
}

/// Added latency (proxy − direct) at each percentile, in µs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AddedLatency {
    /// Operation (or `all`).
    pub op: String,
    /// p50 difference.
    pub p50_us: i64,
    /// p90 difference.
    pub p90_us: i64,
    /// p99 difference.
    pub p99_us: i64,
    /// p99.9 difference.
    pub p999_us: i64,
}

/// Everything a load run measured (`load-summary.json`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LoadSummary {
    /// Profile name.
    pub profile: String,
    /// Backend name.
    pub backend: String,
    /// Concurrent users.
    pub users: usize,
    /// Target rate, if any.
    pub rate: Option<f64>,
    /// Through the proxy.
    pub proxy: RunStats,
    /// Straight on the adapter, when `--baseline direct`.
    pub direct: Option<RunStats>,
    /// proxy − direct per operation and overall.
    pub added: Vec<AddedLatency>,
    /// Proxy CPU seconds (user + system) per 1,000 calls.
    pub proxy_cpu_seconds_per_1000: f64,
    /// Proxy peak resident memory.
    pub proxy_peak_rss_mib: f64,
    /// CPU seconds per 1,000 calls of the load generator itself (goose, the gRPC client and the
    /// users), in the proxy run: on a small machine it competes with the proxy for the same cores.
    pub driver_cpu_seconds_per_1000: f64,
    /// The profile's thresholds.
    pub thresholds: Thresholds,
    /// Thresholds the run violated, each named.
    pub violations: Vec<String>,
}

fn backend_yaml(config: &BackendConfig) -> String {
    match config {
        BackendConfig::Memstore(_) => "{ type: memstore }".into(),
        BackendConfig::Sqlite(c) => format!("{{ type: sqlite, path: '{}' }}", c.path),
        BackendConfig::Redis(c) => format!(
            "{{ type: redis, url: '{}', key_prefix: prism-load }}",
            c.url.expose()
        ),
        BackendConfig::Postgres(c) => format!("{{ type: postgres, url: '{}' }}", c.url.expose()),
        BackendConfig::Nats(c) => format!("{{ type: nats, url: '{}' }}", c.url.expose()),
    }
}

fn free_port() -> Result<u16, LoadError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| LoadError::Environment(format!("no free port: {e}")))
}

async fn spawn_users(
    workload: Arc<Workload>,
    driver: Arc<dyn Driver>,
    users: usize,
    hatch: usize,
    duration: Duration,
) {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..users {
        let (workload, driver) = (workload.clone(), driver.clone());
        let delay = Duration::from_secs_f64(i as f64 / hatch.max(1) as f64);
        tasks.spawn(async move {
            tokio::time::sleep(delay).await;
            while started.elapsed() < duration {
                let _ = workload.step(driver.as_ref()).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

fn progress_line(
    label: &str,
    workload: &Arc<Workload>,
    enabled: bool,
) -> (indicatif::ProgressBar, tokio::task::JoinHandle<()>) {
    let bar = if enabled {
        indicatif::ProgressBar::new_spinner()
    } else {
        indicatif::ProgressBar::hidden()
    };
    let (b, w, label) = (bar.clone(), workload.clone(), label.to_string());
    let started = Instant::now();
    let task = tokio::spawn(async move {
        loop {
            let (calls, failures) = w.recorder.counts();
            let secs = started.elapsed().as_secs_f64().max(0.001);
            b.set_message(format!(
                "{label}: {:.0}s  {:.0} ops/s  {calls} calls  {failures} errors",
                secs,
                calls as f64 / secs
            ));
            b.tick();
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    (bar, task)
}

/// Runs the profile; writes goose's reports, `load-summary.{json,md}` and `index.html`.
pub async fn run(opts: LoadOptions) -> Result<LoadSummary, LoadError> {
    let profile = &opts.profile;
    let users = opts.users.unwrap_or(profile.users);
    let duration = opts
        .duration
        .or_else(|| profile::parse_duration(&profile.duration))
        .unwrap_or(Duration::from_secs(10));
    std::fs::create_dir_all(&opts.report_dir)
        .map_err(|e| LoadError::Environment(format!("{}: {e}", opts.report_dir.display())))?;
    let dir = provision::run_dir()?;
    let backend = provision::provision(&opts.backend, opts.mode, &opts.urls, dir.path()).await?;
    eprintln!(
        "{}: {} ({:.2}s)",
        backend.name,
        backend.method,
        backend.took.as_secs_f64()
    );

    // The proxy process, with authentication on as in production.
    let mint = TokenMint::new();
    let auth = mint
        .auth_config(dir.path())
        .map_err(|e| LoadError::Environment(format!("cannot write keys: {e}")))?;
    let config_path = dir.path().join("proxy.yaml");
    let yaml = format!(
        "server: {{ worker_threads: {} }}\nauth:\n  hs256: {{ secret_file: '{}' }}\n  jwks_file: '{}'\n  issuer: {}\n  audience: {}\nbackends:\n  b: {}\nnamespaces:\n  load: {{ pattern: keyvalue, backend: b }}\n",
        opts.proxy_threads,
        auth.hs256
            .as_ref()
            .and_then(|h| h.secret_file.as_ref())
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        auth.jwks_file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        crate::tokens::ISSUER,
        crate::tokens::AUDIENCE,
        backend_yaml(&backend.config),
    );
    std::fs::write(&config_path, yaml).map_err(|e| LoadError::Environment(e.to_string()))?;
    let binary = proxy_binary().ok_or_else(|| {
        LoadError::Environment("prism-proxy is not built next to prism-conform; run `cargo build --release --bins` first".into())
    })?;
    let mut proxy = ProxyProcess::start(
        &binary,
        &config_path,
        free_port()?,
        &opts.report_dir.join("proxy.log"),
    )
    .await
    .map_err(LoadError::Environment)?;
    let token = mint
        .tokens(&["load"])
        .remove("default")
        .flatten()
        .unwrap_or_default();
    let connections = opts.connections.max(1);
    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections {
        let client = PrismClient::connect(proxy.url.clone())
            .await
            .map_err(|e| LoadError::Environment(e.to_string()))?
            .with_token(&token)
            .map_err(|e| LoadError::Environment(e.to_string()))?;
        clients.push(client.namespace("load").keyvalue());
    }
    let grpc: Arc<dyn Driver> = Arc::new(GrpcDriver::new(clients));
    let run_id = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
    );
    let workload = Arc::new(Workload::new(profile, format!("load/{run_id}/"), opts.rate));
    if profile.keys.preload {
        workload
            .preload(grpc.as_ref())
            .await
            .map_err(|c| LoadError::Environment(format!("preload failed: {c}")))?;
    }

    // Through the proxy, driven by goose.
    let mut goose = opts.goose.clone();
    goose.host = Some(proxy.url.clone());
    goose.users = Some(users);
    goose
        .increase_rate
        .get_or_insert_with(|| profile.hatch_rate.to_string());
    goose.run_time = Some(format!("{}s", duration.as_secs().max(1)));
    if goose.report_file.is_empty() {
        goose.report_file = ["goose-report.html", "goose-report.json", "goose-report.md"]
            .iter()
            .map(|f| opts.report_dir.join(f).display().to_string())
            .collect();
    }
    goose.quiet = goose.quiet.max(1);
    goose.no_print_metrics = true;
    let (wl, drv) = (workload.clone(), grpc.clone());
    let transaction = Transaction::new(Arc::new(move |user: &mut GooseUser| {
        let (wl, drv) = (wl.clone(), drv.clone());
        Box::pin(async move {
            let (op, latency, outcome) = wl.step(drv.as_ref()).await;
            let _ = user
                .record_custom_request_duration(
                    "GRPC",
                    op.name(),
                    latency,
                    outcome.is_ok(),
                    None,
                    outcome.as_ref().err().map(String::as_str),
                )
                .await;
            Ok(())
        })
    }))
    .set_name("keyvalue");
    let before = proxy.usage();
    let driver_before = usage_of(std::process::id());
    let started = Instant::now();
    let (bar, ticker) = progress_line("proxy", &workload, opts.progress);
    let attack = GooseAttack::initialize_with_config(goose)
        .map_err(|e| LoadError::Environment(format!("goose: {e}")))?
        .register_scenario(scenario!("keyvalue").register_transaction(transaction))
        .execute()
        .await;
    ticker.abort();
    bar.finish_and_clear();
    attack.map_err(|e| LoadError::Environment(format!("goose: {e}")))?;
    let elapsed = started.elapsed();
    let after = proxy.usage();
    let driver_after = usage_of(std::process::id());
    proxy.stop();
    let proxy_stats = workload.recorder.summary("proxy", elapsed);

    // The same profile straight on the adapter, in this process.
    let direct = if opts.baseline_direct {
        let opened = prism_runtime::backends::open("direct", &backend.config, Default::default())
            .await
            .map_err(|e| LoadError::Environment(e.to_string()))?;
        let direct_driver: Arc<dyn Driver> = Arc::new(DirectDriver {
            store: opened.keyvalue.clone().ok_or_else(|| {
                LoadError::Environment(format!("backend type {} offers no KeyValue", opened.kind))
            })?,
            ns: "load-direct".into(),
        });
        let wl = Arc::new(Workload::new(profile, format!("load/{run_id}/"), opts.rate));
        if profile.keys.preload {
            wl.preload(direct_driver.as_ref())
                .await
                .map_err(|c| LoadError::Environment(format!("preload failed: {c}")))?;
        }
        let (bar, ticker) = progress_line("direct", &wl, opts.progress);
        let started = Instant::now();
        spawn_users(
            wl.clone(),
            direct_driver,
            users,
            profile.hatch_rate,
            duration,
        )
        .await;
        ticker.abort();
        bar.finish_and_clear();
        let stats = wl.recorder.summary("direct", started.elapsed());
        opened.close().await;
        Some(stats)
    } else {
        None
    };
    drop(backend);

    let calls = proxy_stats.calls.max(1) as f64;
    let mut summary = LoadSummary {
        profile: profile.name.clone(),
        backend: opts.backend.clone(),
        users,
        rate: opts.rate.or(profile.rate),
        added: direct
            .as_ref()
            .map(|d| added(&proxy_stats, d))
            .unwrap_or_default(),
        proxy: proxy_stats,
        direct,
        proxy_cpu_seconds_per_1000: (after.cpu_seconds - before.cpu_seconds) / calls * 1000.0,
        proxy_peak_rss_mib: after.peak_rss_bytes as f64 / (1024.0 * 1024.0),
        driver_cpu_seconds_per_1000: (driver_after.cpu_seconds - driver_before.cpu_seconds) / calls
            * 1000.0,
        thresholds: profile.thresholds,
        violations: Vec::new(),
    };
    summary.violations = report::violations(&summary);
    report::write(&summary, &opts.report_dir)
        .map_err(|e| LoadError::Environment(format!("writing reports: {e}")))?;
    Ok(summary)
}

fn added(proxy: &RunStats, direct: &RunStats) -> Vec<AddedLatency> {
    let diff = |p: &stats::Percentiles, d: &stats::Percentiles, op: &str| AddedLatency {
        op: op.to_string(),
        p50_us: p.p50_us as i64 - d.p50_us as i64,
        p90_us: p.p90_us as i64 - d.p90_us as i64,
        p99_us: p.p99_us as i64 - d.p99_us as i64,
        p999_us: p.p999_us as i64 - d.p999_us as i64,
    };
    let mut out = vec![diff(&proxy.latency, &direct.latency, "all")];
    for p in &proxy.operations {
        if let Some(d) = direct.operations.iter().find(|d| d.op == p.op) {
            out.push(diff(&p.latency, &d.latency, &p.op));
        }
    }
    out
}

/// The profiles directory of a corpus root (`scenarios/load`).
pub fn profiles_dir(scenarios: &Path) -> PathBuf {
    scenarios.join("load")
}
