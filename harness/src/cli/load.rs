//! `prism-conform load`: run a load profile through a `prism-proxy` process and report.

use super::{EXIT_BAD_INPUT, EXIT_ENVIRONMENT, EXIT_FAILED, EXIT_OK};
use clap::Args;
use prism_conform::load::{self, LoadError, LoadOptions, profile::LoadProfile};
use prism_conform::provision::{Mode, ProvisionError};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;

/// `load` flags. Goose's own flags (e.g. --users, --increase-rate, --report-file) follow under "Goose".
#[derive(Args)]
pub struct LoadArgs {
    /// Profile name (from scenarios/load/NAME.yaml) or a profile file.
    #[arg(long)]
    profile: String,
    /// Backend: memstore, sqlite, redis, postgres.
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
    /// The proxy's `server.worker_threads`: 0 = one per core, 1 = a single thread.
    #[arg(long, default_value_t = 0)]
    proxy_threads: usize,
    /// `direct`: also run the profile on the adapter in-process and report the added latency.
    #[arg(long, value_parser = ["direct"])]
    baseline: Option<String>,
    /// Where to write goose's reports, load-summary.{json,md} and index.html.
    #[arg(long, default_value = "reports/load")]
    report_dir: PathBuf,
    /// Scenario corpus root (profiles are in its load/ directory).
    #[arg(long, default_value = "scenarios", env = "PRISM_SCENARIOS")]
    scenarios: PathBuf,
    #[command(flatten, next_help_heading = "Goose")]
    goose: goose::config::GooseConfiguration,
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
    let options = LoadOptions {
        users: args.goose.users,
        profile,
        backend: args.backend.clone(),
        mode: args.provision,
        urls,
        duration,
        rate: args.rate,
        connections: usize::from(args.connections),
        proxy_threads: args.proxy_threads,
        baseline_direct: args.baseline.is_some(),
        report_dir: args.report_dir.clone(),
        goose: args.goose.clone(),
        progress: std::io::stderr().is_terminal(),
    };
    match load::run(options).await {
        Ok(summary) => {
            print!("{}", load::report::markdown(&summary));
            eprintln!(
                "reports: {}/{{index.html, load-summary.json, load-summary.md, goose-report.*}}",
                args.report_dir.display()
            );
            if summary.violations.is_empty() {
                EXIT_OK
            } else {
                EXIT_FAILED
            }
        }
        Err(LoadError::Provision(
            e @ (ProvisionError::UnknownBackend(_) | ProvisionError::UnsupportedMode { .. }),
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
