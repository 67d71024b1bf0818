//! `prism-conform load`: run a load profile through a `prism-proxy` process and report.

use super::{EXIT_BAD_INPUT, EXIT_ENVIRONMENT, EXIT_FAILED, EXIT_OK};
use crate::load::{self, LoadError, LoadOptions, profile::LoadProfile};
use crate::provision::{Mode, ProvisionError};
use clap::Args;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;

/// Who drives the users.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum DriverArg {
    /// Prism's client threads: one HTTP/2 call per user in flight, per-thread histograms.
    Lean,
    /// Goose (build with `--features goose`): its users, hatch and goose-report.{html,json,md},
    /// at the cost of recording every call with goose too.
    Goose,
}

/// `load` flags.
#[derive(Args)]
pub struct LoadArgs {
    /// Profile name (from scenarios/load/NAME.yaml) or a profile file.
    #[arg(long)]
    profile: String,
    /// Concurrent users, each with one call in flight (overrides the profile).
    #[arg(long, short = 'u')]
    users: Option<usize>,
    /// Backend: memstore, sqlite, redis, postgres, nats (redis, postgres and nats need a build
    /// with `--features networked`). A composite profile takes one per slot joined by `+`
    /// (`registry-mixed`: `--backend redis+nats`, registry then messaging) or one for every slot.
    #[arg(long, default_value = "memstore")]
    backend: String,
    /// How to get the backend (as for `run`).
    #[arg(long, value_enum, default_value = "auto")]
    provision: Mode,
    /// URL of an already running backend, NAME=URL.
    #[arg(long = "backend-url", value_name = "NAME=URL")]
    backend_urls: Vec<String>,
    /// How long to measure (overrides the profile), e.g. 30s.
    #[arg(long)]
    duration: Option<String>,
    /// Target total calls per second (overrides the profile).
    #[arg(long)]
    rate: Option<f64>,
    /// HTTP/2 connections the load users share, round robin (1 = one client channel, as most
    /// applications have; more spread the proxy's connection handling over its worker threads).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    connections: u16,
    /// The proxy's `server.worker_threads`: 0 = its default (one thread on ≤ 2 cores, else one per
    /// core), 1 = a single thread, N = N threads.
    #[arg(long, default_value_t = 0)]
    proxy_threads: usize,
    /// Load generator threads, each with its own connections, users and histograms (like
    /// h2load's -t). Connections are raised to at least this many.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    client_threads: u16,
    /// Who drives the users.
    #[arg(long, value_enum, default_value = "lean")]
    driver: DriverArg,
    /// Load a proxy that is already running (e.g. http://127.0.0.1:8980) instead of provisioning
    /// a backend and starting one; its namespace (--namespace) must serve KeyValue.
    #[arg(long, value_name = "URL")]
    target: Option<String>,
    /// With --target: the KeyValue namespace to load.
    #[arg(long, default_value = "load", requires = "target")]
    namespace: String,
    /// With --target: a file holding a bearer token with read and write on the namespace
    /// (`prism-conform mint-token` makes one).
    #[arg(long, value_name = "FILE", requires = "target")]
    token_file: Option<PathBuf>,
    /// With --target: the proxy's process id, to report its CPU per call and peak memory.
    #[arg(long, value_name = "PID", requires = "target")]
    proxy_pid: Option<u32>,
    /// `direct`: also run the profile on the adapter in-process and report the added latency.
    #[arg(long, value_parser = ["direct"])]
    baseline: Option<String>,
    /// Where to write load-summary.{json,md} and index.html (and goose's reports).
    #[arg(long, default_value = "reports/load")]
    report_dir: PathBuf,
    /// Scenario corpus root (profiles are in its load/ directory).
    #[arg(long, default_value = "scenarios", env = "PRISM_SCENARIOS")]
    scenarios: PathBuf,
}

impl std::fmt::Debug for LoadArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadArgs")
            .field("profile", &self.profile)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// `prism-conform load`.
pub async fn load(args: LoadArgs) -> u8 {
    let profile = match LoadProfile::load(&args.profile, &load::profiles_dir(&args.scenarios)) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("prism-conform: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let duration = match &args.duration {
        Some(d) => match load::profile::parse_duration(d) {
            Some(d) => Some(d),
            None => {
                eprintln!("prism-conform: --duration {d:?}: expected a duration such as 30s");
                return EXIT_BAD_INPUT;
            }
        },
        None => None,
    };
    let mut urls = BTreeMap::new();
    for item in &args.backend_urls {
        match item.split_once('=') {
            Some((k, v)) => {
                urls.insert(k.to_string(), v.to_string());
            }
            None => {
                eprintln!("prism-conform: --backend-url {item:?}: expected NAME=URL");
                return EXIT_BAD_INPUT;
            }
        }
    }
    if args.target.is_some() && args.baseline.is_some() {
        eprintln!(
            "prism-conform: --baseline direct needs the backend this run provisions; it cannot be used with --target"
        );
        return EXIT_BAD_INPUT;
    }
    let driver = match args.driver {
        DriverArg::Lean => load::DriverKind::Lean,
        #[cfg(feature = "goose")]
        DriverArg::Goose => load::DriverKind::Goose(Box::default()),
        #[cfg(not(feature = "goose"))]
        DriverArg::Goose => {
            eprintln!(
                "prism-conform: --driver goose needs a build with goose: cargo build --release -p prism-conform --features goose"
            );
            return EXIT_BAD_INPUT;
        }
    };
    let target = match &args.target {
        None => None,
        Some(url) => {
            let token = match &args.token_file {
                None => String::new(),
                Some(path) => match std::fs::read_to_string(path) {
                    Ok(t) => t.trim().to_string(),
                    Err(e) => {
                        eprintln!("prism-conform: --token-file {}: {e}", path.display());
                        return EXIT_BAD_INPUT;
                    }
                },
            };
            if let Some(pid) = args.proxy_pid
                && !std::path::Path::new(&format!("/proc/{pid}/stat")).exists()
            {
                eprintln!("prism-conform: --proxy-pid {pid}: no such process");
                return EXIT_BAD_INPUT;
            }
            Some(load::ExternalProxy {
                url: url.clone(),
                namespace: args.namespace.clone(),
                token,
                pid: args.proxy_pid,
            })
        }
    };
    let options = LoadOptions {
        users: args.users,
        profile,
        backend: args.backend.clone(),
        mode: args.provision,
        urls,
        duration,
        rate: args.rate,
        connections: usize::from(args.connections),
        proxy_threads: args.proxy_threads,
        client_threads: usize::from(args.client_threads),
        baseline_direct: args.baseline.is_some(),
        report_dir: args.report_dir.clone(),
        driver,
        target,
        progress: std::io::stderr().is_terminal(),
    };
    match load::run(options).await {
        Ok(summary) => {
            print!("{}", load::report::markdown(&summary));
            eprintln!(
                "reports: {}/{{index.html, load-summary.json, load-summary.md{}}}",
                args.report_dir.display(),
                if summary.driver == "goose" {
                    ", goose-report.*"
                } else {
                    ""
                }
            );
            if summary.violations.is_empty() {
                EXIT_OK
            } else {
                EXIT_FAILED
            }
        }
        Err(LoadError::Provision(
            e @ (ProvisionError::UnknownBackend(_)
            | ProvisionError::NotBuilt(_)
            | ProvisionError::UnsupportedMode { .. }),
        )) => {
            eprintln!("prism-conform: {e}");
            EXIT_BAD_INPUT
        }
        Err(e) => {
            eprintln!("prism-conform: {e}");
            EXIT_ENVIRONMENT
        }
    }
}
