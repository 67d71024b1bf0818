//! Config reload without a restart (SIGHUP, or Admin `ReloadConfig`): the config file is read again
//! and validated whole; namespaces are added, removed and changed, backends kept when their
//! definition is unchanged, opened when new, and closed once no namespace uses them; the router is
//! swapped in one step, so a call sees the old namespaces or the new, never a mix. Streams of a
//! removed or changed namespace end with UNAVAILABLE naming the reason; unary calls in flight on it
//! finish. Token-verification keys (HS256 secret, JWKS file) are read again too. A config that does
//! not validate, or that changes what only a restart can change, is refused and the running one
//! stays.

use crate::auth::config::AuthMode;
use crate::auth::keys::{KeyError, KeyStore};
use crate::auth::layer::Guard;
use crate::auth::verify::Verifier;
use crate::auth::{Permission, Principal};
use crate::backends::{Backend, OpenError};
use crate::config::ProxyConfig;
use crate::patterns::stream::Drain;
use crate::router::{LiveRouter, Router, diff};
use crate::telemetry::ProxyMetrics;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tonic::Status;

/// Why a reload was refused (the running config stays in every case).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The proxy was not started from a file.
    #[error("this proxy was not started from a config file: there is nothing to read again")]
    NoFile,
    /// The file does not validate (its errors at `file:line:column`).
    #[error("the config does not validate, the running one stays: {0}")]
    Invalid(String),
    /// It changes what only a restart can change.
    #[error("{0} cannot change without a restart; the running config stays")]
    NeedsRestart(String),
    /// The caller may not change every namespace the reload would change.
    #[error(
        "the reload adds, removes or changes {0} namespace(s) the caller lacks the admin permission on; the running config stays"
    )]
    Denied(usize),
    /// A backend could not be opened.
    #[error("the running config stays: {0}")]
    Backend(#[from] OpenError),
    /// The token-verification keys could not be loaded.
    #[error("auth: {0}; the running config stays")]
    Auth(#[from] KeyError),
}

impl ReloadError {
    /// The gRPC status an Admin caller gets.
    pub fn status(&self) -> Status {
        match self {
            ReloadError::Denied(_) => Status::permission_denied(self.to_string()),
            ReloadError::Backend(_) => Status::unavailable(self.to_string()),
            ReloadError::NoFile => Status::unimplemented(self.to_string()),
            _ => Status::failed_precondition(self.to_string()),
        }
    }
}

/// What a reload that took changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// The generation now running.
    pub generation: u64,
    /// Namespaces added, removed and changed.
    pub added: Vec<String>,
    /// See `added`.
    pub removed: Vec<String>,
    /// See `added`.
    pub changed: Vec<String>,
    /// Backends opened, and those closed (once calls in flight on them are done).
    pub opened: Vec<String>,
    /// See `opened`.
    pub closed: Vec<String>,
}

/// Everything a reload touches; one per proxy, shared by the SIGHUP task and Admin.
#[derive(Debug)]
pub struct Reloader {
    path: Option<PathBuf>,
    router: Arc<LiveRouter>,
    guard: Arc<Guard>,
    running: tokio::sync::Mutex<ProxyConfig>,
    max_value_bytes: usize,
    drain: Drain,
    metrics: Arc<ProxyMetrics>,
    record_backends: bool,
}

/// The settings a reload cannot change, and how to read each off a config.
fn restart_only(running: &ProxyConfig, next: &ProxyConfig) -> Option<&'static str> {
    if running.listen != next.listen {
        Some("listen")
    } else if running.admin_listen != next.admin_listen {
        Some("admin_listen")
    } else if running.server != next.server {
        Some("server")
    } else if running.log_format != next.log_format {
        Some("log_format")
    } else if running.access_log != next.access_log {
        Some("access_log")
    } else if running.tracing != next.tracing {
        Some("tracing")
    } else {
        None
    }
}

impl Reloader {
    /// A reloader of the proxy serving `running` (read from `path`, when it was) through `router`.
    /// `max_value_bytes` is what the transport was sized for; `record_backends` whether new
    /// backends' calls are recorded in metrics.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        path: Option<PathBuf>,
        running: ProxyConfig,
        router: Arc<LiveRouter>,
        guard: Arc<Guard>,
        max_value_bytes: usize,
        drain: Drain,
        metrics: Arc<ProxyMetrics>,
        record_backends: bool,
    ) -> Self {
        Self {
            path,
            router,
            guard,
            running: tokio::sync::Mutex::new(running),
            max_value_bytes,
            drain,
            metrics,
            record_backends,
        }
    }

    /// Reads the config file again and applies it, for `caller` (Admin; `None` for SIGHUP, which
    /// only the process's owner can send). Logs and counts the outcome.
    pub async fn reload(&self, caller: Option<&Principal>) -> Result<Reloaded, ReloadError> {
        let outcome = self.apply(caller).await;
        match &outcome {
            Ok(done) => {
                self.metrics.reloads_applied.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    generation = done.generation,
                    added = ?done.added,
                    removed = ?done.removed,
                    changed = ?done.changed,
                    backends_opened = ?done.opened,
                    backends_closed = ?done.closed,
                    "config reloaded"
                );
            }
            Err(e) => {
                self.metrics.reloads_refused.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "config reload refused");
            }
        }
        outcome
    }

    async fn apply(&self, caller: Option<&Principal>) -> Result<Reloaded, ReloadError> {
        let path = self.path.as_ref().ok_or(ReloadError::NoFile)?;
        let next = ProxyConfig::load(path).map_err(|e| ReloadError::Invalid(e.to_string()))?;
        // One reload at a time: each builds on the config the last one left.
        let mut running = self.running.lock().await;
        if let Some(key) = restart_only(&running, &next) {
            return Err(ReloadError::NeedsRestart(format!("`{key}`")));
        }
        let largest = next
            .namespaces
            .values()
            .map(|ns| next.limits_for(ns).max_value_bytes)
            .max()
            .unwrap_or(0);
        if largest > self.max_value_bytes {
            return Err(ReloadError::NeedsRestart(format!(
                "a max_value_bytes above {} (the largest the proxy started with, which sized its message limit)",
                self.max_value_bytes
            )));
        }
        if let Some(caller) = caller {
            let (added, removed, changed) = diff(&running, &next);
            let denied = added
                .iter()
                .chain(&removed)
                .chain(&changed)
                .filter(|ns| !caller.allows(ns, Permission::Admin))
                .count();
            if denied > 0 {
                self.guard.counters().denied(Permission::Admin);
                return Err(ReloadError::Denied(denied));
            }
        }
        let verifier = match next.auth.mode {
            AuthMode::Jwt => Some(Verifier::new(&next.auth, KeyStore::load(&next.auth).await?)),
            AuthMode::None => None,
        };
        let current = self.router.current();
        let (router, changes) = Router::build(&next, Some((&current, &running))).await?;
        if self.record_backends {
            for (_, backend) in router.backends() {
                backend.health.metrics().enable();
            }
        }
        if next.auth.mode == AuthMode::None && running.auth.mode != AuthMode::None {
            tracing::warn!(
                "AUTHENTICATION IS OFF after this reload (auth.mode: none): every caller may read and write every namespace"
            );
        }
        self.guard.replace(next.auth.mode, verifier);
        self.router.swap(router);
        let now = self.router.current();
        for old in &changes.retired {
            let why = if changes.removed.contains(&old.name) {
                "was removed from the proxy's config"
            } else {
                "was changed by a config reload; open the stream again"
            };
            old.retire(format!("namespace '{}' {why}", old.name));
        }
        for name in changes.added.iter().chain(&changes.changed) {
            if let Some(route) = now.get(name) {
                crate::patterns::mailbox::source::spawn(route.clone(), self.drain.clone());
            }
        }
        close_later(changes.unused, next.backend_calls.timeout());
        let generation = self.metrics.generation.fetch_add(1, Ordering::Relaxed) + 1;
        *running = next;
        Ok(Reloaded {
            generation,
            added: changes.added,
            removed: changes.removed,
            changed: changes.changed,
            opened: changes.opened,
            closed: changes.closed,
        })
    }
}

/// Closes backends no namespace uses any more, once calls in flight on them have had their
/// deadline (the backend call timeout) to finish.
fn close_later(unused: Vec<Backend>, timeout: Duration) {
    if unused.is_empty() {
        return;
    }
    tokio::spawn(async move {
        tokio::time::sleep(timeout + Duration::from_secs(1)).await;
        for backend in unused {
            backend.close().await;
        }
    });
}
