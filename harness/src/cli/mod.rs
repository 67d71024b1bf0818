//! Command-line interface: flags and dispatch. Each command lives in its own module and only wires the
//! library together.

mod corpus;
mod inspect;
mod load;
mod run;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// All scenarios passed.
pub const EXIT_OK: u8 = 0;
/// A scenario failed.
pub const EXIT_FAILED: u8 = 1;
/// Bad input: YAML, config or flags.
pub const EXIT_BAD_INPUT: u8 = 2;
/// The environment could not provide a backend.
pub const EXIT_ENVIRONMENT: u8 = 3;
/// Interrupted (Ctrl-C); backends the harness started were stopped.
pub const EXIT_INTERRUPTED: u8 = 130;

/// Prism's conformance framework: runs the YAML scenario corpus through a real Prism proxy against
/// real backends and writes JUnit, JSON and Markdown reports.
///
/// Examples:
///   prism-conform run                              every scenario on memstore and sqlite
///   prism-conform run --backend redis --backend postgres
///   prism-conform run --all-backends               every backend this machine can provision
///   prism-conform run --backend sqlite --scenario 'ttl-*'
///   prism-conform run --backend redis --backend-url redis=redis://cache:6379
///   prism-conform run --target http://127.0.0.1:8980 --namespace keyvalue=orders
///   prism-conform load --profile kv-read-heavy --backend redis --baseline direct
///   prism-conform load --profile kv-get --users 32 --target http://127.0.0.1:8980 \
///                      --namespace cache --token-file token.jwt   a proxy that is already running
///   prism-conform backends                         what each backend needs and how it would run here
///   prism-conform check scenarios/                 validate YAML without running
///   prism-conform list                             scenarios, backends and capabilities
///   prism-conform mint-token --secret-file s --grant orders=read,write   a token for a proxy
///
/// Exit codes: 0 all passed · 1 a scenario failed · 2 bad input (YAML, flags) · 3 environment
/// (a backend or proxy could not be provisioned) · 130 interrupted.
#[derive(Debug, Parser)]
#[command(name = "prism-conform", version, verbatim_doc_comment)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run scenarios against backends (default: every scenario on memstore and sqlite).
    Run(Box<run::RunArgs>),
    /// Run a load profile through a prism-proxy process (or a running proxy, --target), with HDR µs
    /// percentiles, the proxy's and the load generator's CPU, and optionally the direct baseline.
    Load(Box<load::LoadArgs>),
    /// List scenarios, and the embedded backends with their capabilities.
    List(inspect::ListArgs),
    /// What each backend needs, and how it would be provisioned on this machine.
    Backends(inspect::BackendsArgs),
    /// Validate scenario files without running them (exit 2 with file:line:column on errors).
    Check(inspect::CheckArgs),
    /// Mint an HS256 token for a proxy whose `auth.hs256` uses the same secret (quick starts, scripts).
    MintToken(inspect::MintTokenArgs),
    /// Print the pattern × backend matrix of a run, or write it into a README between the
    /// `<!-- matrix:begin -->` and `<!-- matrix:end -->` markers.
    Matrix(inspect::MatrixArgs),
}

/// Which scenarios to use.
#[derive(Debug, Args)]
pub struct Selection {
    /// Scenario corpus directory (or one file).
    #[arg(long, default_value = "scenarios", env = "PRISM_SCENARIOS")]
    scenarios: PathBuf,
    /// Only scenarios of this pattern: keyvalue, pubsub, queue, multicast_registry or mailbox
    /// (repeatable; any of them).
    #[arg(long = "pattern", value_name = "PATTERN")]
    patterns: Vec<String>,
    /// Only scenarios whose name, file stem, or path (as given, or inside the corpus: `faults/*`)
    /// matches this glob (repeatable).
    #[arg(long = "scenario", value_name = "GLOB")]
    scenario_globs: Vec<String>,
    /// Only scenarios with this tag (repeatable; any of them).
    #[arg(long = "tag")]
    tags: Vec<String>,
}

/// Runs the parsed command.
pub async fn main(cli: Cli) -> ExitCode {
    let code = match cli.command {
        Command::Run(args) => run::run(*args).await,
        Command::Load(args) => load::load(*args).await,
        Command::List(args) => inspect::list(args).await,
        Command::Backends(args) => inspect::backends(args),
        Command::Check(args) => inspect::check(args),
        Command::Matrix(args) => inspect::matrix(args),
        Command::MintToken(args) => inspect::mint_token(args),
    };
    ExitCode::from(code)
}

/// The `prism-conform` process: parses the command line, sets up logging and the async runtime, and
/// runs the command. A plain function of the library, so the whole async call tree is compiled
/// here, in parallel with the runtime crate, rather than after it in the binary.
pub fn process_main() -> ExitCode {
    let args = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PRISM_LOG")
                // The in-process proxy's refused reloads are what `reload` steps provoke and
                // check themselves: not worth an ERROR line on the console.
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new("warn,prism_runtime::reload=off")
                }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("prism-conform: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_ENVIRONMENT);
        }
    };
    runtime.block_on(main(args))
}
