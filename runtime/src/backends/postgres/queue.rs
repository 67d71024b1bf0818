//! PostgreSQL's Queue adapter ([`sql_queue`](crate::backends::sql_queue) describes the shape).
//! Tables, every key led by the namespace:
//! - `prism_queue_messages (ns, queue, seq, …)` — the messages held, with the time they first
//!   become due (for groups created later);
//! - `prism_queue_groups (ns, queue, grp)` — the groups that exist;
//! - `prism_queue_deliveries (ns, queue, grp, seq, attempts, visible_at)` — one row per group and
//!   message not yet acked by that group. A message goes once every group has acked it.
//!
//! An enqueue is one statement (message, a delivery row per group, `NOTIFY`) committed before it
//! returns. A new group locks the messages table against writes while it copies every message
//! held, so no enqueue or ack falls between. A claim takes the group's first due row with
//! `FOR UPDATE SKIP LOCKED`, raises its attempts and sets `visible_at` a lease ahead (the
//! visibility timeout and a grace): a crashed proxy's claims come back then. Every enqueue and return sends `NOTIFY` on one channel
//! with the queue's key; one listener connection per proxy wakes its consumers of that queue.

use super::{Db, PgListener, PgPool, PostgresStore, classify};
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
use sqlx::Row;
use std::sync::{Arc, Once};
use std::time::Duration;

/// The channel enqueues and returns notify, with the queue's [`wake_key`] as payload.
const WAKE_CHANNEL: &str = "prism_queue_wake";

/// Statements that create the queue tables (run with the store's other migrations).
pub(super) const MIGRATIONS: [&str; 4] = [
    "CREATE TABLE IF NOT EXISTS prism_queue_messages (
        ns TEXT NOT NULL,
        queue TEXT NOT NULL,
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        message_id TEXT NOT NULL,
        payload BYTEA NOT NULL,
        headers TEXT NOT NULL,
        enqueued_at_ms BIGINT NOT NULL,
        visible_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (ns, queue, seq)
    )",
    "CREATE TABLE IF NOT EXISTS prism_queue_groups (
        ns TEXT NOT NULL,
        queue TEXT NOT NULL,
        grp TEXT NOT NULL,
        PRIMARY KEY (ns, queue, grp)
    )",
    "CREATE TABLE IF NOT EXISTS prism_queue_deliveries (
        ns TEXT NOT NULL,
        queue TEXT NOT NULL,
        grp TEXT NOT NULL,
        seq BIGINT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        visible_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (ns, queue, grp, seq)
    )",
    "CREATE INDEX IF NOT EXISTS prism_queue_deliveries_seq ON prism_queue_deliveries (ns, queue, seq)",
];

/// Queues on PostgreSQL tables.
#[derive(Debug)]
pub struct PgQueue {
    db: Db,
    /// `None` behind a transaction pooler without a session connection: consumers then look
    /// for work every [`sql_queue::MAX_WAIT`].
    listen_pool: Option<PgPool>,
    wakers: Arc<Wakers>,
    listening: Once,
    call_timeout: Duration,
}

impl PgQueue {
    /// Queues in `store`'s database.
    pub(super) fn new(store: &PostgresStore) -> Self {
        Self {
            db: store.db.clone(),
            listen_pool: store.listen_pool.clone(),
            wakers: Arc::default(),
            listening: Once::new(),
            call_timeout: store.call_timeout,
        }
    }

    /// Starts (once) the task that turns notifications into wake-ups; it ends with the pool.
    fn listen(&self) {
        let Some(pool) = &self.listen_pool else {
            return;
        };
        self.listening.call_once(|| {
            tokio::spawn(wake_on_notify(pool.clone(), self.wakers.clone()));
        });
    }
}

/// Listens on [`WAKE_CHANNEL`] and wakes the queue each notification names; after a lost
/// connection, wakes every consumer (notifications may have been missed) and listens again.
async fn wake_on_notify(pool: PgPool, wakers: Arc<Wakers>) {
    while !pool.is_closed() {
        let listener = async {
            let mut l = PgListener::connect_with(&pool).await?;
            l.eager_reconnect(false);
            l.listen(WAKE_CHANNEL).await?;
            Ok::<_, sqlx::Error>(l)
        };
        match listener.await {
            Ok(mut listener) => {
                wakers.wake_all();
                loop {
                    match listener.try_recv().await {
                        Ok(Some(n)) => wakers.wake(n.payload()),
                        Ok(None) => break,
                        Err(e) => {
                            tracing::debug!(error = %e, "postgres queue listener lost");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "postgres queue listener could not start"),
        }
        wakers.wake_all();
        tokio::time::sleep(sql_queue::MAX_WAIT).await;
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl QueueAdapter for PgQueue {
    fn capabilities(&self) -> Vec<Capability> {
        every_capability(true)
    }

    async fn enqueue(
        &self,
        ns: &str,
        queue: &str,
        message: QueuedMessage,
        delay: Duration,
    ) -> StoreResult<()> {
        let mut conn = self.db.conn().await?;
        self.db
            .query(
                "WITH m AS (
                INSERT INTO prism_queue_messages
                    (ns, queue, message_id, payload, headers, enqueued_at_ms, visible_at)
                VALUES ($1, $2, $3, $4, $5, $6,
                        clock_timestamp() + $7::BIGINT * INTERVAL '1 millisecond')
                RETURNING seq, visible_at),
             d AS (
                INSERT INTO prism_queue_deliveries (ns, queue, grp, seq, visible_at)
                SELECT $1, $2, g.grp, m.seq, m.visible_at
                FROM prism_queue_groups g CROSS JOIN m WHERE g.ns = $1 AND g.queue = $2)
             SELECT pg_notify($8, $9)",
            )
            .bind(ns)
            .bind(queue)
            .bind(&message.message_id)
            .bind(message.payload.as_ref())
            .bind(headers_json(&message.headers)?)
            .bind(message.enqueued_at_ms)
            .bind(millis(delay))
            .bind(WAKE_CHANNEL)
            .bind(wake_key(ns, queue))
            .execute(&mut *conn)
            .await
            .map_err(classify)?;
        conn.done().await
    }

    async fn consumer(
        &self,
        ns: &str,
        queue: &str,
        group: &str,
        lease: Duration,
    ) -> StoreResult<Box<dyn QueueConsumer>> {
        self.listen();
        let woken = self.wakers.notify(&wake_key(ns, queue));
        let mut conn = self.db.conn().await?;
        let known = self
            .db
            .query("SELECT 1 FROM prism_queue_groups WHERE ns = $1 AND queue = $2 AND grp = $3")
            .bind(ns)
            .bind(queue)
            .bind(group)
            .fetch_optional(&mut *conn)
            .await
            .map_err(classify)?;
        conn.done().await?;
        if known.is_none() {
            create_group(&self.db, ns, queue, group).await?;
        }
        let group = GroupRef {
            ns: ns.to_string(),
            queue: queue.to_string(),
            group: group.to_string(),
        };
        let claims = Arc::new(PgClaims {
            db: self.db.clone(),
            timeout: self.call_timeout,
        });
        Ok(fetcher::consumer(Taking::new(claims, group, woken, lease)))
    }

    async fn ack(&self, ns: &str, queue: &str, group: &str, receipt: &str) -> StoreResult<()> {
        let (seq, attempt) = parse_receipt(receipt)?;
        let mut tx = self.db.begin().await?;
        // Deletes the group's row and locks the message, so of two groups acking at once the
        // later one sees the other's row gone and deletes the message.
        let held = self
            .db
            .query(
                "WITH d AS (
                DELETE FROM prism_queue_deliveries
                WHERE ns = $1 AND queue = $2 AND grp = $3 AND seq = $4 AND attempts = $5
                RETURNING seq)
             SELECT m.seq FROM prism_queue_messages m JOIN d ON m.seq = d.seq
             WHERE m.ns = $1 AND m.queue = $2 FOR UPDATE OF m",
            )
            .bind(ns)
            .bind(queue)
            .bind(group)
            .bind(seq)
            .bind(attempt)
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
        if held.is_some() {
            self.db
                .query(
                    "DELETE FROM prism_queue_messages m
                 WHERE m.ns = $1 AND m.queue = $2 AND m.seq = $3 AND NOT EXISTS (
                    SELECT 1 FROM prism_queue_deliveries d
                    WHERE d.ns = $1 AND d.queue = $2 AND d.seq = $3)",
                )
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
        let mut conn = self.db.conn().await?;
        self.db
            .query(
                "WITH r AS (
                UPDATE prism_queue_deliveries
                SET visible_at = clock_timestamp() + $6::BIGINT * INTERVAL '1 millisecond'
                WHERE ns = $1 AND queue = $2 AND grp = $3 AND seq = $4 AND attempts = $5
                RETURNING seq)
             SELECT pg_notify($7, $8) FROM r",
            )
            .bind(ns)
            .bind(queue)
            .bind(group)
            .bind(seq)
            .bind(attempt)
            .bind(millis(delay))
            .bind(WAKE_CHANNEL)
            .bind(wake_key(ns, queue))
            .execute(&mut *conn)
            .await
            .map_err(classify)?;
        conn.done().await
    }
}

/// Creates `group` with a delivery row for every message held. The table lock waits for
/// enqueues and acks in flight and holds new ones back until the copy is committed.
async fn create_group(db: &Db, ns: &str, queue: &str, group: &str) -> StoreResult<()> {
    let mut tx = db.begin().await?;
    db.query("LOCK TABLE prism_queue_messages IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
    let created = db.query(
        "INSERT INTO prism_queue_groups (ns, queue, grp) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(ns)
    .bind(queue)
    .bind(group)
    .execute(&mut *tx)
    .await
    .map_err(classify)?;
    if created.rows_affected() > 0 {
        db.query(
            "INSERT INTO prism_queue_deliveries (ns, queue, grp, seq, visible_at)
             SELECT ns, queue, $3, seq, visible_at FROM prism_queue_messages
             WHERE ns = $1 AND queue = $2",
        )
        .bind(ns)
        .bind(queue)
        .bind(group)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
    }
    tx.commit().await.map_err(classify)
}

/// The claims of one consumer.
struct PgClaims {
    db: Db,
    /// The longest a claim waits for the server: a consumer's takes are not backend calls of
    /// the proxy's (which have their own timeout), and a network that drops everything would
    /// otherwise hold the stream open without an answer.
    timeout: Duration,
}

#[async_trait]
impl Claims for PgClaims {
    async fn claim(
        &self,
        g: &GroupRef,
        lease: Duration,
    ) -> StoreResult<Result<Received, Option<Duration>>> {
        self.bounded("claim", self.claim_now(g, lease)).await
    }

    async fn unclaim(&self, g: &GroupRef, receipt: &str) -> StoreResult<()> {
        self.bounded("return", self.unclaim_now(g, receipt)).await
    }
}

impl PgClaims {
    /// `work`, or UNAVAILABLE once it has waited [`PgClaims::timeout`] for the server.
    async fn bounded<T>(
        &self,
        what: &str,
        work: impl std::future::Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        tokio::time::timeout(self.timeout, work)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Unavailable(
                    format!(
                        "postgres did not answer a queue {what} within {} ms",
                        self.timeout.as_millis()
                    )
                    .into(),
                ))
            })
    }

    async fn claim_now(
        &self,
        g: &GroupRef,
        lease: Duration,
    ) -> StoreResult<Result<Received, Option<Duration>>> {
        let mut conn = self.db.conn().await?;
        let row = self.db.query(
            "WITH next AS (
                SELECT d.seq FROM prism_queue_deliveries d
                JOIN prism_queue_messages m ON m.ns = d.ns AND m.queue = d.queue AND m.seq = d.seq
                WHERE d.ns = $1 AND d.queue = $2 AND d.grp = $3 AND d.visible_at <= clock_timestamp()
                ORDER BY d.seq LIMIT 1
                FOR UPDATE OF d SKIP LOCKED)
             UPDATE prism_queue_deliveries d
             SET attempts = d.attempts + 1,
                 visible_at = clock_timestamp() + $4::BIGINT * INTERVAL '1 millisecond'
             FROM next, prism_queue_messages m
             WHERE d.ns = $1 AND d.queue = $2 AND d.grp = $3 AND d.seq = next.seq
               AND m.ns = $1 AND m.queue = $2 AND m.seq = next.seq
             RETURNING d.seq, d.attempts, m.message_id, m.payload, m.headers, m.enqueued_at_ms",
        )
        .bind(&g.ns)
        .bind(&g.queue)
        .bind(&g.group)
        .bind(millis(lease))
        .fetch_optional(&mut *conn)
        .await
        .map_err(classify)?;
        if let Some(r) = row {
            conn.done().await?;
            let headers: String = r.get("headers");
            return sql_queue::received(
                r.get("seq"),
                r.get("attempts"),
                r.get("message_id"),
                r.get("payload"),
                &headers,
                r.get("enqueued_at_ms"),
            )
            .map(Ok);
        }
        // Rows a concurrent claim took or locked are skipped above; what is due now is tried
        // again at once.
        let due: Option<i64> = self.db.scalar(
            "SELECT GREATEST(0, CEIL(EXTRACT(EPOCH FROM (MIN(visible_at) - clock_timestamp())) * 1000))::BIGINT
             FROM prism_queue_deliveries WHERE ns = $1 AND queue = $2 AND grp = $3",
        )
        .bind(&g.ns)
        .bind(&g.queue)
        .bind(&g.group)
        .fetch_one(&mut *conn)
        .await
        .map_err(classify)?;
        conn.done().await?;
        Ok(Err(sql_queue::due_in(due)))
    }

    async fn unclaim_now(&self, g: &GroupRef, receipt: &str) -> StoreResult<()> {
        let (seq, attempt) = parse_receipt(receipt)?;
        let mut conn = self.db.conn().await?;
        self.db
            .query(
                "WITH r AS (
                UPDATE prism_queue_deliveries
                SET attempts = attempts - 1, visible_at = clock_timestamp()
                WHERE ns = $1 AND queue = $2 AND grp = $3 AND seq = $4 AND attempts = $5
                RETURNING seq)
             SELECT pg_notify($6, $7) FROM r",
            )
            .bind(&g.ns)
            .bind(&g.queue)
            .bind(&g.group)
            .bind(seq)
            .bind(attempt)
            .bind(WAKE_CHANNEL)
            .bind(wake_key(&g.ns, &g.queue))
            .execute(&mut *conn)
            .await
            .map_err(classify)?;
        conn.done().await
    }
}
