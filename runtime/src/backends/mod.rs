//! Backend adapters, one module per backend, each with its own config struct. [`BackendConfig`] is the
//! `type:`-tagged union the proxy config holds; [`open`] turns one into a running adapter.

pub mod health;
pub mod memstore;
pub mod postgres;
pub mod redis;
pub mod sqlite;

use crate::keyvalue::store::KvStore;
use health::{BackendCallConfig, Health, Ping};
use serde::Deserialize;
use std::sync::Arc;

/// Config of one backend instance, selected by its `type:` key.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum BackendConfig {
    /// In-process memory (`type: memstore`).
    Memstore(memstore::MemStoreConfig),
    /// SQLite file or `:memory:` (`type: sqlite`).
    Sqlite(sqlite::SqliteConfig),
    /// Redis (`type: redis`).
    Redis(redis::RedisConfig),
    /// PostgreSQL (`type: postgres`).
    Postgres(postgres::PostgresConfig),
}

impl BackendConfig {
    /// The backend kind as named in configs and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            BackendConfig::Memstore(_) => "memstore",
            BackendConfig::Sqlite(_) => "sqlite",
            BackendConfig::Redis(_) => "redis",
            BackendConfig::Postgres(_) => "postgres",
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
    /// The Redis URL is invalid.
    #[error("cannot use redis at {url}: {source}")]
    Redis {
        /// The URL, password redacted.
        url: String,
        /// The client error.
        #[source]
        source: ::redis::RedisError,
    },
    /// PostgreSQL could not be reached or migrated.
    #[error("cannot open postgres at {url}: {source}")]
    Postgres {
        /// The URL, password redacted.
        url: String,
        /// The sqlx error.
        #[source]
        source: sqlx::Error,
    },
}

#[derive(Clone, Debug)]
enum Closer {
    Nothing,
    Sqlite(Arc<sqlite::SqliteStore>),
    Postgres(Arc<postgres::PostgresStore>),
}

/// A running backend: its KeyValue adapter, its health (every call goes through it) and how to
/// close it.
#[derive(Clone)]
pub struct Backend {
    /// The KeyValue adapter.
    pub keyvalue: Arc<dyn KvStore>,
    /// Call deadlines and the up/down state.
    pub health: Arc<Health>,
    closer: Closer,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("kind", &self.keyvalue.kind())
            .finish()
    }
}

impl Backend {
    /// Releases connections and files; in-flight calls should be finished first.
    pub async fn close(&self) {
        match &self.closer {
            Closer::Nothing => {}
            Closer::Sqlite(store) => store.close().await,
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
    let backend = |keyvalue: Arc<dyn KvStore>, ping: Arc<dyn Ping>, closer| Backend {
        keyvalue,
        health: Health::new(name, calls, ping),
        closer,
    };
    match config {
        BackendConfig::Memstore(_) => {
            let store = Arc::new(memstore::MemStore::new());
            store.spawn_sweeper();
            Ok(backend(store.clone(), store, Closer::Nothing))
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
            Ok(backend(
                shared.clone(),
                shared.clone(),
                Closer::Sqlite(shared),
            ))
        }
        BackendConfig::Redis(cfg) => {
            let store = redis::RedisStore::open(cfg)
                .await
                .map_err(|source| OpenError::Redis {
                    url: cfg.url.redacted(),
                    source,
                })?;
            store.spawn_sweeper();
            let shared = Arc::new(store);
            Ok(backend(shared.clone(), shared, Closer::Nothing))
        }
        BackendConfig::Postgres(cfg) => {
            let store = postgres::PostgresStore::open(cfg, calls.timeout())
                .await
                .map_err(|source| OpenError::Postgres {
                    url: cfg.url.redacted(),
                    source,
                })?;
            store.spawn_purger();
            let shared = Arc::new(store);
            Ok(backend(
                shared.clone(),
                shared.clone(),
                Closer::Postgres(shared),
            ))
        }
    }
}
