//! SQLite's Queue adapter ([`sql_queue`](crate::backends::sql_queue) describes the shape), on the
//! store's single write connection, so every change is serialised. Tables, every key led by the
//! namespace: `prism_queue_messages` (the messages held), `prism_queue_groups` and
//! `prism_queue_deliveries` (one row per group and message not yet acked by that group, with its
//! attempts and the ms time it may next be taken). A message goes once every group has acked it.
//! Only this process writes the database, so enqueues and returns wake its consumers directly.

use super::{SqliteStore, classify, now_ms};
use crate::backends::error::StoreResult;
use crate::backends::sql_queue::{
    self, Claims, GroupRef, Taking, Wakers, headers_json, parse_receipt, wake_key,
};
use crate::patterns::capability::Capability;
use crate::patterns::queue::adapter::{QueueAdapter, QueueConsumer, QueuedMessage, Received};
use crate::patterns::queue::fetcher;
use async_trait::async_trait;
use sqlx::{Row, SqlitePool};
use std::sync::Arc;
use std::time::Duration;

/// Statements that create the queue tables (run with the store's other schema).
pub(super) const SCHEMA: [&str; 4] = [
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
];

/// Queues in an SQLite database.
#[derive(Debug)]
pub struct SqliteQueue {
    claims: Arc<SqliteClaims>,
    durable: bool,
}

impl SqliteQueue {
    /// Queues in `store`'s database; claims are leased for `claim_idle`.
    pub(super) fn new(store: &SqliteStore, claim_idle: Duration) -> Self {
        Self {
            claims: Arc::new(SqliteClaims {
                write: store.write.clone(),
                wakers: Arc::default(),
                lease_ms: millis(claim_idle),
            }),
            durable: store.durable,
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl QueueAdapter for SqliteQueue {
    fn capabilities(&self) -> Vec<Capability> {
        sql_queue::capabilities(self.durable)
    }

    async fn enqueue(
        &self,
        ns: &str,
        queue: &str,
        message: QueuedMessage,
        delay: Duration,
    ) -> StoreResult<()> {
        let c = &self.claims;
        let visible_at = now_ms().saturating_add(millis(delay));
        let mut tx = c.write.begin().await.map_err(classify)?;
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO prism_queue_messages
                (ns, queue, message_id, payload, headers, enqueued_at_ms, visible_at)
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING seq",
        )
        .bind(ns)
        .bind(queue)
        .bind(&message.message_id)
        .bind(message.payload.as_ref())
        .bind(headers_json(&message.headers)?)
        .bind(message.enqueued_at_ms)
        .bind(visible_at)
        .fetch_one(&mut *tx)
        .await
        .map_err(classify)?;
        sqlx::query(
            "INSERT INTO prism_queue_deliveries (ns, queue, grp, seq, visible_at)
             SELECT ns, queue, grp, ?, ? FROM prism_queue_groups WHERE ns = ? AND queue = ?",
        )
        .bind(seq)
        .bind(visible_at)
        .bind(ns)
        .bind(queue)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        c.wakers.wake(&wake_key(ns, queue));
        Ok(())
    }

    async fn consumer(
        &self,
        ns: &str,
        queue: &str,
        group: &str,
    ) -> StoreResult<Box<dyn QueueConsumer>> {
        let c = &self.claims;
        let woken = c.wakers.notify(&wake_key(ns, queue));
        let mut tx = c.write.begin().await.map_err(classify)?;
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
        Ok(fetcher::consumer(Taking::new(c.clone(), group, woken)))
    }

    async fn ack(&self, ns: &str, queue: &str, group: &str, receipt: &str) -> StoreResult<()> {
        let (seq, attempt) = parse_receipt(receipt)?;
        let mut tx = self.claims.write.begin().await.map_err(classify)?;
        let done = sqlx::query(
            "DELETE FROM prism_queue_deliveries
             WHERE ns = ? AND queue = ? AND grp = ? AND seq = ? AND attempts = ?",
        )
        .bind(ns)
        .bind(queue)
        .bind(group)
        .bind(seq)
        .bind(attempt)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        if done.rows_affected() > 0 {
            sqlx::query(
                "DELETE FROM prism_queue_messages WHERE ns = ? AND queue = ? AND seq = ?
                 AND NOT EXISTS (SELECT 1 FROM prism_queue_deliveries d
                                 WHERE d.ns = ? AND d.queue = ? AND d.seq = ?)",
            )
            .bind(ns)
            .bind(queue)
            .bind(seq)
            .bind(ns)
            .bind(queue)
            .bind(seq)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        }
        tx.commit().await.map_err(classify)
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
        sqlx::query(
            "UPDATE prism_queue_deliveries SET visible_at = ?
             WHERE ns = ? AND queue = ? AND grp = ? AND seq = ? AND attempts = ?",
        )
        .bind(now_ms().saturating_add(millis(delay)))
        .bind(ns)
        .bind(queue)
        .bind(group)
        .bind(seq)
        .bind(attempt)
        .execute(&c.write)
        .await
        .map_err(classify)?;
        c.wakers.wake(&wake_key(ns, queue));
        Ok(())
    }
}

/// Claims on the write connection, and the wake-ups of this process's consumers.
#[derive(Debug)]
struct SqliteClaims {
    write: SqlitePool,
    wakers: Arc<Wakers>,
    lease_ms: i64,
}

#[async_trait]
impl Claims for SqliteClaims {
    async fn claim(&self, g: &GroupRef) -> StoreResult<Result<Received, Option<Duration>>> {
        let now = now_ms();
        let mut tx = self.write.begin().await.map_err(classify)?;
        let taken = sqlx::query(
            "UPDATE prism_queue_deliveries SET attempts = attempts + 1, visible_at = ?
             WHERE ns = ? AND queue = ? AND grp = ? AND seq = (
                SELECT seq FROM prism_queue_deliveries
                WHERE ns = ? AND queue = ? AND grp = ? AND visible_at <= ?
                ORDER BY seq LIMIT 1)
             RETURNING seq, attempts",
        )
        .bind(now.saturating_add(self.lease_ms))
        .bind(&g.ns)
        .bind(&g.queue)
        .bind(&g.group)
        .bind(&g.ns)
        .bind(&g.queue)
        .bind(&g.group)
        .bind(now)
        .fetch_optional(&mut *tx)
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
            .fetch_one(&mut *tx)
            .await
            .map_err(classify)?;
            tx.commit().await.map_err(classify)?;
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
        .fetch_one(&mut *tx)
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
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

    async fn unclaim(&self, g: &GroupRef, receipt: &str) -> StoreResult<()> {
        let (seq, attempt) = parse_receipt(receipt)?;
        sqlx::query(
            "UPDATE prism_queue_deliveries SET attempts = attempts - 1, visible_at = ?
             WHERE ns = ? AND queue = ? AND grp = ? AND seq = ? AND attempts = ?",
        )
        .bind(now_ms())
        .bind(&g.ns)
        .bind(&g.queue)
        .bind(&g.group)
        .bind(seq)
        .bind(attempt)
        .execute(&self.write)
        .await
        .map_err(classify)?;
        self.wakers.wake(&wake_key(&g.ns, &g.queue));
        Ok(())
    }
}
