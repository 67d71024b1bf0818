//! Backend adapters, one module per backend, each with its own config struct. [`BackendConfig`] is the
//! `type:`-tagged union the proxy config holds; [`open`] turns one into a running adapter.

pub mod memstore;
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
}

impl BackendConfig {
    /// The backend kind as named in configs and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            BackendConfig::Memstore(_) => "memstore",
            BackendConfig::Sqlite(_) => "sqlite",
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
}

/// A running backend: its KeyValue adapter and how to close it.
#[derive(Clone)]
pub struct Backend {
    /// The KeyValue adapter.
    pub keyvalue: Arc<dyn KvStore>,
    closer: Option<sqlite::SqliteStore>,
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
        if let Some(store) = &self.closer {
            store.close().await;
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
                closer: None,
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
                closer: Some(store),
            })
        }
    }
}
