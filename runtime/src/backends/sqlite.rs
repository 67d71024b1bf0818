//! `sqlite`: a KeyValue backend on an SQLite file (or `:memory:`) through sqlx, with every capability.
//!
//! One table holds every namespace (`ns`, `key` primary key, `WITHOUT ROWID` so scans walk key order).
//! Writes go through a single-connection pool (SQLite has one writer anyway), so read-modify-write
//! transactions such as CAS are atomic; reads use a separate pool of WAL readers. Versions come from a
//! one-row sequence bumped in the same transaction as the write. Expired rows are filtered out of every
//! read by `expires_at`, and a background task purges them in bounded batches.

use crate::patterns::keyvalue::store::{
    BatchItem, ByteBudget, Condition, Entry, KvBasic, KvBatch, KvCas, KvScan, KvTtl, ScanItem,
    StoreError, StoreResult, collect_page,
};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::TryStreamExt;
use serde::Deserialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{Row, SqliteConnection};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Config of an `sqlite` backend.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SqliteConfig {
    /// Database file (created with its parent directory when missing), or `:memory:`.
    pub path: String,
    /// Reader connections for a file database (default 4; `:memory:` always uses one connection).
    #[serde(default = "default_readers")]
    pub readers: u32,
}

fn default_readers() -> u32 {
    4
}

const SCHEMA: [&str; 3] = [
    "CREATE TABLE IF NOT EXISTS prism_kv (
        ns TEXT NOT NULL,
        key TEXT NOT NULL,
        value BLOB NOT NULL,
        version INTEGER NOT NULL,
        expires_at INTEGER,
        PRIMARY KEY (ns, key)
    ) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS prism_kv_seq (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        last_version INTEGER NOT NULL
    )",
    "INSERT OR IGNORE INTO prism_kv_seq (id, last_version) VALUES (1, 0)",
];

/// How often expired rows are purged, and how many per statement.
const PURGE_EVERY: Duration = Duration::from_secs(10);
const PURGE_BATCH: i64 = 1000;

/// The SQLite store.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
}

fn classify(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(Box::new(e))
        }
        other => StoreError::Internal(Box::new(other)),
    }
}

fn now_ms() -> i64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn expiry(now: i64, ttl: Option<Duration>) -> Option<i64> {
    ttl.map(|t| now.saturating_add(i64::try_from(t.as_millis()).unwrap_or(i64::MAX)))
}

fn to_entry(value: Vec<u8>, version: i64, expires_at: Option<i64>, now: i64) -> Entry {
    Entry {
        value: Bytes::from(value),
        version: u64::try_from(version).unwrap_or(0),
        ttl: expires_at.map(|at| Duration::from_millis(u64::try_from(at - now).unwrap_or(0))),
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database and its schema.
    pub async fn open(config: &SqliteConfig) -> Result<Self, sqlx::Error> {
        if config.path == ":memory:" {
            let options = SqliteConnectOptions::new().in_memory(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(options)
                .await?;
            let store = Self {
                write: pool.clone(),
                read: pool,
            };
            store.migrate().await?;
            return Ok(store);
        }
        let path = PathBuf::from(&config.path);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(5));
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        let store = Self {
            read: SqlitePoolOptions::new()
                .max_connections(config.readers.max(1))
                .connect_with(options.read_only(true))
                .await?,
            write,
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), sqlx::Error> {
        for statement in SCHEMA {
            sqlx::query(statement).execute(&self.write).await?;
        }
        Ok(())
    }

    /// Starts a background task that deletes expired rows in bounded batches until the pool closes.
    pub fn spawn_purger(&self) {
        let pool = self.write.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PURGE_EVERY);
            while !pool.is_closed() {
                tick.tick().await;
                let result = sqlx::query(
                    "DELETE FROM prism_kv WHERE (ns, key) IN (
                        SELECT ns, key FROM prism_kv WHERE expires_at IS NOT NULL AND expires_at <= ? LIMIT ?)",
                )
                .bind(now_ms())
                .bind(PURGE_BATCH)
                .execute(&pool)
                .await;
                if let Err(e) = result {
                    tracing::debug!(error = %e, "sqlite purge of expired rows failed");
                }
            }
        });
    }

    /// Closes both pools.
    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

async fn next_version(conn: &mut SqliteConnection) -> StoreResult<i64> {
    sqlx::query("UPDATE prism_kv_seq SET last_version = last_version + 1 WHERE id = 1 RETURNING last_version")
        .fetch_one(conn)
        .await
        .map(|row| row.get::<i64, _>(0))
        .map_err(classify)
}

async fn upsert(
    conn: &mut SqliteConnection,
    ns: &str,
    key: &str,
    value: &[u8],
    expires_at: Option<i64>,
) -> StoreResult<u64> {
    let version = next_version(&mut *conn).await?;
    sqlx::query(
        "INSERT INTO prism_kv (ns, key, value, version, expires_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, version = excluded.version,
         expires_at = excluded.expires_at",
    )
    .bind(ns)
    .bind(key)
    .bind(value)
    .bind(version)
    .bind(expires_at)
    .execute(conn)
    .await
    .map_err(classify)?;
    Ok(u64::try_from(version).unwrap_or(0))
}

async fn live_version(
    conn: &mut SqliteConnection,
    ns: &str,
    key: &str,
    now: i64,
) -> StoreResult<Option<u64>> {
    let row = sqlx::query(
        "SELECT version FROM prism_kv WHERE ns = ? AND key = ? AND (expires_at IS NULL OR expires_at > ?)",
    )
    .bind(ns)
    .bind(key)
    .bind(now)
    .fetch_optional(conn)
    .await
    .map_err(classify)?;
    Ok(row.map(|r| u64::try_from(r.get::<i64, _>(0)).unwrap_or(0)))
}

async fn delete_live(
    conn: &mut SqliteConnection,
    ns: &str,
    key: &str,
    now: i64,
) -> StoreResult<bool> {
    let row = sqlx::query(
        "DELETE FROM prism_kv WHERE ns = ? AND key = ? RETURNING expires_at IS NULL OR expires_at > ?",
    )
    .bind(ns)
    .bind(key)
    .bind(now)
    .fetch_optional(conn)
    .await
    .map_err(classify)?;
    Ok(row.is_some_and(|r| r.get::<bool, _>(0)))
}

async fn get_live(pool: &SqlitePool, ns: &str, key: &str, now: i64) -> StoreResult<Option<Entry>> {
    let row = sqlx::query(
        "SELECT value, version, expires_at FROM prism_kv
         WHERE ns = ? AND key = ? AND (expires_at IS NULL OR expires_at > ?)",
    )
    .bind(ns)
    .bind(key)
    .bind(now)
    .fetch_optional(pool)
    .await
    .map_err(classify)?;
    Ok(row.map(|r| to_entry(r.get(0), r.get(1), r.get(2), now)))
}

#[async_trait]
impl crate::backends::health::Ping for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.read)
            .await
            .map_err(classify)?;
        Ok(())
    }
}

#[async_trait]
impl KvBasic for SqliteStore {
    async fn get(&self, ns: &str, key: &str) -> StoreResult<Option<Entry>> {
        get_live(&self.read, ns, key, now_ms()).await
    }

    async fn set(
        &self,
        ns: &str,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> StoreResult<u64> {
        let mut tx = self.write.begin().await.map_err(classify)?;
        let version = upsert(&mut tx, ns, key, &value, expiry(now_ms(), ttl)).await?;
        tx.commit().await.map_err(classify)?;
        Ok(version)
    }

    async fn delete(&self, ns: &str, key: &str) -> StoreResult<bool> {
        let mut conn = self.write.acquire().await.map_err(classify)?;
        delete_live(&mut conn, ns, key, now_ms()).await
    }

    async fn exists(&self, ns: &str, key: &str) -> StoreResult<bool> {
        let row = sqlx::query(
            "SELECT 1 FROM prism_kv WHERE ns = ? AND key = ? AND (expires_at IS NULL OR expires_at > ?)",
        )
        .bind(ns)
        .bind(key)
        .bind(now_ms())
        .fetch_optional(&self.read)
        .await
        .map_err(classify)?;
        Ok(row.is_some())
    }
}

#[async_trait]
impl KvTtl for SqliteStore {
    async fn expire(&self, ns: &str, key: &str, ttl: Option<Duration>) -> StoreResult<bool> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE prism_kv SET expires_at = ?
             WHERE ns = ? AND key = ? AND (expires_at IS NULL OR expires_at > ?)",
        )
        .bind(expiry(now, ttl))
        .bind(ns)
        .bind(key)
        .bind(now)
        .execute(&self.write)
        .await
        .map_err(classify)?;
        Ok(done.rows_affected() > 0)
    }
}

#[async_trait]
impl KvScan for SqliteStore {
    async fn scan(
        &self,
        ns: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        max_bytes: usize,
        keys_only: bool,
    ) -> StoreResult<Vec<ScanItem>> {
        // Keys compare with BINARY collation (memcmp), i.e. UTF-8 byte order, like the other backends.
        // `substr(key, 1, length(prefix)) = prefix` is an exact prefix test (no LIKE wildcards to escape).
        let (bound, exclusive) = crate::patterns::keyvalue::keys::scan_start(prefix, after);
        let rows = sqlx::query(
            "SELECT key, CASE WHEN ? THEN NULL ELSE value END FROM prism_kv
             WHERE ns = ? AND (key > ? OR (key = ? AND NOT ?)) AND substr(key, 1, length(?)) = ?
               AND (expires_at IS NULL OR expires_at > ?)
             ORDER BY key LIMIT ?",
        )
        .bind(keys_only)
        .bind(ns)
        .bind(bound)
        .bind(bound)
        .bind(exclusive)
        .bind(prefix)
        .bind(prefix)
        .bind(now_ms())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch(&self.read)
        .map_ok(|r| ScanItem {
            key: r.get(0),
            value: r.get::<Option<Vec<u8>>, _>(1).map(Bytes::from),
        });
        // Rows stream in, so a page of large values stops at the byte budget without loading more.
        collect_page(rows, max_bytes).await.map_err(classify)
    }
}

#[async_trait]
impl KvBatch for SqliteStore {
    async fn batch_set(&self, ns: &str, items: Vec<BatchItem>) -> StoreResult<Vec<u64>> {
        let now = now_ms();
        let mut tx = self.write.begin().await.map_err(classify)?;
        let mut versions = Vec::with_capacity(items.len());
        for item in &items {
            versions
                .push(upsert(&mut tx, ns, &item.key, &item.value, expiry(now, item.ttl)).await?);
        }
        tx.commit().await.map_err(classify)?;
        Ok(versions)
    }

    async fn batch_get(
        &self,
        ns: &str,
        keys: &[String],
        max_bytes: usize,
    ) -> StoreResult<Vec<Option<Entry>>> {
        let now = now_ms();
        let mut budget = ByteBudget::new(max_bytes);
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let entry = get_live(&self.read, ns, key, now).await?;
            if budget.spend(entry.as_ref().map_or(0, |e| e.value.len())) {
                return Err(StoreError::TooLarge { limit: max_bytes });
            }
            out.push(entry);
        }
        Ok(out)
    }

    async fn batch_delete(&self, ns: &str, keys: &[String]) -> StoreResult<u32> {
        let now = now_ms();
        let mut tx = self.write.begin().await.map_err(classify)?;
        let mut deleted = 0u32;
        for key in keys {
            if delete_live(&mut tx, ns, key, now).await? {
                deleted += 1;
            }
        }
        tx.commit().await.map_err(classify)?;
        Ok(deleted)
    }
}

#[async_trait]
impl KvCas for SqliteStore {
    async fn set_if(
        &self,
        ns: &str,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        condition: Condition,
    ) -> StoreResult<u64> {
        let now = now_ms();
        // The single writer connection makes check-then-write atomic within this transaction.
        let mut tx = self.write.begin().await.map_err(classify)?;
        let current = live_version(&mut tx, ns, key, now).await?;
        match (condition, current) {
            (Condition::IfAbsent, Some(_)) => {
                return Err(StoreError::AlreadyExists {
                    key: key.to_string(),
                });
            }
            (Condition::IfVersion(expected), current) if current != Some(expected) => {
                return Err(StoreError::VersionMismatch {
                    key: key.to_string(),
                    expected,
                    current,
                });
            }
            _ => {}
        }
        let version = upsert(&mut tx, ns, key, &value, expiry(now, ttl)).await?;
        tx.commit().await.map_err(classify)?;
        Ok(version)
    }
}

crate::kv_store_with_every_capability!(SqliteStore, "sqlite");
