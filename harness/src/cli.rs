//! Command-line interface: `run`, `list`, `check`. Wires flags to the library; no logic of its own.

use clap::{Args, Parser, Subcommand};
use globset::{Glob, GlobSetBuilder};
use prism_conform::provision::{self, BACKENDS, DEFAULT_BACKENDS, ProvisionError};
use prism_conform::report::{self, console::Console};
use prism_conform::runner::{self, RunOptions};
use prism_conform::scenario::load::{find_files, load_corpus};
use prism_conform::scenario::{ParseError, Scenario, print::print_scenario};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// All scenarios passed.
pub const EXIT_OK: u8 = 0;
/// A scenario failed.
pub const EXIT_FAILED: u8 = 1;
/// Bad input: YAML, config or flags.
pub const EXIT_BAD_INPUT: u8 = 2;
/// The environment could not provide a backend.
pub const EXIT_ENVIRONMENT: u8 = 3;

/// Prism's conformance framework: runs the YAML scenario corpus through a real Prism proxy against
/// real backends and writes JUnit, JSON and Markdown reports.
///
/// Examples:
///   prism-conform run                              every scenario on memstore and sqlite
///   prism-conform run --backend sqlite --scenario 'ttl-*'
///   prism-conform run --target http://127.0.0.1:8980 --namespace keyvalue=orders
///   prism-conform check scenarios/                 validate YAML without running
///   prism-conform list                             scenarios, backends and capabilities
///
/// Exit codes: 0 all passed · 1 a scenario failed · 2 bad input (YAML, flags) · 3 environment
/// (a backend or proxy could not be provisioned).
#[derive(Debug, Parser)]
#[command(name = "prism-conform", version, verbatim_doc_comment)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run scenarios against backends (default: every scenario on memstore and sqlite).
    Run(RunArgs),
    /// List scenarios, and backends with their capabilities.
    List(ListArgs),
    /// Validate scenario files without running them (exit 2 with file:line:column on errors).
    Check(CheckArgs),
    /// Print the pattern × backend matrix of a run, or write it into a README between the
    /// `<!-- matrix:begin -->` and `<!-- matrix:end -->` markers.
    Matrix(MatrixArgs),
}

#[derive(Debug, Args)]
struct MatrixArgs {
    /// The run's results.json.
    #[arg(long, default_value = "reports/results.json")]
    results: PathBuf,
    /// Rewrite the generated block of this file instead of printing.
    #[arg(long, value_name = "FILE")]
    update: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct Selection {
    /// Scenario corpus directory (or one file).
    #[arg(long, default_value = "scenarios", env = "PRISM_SCENARIOS")]
    scenarios: PathBuf,
    /// Only scenarios of this pattern (e.g. keyvalue).
    #[arg(long)]
    pattern: Option<String>,
    /// Only scenarios whose name, file name or path matches this glob (repeatable).
    #[arg(long = "scenario", value_name = "GLOB")]
    scenario_globs: Vec<String>,
    /// Only scenarios with this tag (repeatable; any of them).
    #[arg(long = "tag")]
    tags: Vec<String>,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    selection: Selection,
    /// Backend to run against (repeatable): memstore, sqlite. Default: memstore and sqlite.
    #[arg(long = "backend", value_name = "NAME")]
    backends: Vec<String>,
    /// Directory for junit.xml, results.json and summary.md.
    #[arg(long, default_value = "reports")]
    report_dir: PathBuf,
    /// Scenarios in flight at once.
    #[arg(long, short, default_value_t = 4)]
    jobs: usize,
    /// Stop starting scenarios after the first failure (the rest are reported as not run).
    #[arg(long)]
    fail_fast: bool,
    /// Longest one scenario may run, in seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Run against an already running proxy at this URL instead of an in-process one.
    #[arg(long, value_name = "URL", requires = "namespaces")]
    target: Option<String>,
    /// With --target: the namespace to use for a pattern, PATTERN=NAME (e.g. keyvalue=orders);
    /// PATTERN.other=NAME gives the second namespace for isolation scenarios.
    #[arg(long = "namespace", value_name = "PATTERN=NAME", requires = "target")]
    namespaces: Vec<String>,
    /// Print every passed and skipped scenario, not only failures.
    #[arg(long, short)]
    verbose: bool,
}

#[derive(Debug, Args)]
struct ListArgs {
    #[command(flatten)]
    selection: Selection,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// Scenario files or directories.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Print each scenario back as normalised YAML.
    #[arg(long)]
    print: bool,
}

/// Runs the parsed command.
pub async fn main(cli: Cli) -> ExitCode {
    let code = match cli.command {
        Command::Run(args) => run(args).await,
        Command::List(args) => list(args).await,
        Command::Check(args) => check(args),
        Command::Matrix(args) => matrix(args),
    };
    ExitCode::from(code)
}

fn report_parse_errors(errors: &[ParseError]) -> u8 {
    for e in errors {
        eprintln!("{e}");
    }
    let files: std::collections::BTreeSet<_> = errors.iter().map(|e| &e.file).collect();
    eprintln!(
        "prism-conform: {} error(s) in {} file(s)",
        errors.len(),
        files.len()
    );
    EXIT_BAD_INPUT
}

fn load(paths: &[PathBuf]) -> Result<Vec<Scenario>, u8> {
    let mut files = Vec::new();
    for p in paths {
        match find_files(p) {
            Ok(f) => files.extend(f),
            Err(e) => {
                eprintln!("prism-conform: cannot read {}: {e}", p.display());
                return Err(EXIT_BAD_INPUT);
            }
        }
    }
    if files.is_empty() {
        eprintln!(
            "prism-conform: no scenario files (*.yaml) under {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Err(EXIT_BAD_INPUT);
    }
    load_corpus(&files).map_err(|e| report_parse_errors(&e))
}

fn select(sel: &Selection) -> Result<Vec<Scenario>, u8> {
    let all = load(std::slice::from_ref(&sel.scenarios))?;
    let mut builder = GlobSetBuilder::new();
    for g in &sel.scenario_globs {
        match Glob::new(g) {
            Ok(glob) => {
                builder.add(glob);
            }
            Err(e) => {
                eprintln!("prism-conform: --scenario {g:?}: {e}");
                return Err(EXIT_BAD_INPUT);
            }
        }
    }
    let globs = builder.build().map_err(|e| {
        eprintln!("prism-conform: {e}");
        EXIT_BAD_INPUT
    })?;
    let matches_glob = |s: &Scenario| {
        let stem = s
            .file
            .file_stem()
            .map(|x| x.to_string_lossy().into_owned())
            .unwrap_or_default();
        sel.scenario_globs.is_empty()
            || globs.is_match(&s.name)
            || globs.is_match(&stem)
            || globs.is_match(&s.file)
    };
    let picked: Vec<Scenario> = all
        .into_iter()
        .filter(|s| sel.pattern.as_ref().is_none_or(|p| &s.pattern == p))
        .filter(|s| sel.tags.is_empty() || s.tags.iter().any(|t| sel.tags.contains(t)))
        .filter(matches_glob)
        .collect();
    if picked.is_empty() {
        eprintln!(
            "prism-conform: no scenario matches the selection (--pattern / --scenario / --tag)"
        );
        return Err(EXIT_BAD_INPUT);
    }
    Ok(picked)
}

fn parse_namespaces(list: &[String]) -> Result<BTreeMap<String, String>, u8> {
    let mut out = BTreeMap::new();
    for item in list {
        match item.split_once('=') {
            Some((p, n)) if !p.is_empty() && !n.is_empty() => {
                out.insert(p.to_string(), n.to_string());
            }
            _ => {
                eprintln!(
                    "prism-conform: --namespace {item:?}: expected PATTERN=NAME, e.g. keyvalue=orders"
                );
                return Err(EXIT_BAD_INPUT);
            }
        }
    }
    Ok(out)
}

fn provision_code(e: &ProvisionError) -> u8 {
    eprintln!("prism-conform: {e}");
    match e {
        ProvisionError::UnknownBackend(_) => EXIT_BAD_INPUT,
        ProvisionError::Environment(_) => EXIT_ENVIRONMENT,
    }
}

async fn run(args: RunArgs) -> u8 {
    let scenarios = match select(&args.selection) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut backends = if args.backends.is_empty() {
        DEFAULT_BACKENDS.iter().map(|s| s.to_string()).collect()
    } else {
        args.backends.clone()
    };
    backends.dedup();
    if let Some(bad) = backends
        .iter()
        .find(|b| !BACKENDS.iter().any(|k| k.name == b.as_str()))
    {
        return provision_code(&ProvisionError::UnknownBackend(bad.clone()));
    }
    let (embedded, targets) = match &args.target {
        Some(url) => {
            if !args.backends.is_empty() {
                eprintln!(
                    "prism-conform: --backend and --target exclude each other (the target proxy decides the backend)"
                );
                return EXIT_BAD_INPUT;
            }
            let namespaces = match parse_namespaces(&args.namespaces) {
                Ok(n) => n,
                Err(code) => return code,
            };
            match provision::connect_targets(url, &namespaces).await {
                Ok(t) => (None, t),
                Err(e) => return provision_code(&e),
            }
        }
        None => match provision::start_embedded(&backends).await {
            Ok((proxy, t)) => (Some(proxy), t),
            Err(e) => return provision_code(&e),
        },
    };
    let scenarios: Vec<Arc<Scenario>> = scenarios.into_iter().map(Arc::new).collect();
    let options = RunOptions {
        jobs: args.jobs,
        fail_fast: args.fail_fast,
        scenario_timeout: Duration::from_secs(args.timeout),
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut console = Console::new(args.verbose);
    let printer = tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            console.on_event(&event);
        }
    });
    let report = runner::run(&targets, &scenarios, &options, tx).await;
    let _ = printer.await;
    if let Some(proxy) = embedded {
        proxy.stop().await;
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
        eprintln!("prism-conform: no scenario passed (everything was skipped)");
        EXIT_FAILED
    } else {
        EXIT_OK
    }
}

async fn list(args: ListArgs) -> u8 {
    let scenarios = match select(&args.selection) {
        Ok(s) => s,
        Err(code) => return code,
    };
    println!("Scenarios ({}):", scenarios.len());
    for s in &scenarios {
        let requires: Vec<&str> = s.requires.iter().map(|c| c.name()).collect();
        println!(
            "  {:<9} {:<48} [{}]  {}",
            s.pattern,
            s.name,
            requires.join(", "),
            display(&s.file)
        );
    }
    println!("\nBackends:");
    let names: Vec<String> = BACKENDS.iter().map(|b| b.name.to_string()).collect();
    let caps = match provision::start_embedded(&names).await {
        Ok((proxy, targets)) => {
            proxy.stop().await;
            targets
        }
        Err(e) => return provision_code(&e),
    };
    for b in BACKENDS {
        let declared = caps
            .iter()
            .find(|t| t.backend == b.name)
            .map(|t| {
                t.capabilities
                    .iter()
                    .map(|c| c.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        println!("  {:<9} {}; needs {}", b.name, b.provisioning, b.needs);
        println!("  {:<9} capabilities: {declared}", "");
    }
    EXIT_OK
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

fn check(args: CheckArgs) -> u8 {
    match load(&args.paths) {
        Ok(scenarios) => {
            if args.print {
                for s in &scenarios {
                    println!("# {}\n{}", display(&s.file), print_scenario(s));
                }
            }
            let steps: usize = scenarios.iter().map(|s| s.steps.len()).sum();
            eprintln!(
                "prism-conform: {} scenario(s) ok ({steps} top-level steps)",
                scenarios.len()
            );
            EXIT_OK
        }
        Err(code) => code,
    }
}

fn matrix(args: MatrixArgs) -> u8 {
    let text = match std::fs::read_to_string(&args.results) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "prism-conform: cannot read {}: {e} (run `prism-conform run` first)",
                args.results.display()
            );
            return EXIT_BAD_INPUT;
        }
    };
    let run: report::model::RunReport = match serde_json::from_str(&text) {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "prism-conform: {}:{}:{}: not a results.json: {e}",
                args.results.display(),
                e.line(),
                e.column()
            );
            return EXIT_BAD_INPUT;
        }
    };
    let block = report::readme::block(&run);
    let Some(path) = args.update else {
        print!("{block}");
        return EXIT_OK;
    };
    let doc = match std::fs::read_to_string(&path) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("prism-conform: cannot read {}: {e}", path.display());
            return EXIT_BAD_INPUT;
        }
    };
    let Some(updated) = report::readme::splice(&doc, &block) else {
        eprintln!(
            "prism-conform: {} has no `{}` … `{}` block to update",
            path.display(),
            report::readme::BEGIN,
            report::readme::END
        );
        return EXIT_BAD_INPUT;
    };
    if let Err(e) = std::fs::write(&path, updated) {
        eprintln!("prism-conform: cannot write {}: {e}", path.display());
        return EXIT_ENVIRONMENT;
    }
    eprintln!("prism-conform: updated the matrix in {}", path.display());
    EXIT_OK
}
