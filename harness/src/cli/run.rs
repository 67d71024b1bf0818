//! `prism-conform run`: provision backends, start the in-process proxy (or use `--target`), run the
//! selected scenarios, write the reports, and stop everything it started — also on Ctrl-C.

use super::corpus::select;
use super::{EXIT_BAD_INPUT, EXIT_ENVIRONMENT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, Selection};
use crate::provision::{
    self, BACKENDS, DEFAULT_BACKENDS, Environment, Launch, Mode, Persistence, ProvisionError,
    ProxyMode,
};
use crate::report::model::{RunReport, UnavailableReport};
use crate::report::{self, console::Console};
use crate::runner::{self, RunOptions, Target};
use crate::scenario::Scenario;
use clap::Args;
use prism_runtime::telemetry::trace::TracingConfig;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// `run` flags.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    selection: Selection,
    /// Backend to run against (repeatable): memstore, sqlite, redis, postgres, nats.
    /// Default: memstore and sqlite. redis, postgres and nats need a build with
    /// `--features networked` (`prism-conform backends` shows what this build has).
    #[arg(long = "backend", value_name = "NAME")]
    backends: Vec<String>,
    /// Every known backend that can be provisioned here; the others (including those this build
    /// leaves out) are reported as unavailable.
    #[arg(long, conflicts_with = "backends")]
    all_backends: bool,
    /// How to get each backend: auto = an external URL if given, else embedded or a local process,
    /// else a container.
    #[arg(long, value_enum, default_value = "auto")]
    provision: Mode,
    /// URL of an already running backend, NAME=URL (repeatable), e.g. redis=redis://127.0.0.1:6379.
    /// Also read from PRISM_REDIS_URL / PRISM_POSTGRES_URL.
    #[arg(long = "backend-url", value_name = "NAME=URL")]
    backend_urls: Vec<String>,
    /// Backends whose absence is fatal (exit 3) even with --all-backends: comma-separated names, or
    /// `all`.
    #[arg(long, env = "PRISM_REQUIRE_BACKENDS", value_delimiter = ',')]
    require_backends: Vec<String>,
    /// Directory for junit.xml, results.json and summary.md.
    #[arg(long, default_value = "reports")]
    report_dir: PathBuf,
    /// Scenarios in flight at once (they mostly wait on timers and the network, so more than the
    /// core count pays off).
    #[arg(long, short, default_value_t = 16)]
    jobs: usize,
    /// Stop starting scenarios after the first failure (the rest are reported as not run).
    #[arg(long)]
    fail_fast: bool,
    /// Longest one scenario may run, in seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Run against an already running proxy at this URL instead of an in-process one.
    #[arg(long, value_name = "URL", requires = "namespaces", conflicts_with_all = ["backends", "all_backends"])]
    target: Option<String>,
    /// With --target: the namespace to use for a pattern, PATTERN=NAME (e.g. keyvalue=orders);
    /// PATTERN.other=NAME gives the second namespace for isolation scenarios.
    #[arg(long = "namespace", value_name = "PATTERN=NAME", requires = "target")]
    namespaces: Vec<String>,
    /// With --target: the bearer token to send (needs read, write and admin on the namespaces).
    #[arg(
        long,
        env = "PRISM_TOKEN",
        requires = "target",
        conflicts_with = "token_file",
        hide_env_values = true
    )]
    token: Option<String>,
    /// With --target: a file holding the bearer token.
    #[arg(long, value_name = "FILE", requires = "target")]
    token_file: Option<PathBuf>,
    /// Send the in-process proxy's traces to this OTLP/gRPC collector (e.g.
    /// http://127.0.0.1:4317). Every call of a case carries one sampled `traceparent`, so the
    /// case's calls and their backend calls are one trace; a failing case prints its trace id.
    #[arg(long, value_name = "URL", conflicts_with = "target")]
    otlp_endpoint: Option<String>,
    /// Where the run's two proxies (a, and b on the shared backends, for `via: b` steps) run:
    /// in-process, or process (`prism-proxy` children, from PRISM_PROXY_BIN or beside this
    /// binary), which `kill_proxy` steps need (a real SIGKILL).
    #[arg(
        long,
        value_enum,
        default_value = "in-process",
        conflicts_with = "target"
    )]
    proxy_mode: ProxyMode,
    /// 2: spread every scenario's calls and streams over both proxies (alternating, where a step
    /// names none), on every target whose backends two proxies can share (not memstore). A
    /// scenario that acts on one proxy (restarts or kills it, reads its metrics, reloads it) or
    /// faults the backend (each proxy reconnects on its own) keeps to the proxies it names.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2), conflicts_with = "target")]
    proxies: u8,
    /// Print every passed and skipped scenario, not only failures.
    #[arg(long, short)]
    verbose: bool,
}

fn pairs(list: &[String], flag: &str, example: &str) -> Result<BTreeMap<String, String>, u8> {
    let mut out = BTreeMap::new();
    for item in list {
        match item.split_once('=') {
            Some((k, v)) if !k.is_empty() && !v.is_empty() => {
                out.insert(k.to_string(), v.to_string());
            }
            _ => {
                eprintln!("prism-conform: {flag} {item:?}: expected {example}");
                return Err(EXIT_BAD_INPUT);
            }
        }
    }
    Ok(out)
}

fn provision_code(e: &ProvisionError) -> u8 {
    eprintln!("prism-conform: {e}");
    match e {
        ProvisionError::UnknownBackend(_)
        | ProvisionError::NotBuilt(_)
        | ProvisionError::UnsupportedMode { .. } => EXIT_BAD_INPUT,
        ProvisionError::Environment(_) => EXIT_ENVIRONMENT,
    }
}

/// The backends to run and whether each one's absence is fatal.
fn plan_backends(args: &RunArgs) -> Result<Vec<(String, bool)>, u8> {
    let required = |name: &str| {
        args.require_backends
            .iter()
            .any(|r| r == name || r == "all")
    };
    if args.all_backends {
        return Ok(BACKENDS
            .iter()
            .map(|b| (b.name.to_string(), required(b.name)))
            .collect());
    }
    let mut names: Vec<String> = if args.backends.is_empty() {
        DEFAULT_BACKENDS.iter().map(|s| s.to_string()).collect()
    } else {
        args.backends.clone()
    };
    names.dedup();
    for n in &names {
        if let Err(e) = provision::backend_info(n) {
            return Err(provision_code(&e));
        }
    }
    // Backends named explicitly are always required.
    Ok(names.into_iter().map(|n| (n, true)).collect())
}

/// Provisions each backend, reporting progress; unavailable optional ones are collected, not fatal.
async fn provision_all(
    plan: &[(String, bool)],
    mode: Mode,
    urls: &BTreeMap<String, String>,
    otlp_endpoint: Option<&str>,
    proxy_mode: ProxyMode,
) -> Result<(Environment, Vec<UnavailableReport>), u8> {
    let dir = provision::run_dir().map_err(|e| provision_code(&e))?;
    let mut ready = Vec::new();
    let mut unavailable = Vec::new();
    for (name, required) in plan {
        match provision::provision(name, mode, urls, dir.path(), Persistence::Durable).await {
            Ok(p) => {
                eprintln!("{}: {} ({:.2}s)", p.name, p.method, p.took.as_secs_f64());
                ready.push(p);
            }
            Err(e) if !*required => {
                eprintln!("prism-conform: skipping backend {name}: {e}");
                unavailable.push(UnavailableReport {
                    backend: name.clone(),
                    reason: e.to_string(),
                });
            }
            Err(e) => return Err(provision_code(&e)),
        }
    }
    if ready.is_empty() {
        eprintln!("prism-conform: no backend could be provisioned");
        return Err(EXIT_ENVIRONMENT);
    }
    let tracing = otlp_endpoint.map(|otlp_endpoint| TracingConfig {
        otlp_endpoint: otlp_endpoint.to_string(),
        // The harness's calls say sampled; nothing else reaches this proxy.
        sample_ratio: 0.0,
        service_name: "prism-proxy (prism-conform)".into(),
    });
    let options = Launch {
        tracing,
        mode: proxy_mode,
    };
    let env = provision::launch(ready, dir, &options)
        .await
        .map_err(|e| provision_code(&e))?;
    Ok((env, unavailable))
}

/// `prism-conform run`.
pub async fn run(args: RunArgs) -> u8 {
    tokio::select! {
        code = run_inner(args) => code,
        () = prism_runtime::shutdown::signal() => {
            eprintln!("\nprism-conform: interrupted; stopping the proxy and the backends it started");
            EXIT_INTERRUPTED
        }
    }
}

async fn run_inner(args: RunArgs) -> u8 {
    let scenarios = match select(&args.selection) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let urls = match pairs(
        &args.backend_urls,
        "--backend-url",
        "NAME=URL, e.g. redis=redis://127.0.0.1:6379",
    ) {
        Ok(u) => u,
        Err(code) => return code,
    };
    let (env, targets, unavailable) = match &args.target {
        Some(url) => {
            let namespaces = match pairs(
                &args.namespaces,
                "--namespace",
                "PATTERN=NAME, e.g. keyvalue=orders",
            ) {
                Ok(n) => n,
                Err(code) => return code,
            };
            let token = match (&args.token, &args.token_file) {
                (Some(t), _) => Some(t.trim().to_string()),
                (None, Some(path)) => match std::fs::read_to_string(path) {
                    Ok(t) => Some(t.trim().to_string()),
                    Err(e) => {
                        eprintln!("prism-conform: --token-file {}: {e}", path.display());
                        return EXIT_BAD_INPUT;
                    }
                },
                (None, None) => None,
            };
            match provision::connect_targets(url, &namespaces, token).await {
                Ok(t) => (None, t, Vec::new()),
                Err(e) => return provision_code(&e),
            }
        }
        None => {
            let plan = match plan_backends(&args) {
                Ok(p) => p,
                Err(code) => return code,
            };
            let provisioned = provision_all(
                &plan,
                args.provision,
                &urls,
                args.otlp_endpoint.as_deref(),
                args.proxy_mode,
            );
            match provisioned.await {
                Ok((env, unavailable)) => {
                    let targets = env.targets.clone();
                    (Some(env), targets, unavailable)
                }
                Err(code) => return code,
            }
        }
    };
    let mut report = execute(&args, &targets, scenarios).await;
    report.unavailable = unavailable;
    if let Some(env) = env {
        for suite in &mut report.suites {
            if let Some(b) = env.backends.iter().find(|b| b.name == suite.backend) {
                suite.provisioning = Some(b.method.clone());
                suite.provision_ms = Some(u64::try_from(b.took.as_millis()).unwrap_or(u64::MAX));
            }
        }
        env.stop().await;
    }
    for u in &report.unavailable {
        eprintln!("unavailable: {}: {}", u.backend, u.reason);
    }
    match report::write_all(&report, &args.report_dir) {
        Ok(files) => eprintln!(
            "reports: {}",
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Err(e) => {
            eprintln!(
                "prism-conform: cannot write reports to {}: {e}",
                args.report_dir.display()
            );
            return EXIT_ENVIRONMENT;
        }
    }
    if report.totals.failed > 0 {
        EXIT_FAILED
    } else if report.totals.passed == 0 {
        eprintln!("prism-conform: no scenario passed (nothing ran, or everything was skipped)");
        EXIT_FAILED
    } else {
        EXIT_OK
    }
}

async fn execute(args: &RunArgs, targets: &[Target], scenarios: Vec<Scenario>) -> RunReport {
    let scenarios: Vec<Arc<Scenario>> = scenarios.into_iter().map(Arc::new).collect();
    let options = RunOptions {
        jobs: args.jobs,
        fail_fast: args.fail_fast,
        scenario_timeout: Duration::from_secs(args.timeout),
        spread: args.proxies == 2,
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut console = Console::new(args.verbose);
    let printer = tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            console.on_event(&event);
        }
    });
    let report = runner::run(targets, &scenarios, &options, tx).await;
    let _ = printer.await;
    report
}
