//! `prism-proxy`: serves Prism's pattern APIs for the namespaces in a config file.

use anyhow::Context;
use clap::Parser;
use prism_runtime::config::{LogFormat, ProxyConfig};
use prism_runtime::server::Proxy;
use std::path::PathBuf;
use tracing_subscriber::EnvFilter;

/// jemalloc with its background purge thread hands freed memory back to the system; glibc's malloc
/// kept what a burst of connections or request bodies had used (`ci/slow-body-rss.sh`, README).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Prism's data access proxy: one gRPC endpoint mapping namespaces to patterns and backends.
///
/// Example config (see runtime/examples/prism.yaml):
///
///   listen: 127.0.0.1:8980
///   backends:
///     mem:  { type: memstore }
///     lite: { type: sqlite, path: ./data/prism.db }
///   namespaces:
///     cache:  { pattern: keyvalue, backend: mem }
///     orders: { pattern: keyvalue, backend: lite }
///
/// SIGTERM or Ctrl-C stops accepting calls, lets in-flight calls finish, and exits 0. SIGHUP reads
/// the config file again and applies it without a restart (or refuses it, keeping the running one).
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    /// Proxy config file (YAML).
    #[arg(long, short, env = "PRISM_CONFIG")]
    config: PathBuf,
    /// Override the config's `listen` address, e.g. 127.0.0.1:0.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Override the config's `admin_listen` address (metrics and probes), e.g. 127.0.0.1:9464.
    #[arg(long)]
    admin_listen: Option<std::net::SocketAddr>,
    /// Only check the config and exit (0 when valid).
    #[arg(long)]
    check: bool,
}

/// Starts the log in the config's `log_format` (text until the config is read, so config errors
/// are readable). `PRISM_LOG` filters it (default `info`).
fn init_log(format: LogFormat) {
    let filter = EnvFilter::try_from_env("PRISM_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let loaded = ProxyConfig::load(&cli.config);
    init_log(loaded.as_ref().map_or(LogFormat::Text, |c| c.log_format));
    let outcome = loaded.map_err(anyhow::Error::from).and_then(|config| {
        if cli.check {
            println!(
                "{}: ok ({} backends, {} namespaces)",
                cli.config.display(),
                config.backends.len(),
                config.namespaces.len()
            );
            return Ok(());
        }
        let threads = worker_threads(config.server.worker_threads);
        runtime(threads)?.block_on(serve(config, &cli, threads))
    });
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("prism-proxy: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// The threads `server.worker_threads` asks for. 0 (the default) is one thread on a host with at
/// most two cores — where the proxy shares them with its callers and backends, and one thread
/// measured faster and cheaper per call than two (README, Performance) — and one per core above.
fn worker_threads(configured: usize) -> usize {
    match configured {
        0 => match std::thread::available_parallelism().map_or(1, |n| n.get()) {
            cores @ 3.. => cores,
            _ => 1,
        },
        n => n,
    }
}

/// The async runtime for `threads`: one thread (current-thread runtime), or a pool.
fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

async fn serve(config: ProxyConfig, cli: &Cli, worker_threads: usize) -> anyhow::Result<()> {
    let mut proxy = Proxy::open(&config)
        .await?
        .with_config_file(cli.config.clone());
    if let Some(admin) = cli.admin_listen {
        proxy = proxy.with_admin_listen(admin);
    }
    let (listener, addr) = Proxy::bind(cli.listen.unwrap_or(config.listen)).await?;
    if let Some(admin) = proxy.bind_admin().await? {
        tracing::info!(%admin, "admin listener: /metrics, /livez, /readyz");
    }
    for route in proxy.router().routes() {
        tracing::info!(
            namespace = %route.name,
            pattern = route.pattern.name(),
            backends = %route.describe_backends(),
            "namespace ready"
        );
    }
    tracing::info!(%addr, worker_threads, "prism-proxy listening");
    proxy
        .serve(listener, prism_runtime::shutdown::signal())
        .await
        .context("serving")?;
    Ok(())
}
