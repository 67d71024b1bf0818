//! `sqlite`: KeyValue (every capability) and Queue on an SQLite file (or `:memory:`) through sqlx.
//!
//! One table holds every namespace (`ns`, `key` primary key, `WITHOUT ROWID` so scans walk key order).
//! Writes go through a single-connection pool (SQLite has one writer anyway), so read-modify-write
//! transactions such as CAS are atomic; they begin IMMEDIATE ([`write_tx`]), taking the file's
//! write lock first, so another process on the same file (a second proxy) makes them wait out the
//! busy timeout instead of failing with SQLITE_BUSY_SNAPSHOT. Reads use a separate pool of WAL
//! readers. Versions come from a
//! one-row sequence bumped in the same transaction as the write. Expired rows are filtered out of every
//! read by `expires_at`, and a background task purges them in bounded batches.
//!
//! This file holds the config, the connection and the helpers; `keyvalue.rs` the KeyValue adapter,
//! `queue.rs` the Queue adapter. PubSub is not offered: SQLite cannot tell other processes that a
//! message was published.

mod keyvalue;
mod queue;

pub use queue::SqliteQueue;

use crate::patterns::keyvalue::store::{
    BatchItem, ByteBudget, Condition, Entry, KvBasic, KvBatch, KvCas, KvScan, KvTtl, ScanItem,
    StoreError, StoreResult, collect_page,
};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{Row, SqliteConnection};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Config of an `sqlite` backend.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SqliteConfig {
    /// Database file (created with its parent directory when missing), or `:memory:`.
    pub path: String,
    /// Reader connections for a file database (default 4; `:memory:` always uses one connection).
    #[serde(default = "default_readers")]
    pub readers: u32,
    /// No longer used: a queue delivery's lease is now its visibility timeout plus one second.
    /// Accepted (with a warning at start) so configs written for earlier versions still load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_idle_secs: Option<u64>,
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
    /// Whether the database is a file (it outlives the process).
    durable: bool,
}

impl SqliteStore {
    /// Connections of its pools (writer and readers), and how many are idle.
    pub fn pool_stats(&self) -> (u32, usize) {
        (
            self.write.size() + self.read.size(),
            self.write.num_idle() + self.read.num_idle(),
        )
    }
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
        if config.claim_idle_secs.is_some() {
            tracing::warn!(path = %config.path, "sqlite: claim_idle_secs is no longer used (a queue delivery is leased for its visibility timeout plus 1 s); remove it");
        }
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
                durable: false,
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
            durable: true,
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), sqlx::Error> {
        for statement in SCHEMA.into_iter().chain(queue::SCHEMA) {
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

    /// The Queue adapter on this database.
    pub fn queue(&self) -> SqliteQueue {
        SqliteQueue::new(self)
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

/// A write transaction that holds the database's write lock from its start (`BEGIN IMMEDIATE`):
/// a deferred one that read first could not upgrade after another process wrote.
async fn write_tx(pool: &SqlitePool) -> StoreResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
    pool.begin_with("BEGIN IMMEDIATE").await.map_err(classify)
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
