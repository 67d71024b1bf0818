//! How the adapter's statements reach PostgreSQL: straight from the pool, or, behind a
//! transaction-pooling PgBouncer, each call in a transaction of its own with unnamed statements.
//!
//! A transaction pooler hands a client's statements to whichever server connection is free at the
//! start of each transaction. sqlx parses a statement and binds it in two round trips (each ends
//! the implicit transaction), and caches named statements per connection, so through such a pooler
//! a statement may be bound on a server that never parsed it, or worse, on one where another
//! client's unnamed statement sits. Inside an explicit transaction the pooler keeps one server
//! connection until `COMMIT`; unnamed statements leave nothing behind on it for the next client.

use super::classify;
use crate::backends::error::StoreResult;
use sqlx::postgres::{PgArguments, PgPool};
use sqlx::query::{Query, QueryScalar};
use sqlx::{AssertSqlSafe, PgConnection, Postgres, Transaction};
use std::ops::{Deref, DerefMut};
use std::time::Duration;

/// The call pool, and how its statements must be sent.
#[derive(Clone, Debug)]
pub(super) struct Db {
    /// The pool of call connections.
    pub(super) pool: PgPool,
    /// Behind a transaction pooler: the statement that opens each call's transaction (`BEGIN` and
    /// the call timeout as `SET LOCAL statement_timeout`, in one round trip).
    pooled: Option<String>,
}

impl Db {
    /// Statements on `pool`; `pooled` when it goes through a transaction pooler, whose
    /// transactions get `statement_timeout`.
    pub(super) fn new(pool: PgPool, pooled: bool, statement_timeout: Duration) -> Self {
        let pooled = pooled.then(|| {
            format!(
                "BEGIN; SET LOCAL statement_timeout = {}",
                statement_timeout.as_millis()
            )
        });
        Self { pool, pooled }
    }

    /// Whether statements may be prepared once and cached on their connection.
    fn cached(&self) -> bool {
        self.pooled.is_none()
    }

    /// A statement, prepared as this pool allows.
    pub(super) fn query(&self, sql: &'static str) -> Query<'static, Postgres, PgArguments> {
        sqlx::query(sql).persistent(self.cached())
    }

    /// A statement returning one column, prepared as this pool allows.
    pub(super) fn scalar<O>(
        &self,
        sql: &'static str,
    ) -> QueryScalar<'static, Postgres, O, PgArguments>
    where
        O: Send + Unpin,
        (O,): for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
    {
        sqlx::query_scalar(sql).persistent(self.cached())
    }

    /// A connection for one call; [`Conn::done`] ends it (commits, behind a transaction pooler).
    pub(super) async fn conn(&self) -> StoreResult<Conn> {
        Ok(match &self.pooled {
            None => Conn::Direct(self.pool.acquire().await.map_err(classify)?),
            Some(_) => Conn::Tx(self.begin().await?),
        })
    }

    /// A transaction (behind a transaction pooler, with the call timeout set on it).
    pub(super) async fn begin(&self) -> StoreResult<Transaction<'static, Postgres>> {
        self.begin_raw().await.map_err(classify)
    }

    /// [`Db::begin`], with sqlx's own error.
    pub(super) async fn begin_raw(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        match &self.pooled {
            None => self.pool.begin().await,
            Some(begin) => self.pool.begin_with(AssertSqlSafe(begin.clone())).await,
        }
    }
}

/// A connection held for one call.
pub(super) enum Conn {
    /// Straight from the pool.
    Direct(sqlx::pool::PoolConnection<Postgres>),
    /// In a transaction of its own (behind a transaction pooler).
    Tx(Transaction<'static, Postgres>),
}

impl Conn {
    /// Ends the call: commits its transaction, if it has one.
    pub(super) async fn done(self) -> StoreResult<()> {
        match self {
            Conn::Direct(_) => Ok(()),
            Conn::Tx(tx) => tx.commit().await.map_err(classify),
        }
    }
}

impl Deref for Conn {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        match self {
            Conn::Direct(c) => c,
            Conn::Tx(t) => t,
        }
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match self {
            Conn::Direct(c) => c,
            Conn::Tx(t) => t,
        }
    }
}
