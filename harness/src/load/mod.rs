//! `prism-conform load`: a load profile through a `prism-proxy` process (or a proxy already running,
//! `--target`), optionally the same profile straight on the adapter in-process (`--baseline
//! direct`), HDR microsecond percentiles for both, the added latency between them, and the proxy's
//! and the load generator's own CPU and peak memory read from the OS. The users run on lean client
//! threads ([`users`], [`wire`]); with the `goose` feature, `--driver goose` lets goose drive them and
//! write its reports.

pub mod driver;
#[cfg(feature = "goose")]
pub mod goose_driver;
pub mod messaging;
pub mod profile;
pub mod proxy_process;
pub mod registry;
pub mod report;
pub mod stats;
pub mod users;
pub mod wire;

use crate::provision::{self, Mode, ProvisionError};
use crate::tokens::TokenMint;
use driver::{DirectDriver, Driver, GrpcDriver, Workload};
use prism_runtime::auth::config::AuthConfig;
use prism_runtime::backends::BackendConfig;
use prism_runtime::config::{NamespaceConfig, ProxyConfig, ServerLimits};
use prism_runtime::limits::LimitsConfig;
use prism_runtime::patterns::Slot;
use profile::{LoadProfile, Thresholds};
use proxy_process::{ProxyProcess, proxy_binary, usage_of};
use serde::{Deserialize, Serialize};
use stats::RunStats;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use users::{Plan, Setup};
use wire::Wire;

/// A proxy the run did not start (`--target`).
#[derive(Clone, Debug)]
pub struct ExternalProxy {
    /// Its URL, e.g. `http://127.0.0.1:8980`.
    pub url: String,
    /// The KeyValue namespace to load.
    pub namespace: String,
    /// A bearer token with read and write on it (empty: none).
    pub token: String,
    /// Its process id, to read its CPU and memory (absent: not reported).
    pub pid: Option<u32>,
}

/// Who drives the users.
#[derive(Clone, Debug)]
pub enum DriverKind {
    /// Prism's lean client threads (the default).
    Lean,
    /// Goose (users, hatch and its reports), with its per-call cost on the hot path.
    #[cfg(feature = "goose")]
    Goose(Box<goose::config::GooseConfiguration>),
}

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
    /// The proxy's `server.worker_threads` (0: the proxy's default).
    pub proxy_threads: usize,
    /// Client threads of the load generator (each a current-thread runtime).
    pub client_threads: usize,
    /// Also run the direct baseline.
    pub baseline_direct: bool,
    /// Where reports go.
    pub report_dir: PathBuf,
    /// Who drives the users.
    pub driver: DriverKind,
    /// A proxy already running, instead of provisioning a backend and starting one.
    pub target: Option<ExternalProxy>,
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
    /// Proxy CPU seconds (user + system) per 1,000 calls (absent for a `--target` without its pid).
    pub proxy_cpu_seconds_per_1000: Option<f64>,
    /// Proxy peak resident memory (absent for a `--target` without its pid).
    pub proxy_peak_rss_mib: Option<f64>,
    /// CPU seconds per 1,000 calls of the load generator itself (its client threads, the gRPC
    /// client and the users), in the proxy run: on a small machine it competes with the proxy for
    /// the same cores.
    pub driver_cpu_seconds_per_1000: f64,
    /// Who drove the users (`lean` or `goose`).
    pub driver: String,
    /// Client threads of the lean driver.
    pub client_threads: usize,
    /// The delivery ledger of a messaging profile, per run (`proxy`, `direct`).
    #[serde(default)]
    pub ledgers: BTreeMap<String, messaging::Ledger>,
    /// The profile's thresholds.
    pub thresholds: Thresholds,
    /// Thresholds the run violated, each named.
    pub violations: Vec<String>,
}

/// The config of the proxy under load: namespace `load` of the profile's pattern, each slot on
/// the backend named for it, authentication on as in production. Redis keys get their own prefix
/// so a load run never touches a corpus run's keys on a shared server.
fn load_proxy_config(
    opts: &LoadOptions,
    backends: &[provision::Provisioned],
    slots: BTreeMap<Slot, String>,
    auth: AuthConfig,
) -> ProxyConfig {
    let backends = backends
        .iter()
        .map(|b| {
            let mut config = b.config.clone();
            if let BackendConfig::Redis(c) = &mut config {
                c.key_prefix = "prism-load".into();
            }
            (b.name.clone(), config)
        })
        .collect();
    let mut namespace = NamespaceConfig::on(opts.profile.pattern, "");
    namespace.backend = None;
    namespace.slots = slots;
    if opts.profile.registry.is_some() {
        // A registry run's listeners are streams of one caller: room for all of them.
        namespace.limits.max_streams = Some(8192);
        namespace.limits.max_streams_per_subject = Some(8192);
    }
    ProxyConfig {
        listen: "127.0.0.1:0".parse().expect("loopback address parses"),
        auth,
        server: ServerLimits {
            worker_threads: opts.proxy_threads,
            ..ServerLimits::default()
        },
        limits: LimitsConfig::default(),
        backend_calls: Default::default(),
        backends,
        namespaces: BTreeMap::from([("load".to_string(), namespace)]),
        admin_listen: None,
        log_format: Default::default(),
        access_log: false,
        tracing: None,
    }
}

fn free_port() -> Result<u16, LoadError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| LoadError::Environment(format!("no free port: {e}")))
}

fn progress_bar(enabled: bool) -> indicatif::ProgressBar {
    if enabled {
        indicatif::ProgressBar::new_spinner()
    } else {
        indicatif::ProgressBar::hidden()
    }
}

/// The progress callback of a measurement: elapsed time, ops/s, calls and errors.
fn ticker(bar: &indicatif::ProgressBar, label: &str) -> impl Fn(u64, u64) {
    let (bar, label) = (bar.clone(), label.to_string());
    let started = std::time::Instant::now();
    move |calls, failures| {
        let secs = started.elapsed().as_secs_f64().max(0.001);
        bar.set_message(format!(
            "{label}: {secs:.0}s  {:.0} ops/s  {calls} calls  {failures} errors",
            calls as f64 / secs
        ));
        bar.tick();
    }
}

/// The proxy under load: one this run started, or `--target`.
struct UnderLoad {
    url: String,
    namespace: String,
    token: String,
    process: Option<ProxyProcess>,
    pid: Option<u32>,
    /// The provisioned backend (kept alive for the run) and its config, when this run started it.
    backend: Option<provision::Provisioned>,
    /// The other slots' backends of a composite profile, kept alive for the run.
    _others: Vec<provision::Provisioned>,
    _dir: Option<tempfile::TempDir>,
}

impl UnderLoad {
    fn usage(&self) -> Option<proxy_process::Usage> {
        match (&self.process, self.pid) {
            (Some(p), _) => Some(p.usage()),
            (None, Some(pid)) => Some(usage_of(pid)),
            (None, None) => None,
        }
    }
}

async fn start_proxy(opts: &LoadOptions) -> Result<UnderLoad, LoadError> {
    if let Some(t) = &opts.target {
        return Ok(UnderLoad {
            url: t.url.clone(),
            namespace: t.namespace.clone(),
            token: t.token.clone(),
            process: None,
            pid: t.pid,
            backend: None,
            _others: Vec::new(),
            _dir: None,
        });
    }
    let dir = provision::run_dir()?;
    let pattern = opts.profile.pattern;
    let slots: Vec<&prism_runtime::patterns::SlotSpec> = pattern
        .spec()
        .slots
        .iter()
        .filter(|s| !s.optional)
        .collect();
    // A composite profile names a backend per slot, `redis+nats` (each provisioned once), or one
    // backend for every slot, as `backend:` does in a proxy config.
    let mut names: Vec<&str> = opts.backend.split('+').collect();
    if names.len() == 1 {
        names = vec![names[0]; slots.len()];
    }
    let mut provisioned: Vec<provision::Provisioned> = Vec::new();
    for name in &names {
        if provisioned.iter().any(|p| p.name == *name) {
            continue;
        }
        let b = provision::provision(
            name,
            opts.mode,
            &opts.urls,
            dir.path(),
            provision::Persistence::None,
        )
        .await?;
        eprintln!("{}: {} ({:.2}s)", b.name, b.method, b.took.as_secs_f64());
        provisioned.push(b);
    }
    if names.len() != slots.len() {
        return Err(LoadError::Environment(format!(
            "the {} pattern has {} slot(s) ({}): name a backend for each, joined by '+' (e.g. --backend redis+nats), or one for all",
            pattern.name(),
            slots.len(),
            slots
                .iter()
                .map(|s| s.slot.name())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let slots = slots
        .iter()
        .zip(&names)
        .map(|(s, n)| (s.slot, n.to_string()))
        .collect();
    // The proxy process, with authentication on as in production.
    let mint = TokenMint::new();
    let auth = mint
        .auth_config(dir.path())
        .map_err(|e| LoadError::Environment(format!("cannot write keys: {e}")))?;
    let config = load_proxy_config(opts, &provisioned, slots, auth);
    let backend = provisioned.remove(0);
    let config_path = dir.path().join("proxy.yaml");
    let yaml = serde_saphyr::to_string(&config)
        .map_err(|e| LoadError::Environment(format!("cannot write the proxy config: {e}")))?;
    std::fs::write(&config_path, yaml).map_err(|e| LoadError::Environment(e.to_string()))?;
    let binary = proxy_binary().ok_or_else(|| {
        LoadError::Environment("prism-proxy is not built next to prism-conform; run `cargo build --release --workspace --bins` first (or set PRISM_PROXY_BIN)".into())
    })?;
    let process = ProxyProcess::start(
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
    Ok(UnderLoad {
        url: process.url.clone(),
        namespace: "load".into(),
        token,
        pid: None,
        process: Some(process),
        backend: Some(backend),
        _others: provisioned,
        _dir: Some(dir),
    })
}

/// The lean driver's setup: client thread `t` of `threads` opens its share of `connections`
/// (every `threads`-th one) and hands them to its users in turn.
fn grpc_setup(proxy: &UnderLoad, connections: usize, threads: usize) -> Setup {
    let (url, ns, token) = (
        proxy.url.clone(),
        proxy.namespace.clone(),
        proxy.token.clone(),
    );
    Arc::new(move |t, users| {
        let (url, ns, token) = (url.clone(), ns.clone(), token.clone());
        Box::pin(async move {
            let mut wires = Vec::new();
            for _ in (t..connections.max(threads)).step_by(threads) {
                wires.push(Wire::connect(&url, &ns, &token).await?);
            }
            Ok((0..users)
                .map(|u| {
                    Box::new(GrpcDriver {
                        wire: wires[u % wires.len()].clone(),
                    }) as Box<dyn Driver>
                })
                .collect())
        })
    })
}

/// Runs the profile; writes `load-summary.{json,md}` and `index.html` (and goose's reports with
/// `--driver goose`).
pub async fn run(opts: LoadOptions) -> Result<LoadSummary, LoadError> {
    let profile = &opts.profile;
    let users = opts.users.unwrap_or(profile.users).max(1);
    let duration = opts
        .duration
        .or_else(|| profile::parse_duration(&profile.duration))
        .unwrap_or(Duration::from_secs(10));
    std::fs::create_dir_all(&opts.report_dir)
        .map_err(|e| LoadError::Environment(format!("{}: {e}", opts.report_dir.display())))?;
    if let Some(load) = &profile.messaging {
        return run_messaging(&opts, load, duration).await;
    }
    if let Some(load) = &profile.registry {
        return run_registry(&opts, load, duration).await;
    }
    let mut proxy = start_proxy(&opts).await?;
    let run_id = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
    );
    let workload = Arc::new(Workload::new(profile, format!("load/{run_id}/"), opts.rate));
    if profile.keys.preload {
        let wire = Wire::connect(&proxy.url, &proxy.namespace, &proxy.token)
            .await
            .map_err(LoadError::Environment)?;
        workload
            .preload(&mut GrpcDriver { wire })
            .await
            .map_err(|c| LoadError::Environment(format!("preload failed: {c}")))?;
    }
    let threads = match opts.driver {
        DriverKind::Lean => opts.client_threads,
        // Goose runs its users on this runtime: one "thread" opens every connection.
        #[cfg(feature = "goose")]
        DriverKind::Goose(_) => 1,
    };
    let plan = Plan::new(users, profile.hatch_rate, duration, threads);
    let setup = grpc_setup(&proxy, opts.connections.max(1), plan.threads);
    let before = proxy.usage();
    let driver_before = usage_of(std::process::id());
    let bar = progress_bar(opts.progress);
    let measured = match &opts.driver {
        DriverKind::Lean => {
            users::drive(plan, workload.clone(), setup, ticker(&bar, "proxy")).await
        }
        #[cfg(feature = "goose")]
        DriverKind::Goose(config) => {
            goose_driver::drive(
                plan,
                workload.clone(),
                setup,
                (**config).clone(),
                &proxy.url,
                &opts.report_dir,
            )
            .await
        }
    };
    bar.finish_and_clear();
    let measured = measured.map_err(LoadError::Environment)?;
    let after = proxy.usage();
    let driver_after = usage_of(std::process::id());
    if let Some(p) = proxy.process.as_mut() {
        p.stop();
    }
    let proxy_stats = measured.recorder.summary("proxy", measured.elapsed);

    // The same profile straight on the adapter, in this process, on the same client threads.
    let direct = match (&proxy.backend, opts.baseline_direct) {
        (Some(b), true) => {
            Some(direct_run(profile, &b.config, plan, &run_id, opts.rate, opts.progress).await?)
        }
        _ => None,
    };
    drop(proxy.backend.take());

    let usage = Usage {
        proxy: before.zip(after),
        driver: (driver_before, driver_after),
    };
    finish(
        &opts,
        users,
        plan.threads,
        proxy_stats,
        direct,
        usage,
        BTreeMap::new(),
    )
}

/// CPU and memory readings before and after the measurement.
struct Usage {
    proxy: Option<(proxy_process::Usage, proxy_process::Usage)>,
    driver: (proxy_process::Usage, proxy_process::Usage),
}

/// The summary of a run, with its threshold check; writes the reports.
fn finish(
    opts: &LoadOptions,
    users: usize,
    client_threads: usize,
    proxy_stats: RunStats,
    direct: Option<RunStats>,
    usage: Usage,
    ledgers: BTreeMap<String, messaging::Ledger>,
) -> Result<LoadSummary, LoadError> {
    let calls = proxy_stats.calls.max(1) as f64;
    let (driver_before, driver_after) = usage.driver;
    let mut summary = LoadSummary {
        profile: opts.profile.name.clone(),
        backend: if opts.target.is_some() {
            "target".into()
        } else {
            opts.backend.clone()
        },
        users,
        rate: opts.rate.or(opts.profile.rate),
        added: direct
            .as_ref()
            .map(|d| added(&proxy_stats, d))
            .unwrap_or_default(),
        proxy: proxy_stats,
        direct,
        proxy_cpu_seconds_per_1000: usage
            .proxy
            .map(|(b, a)| (a.cpu_seconds - b.cpu_seconds) / calls * 1000.0),
        proxy_peak_rss_mib: usage
            .proxy
            .map(|(_, a)| a.peak_rss_bytes as f64 / (1024.0 * 1024.0)),
        driver_cpu_seconds_per_1000: (driver_after.cpu_seconds - driver_before.cpu_seconds) / calls
            * 1000.0,
        driver: match opts.driver {
            DriverKind::Lean => "lean".into(),
            #[cfg(feature = "goose")]
            DriverKind::Goose(_) => "goose".into(),
        },
        client_threads,
        ledgers,
        thresholds: opts.profile.thresholds,
        violations: Vec::new(),
    };
    summary.violations = report::violations(&summary);
    report::write(&summary, &opts.report_dir)
        .map_err(|e| LoadError::Environment(format!("writing reports: {e}")))?;
    Ok(summary)
}

/// A messaging profile: senders and receivers through the proxy (one HTTP/2 connection), then,
/// with `--baseline direct`, the same on the adapter in this process.
async fn run_messaging(
    opts: &LoadOptions,
    load: &messaging::MessagingLoad,
    duration: Duration,
) -> Result<LoadSummary, LoadError> {
    #[cfg(feature = "goose")]
    if let DriverKind::Goose(_) = opts.driver {
        return Err(LoadError::Environment(
            "--driver goose drives KeyValue profiles only; messaging profiles use the lean driver"
                .into(),
        ));
    }
    let env = |e: &dyn std::fmt::Display| LoadError::Environment(e.to_string());
    let mut proxy = start_proxy(opts).await?;
    let name = format!(
        "load/{:x}/m",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
    );
    let mut client = prism_proto::client::PrismClient::connect(proxy.url.clone())
        .await
        .map_err(|e| env(&e))?;
    if !proxy.token.is_empty() {
        client = client.with_token(&proxy.token).map_err(|e| env(&e))?;
    }
    let ns = client.namespace(&proxy.namespace);
    let bus: Arc<dyn messaging::Bus> = match opts.profile.pattern {
        prism_runtime::patterns::Pattern::Pubsub => Arc::new(messaging::GrpcBus::PubSub {
            client: ns.pubsub(),
            topic: name.clone(),
        }),
        _ => Arc::new(messaging::GrpcBus::Queue {
            client: ns.queue(),
            queue: name.clone(),
            max_in_flight: load.max_in_flight,
        }),
    };
    let rate = opts.rate.or(opts.profile.rate);
    let before = proxy.usage();
    let driver_before = usage_of(std::process::id());
    let bar = progress_bar(opts.progress);
    let measured = messaging::drive(bus, load, duration, rate, ticker(&bar, "proxy")).await;
    bar.finish_and_clear();
    let measured = measured.map_err(LoadError::Environment)?;
    let after = proxy.usage();
    let driver_after = usage_of(std::process::id());
    if let Some(p) = proxy.process.as_mut() {
        p.stop();
    }
    let mut ledgers = BTreeMap::from([("proxy".to_string(), measured.ledger)]);
    let proxy_stats = measured.recorder.summary("proxy", measured.elapsed);
    let direct = match (&proxy.backend, opts.baseline_direct) {
        (Some(b), true) => {
            let opened = prism_runtime::backends::open("direct", &b.config, Default::default())
                .await
                .map_err(|e| env(&e))?;
            let missing = || {
                LoadError::Environment(format!(
                    "backend type {} offers no {}",
                    opened.kind, opts.profile.pattern
                ))
            };
            let bus: Arc<dyn messaging::Bus> = match opts.profile.pattern {
                prism_runtime::patterns::Pattern::Pubsub => {
                    Arc::new(messaging::DirectBus::PubSub {
                        adapter: opened.pubsub.clone().ok_or_else(missing)?,
                        ns: "load-direct".into(),
                        topic: name.clone(),
                    })
                }
                _ => Arc::new(messaging::DirectBus::Queue {
                    adapter: opened.queue.clone().ok_or_else(missing)?,
                    ns: "load-direct".into(),
                    queue: name.clone(),
                }),
            };
            let bar = progress_bar(opts.progress);
            let measured =
                messaging::drive(bus, load, duration, rate, ticker(&bar, "direct")).await;
            bar.finish_and_clear();
            let measured = measured.map_err(LoadError::Environment)?;
            opened.close().await;
            ledgers.insert("direct".into(), measured.ledger);
            Some(measured.recorder.summary("direct", measured.elapsed))
        }
        _ => None,
    };
    drop(proxy.backend.take());
    let usage = Usage {
        proxy: before.zip(after),
        driver: (driver_before, driver_after),
    };
    finish(
        opts,
        load.senders + load.receivers,
        1,
        proxy_stats,
        direct,
        usage,
        ledgers,
    )
}

/// A Multicast Registry profile through the proxy (the composite's work is the proxy's own, so
/// there is no direct baseline: the slots' direct figures are the KeyValue and PubSub profiles').
async fn run_registry(
    opts: &LoadOptions,
    load: &registry::RegistryLoad,
    duration: Duration,
) -> Result<LoadSummary, LoadError> {
    if opts.baseline_direct {
        return Err(LoadError::Environment(
            "--baseline direct does not apply to a multicast_registry profile: its work is the proxy's own (the slots' own baselines are the keyvalue and pubsub profiles)".into(),
        ));
    }
    let env = |e: &dyn std::fmt::Display| LoadError::Environment(e.to_string());
    let mut proxy = start_proxy(opts).await?;
    let (url, ns, token) = (
        proxy.url.clone(),
        proxy.namespace.clone(),
        proxy.token.clone(),
    );
    let connect: Arc<
        dyn Fn() -> futures_util::future::BoxFuture<
                'static,
                Result<prism_proto::client::NamespaceClient, String>,
            > + Send
            + Sync,
    > = Arc::new(move || {
        let (url, ns, token) = (url.clone(), ns.clone(), token.clone());
        Box::pin(async move {
            let mut client = prism_proto::client::PrismClient::connect(url)
                .await
                .map_err(|e| e.to_string())?;
            if !token.is_empty() {
                client = client.with_token(&token).map_err(|e| e.to_string())?;
            }
            Ok(client.namespace(&ns))
        })
    });
    let before = proxy.usage();
    let driver_before = usage_of(std::process::id());
    let bar = progress_bar(opts.progress);
    let measured = registry::drive(connect, load, duration, ticker(&bar, "proxy")).await;
    bar.finish_and_clear();
    let measured = measured.map_err(|e| env(&e))?;
    let after = proxy.usage();
    let driver_after = usage_of(std::process::id());
    if let Some(p) = proxy.process.as_mut() {
        p.stop();
    }
    eprintln!(
        "mix: {:.0} calls/s; multicasts reported {} deliveries, listeners heard {}, live listeners reported missed {}",
        measured.mix_ops_per_sec,
        measured.ledger.expected - measured.live_missed,
        measured.ledger.arrived,
        measured.live_missed
    );
    for r in &measured.missed_reasons {
        eprintln!("  missed: {r}");
    }
    if let Some(first) = measured.listeners_ended.first() {
        eprintln!(
            "{} listener stream(s) ended before the run did; the first: {first}",
            measured.listeners_ended.len()
        );
    }
    drop(proxy.backend.take());
    let usage = Usage {
        proxy: before.zip(after),
        driver: (driver_before, driver_after),
    };
    finish(
        opts,
        load.callers,
        1,
        measured.stats,
        None,
        usage,
        BTreeMap::from([("proxy".to_string(), measured.ledger)]),
    )
}

/// The direct baseline: the profile on the backend's KeyValue adapter opened in this process.
async fn direct_run(
    profile: &LoadProfile,
    config: &BackendConfig,
    plan: Plan,
    run_id: &str,
    rate: Option<f64>,
    progress: bool,
) -> Result<RunStats, LoadError> {
    let opened = prism_runtime::backends::open("direct", config, Default::default())
        .await
        .map_err(|e| LoadError::Environment(e.to_string()))?;
    let driver = DirectDriver {
        store: opened.keyvalue.clone().ok_or_else(|| {
            LoadError::Environment(format!("backend type {} offers no KeyValue", opened.kind))
        })?,
        ns: "load-direct".into(),
    };
    let wl = Arc::new(Workload::new(profile, format!("load/{run_id}/"), rate));
    if profile.keys.preload {
        wl.preload(&mut driver.clone())
            .await
            .map_err(|c| LoadError::Environment(format!("preload failed: {c}")))?;
    }
    let setup: Setup = Arc::new(move |_, users| {
        let driver = driver.clone();
        Box::pin(async move {
            Ok((0..users)
                .map(|_| Box::new(driver.clone()) as Box<dyn Driver>)
                .collect())
        })
    });
    let bar = progress_bar(progress);
    let measured = users::drive(plan, wl, setup, ticker(&bar, "direct")).await;
    bar.finish_and_clear();
    let measured = measured.map_err(LoadError::Environment)?;
    opened.close().await;
    Ok(measured.recorder.summary("direct", measured.elapsed))
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
