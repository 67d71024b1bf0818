//! Backend adapters, one module per backend, each with its own config struct. [`BackendConfig`] is the
//! `type:`-tagged union the proxy config holds; [`open`] turns one into a running adapter.

pub mod memstore;
pub mod postgres;
pub mod redis;
pub mod sqlite;

use crate::keyvalue::store::KvStore;
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
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PostgresStore),
}

/// A running backend: its KeyValue adapter and how to close it.
#[derive(Clone)]
pub struct Backend {
    /// The KeyValue adapter.
    pub keyvalue: Arc<dyn KvStore>,
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

/// Opens a backend and starts its housekeeping tasks (expiry sweeps).
pub async fn open(config: &BackendConfig) -> Result<Backend, OpenError> {
    match config {
        BackendConfig::Memstore(_) => {
            let store = Arc::new(memstore::MemStore::new());
            store.spawn_sweeper();
            Ok(Backend {
                keyvalue: store,
                closer: Closer::Nothing,
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
            Ok(Backend {
                keyvalue: Arc::new(store.clone()),
                closer: Closer::Sqlite(store),
            })
        }
        BackendConfig::Redis(cfg) => {
            let store = redis::RedisStore::open(cfg)
                .await
                .map_err(|source| OpenError::Redis {
                    url: cfg.url.redacted(),
                    source,
                })?;
            store.spawn_sweeper();
            Ok(Backend {
                keyvalue: Arc::new(store),
                closer: Closer::Nothing,
            })
        }
        BackendConfig::Postgres(cfg) => {
            let store =
                postgres::PostgresStore::open(cfg)
                    .await
                    .map_err(|source| OpenError::Postgres {
                        url: cfg.url.redacted(),
                        source,
                    })?;
            store.spawn_purger();
            Ok(Backend {
                keyvalue: Arc::new(store.clone()),
                closer: Closer::Postgres(store),
            })
        }
    }
}
