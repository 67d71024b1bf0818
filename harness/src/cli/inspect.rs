//! The read-only commands: `list`, `backends`, `check`, `matrix`.

use super::corpus::{load, select};
use super::{EXIT_BAD_INPUT, EXIT_ENVIRONMENT, EXIT_OK, Selection};
use clap::Args;
use prism_conform::provision::{self, BACKENDS, Mode, container, process};
use prism_conform::report;
use prism_conform::scenario::print::print_scenario;
use std::path::{Path, PathBuf};

/// `list` flags.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    selection: Selection,
}

/// `backends` flags.
#[derive(Debug, Args)]
pub struct BackendsArgs {}

/// `check` flags.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Scenario files or directories.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Print each scenario back as normalised YAML.
    #[arg(long)]
    print: bool,
}

/// `matrix` flags.
#[derive(Debug, Args)]
pub struct MatrixArgs {
    /// The run's results.json.
    #[arg(long, default_value = "reports/results.json")]
    results: PathBuf,
    /// Rewrite the generated block of this file instead of printing.
    #[arg(long, value_name = "FILE")]
    update: Option<PathBuf>,
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

/// `prism-conform list`.
pub async fn list(args: ListArgs) -> u8 {
    let scenarios = match select(&args.selection) {
        Ok(s) => s,
        Err(code) => return code,
    };
    println!("Scenarios ({}):", scenarios.len());
    for s in &scenarios {
        let requires: Vec<&str> = s.requires.iter().map(|c| c.name()).collect();
        println!(
            "  {:<9} {:<52} [{}]  {}",
            s.pattern,
            s.name,
            requires.join(", "),
            display(&s.file)
        );
    }
    println!("\nEmbedded backends and their declared capabilities:");
    let names: Vec<String> = provision::DEFAULT_BACKENDS
        .iter()
        .map(|s| s.to_string())
        .collect();
    let env = match provision::start_environment(&names, Mode::Embedded, &Default::default()).await
    {
        Ok(env) => env,
        Err(e) => {
            eprintln!("prism-conform: {e}");
            return EXIT_ENVIRONMENT;
        }
    };
    for t in &env.targets {
        let caps: Vec<&str> = t.capabilities.iter().map(|c| c.name()).collect();
        println!("  {:<9} {}", t.backend, caps.join(", "));
    }
    env.stop().await;
    println!("\nNetworked backends declare theirs once provisioned; see `prism-conform backends`.");
    EXIT_OK
}

/// `prism-conform backends`: what each backend needs and which provisioner `auto` would use here.
pub fn backends(_args: BackendsArgs) -> u8 {
    let docker = container::docker_endpoint();
    for b in BACKENDS {
        println!("{}", b.name);
        println!("  needs: {}", b.needs);
        let mut chosen = None;
        for mode in b.modes {
            let status = match mode {
                Mode::Embedded => Ok("always available".to_string()),
                Mode::External => {
                    let var = format!("PRISM_{}_URL", b.name.to_ascii_uppercase());
                    match std::env::var(&var) {
                        Ok(url) if !url.is_empty() => {
                            Ok(format!("{var} = {}", prism_runtime::secret::redact(&url)))
                        }
                        _ => Err(format!("no URL (--backend-url {}=URL or {var})", b.name)),
                    }
                }
                Mode::Process => {
                    let dir = match b.name {
                        "redis" => process::redis_bin_dir(),
                        _ => process::postgres_bin_dir(),
                    };
                    dir.map(|d| format!("binaries in {}", d.display()))
                        .ok_or_else(|| "server binaries not installed".to_string())
                }
                Mode::Container => match &docker {
                    Ok(endpoint) if cfg!(feature = "container") => {
                        Ok(format!("engine at {endpoint}"))
                    }
                    Ok(_) => Err("built without the `container` feature".into()),
                    Err(e) => Err(e.clone()),
                },
                Mode::Auto => continue,
            };
            let name = format!("{mode:?}").to_lowercase();
            match &status {
                Ok(how) => println!("  {name:<9} available: {how}"),
                Err(why) => println!("  {name:<9} unavailable: {why}"),
            }
            if chosen.is_none() && status.is_ok() {
                chosen = Some(name);
            }
        }
        match chosen {
            Some(m) => println!("  auto -> {m}"),
            None => println!("  auto -> unavailable here"),
        }
    }
    EXIT_OK
}

/// `prism-conform check`.
pub fn check(args: CheckArgs) -> u8 {
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

/// `prism-conform matrix`.
pub fn matrix(args: MatrixArgs) -> u8 {
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
