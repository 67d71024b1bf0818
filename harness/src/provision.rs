//! Backend provisioning: the embedded backends (memstore, sqlite in a temp dir) behind an in-process
//! proxy on an ephemeral port, or an already running proxy given with `--target`.

use crate::runner::Target;
use prism_proto::admin::v1::GetCapabilitiesRequest;
use prism_proto::client::PrismClient;
use prism_runtime::backends::BackendConfig;
use prism_runtime::backends::memstore::MemStoreConfig;
use prism_runtime::backends::sqlite::SqliteConfig;
use prism_runtime::capability::Capability;
use prism_runtime::config::{NamespaceConfig, Pattern, ProxyConfig};
use prism_runtime::limits::LimitsConfig;
use prism_runtime::server::Proxy;
use std::collections::BTreeMap;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A backend the harness knows how to provision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendInfo {
    /// Name used with `--backend`.
    pub name: &'static str,
    /// How it is provisioned.
    pub provisioning: &'static str,
    /// What it needs on this machine.
    pub needs: &'static str,
}

/// Every backend the harness can provision today.
pub const BACKENDS: [BackendInfo; 2] = [
    BackendInfo {
        name: "memstore",
        provisioning: "embedded (in the proxy process)",
        needs: "nothing",
    },
    BackendInfo {
        name: "sqlite",
        provisioning: "embedded (a database file in a fresh temp dir)",
        needs: "nothing (SQLite is compiled in)",
    },
];

/// Backends `prism-conform run` uses when none is named.
pub const DEFAULT_BACKENDS: [&str; 2] = ["memstore", "sqlite"];

/// Why a target could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// An unknown backend name (bad input).
    #[error("unknown backend '{0}' (expected one of: {names})", names = BACKENDS.iter().map(|b| b.name).collect::<Vec<_>>().join(", "))]
    UnknownBackend(String),
    /// The environment could not provide the backend or proxy.
    #[error("{0}")]
    Environment(String),
}

/// An in-process proxy serving the embedded backends; dropped or [`EmbeddedProxy::stop`]ped at the end.
pub struct EmbeddedProxy {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl EmbeddedProxy {
    /// Drains the proxy and waits for it to stop.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

fn namespace(backend: &str) -> String {
    format!("conform-{backend}")
}

fn other_namespace(backend: &str) -> String {
    format!("conform-{backend}-other")
}

/// The proxy config the embedded run uses: each backend with two keyvalue namespaces.
pub fn embedded_config(
    backends: &[String],
    dir: &std::path::Path,
) -> Result<ProxyConfig, ProvisionError> {
    let mut bcfg = BTreeMap::new();
    let mut ns = BTreeMap::new();
    for name in backends {
        let config = match name.as_str() {
            "memstore" => BackendConfig::Memstore(MemStoreConfig::default()),
            "sqlite" => BackendConfig::Sqlite(SqliteConfig {
                path: dir.join("prism-conform.db").display().to_string(),
                readers: 4,
            }),
            other => return Err(ProvisionError::UnknownBackend(other.to_string())),
        };
        bcfg.insert(name.clone(), config);
        for n in [namespace(name), other_namespace(name)] {
            ns.insert(
                n,
                NamespaceConfig {
                    pattern: Pattern::Keyvalue,
                    backend: name.clone(),
                    disable: Vec::new(),
                    limits: LimitsConfig::default(),
                },
            );
        }
    }
    Ok(ProxyConfig {
        listen: "127.0.0.1:0".parse().expect("loopback address parses"),
        limits: LimitsConfig::default(),
        backends: bcfg,
        namespaces: ns,
    })
}

/// Starts an in-process proxy for `config` on an ephemeral loopback port.
pub async fn start_proxy(
    config: &ProxyConfig,
    dir: tempfile::TempDir,
) -> Result<EmbeddedProxy, ProvisionError> {
    let env = |e: &dyn std::fmt::Display| {
        ProvisionError::Environment(format!("cannot start the in-process proxy: {e}"))
    };
    let proxy = Proxy::open(config).await.map_err(|e| env(&e))?;
    let (listener, addr) = Proxy::bind(config.listen).await.map_err(|e| env(&e))?;
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
    Ok(EmbeddedProxy {
        url: format!("http://{addr}"),
        shutdown: Some(tx),
        task: Some(task),
        _dir: dir,
    })
}

/// Starts the embedded backends behind an in-process proxy and returns it with one target per backend.
pub async fn start_embedded(
    backends: &[String],
) -> Result<(EmbeddedProxy, Vec<Target>), ProvisionError> {
    let dir = tempfile::Builder::new()
        .prefix("prism-conform-")
        .tempdir()
        .map_err(|e| ProvisionError::Environment(format!("cannot create a temp dir: {e}")))?;
    let config = embedded_config(backends, dir.path())?;
    let proxy = start_proxy(&config, dir).await?;
    let client = PrismClient::connect(proxy.url.clone())
        .await
        .map_err(|e| ProvisionError::Environment(e.to_string()))?;
    let mut targets = Vec::new();
    for b in backends {
        targets.push(target(&client, b, &namespace(b), Some(other_namespace(b))).await?);
    }
    Ok((proxy, targets))
}

/// Describes a namespace of a running proxy as a target, asking the proxy for its capabilities.
pub async fn target(
    client: &PrismClient,
    label: &str,
    ns: &str,
    other: Option<String>,
) -> Result<Target, ProvisionError> {
    let caps = client
        .admin()
        .get_capabilities(GetCapabilitiesRequest {
            namespace: ns.to_string(),
        })
        .await
        .map_err(|s| {
            ProvisionError::Environment(format!(
                "GetCapabilities for namespace '{ns}' failed: {}: {}",
                s.code(),
                s.message()
            ))
        })?
        .into_inner();
    Ok(Target {
        backend: label.to_string(),
        backend_kind: caps.backend_kind,
        pattern: caps.pattern,
        client: client.clone(),
        namespace: ns.to_string(),
        other_namespace: other,
        capabilities: caps
            .capabilities
            .iter()
            .filter_map(|c| Capability::from_name(c))
            .collect(),
    })
}

/// Targets on an already running proxy: `namespaces` maps a pattern (or `PATTERN.other`) to a namespace.
pub async fn connect_targets(
    url: &str,
    namespaces: &BTreeMap<String, String>,
) -> Result<Vec<Target>, ProvisionError> {
    let client = PrismClient::connect(url.to_string())
        .await
        .map_err(|e| ProvisionError::Environment(format!("{url}: {e}")))?;
    let mut targets = Vec::new();
    for (pattern, ns) in namespaces.iter().filter(|(p, _)| !p.ends_with(".other")) {
        let other = namespaces.get(&format!("{pattern}.other")).cloned();
        let t = target(&client, "target", ns, other).await?;
        if &t.pattern != pattern {
            return Err(ProvisionError::Environment(format!(
                "namespace '{ns}' serves the {} pattern, not {pattern}",
                t.pattern
            )));
        }
        targets.push(t);
    }
    Ok(targets)
}
