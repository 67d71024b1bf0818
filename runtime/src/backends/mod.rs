//! Backends, one module per backend, each with its own config struct. A running [`Backend`] is a
//! bundle of pattern adapters: it offers any subset of the patterns (KeyValue, PubSub, Queue), each
//! through the adapter traits of `crate::patterns`. [`BackendConfig`] is the `type:`-tagged union the
//! proxy config holds; [`open`] turns one into a running bundle.
//!
//! memstore and SQLite are in every build. Redis, PostgreSQL and NATS each sit behind a cargo
//! feature of the same name (on by default for `prism-proxy`; `prism-conform` asks for them with
//! `--features networked`), so a build that only needs the embedded backends does not compile
//! three network clients. [`is_built`] says which are in this build; opening one that is not gives
//! [`OpenError::NotBuilt`].

pub mod config;
pub mod error;
pub mod health;
pub mod memstore;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
pub mod sql_queue;
pub mod sqlite;

use crate::patterns::Pattern;
use crate::patterns::capability::Capability;
use crate::patterns::keyvalue::store::KvStore;
use crate::patterns::pubsub::adapter::PubSubAdapter;
use crate::patterns::queue::adapter::QueueAdapter;
use health::{BackendCallConfig, Health, Ping};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Config of one backend instance, selected by its `type:` key.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum BackendConfig {
    /// In-process memory (`type: memstore`).
    Memstore(memstore::MemStoreConfig),
    /// SQLite file or `:memory:` (`type: sqlite`).
    Sqlite(sqlite::SqliteConfig),
    /// Redis (`type: redis`).
    Redis(config::RedisConfig),
    /// PostgreSQL (`type: postgres`).
    Postgres(config::PostgresConfig),
    /// NATS with JetStream (`type: nats`).
    Nats(config::NatsConfig),
}

/// The backend types this build can open: memstore and sqlite always, the networked ones when
/// their feature is on.
const BUILT: &[&str] = &[
    "memstore",
    "sqlite",
    #[cfg(feature = "redis")]
    "redis",
    #[cfg(feature = "postgres")]
    "postgres",
    #[cfg(feature = "nats")]
    "nats",
];

/// Whether this build can open backends of type `kind`.
pub fn is_built(kind: &str) -> bool {
    BUILT.contains(&kind)
}

impl BackendConfig {
    /// The backend kind as named in configs and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            BackendConfig::Memstore(_) => "memstore",
            BackendConfig::Sqlite(_) => "sqlite",
            BackendConfig::Redis(_) => "redis",
            BackendConfig::Postgres(_) => "postgres",
            BackendConfig::Nats(_) => "nats",
        }
    }

    /// The patterns a backend of this type offers (what [`open`] builds adapters for).
    pub fn patterns(&self) -> &'static [Pattern] {
        match self {
            BackendConfig::Memstore(_) | BackendConfig::Redis(_) => {
                &[Pattern::Keyvalue, Pattern::Pubsub, Pattern::Queue]
            }
            BackendConfig::Sqlite(_) => &[Pattern::Keyvalue, Pattern::Queue],
            BackendConfig::Postgres(c) if c.listens() => {
                &[Pattern::Keyvalue, Pattern::Pubsub, Pattern::Queue]
            }
            BackendConfig::Postgres(_) => &[Pattern::Keyvalue, Pattern::Queue],
            BackendConfig::Nats(_) => &[Pattern::Pubsub, Pattern::Queue],
        }
    }
}

impl BackendConfig {
    /// Why this backend, as configured, does not offer `pattern`, where its type could.
    pub fn why_not(&self, pattern: Pattern) -> Option<&'static str> {
        match self {
            BackendConfig::Postgres(c) if pattern == Pattern::Pubsub && !c.listens() => Some(
                "behind a transaction pooler (`pooler: transaction`) it cannot LISTEN; set `listen_url` to a session connection (PostgreSQL itself or a session-pooling PgBouncer)",
            ),
            _ => None,
        }
    }
}

/// Why a backend could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// SQLite could not open or migrate the database.
    #[error("cannot open sqlite database {path:?}: {source}")]
    Sqlite {
        /// The configured path.
        path: String,
        /// The sqlx error.
        #[source]
        source: sqlx::Error,
    },
    /// The backend's type is not in this build (its cargo feature was off).
    #[error(
        "backend type `{kind}` is not in this build of prism: rebuild with the cargo feature `{kind}` (prism-proxy has it by default; prism-conform: `--features networked`)"
    )]
    NotBuilt {
        /// The backend type.
        kind: &'static str,
    },
    /// The Redis URL is invalid.
    #[cfg(feature = "redis")]
    #[error("cannot use redis at {url}: {source}")]
    Redis {
        /// The URL, password redacted.
        url: String,
        /// The client error.
        #[source]
        source: ::redis::RedisError,
    },
    /// The NATS server could not be reached.
    #[cfg(feature = "nats")]
    #[error("cannot connect to nats at {url}: {source}")]
    Nats {
        /// The URL, password redacted.
        url: String,
        /// The client error.
        #[source]
        source: async_nats::ConnectError,
    },
    /// PostgreSQL could not be reached or migrated.
    #[cfg(feature = "postgres")]
    #[error("cannot open postgres at {url}: {source}{hint}")]
    Postgres {
        /// The URL, password redacted.
        url: String,
        /// The sqlx error.
        #[source]
        source: sqlx::Error,
        /// What to change, when the error says it (empty otherwise).
        hint: &'static str,
    },
}

#[derive(Clone, Debug)]
pub(crate) enum Closer {
    Nothing,
    Sqlite(Arc<sqlite::SqliteStore>),
    #[cfg(feature = "postgres")]
    Postgres(Arc<postgres::PostgresStore>),
}

/// A running backend: its pattern adapters, its health (every call goes through it) and how to
/// close it.
#[derive(Clone)]
pub struct Backend {
    /// The backend type, e.g. `memstore`.
    pub kind: &'static str,
    /// The KeyValue adapter, if the backend offers KeyValue.
    pub keyvalue: Option<Arc<dyn KvStore>>,
    /// The PubSub adapter, if offered.
    pub pubsub: Option<Arc<dyn PubSubAdapter>>,
    /// The Queue adapter, if offered.
    pub queue: Option<Arc<dyn QueueAdapter>>,
    /// Call deadlines and the up/down state.
    pub health: Arc<Health>,
    closer: Closer,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("kind", &self.kind)
            .field("patterns", &self.patterns())
            .finish()
    }
}

impl Backend {
    /// A bundle of `kind` with no adapters yet.
    fn new(kind: &'static str, health: Arc<Health>, closer: Closer) -> Self {
        Self {
            kind,
            keyvalue: None,
            pubsub: None,
            queue: None,
            health,
            closer,
        }
    }

    /// The patterns this backend offers.
    pub fn patterns(&self) -> Vec<Pattern> {
        let mut patterns = Vec::new();
        if self.keyvalue.is_some() {
            patterns.push(Pattern::Keyvalue);
        }
        if self.pubsub.is_some() {
            patterns.push(Pattern::Pubsub);
        }
        if self.queue.is_some() {
            patterns.push(Pattern::Queue);
        }
        patterns
    }

    /// The capabilities the backend's adapter for `pattern` declares (none when it has no adapter).
    pub fn capabilities(&self, pattern: Pattern) -> Vec<Capability> {
        let declared = match pattern {
            Pattern::Keyvalue => self.keyvalue.as_ref().map(|a| a.capabilities()),
            Pattern::Pubsub => self.pubsub.as_ref().map(|a| a.capabilities()),
            Pattern::Queue => self.queue.as_ref().map(|a| a.capabilities()),
            // A composite is served over other patterns' adapters, never by one backend alone.
            Pattern::MulticastRegistry | Pattern::Mailbox => None,
        };
        declared
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.pattern() == pattern)
            .collect()
    }

    /// The connection pool's size and idle connections, for backends that keep a pool (their main
    /// pool: PostgreSQL's call pool, SQLite's writer and readers together).
    pub fn pool_stats(&self) -> Option<(u32, usize)> {
        match &self.closer {
            Closer::Nothing => None,
            Closer::Sqlite(store) => Some(store.pool_stats()),
            #[cfg(feature = "postgres")]
            Closer::Postgres(store) => Some(store.pool_stats()),
        }
    }

    /// Releases connections and files; in-flight calls should be finished first.
    pub async fn close(&self) {
        match &self.closer {
            Closer::Nothing => {}
            Closer::Sqlite(store) => store.close().await,
            #[cfg(feature = "postgres")]
            Closer::Postgres(store) => store.close().await,
        }
    }
}

/// Opens backend `name` and starts its housekeeping tasks (expiry sweeps).
pub async fn open(
    name: &str,
    config: &BackendConfig,
    calls: BackendCallConfig,
) -> Result<Backend, OpenError> {
    let health = |ping: Arc<dyn Ping>| Health::new(name, calls, ping);
    let kind = config.kind();
    match config {
        BackendConfig::Memstore(_) => Ok(memstore::open(kind, health)),
        #[cfg(feature = "nats")]
        BackendConfig::Nats(cfg) => {
            nats::open(kind, cfg, health)
                .await
                .map_err(|source| OpenError::Nats {
                    url: cfg.url.redacted(),
                    source,
                })
        }
        BackendConfig::Sqlite(cfg) => {
            let store =
                sqlite::SqliteStore::open(cfg)
                    .await
                    .map_err(|source| OpenError::Sqlite {
                        path: cfg.path.clone(),
                        source,
                    })?;
            store.spawn_purger();
            let shared = Arc::new(store);
            let mut backend =
                Backend::new(kind, health(shared.clone()), Closer::Sqlite(shared.clone()));
            backend.queue = Some(Arc::new(shared.queue()));
            backend.keyvalue = Some(shared);
            Ok(backend)
        }
        #[cfg(feature = "redis")]
        BackendConfig::Redis(cfg) => {
            let connection =
                redis::Connection::open(cfg)
                    .await
                    .map_err(|source| OpenError::Redis {
                        url: cfg.url.redacted(),
                        source,
                    })?;
            let (kv, pubsub, queue) = connection.adapters(cfg);
            let mut backend = Backend::new(kind, health(kv.clone()), Closer::Nothing);
            backend.keyvalue = Some(kv);
            backend.pubsub = Some(pubsub);
            backend.queue = Some(queue);
            Ok(backend)
        }
        #[cfg(feature = "postgres")]
        BackendConfig::Postgres(cfg) => {
            let store = postgres::PostgresStore::open(cfg, calls.timeout())
                .await
                .map_err(|source| OpenError::Postgres {
                    url: cfg.url.redacted(),
                    hint: postgres::hint(cfg, &source),
                    source,
                })?;
            store.spawn_purger();
            let shared = Arc::new(store);
            let mut backend = Backend::new(
                kind,
                health(shared.clone()),
                Closer::Postgres(shared.clone()),
            );
            backend.queue = Some(Arc::new(shared.queue()));
            if let Some(pubsub) = shared.pubsub() {
                backend.pubsub = Some(Arc::new(pubsub));
            }
            backend.keyvalue = Some(shared);
            Ok(backend)
        }
        #[allow(unreachable_patterns)] // reachable only when a networked backend is left out
        _ => Err(OpenError::NotBuilt { kind }),
    }
}
