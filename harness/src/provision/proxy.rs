//! The proxies a run starts for its provisioned backends: in this process (the default; a restart
//! drains and serves again) or as `prism-proxy` processes (`--proxy-mode process`, so a
//! `kill_proxy` step is a real SIGKILL and a restart a real new process). Either way each serves
//! metrics on an admin address of its own and was started from a config file, so scenario steps
//! can read `/metrics` and reload a changed file.

use super::ProvisionError;
use crate::load::proxy_process::{ProxyProcess, proxy_binary};
use prism_runtime::config::ProxyConfig;
use prism_runtime::server::Proxy;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Where a run's proxies run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ProxyMode {
    /// In the harness's own process.
    #[default]
    InProcess,
    /// As `prism-proxy` processes the harness starts (from `PRISM_PROXY_BIN`, else beside
    /// `prism-conform`).
    Process,
}

/// A proxy serving provisioned backends. Cheap to clone: every clone controls the same proxy.
#[derive(Clone)]
pub struct RunningProxy {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Where it serves `/metrics` and the probes.
    pub admin: SocketAddr,
    /// The config file it was started from (what a reload reads).
    pub config_file: PathBuf,
    /// The `prism-proxy` binary, when it runs as a process.
    binary: Option<PathBuf>,
    inner: Arc<tokio::sync::Mutex<Serving>>,
}

struct Serving {
    /// The config it starts with (and starts again with after a restart).
    config: ProxyConfig,
    /// What the config file holds now.
    written: ProxyConfig,
    run: Run,
}

/// How the proxy is running now.
enum Run {
    /// Not running (stopped, or killed).
    Stopped,
    /// In this process: its shutdown signal and server task.
    InProcess {
        shutdown: oneshot::Sender<()>,
        task: JoinHandle<()>,
    },
    /// A `prism-proxy` child process.
    Process(ProxyProcess),
}

impl std::fmt::Debug for RunningProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningProxy")
            .field("url", &self.url)
            .field("admin", &self.admin)
            .field("process", &self.binary.is_some())
            .finish_non_exhaustive()
    }
}

impl Serving {
    /// A graceful stop: the proxy drains (its streams end with UNAVAILABLE, held deliveries are
    /// returned) and closes its backends.
    async fn drain(&mut self) {
        match std::mem::replace(&mut self.run, Run::Stopped) {
            Run::Stopped => {}
            Run::InProcess { shutdown, task } => {
                let _ = shutdown.send(());
                let _ = task.await;
            }
            Run::Process(mut p) => {
                let _ = tokio::task::spawn_blocking(move || p.stop()).await;
            }
        }
    }
}

impl RunningProxy {
    /// Whether it runs as a `prism-proxy` process (so it can be killed).
    pub fn is_process(&self) -> bool {
        self.binary.is_some()
    }

    /// Drains the proxy and waits for it to stop.
    pub async fn stop(self) {
        self.inner.lock().await.drain().await;
    }

    /// Drains the proxy (when running), then opens the backends again and serves on the same
    /// addresses.
    pub async fn restart(&self) -> Result<(), ProvisionError> {
        let mut serving = self.inner.lock().await;
        serving.drain().await;
        serving.run = serve(&serving.config, &self.config_file, self.binary.as_deref()).await?;
        Ok(())
    }

    /// Starts the proxy when it is not running (after a kill); a running one is left as it is.
    pub async fn ensure_running(&self) -> Result<(), ProvisionError> {
        let mut serving = self.inner.lock().await;
        if matches!(serving.run, Run::Stopped) {
            serving.run = serve(&serving.config, &self.config_file, self.binary.as_deref()).await?;
        }
        Ok(())
    }

    /// SIGKILL, as a crash would: nothing is drained or returned. Only a proxy process can be
    /// killed.
    pub async fn kill(&self) -> Result<(), ProvisionError> {
        let mut serving = self.inner.lock().await;
        match std::mem::replace(&mut serving.run, Run::Stopped) {
            Run::Process(mut p) => {
                p.kill();
                Ok(())
            }
            Run::Stopped => Err(ProvisionError::Environment(
                "the proxy is not running (killed or stopped before)".into(),
            )),
            running @ Run::InProcess { .. } => {
                serving.run = running;
                Err(ProvisionError::Environment(
                    "an in-process proxy cannot be killed; run with --proxy-mode process".into(),
                ))
            }
        }
    }

    /// The config the proxy was started with.
    pub async fn started_config(&self) -> ProxyConfig {
        self.inner.lock().await.config.clone()
    }

    /// The config its file holds now.
    pub async fn written_config(&self) -> ProxyConfig {
        self.inner.lock().await.written.clone()
    }

    /// Writes `config` to the proxy's config file (read at its next reload).
    pub async fn write_config(&self, config: &ProxyConfig) -> Result<(), ProvisionError> {
        let mut serving = self.inner.lock().await;
        write_config_file(&self.config_file, config)?;
        serving.written = config.clone();
        Ok(())
    }

    /// Writes `text` to the config file as it is (a file that may not validate); the config the
    /// file is taken to hold stays what it was, so [`RunningProxy::write_config`] puts it back.
    pub fn write_text(&self, text: &str) -> Result<(), ProvisionError> {
        std::fs::write(&self.config_file, text).map_err(|e| {
            ProvisionError::Environment(format!("cannot write {}: {e}", self.config_file.display()))
        })
    }
}

/// Writes `config` as YAML to `path`.
pub(super) fn write_config_file(path: &Path, config: &ProxyConfig) -> Result<(), ProvisionError> {
    let text = serde_saphyr::to_string(config).map_err(|e| {
        ProvisionError::Environment(format!("cannot render the proxy's config: {e}"))
    })?;
    std::fs::write(path, text)
        .map_err(|e| ProvisionError::Environment(format!("cannot write {}: {e}", path.display())))
}

/// Serves `config` (written at `file`, which reloads read again): in this process, or as a
/// `binary` process logging beside the file.
async fn serve(
    config: &ProxyConfig,
    file: &Path,
    binary: Option<&Path>,
) -> Result<Run, ProvisionError> {
    let Some(binary) = binary else {
        let (shutdown, task) = serve_in_process(config, file).await?;
        return Ok(Run::InProcess { shutdown, task });
    };
    let log = file.with_extension("log");
    ProxyProcess::start(binary, file, config.listen.port(), &log)
        .await
        .map(Run::Process)
        .map_err(ProvisionError::Environment)
}

/// Opens and serves `config` (read from `file`, which reloads read again) in this process; the
/// shutdown sender and the server task.
async fn serve_in_process(
    config: &ProxyConfig,
    file: &Path,
) -> Result<(oneshot::Sender<()>, JoinHandle<()>), ProvisionError> {
    let env = |e: &dyn std::fmt::Display| {
        ProvisionError::Environment(format!("cannot start the in-process proxy: {e}"))
    };
    let proxy = Proxy::open(config)
        .await
        .map_err(|e| env(&e))?
        .with_config_file(file.to_path_buf());
    let (listener, _) = Proxy::bind(config.listen).await.map_err(|e| env(&e))?;
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        if let Err(e) = proxy
            .serve(listener, async {
                let _ = rx.await;
            })
            .await
        {
            tracing::error!(error = %e, "in-process proxy failed");
        }
    });
    Ok((tx, task))
}

/// Starts a proxy for `config` (in `mode`) on ephemeral loopback ports (kept across restarts),
/// with its admin listener on, from a config file written at `file`.
pub async fn start_proxy(
    config: &ProxyConfig,
    file: &Path,
    mode: ProxyMode,
) -> Result<RunningProxy, ProvisionError> {
    let env = |e: &dyn std::fmt::Display| {
        ProvisionError::Environment(format!("cannot start the proxy: {e}"))
    };
    let binary = match mode {
        ProxyMode::InProcess => None,
        ProxyMode::Process => Some(proxy_binary().ok_or_else(|| {
            ProvisionError::Environment(
                "--proxy-mode process needs the prism-proxy binary: build it (cargo build --release -p prism-runtime) or set PRISM_PROXY_BIN".into(),
            )
        })?),
    };
    // The ports are chosen once, so a restart serves on the same addresses.
    let (probe, addr) = Proxy::bind(config.listen).await.map_err(|e| env(&e))?;
    let (admin_probe, admin) = Proxy::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .map_err(|e| env(&e))?;
    drop((probe, admin_probe));
    let mut config = config.clone();
    config.listen = addr;
    config.admin_listen = Some(admin);
    write_config_file(file, &config)?;
    let run = serve(&config, file, binary.as_deref()).await?;
    Ok(RunningProxy {
        url: format!("http://{addr}"),
        admin,
        config_file: file.to_path_buf(),
        binary,
        inner: Arc::new(tokio::sync::Mutex::new(Serving {
            written: config.clone(),
            config,
            run,
        })),
    })
}
