//! `postgres`: KeyValue (every capability), Queue and PubSub on PostgreSQL (sqlx runtime queries,
//! pooled).
//!
//! One table, `prism_kv (ns, key COLLATE "C", value, version, expires_at)`, primary key `(ns, key)`:
//! namespaces are isolated by the `ns` column, and the "C" collation makes key order byte order. The
//! adapter creates its schema itself (under an advisory lock, so several proxies may start at once).
//! Versions come from one sequence, so every write of a key gets a strictly larger version. Every read
//! filters `expires_at > now()`, so expired rows are invisible at once; a background task deletes them
//! in bounded batches. Conditional writes are single statements (atomic).
//!
//! This file holds the connection and the helpers (the config is in `../config.rs`); `keyvalue.rs` the KeyValue adapter,
//! `queue.rs` the Queue adapter and `pubsub.rs` the PubSub adapter; `db.rs` how statements are sent
//! (directly, or through a transaction-pooling PgBouncer). Connections that `LISTEN` (each
//! subscription's, and one per proxy for queue wake-ups) come from a pool of their own, on
//! `listen_url` when it is set; behind a transaction pooler without one there is no `LISTEN`: the
//! backend offers no PubSub and queue consumers look for work every 500 ms.

mod db;
mod keyvalue;
mod pubsub;
mod queue;

pub use pubsub::PgPubSub;
pub use queue::PgQueue;

pub use super::config::{PoolConfig, Pooler, PostgresConfig};
use crate::patterns::keyvalue::keys::prefix_end;
use crate::patterns::keyvalue::store::{
    BatchItem, ByteBudget, Condition, Entry, KvBasic, KvBatch, KvCas, KvScan, KvTtl, ScanItem,
    StoreError, StoreResult, collect_page,
};
use async_trait::async_trait;
use bytes::Bytes;
use db::Db;
use futures_util::TryStreamExt;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, PgConnection, Row};
use std::str::FromStr;
use std::time::Duration;

const KV_MIGRATIONS: [&str; 3] = [
    "CREATE SEQUENCE IF NOT EXISTS prism_kv_version",
    r#"CREATE TABLE IF NOT EXISTS prism_kv (
        ns TEXT NOT NULL,
        key TEXT COLLATE "C" NOT NULL,
        value BYTEA NOT NULL,
        version BIGINT NOT NULL,
        expires_at TIMESTAMPTZ,
        PRIMARY KEY (ns, key)
    )"#,
    "CREATE INDEX IF NOT EXISTS prism_kv_expires ON prism_kv (expires_at) WHERE expires_at IS NOT NULL",
];
/// Every schema statement: KeyValue, Queue, PubSub.
fn migrations() -> impl Iterator<Item = &'static str> {
    KV_MIGRATIONS
        .into_iter()
        .chain(queue::MIGRATIONS)
        .chain(pubsub::MIGRATIONS)
}

/// Arbitrary constant identifying Prism's schema lock.
const MIGRATION_LOCK: i64 = 0x0050_5249_534d_4b56;

/// SQLSTATE of a missing relation.
const UNDEFINED_TABLE: &str = "42P01";
const PURGE_BATCH: i64 = 1000;

/// The PostgreSQL store.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    db: Db,
    /// Connections that `LISTEN`; `None` behind a transaction pooler without `listen_url`.
    listen_pool: Option<PgPool>,
    options: PgConnectOptions,
    purge_every: Duration,
    /// The backend call timeout: the server's `statement_timeout`, and the longest a queue
    /// consumer's claim waits for the server (a call that cannot reach it at all).
    call_timeout: Duration,
}

impl PostgresStore {
    /// Connections of its call pool, and how many are idle (the LISTEN pool is apart).
    pub fn pool_stats(&self) -> (u32, usize) {
        (self.db.pool.size(), self.db.pool.num_idle())
    }
}

fn classify(e: sqlx::Error) -> StoreError {
    let transient = match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            // 08: connection exception; 57P01..03: admin shutdown, crash shutdown, cannot connect now;
            // 53: insufficient resources; 42P01: our table is gone (the purger recreates the schema).
            c.starts_with("08")
                || c.starts_with("57P0")
                || c.starts_with("53")
                || c == UNDEFINED_TABLE
        }),
        sqlx::Error::Protocol(_) => true,
        _ => false,
    };
    if transient {
        StoreError::Unavailable(Box::new(e))
    } else {
        StoreError::Internal(Box::new(e))
    }
}

/// What to change when opening failed as it does through a pooler the config does not name.
pub fn hint(config: &PostgresConfig, e: &sqlx::Error) -> &'static str {
    let refused_startup = matches!(e, sqlx::Error::Database(db)
        if db.message().starts_with("unsupported startup parameter"));
    if refused_startup && config.pooler == Pooler::None {
        " (a PgBouncer? with `pool_mode = transaction` set `pooler: transaction` on this backend)"
    } else {
        ""
    }
}

/// Whether `e` is PostgreSQL's "relation does not exist" (Prism's schema is gone).
fn is_undefined_table(e: &(dyn std::error::Error + 'static)) -> bool {
    matches!(e.downcast_ref::<sqlx::Error>(),
        Some(sqlx::Error::Database(db)) if db.code().as_deref() == Some(UNDEFINED_TABLE))
}

fn ttl_ms(ttl: Option<Duration>) -> Option<i64> {
    ttl.map(|t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX).max(1))
}

fn entry(row: &PgRow) -> Entry {
    let value: Vec<u8> = row.get("value");
    let version: i64 = row.get("version");
    let remaining: Option<i64> = row.get("remaining_ms");
    Entry {
        value: Bytes::from(value),
        version: u64::try_from(version).unwrap_or(0),
        ttl: remaining.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
    }
}

const SELECT_ENTRY: &str = "SELECT value, version,
    CEIL(EXTRACT(EPOCH FROM (expires_at - clock_timestamp())) * 1000)::BIGINT AS remaining_ms
    FROM prism_kv WHERE ns = $1 AND key = $2
    AND (expires_at IS NULL OR expires_at > clock_timestamp())";

const UPSERT: &str = "INSERT INTO prism_kv (ns, key, value, version, expires_at)
    VALUES ($1, $2, $3, nextval('prism_kv_version'),
            clock_timestamp() + $4::BIGINT * INTERVAL '1 millisecond')
    ON CONFLICT (ns, key) DO UPDATE
    SET value = excluded.value, version = excluded.version, expires_at = excluded.expires_at
    RETURNING version";

impl PostgresStore {
    /// Connects, creates the schema if needed, and returns the store. Every statement gets
    /// `statement_timeout` (the proxy's backend call timeout), so the server too abandons a call the
    /// proxy has given up on.
    pub async fn open(
        config: &PostgresConfig,
        statement_timeout: Duration,
    ) -> Result<Self, sqlx::Error> {
        if config.claim_idle_secs.is_some() {
            tracing::warn!(
                "postgres: claim_idle_secs is no longer used (a queue delivery is leased for its visibility timeout plus 1 s); remove it"
            );
        }
        let timeout = (
            "statement_timeout",
            statement_timeout.as_millis().to_string(),
        );
        let pooled = config.pooler == Pooler::Transaction;
        let options = PgConnectOptions::from_str(config.url.expose())?;
        // A transaction pooler refuses startup parameters it does not track (`options`,
        // `extra_float_digits`) and cannot keep a named statement for a client: the timeout is set
        // per transaction instead (see `db.rs`) and nothing is cached.
        let options = if pooled {
            options.statement_cache_capacity(0).extra_float_digits(None)
        } else {
            options.options([timeout.clone()])
        };
        let pool = PgPoolOptions::new()
            .max_connections(config.pool.max.max(1))
            .min_connections(config.pool.min)
            .acquire_timeout(Duration::from_millis(config.pool.acquire_timeout_ms))
            .connect_with(options.clone())
            .await?;
        let listen_options = match (&config.listen_url, pooled) {
            (Some(url), _) => Some(PgConnectOptions::from_str(url.expose())?.options([timeout])),
            (None, false) => Some(options.clone()),
            (None, true) => None,
        };
        let listen_pool = listen_options.map(|options| {
            PgPoolOptions::new()
                .max_connections(config.pool.listeners.max(2))
                .acquire_timeout(Duration::from_millis(config.pool.acquire_timeout_ms))
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_lazy_with(options)
        });
        let store = Self {
            db: Db::new(pool, pooled, statement_timeout),
            listen_pool,
            options,
            purge_every: Duration::from_secs(config.purge_interval_secs.max(1)),
            call_timeout: statement_timeout,
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), sqlx::Error> {
        let mut tx = self.db.begin_raw().await?;
        self.db
            .query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await?;
        for statement in migrations() {
            self.db.query(statement).execute(&mut *tx).await?;
        }
        tx.commit().await
    }

    /// Starts the bounded background purge of expired rows (and of PubSub bodies older than their
    /// retention); it ends when the pool closes.
    /// If the database lost Prism's schema (e.g. it was recreated), the purge notices and recreates it,
    /// so calls recover from UNAVAILABLE within one purge interval.
    pub fn spawn_purger(&self) {
        let store = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(store.purge_every);
            while !store.db.pool.is_closed() {
                tick.tick().await;
                match store.purge().await {
                    Err(StoreError::Unavailable(e)) if is_undefined_table(&*e) => {
                        tracing::warn!("postgres lost Prism's schema; recreating it");
                        if let Err(e) = store.migrate().await {
                            tracing::error!(error = %e, "recreating the postgres schema failed");
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "postgres purge failed"),
                    Ok(()) => {}
                }
            }
        });
    }

    /// Deletes a batch of expired rows and the PubSub bodies older than their retention.
    async fn purge(&self) -> StoreResult<()> {
        let mut conn = self.db.conn().await?;
        self.db
            .query(
                "DELETE FROM prism_kv WHERE ctid IN (
                    SELECT ctid FROM prism_kv WHERE expires_at <= clock_timestamp() LIMIT $1)",
            )
            .bind(PURGE_BATCH)
            .execute(&mut *conn)
            .await
            .map_err(classify)?;
        self.db
            .query(
                "DELETE FROM prism_pubsub_bodies WHERE created_at < clock_timestamp() - $1::BIGINT * INTERVAL '1 second'",
            )
            .bind(i64::try_from(pubsub::BODY_RETENTION.as_secs()).unwrap_or(i64::MAX))
            .execute(&mut *conn)
            .await
            .map_err(classify)?;
        conn.done().await
    }

    /// The Queue adapter on this database.
    pub fn queue(&self) -> PgQueue {
        PgQueue::new(self)
    }

    /// The PubSub adapter on this database, if it has session connections to `LISTEN` on.
    pub fn pubsub(&self) -> Option<PgPubSub> {
        PgPubSub::new(self)
    }

    /// Closes the pools (ending subscriptions and the queue listener).
    pub async fn close(&self) {
        if let Some(listen) = &self.listen_pool {
            listen.close().await;
        }
        self.db.pool.close().await;
    }
}

async fn upsert(
    db: &Db,
    conn: &mut PgConnection,
    ns: &str,
    key: &str,
    value: &[u8],
    ttl: Option<Duration>,
) -> StoreResult<u64> {
    let version: i64 = db
        .scalar(UPSERT)
        .bind(ns)
        .bind(key)
        .bind(value)
        .bind(ttl_ms(ttl))
        .fetch_one(conn)
        .await
        .map_err(classify)?;
    Ok(u64::try_from(version).unwrap_or(0))
}

#[async_trait]
impl crate::backends::health::Ping for PostgresStore {
    /// A fresh connection and `SELECT 1`: the pool would retry a refused connect until its
    /// acquire timeout, and its idle connections may be stale after a restart.
    async fn ping(&self) -> StoreResult<()> {
        let mut conn = PgConnection::connect_with(&self.options)
            .await
            .map_err(classify)?;
        // The simple protocol: one message, so a transaction pooler sends it to one server.
        sqlx::raw_sql("SELECT 1")
            .execute(&mut conn)
            .await
            .map_err(classify)?;
        let _ = conn.close().await;
        Ok(())
    }
}
