//! SQLite's Queue adapter ([`sql_queue`](crate::backends::sql_queue) describes the shape), on the
//! store's single write connection, so every change is serialised. Tables, every key led by the
//! namespace: `prism_queue_messages` (the messages held), `prism_queue_groups` and
//! `prism_queue_deliveries` (one row per group and message not yet acked by that group, with its
//! attempts and the ms time it may next be taken). Triggers keep the two in step: a new message
//! gets a delivery row per group, and a message goes once its last delivery row does (every group
//! has acked it). Only this process writes the database, so enqueues and returns wake its
//! consumers directly.
//!
//! Enqueues commit with the connection's `synchronous = FULL` (on disk when they return), in
//! groups: one task writes every enqueue waiting at that moment in one transaction, so concurrent
//! producers share an fsync.
//! Claims, acks and returns commit with `synchronous = NORMAL`: in WAL mode that survives a crash
//! of the process and is made durable by the next full commit; lost to a power cut, it means a
//! delivery goes out again (at least once still holds). This saves one fsync per claim and ack.

use super::{SqliteStore, classify, now_ms, write_tx};
use crate::backends::error::{StoreError, StoreResult};
use crate::backends::sql_queue::{
    self, Claims, GroupRef, Taking, Wakers, headers_json, parse_receipt, wake_key,
};
use crate::patterns::capability::Capability;
use crate::patterns::queue::adapter::{
    QueueAdapter, QueueConsumer, QueuedMessage, Received, every_capability,
};
use crate::patterns::queue::fetcher;
use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::{Row, Sqlite, SqliteConnection, SqlitePool};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Statements that create the queue tables (run with the store's other schema).
pub(super) const SCHEMA: [&str; 7] = [
    "CREATE TABLE IF NOT EXISTS prism_queue_messages (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        ns TEXT NOT NULL,
        queue TEXT NOT NULL,
        message_id TEXT NOT NULL,
        payload BLOB NOT NULL,
        headers TEXT NOT NULL,
        enqueued_at_ms INTEGER NOT NULL,
        visible_at INTEGER NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS prism_queue_messages_queue ON prism_queue_messages (ns, queue, seq)",
    "CREATE TABLE IF NOT EXISTS prism_queue_groups (
        ns TEXT NOT NULL,
        queue TEXT NOT NULL,
        grp TEXT NOT NULL,
        PRIMARY KEY (ns, queue, grp)
    ) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS prism_queue_deliveries (
        ns TEXT NOT NULL,
        queue TEXT NOT NULL,
        grp TEXT NOT NULL,
        seq INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        visible_at INTEGER NOT NULL,
        PRIMARY KEY (ns, queue, grp, seq)
    ) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS prism_queue_deliveries_seq ON prism_queue_deliveries (ns, queue, seq)",
    "CREATE TRIGGER IF NOT EXISTS prism_queue_fan_out AFTER INSERT ON prism_queue_messages BEGIN
        INSERT INTO prism_queue_deliveries (ns, queue, grp, seq, visible_at)
        SELECT NEW.ns, NEW.queue, grp, NEW.seq, NEW.visible_at FROM prism_queue_groups
        WHERE ns = NEW.ns AND queue = NEW.queue;
    END",
    "CREATE TRIGGER IF NOT EXISTS prism_queue_release AFTER DELETE ON prism_queue_deliveries BEGIN
        DELETE FROM prism_queue_messages WHERE seq = OLD.seq AND NOT EXISTS (
            SELECT 1 FROM prism_queue_deliveries
            WHERE ns = OLD.ns AND queue = OLD.queue AND seq = OLD.seq);
    END",
];

/// Queues in an SQLite database.
#[derive(Debug)]
pub struct SqliteQueue {
    claims: Arc<SqliteClaims>,
    enqueues: mpsc::UnboundedSender<Enqueue>,
    durable: bool,
}

/// An enqueue waiting for the writer task.
#[derive(Debug)]
struct Enqueue {
    ns: String,
    queue: String,
    message: QueuedMessage,
    headers: String,
    delay_ms: i64,
    done: oneshot::Sender<StoreResult<()>>,
}

/// Most enqueues written in one transaction.
const ENQUEUE_BATCH: usize = 256;

impl SqliteQueue {
    /// Queues in `store`'s database.
    pub(super) fn new(store: &SqliteStore) -> Self {
        let claims = Arc::new(SqliteClaims {
            write: store.write.clone(),
            wakers: Arc::default(),
        });
        let (enqueues, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_enqueues(claims.clone(), rx));
        Self {
            claims,
            enqueues,
            durable: store.durable,
        }
    }
}

/// Writes enqueues as they come, each time all those waiting (up to [`ENQUEUE_BATCH`]) in one
/// transaction; ends when the adapter is dropped.
async fn write_enqueues(claims: Arc<SqliteClaims>, mut rx: mpsc::UnboundedReceiver<Enqueue>) {
    let mut batch = Vec::with_capacity(ENQUEUE_BATCH);
    while rx.recv_many(&mut batch, ENQUEUE_BATCH).await > 0 {
        let written = insert_all(&claims.write, &batch).await;
        for e in batch.drain(..) {
            let outcome = match &written {
                Ok(()) => {
                    claims.wakers.wake(&wake_key(&e.ns, &e.queue));
                    Ok(())
                }
                Err(StoreError::Unavailable(why)) => {
                    Err(StoreError::Unavailable(why.to_string().into()))
                }
                Err(other) => Err(StoreError::Internal(other.to_string().into())),
            };
            let _ = e.done.send(outcome);
        }
    }
}

async fn insert_all(pool: &SqlitePool, batch: &[Enqueue]) -> StoreResult<()> {
    let mut tx = write_tx(pool).await?;
    // The delay counts from the write, not from the wait for the writer.
    let now = now_ms();
    for e in batch {
        sqlx::query(
            "INSERT INTO prism_queue_messages
                (ns, queue, message_id, payload, headers, enqueued_at_ms, visible_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&e.ns)
        .bind(&e.queue)
        .bind(&e.message.message_id)
        .bind(e.message.payload.as_ref())
        .bind(&e.headers)
        .bind(e.message.enqueued_at_ms)
        .bind(now.saturating_add(e.delay_ms))
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
    }
    tx.commit().await.map_err(classify)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The write connection with `synchronous = NORMAL` until [`Relaxed::restore`]; a connection
/// dropped before that is closed, so none goes back to the pool relaxed.
struct Relaxed {
    conn: PoolConnection<Sqlite>,
    restored: bool,
}

impl Relaxed {
    async fn acquire(pool: &SqlitePool) -> StoreResult<Self> {
        let mut conn = pool.acquire().await.map_err(classify)?;
        sqlx::query("PRAGMA synchronous = NORMAL")
            .execute(&mut *conn)
            .await
            .map_err(classify)?;
        Ok(Self {
            conn,
            restored: false,
        })
    }

    fn conn(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }

    /// Back to `synchronous = FULL`, then `result`.
    async fn restore<T>(mut self, result: StoreResult<T>) -> StoreResult<T> {
        sqlx::query("PRAGMA synchronous = FULL")
            .execute(&mut *self.conn)
            .await
            .map_err(classify)?;
        self.restored = true;
        result
    }
}

impl Drop for Relaxed {
    fn drop(&mut self) {
        if !self.restored {
            self.conn.close_on_drop();
        }
    }
}

#[async_trait]
impl QueueAdapter for SqliteQueue {
    fn capabilities(&self) -> Vec<Capability> {
        every_capability(self.durable)
    }

    async fn enqueue(
        &self,
        ns: &str,
        queue: &str,
        message: QueuedMessage,
        delay: Duration,
    ) -> StoreResult<()> {
        let (done, written) = oneshot::channel();
        let enqueue = Enqueue {
            ns: ns.to_string(),
            queue: queue.to_string(),
            headers: headers_json(&message.headers)?,
            message,
            delay_ms: millis(delay),
            done,
        };
        let gone = || StoreError::Unavailable("the sqlite enqueue writer ended".into());
        self.enqueues.send(enqueue).map_err(|_| gone())?;
        written.await.map_err(|_| gone())?
    }

    async fn consumer(
        &self,
        ns: &str,
        queue: &str,
        group: &str,
        lease: Duration,
    ) -> StoreResult<Box<dyn QueueConsumer>> {
        let c = &self.claims;
        let woken = c.wakers.notify(&wake_key(ns, queue));
        let mut tx = write_tx(&c.write).await?;
        let created = sqlx::query(
            "INSERT INTO prism_queue_groups (ns, queue, grp) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(ns)
        .bind(queue)
        .bind(group)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        if created.rows_affected() > 0 {
            sqlx::query(
                "INSERT INTO prism_queue_deliveries (ns, queue, grp, seq, visible_at)
                 SELECT ns, queue, ?, seq, visible_at FROM prism_queue_messages
                 WHERE ns = ? AND queue = ?",
            )
            .bind(group)
            .bind(ns)
            .bind(queue)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        }
        tx.commit().await.map_err(classify)?;
        let group = GroupRef {
            ns: ns.to_string(),
            queue: queue.to_string(),
            group: group.to_string(),
        };
        Ok(fetcher::consumer(Taking::new(
            c.clone(),
            group,
            woken,
            lease,
        )))
    }

    async fn ack(&self, ns: &str, queue: &str, group: &str, receipt: &str) -> StoreResult<()> {
        let (seq, attempt) = parse_receipt(receipt)?;
        let mut conn = Relaxed::acquire(&self.claims.write).await?;
        let done = sqlx::query(
            "DELETE FROM prism_queue_deliveries
             WHERE ns = ? AND queue = ? AND grp = ? AND seq = ? AND attempts = ?",
        )
        .bind(ns)
        .bind(queue)
        .bind(group)
        .bind(seq)
        .bind(attempt)
        .execute(conn.conn())
        .await
        .map(|_| ())
        .map_err(classify);
        conn.restore(done).await
    }

    async fn nack(
        &self,
        ns: &str,
        queue: &str,
        group: &str,
        receipt: &str,
        delay: Duration,
    ) -> StoreResult<()> {
        let (seq, attempt) = parse_receipt(receipt)?;
        let c = &self.claims;
        let mut conn = Relaxed::acquire(&c.write).await?;
        let done = sqlx::query(
            "UPDATE prism_queue_deliveries SET visible_at = ?
             WHERE ns = ? AND queue = ? AND grp = ? AND seq = ? AND attempts = ?",
        )
        .bind(now_ms().saturating_add(millis(delay)))
        .bind(ns)
        .bind(queue)
        .bind(group)
        .bind(seq)
        .bind(attempt)
        .execute(conn.conn())
        .await
        .map(|_| ())
        .map_err(classify);
        conn.restore(done).await?;
        c.wakers.wake(&wake_key(ns, queue));
        Ok(())
    }
}

/// Claims on the write connection, and the wake-ups of this process's consumers.
#[derive(Debug)]
struct SqliteClaims {
    write: SqlitePool,
    wakers: Arc<Wakers>,
}

#[async_trait]
impl Claims for SqliteClaims {
    async fn claim(
        &self,
        g: &GroupRef,
        lease: Duration,
    ) -> StoreResult<Result<Received, Option<Duration>>> {
        let mut conn = Relaxed::acquire(&self.write).await?;
        let claimed = claim(conn.conn(), g, millis(lease)).await;
        conn.restore(claimed).await
    }

    async fn unclaim(&self, g: &GroupRef, receipt: &str) -> StoreResult<()> {
        let (seq, attempt) = parse_receipt(receipt)?;
        let mut conn = Relaxed::acquire(&self.write).await?;
        let done = sqlx::query(
            "UPDATE prism_queue_deliveries SET attempts = attempts - 1, visible_at = ?
             WHERE ns = ? AND queue = ? AND grp = ? AND seq = ? AND attempts = ?",
        )
        .bind(now_ms())
        .bind(&g.ns)
        .bind(&g.queue)
        .bind(&g.group)
        .bind(seq)
        .bind(attempt)
        .execute(conn.conn())
        .await
        .map(|_| ())
        .map_err(classify);
        conn.restore(done).await?;
        self.wakers.wake(&wake_key(&g.ns, &g.queue));
        Ok(())
    }
}

/// Takes the group's first due delivery, or tells how long until the next is due; the write
/// connection is this process's only one, so nothing changes between the statements.
async fn claim(
    conn: &mut SqliteConnection,
    g: &GroupRef,
    lease_ms: i64,
) -> StoreResult<Result<Received, Option<Duration>>> {
    let now = now_ms();
    let taken = sqlx::query(
        "UPDATE prism_queue_deliveries SET attempts = attempts + 1, visible_at = ?
         WHERE ns = ? AND queue = ? AND grp = ? AND seq = (
            SELECT seq FROM prism_queue_deliveries
            WHERE ns = ? AND queue = ? AND grp = ? AND visible_at <= ?
            ORDER BY seq LIMIT 1)
         RETURNING seq, attempts",
    )
    .bind(now.saturating_add(lease_ms))
    .bind(&g.ns)
    .bind(&g.queue)
    .bind(&g.group)
    .bind(&g.ns)
    .bind(&g.queue)
    .bind(&g.group)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await
    .map_err(classify)?;
    let Some(taken) = taken else {
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(visible_at) FROM prism_queue_deliveries
             WHERE ns = ? AND queue = ? AND grp = ?",
        )
        .bind(&g.ns)
        .bind(&g.queue)
        .bind(&g.group)
        .fetch_one(&mut *conn)
        .await
        .map_err(classify)?;
        return Ok(Err(sql_queue::due_in(next.map(|at| at - now))));
    };
    let (seq, attempts): (i64, i32) = (taken.get("seq"), taken.get("attempts"));
    let message = sqlx::query(
        "SELECT message_id, payload, headers, enqueued_at_ms FROM prism_queue_messages
         WHERE ns = ? AND queue = ? AND seq = ?",
    )
    .bind(&g.ns)
    .bind(&g.queue)
    .bind(seq)
    .fetch_one(&mut *conn)
    .await
    .map_err(classify)?;
    let headers: String = message.get("headers");
    sql_queue::received(
        seq,
        attempts,
        message.get("message_id"),
        message.get("payload"),
        &headers,
        message.get("enqueued_at_ms"),
    )
    .map(Ok)
}
