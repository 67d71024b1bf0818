//! The read-only commands: `list`, `backends`, `check`, `matrix`.

use super::corpus::{load, select};
use super::{EXIT_BAD_INPUT, EXIT_ENVIRONMENT, EXIT_OK, Selection};
use crate::provision::{self, BACKENDS, Kind, Mode, container, process};
use crate::report;
use crate::scenario::print::print_scenario;
use clap::Args;
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

/// `mint-token` flags.
#[derive(Debug, Args)]
pub struct MintTokenArgs {
    /// File holding the HS256 secret (as `auth.hs256.secret_file`; trailing newline ignored).
    #[arg(long, value_name = "FILE", required_unless_present = "secret_env")]
    secret_file: Option<PathBuf>,
    /// Environment variable holding the secret (as `auth.hs256.secret_env`).
    #[arg(long, value_name = "VAR")]
    secret_env: Option<String>,
    /// Grant NAMESPACE=PERMS (repeatable), e.g. orders=read,write or 'metrics-*=read'.
    #[arg(long = "grant", value_name = "NS=PERMS", required = true)]
    grants: Vec<String>,
    /// The token's subject.
    #[arg(long, default_value = "prism-cli")]
    subject: String,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl: u64,
    /// `iss` claim (when the proxy sets auth.issuer).
    #[arg(long)]
    issuer: Option<String>,
    /// `aud` claim (when the proxy sets auth.audience).
    #[arg(long)]
    audience: Option<String>,
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
        if !prism_runtime::backends::is_built(b.kind.backend_type()) {
            println!(
                "  not in this build: rebuild with `--features {}`",
                provision::NETWORKED_FEATURE
            );
            continue;
        }
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
                    let dir = match b.kind {
                        Kind::Redis => process::redis_bin_dir()
                            .ok_or_else(|| "server binaries not installed".to_string()),
                        Kind::Nats => process::nats_bin_dir(),
                        Kind::Postgres => process::postgres_bin_dir()
                            .ok_or_else(|| "server binaries not installed".to_string()),
                        Kind::Pgbouncer => process::postgres_bin_dir()
                            .ok_or_else(|| "PostgreSQL server binaries not installed".to_string())
                            .and_then(|_| {
                                process::pgbouncer_bin_dir()
                                    .ok_or_else(|| "pgbouncer not installed".to_string())
                            }),
                        Kind::Memstore | Kind::Sqlite => Err("no server process".to_string()),
                    };
                    dir.map(|d| format!("binaries in {}", d.display()))
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
    let mut profiles_ok = 0usize;
    for dir in args
        .paths
        .iter()
        .map(|p| p.join("load"))
        .filter(|d| d.is_dir())
    {
        let Ok(files) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = files.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for file in files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "yaml"))
        {
            match crate::load::profile::LoadProfile::load(&file.display().to_string(), &dir) {
                Ok(_) => profiles_ok += 1,
                Err(e) => {
                    eprintln!("{e}");
                    return EXIT_BAD_INPUT;
                }
            }
        }
    }
    if profiles_ok > 0 {
        eprintln!("prism-conform: {profiles_ok} load profile(s) ok");
    }
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

/// `prism-conform mint-token`: prints a signed token on stdout.
pub fn mint_token(args: MintTokenArgs) -> u8 {
    let secret = match (&args.secret_file, &args.secret_env) {
        (Some(path), _) => match std::fs::read(path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("prism-conform: --secret-file {}: {e}", path.display());
                return EXIT_BAD_INPUT;
            }
        },
        (None, Some(var)) => match std::env::var(var) {
            Ok(s) => s.into_bytes(),
            Err(_) => {
                eprintln!("prism-conform: --secret-env: environment variable {var} is not set");
                return EXIT_BAD_INPUT;
            }
        },
        (None, None) => return EXIT_BAD_INPUT,
    };
    let mut grants = std::collections::BTreeMap::new();
    for g in &args.grants {
        let Some((ns, perms)) = g.split_once('=') else {
            eprintln!(
                "prism-conform: --grant {g:?}: expected NAMESPACE=PERMS, e.g. orders=read,write"
            );
            return EXIT_BAD_INPUT;
        };
        let perms: Vec<String> = perms.split(',').map(|p| p.trim().to_string()).collect();
        if let Some(bad) = perms
            .iter()
            .find(|p| !["read", "write", "admin"].contains(&p.as_str()))
        {
            eprintln!(
                "prism-conform: --grant {g:?}: unknown permission {bad:?} (expected read, write, admin)"
            );
            return EXIT_BAD_INPUT;
        }
        grants.insert(ns.to_string(), perms);
    }
    println!(
        "{}",
        crate::tokens::mint_hs256(
            secret.trim_ascii_end(),
            &args.subject,
            &grants,
            args.ttl,
            args.issuer.as_deref(),
            args.audience.as_deref(),
        )
    );
    EXIT_OK
}
