//! The shared Redis connection: redis-rs's connection manager over RESP3, wrapped so a command that
//! certainly never reached Redis is sent once more.
//!
//! Over RESP3 the manager hears its connection drop (the server restarting, a proxy in between
//! closing it) and reconnects at once, even when no call is using it; over RESP2 it would learn
//! only from the next call, which then failed (`broken pipe`). After an outage longer than its
//! reconnect attempts, the manager holds the last failed attempt, and the next command fails with
//! `connection refused` while starting a fresh attempt: such a command was never sent, so it is
//! retried once and the first call after Redis is back succeeds. Nothing that may have been sent is
//! ever retried (an enqueue or a compare-and-set must not run twice).

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};

/// The connection every adapter of one Redis backend shares; cheap to clone.
#[derive(Clone)]
pub(crate) struct Conn(pub(crate) ConnectionManager);

/// Whether `e` says the command never left the proxy: no connection could be opened for it.
fn never_sent(e: &RedisError) -> bool {
    e.is_connection_refusal()
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            match self.0.req_packed_command(cmd).await {
                Err(e) if never_sent(&e) => self.0.req_packed_command(cmd).await,
                done => done,
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            match self.0.req_packed_commands(pipeline, offset, count).await {
                Err(e) if never_sent(&e) => {
                    self.0.req_packed_commands(pipeline, offset, count).await
                }
                done => done,
            }
        })
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}
