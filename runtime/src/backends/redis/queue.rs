//! redis's Queue adapter on Redis Streams. Per namespace `ns` and queue `q` (group names in hex, so
//! no queue and group pair can form another's key):
//! - `<prefix>:<ns>:q:<q>` — the stream; an entry holds the message (`id`, `at`, `h` headers as
//!   JSON, `p` payload). Each group is a consumer group created at `0`, so it starts with every
//!   message still held; entries older than `retention_hours` are trimmed (`MINID`) as new ones come;
//! - `<prefix>:<ns>:qd:<q>` and `…:qm:<q>` — delayed messages: a sorted set of ids by due time and a
//!   hash of their fields, moved into the stream when due;
//! - `<prefix>:<ns>:qr:<hex group>:<q>` — the group's pending deliveries by the time they may go
//!   out again: a returned one's due time, a taken one's lease end (the consumer's visibility
//!   timeout and a grace, so a crashed proxy's deliveries go out again soon after their timeout).
//!   They stay in the group's pending list, and `XCLAIM` hands them out again, so the pending
//!   list's delivery count is the attempt.
//!
//! One Lua script takes the next delivery atomically and writes its lease (due delayed messages
//! into the stream, then a due returned or lapsed delivery, then a new entry, then one left
//! pending without a lease for longer than `claim_idle_secs`); with nothing to take, the consumer
//! blocks on `XREADGROUP` for new entries, up to [`MAX_BLOCK`] or until the next held-back message
//! is due, on a connection of its own, and writes the lease of what that read took.

use super::{Connection, bad_reply, classify};
use crate::backends::error::{StoreError, StoreResult};
use crate::patterns::capability::Capability;
use crate::patterns::names::{hex_token, now_ms};
use crate::patterns::queue::adapter::{
    QueueAdapter, QueueConsumer, QueuedMessage, Received, every_capability,
};
use crate::patterns::queue::fetcher::{self, Take};
use async_trait::async_trait;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Script, Value};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// Longest wait on `XREADGROUP … BLOCK` before the consumer looks at returned and delayed messages
/// again (a nacked message waits at most this long for an idle consumer to see it).
pub const MAX_BLOCK: Duration = Duration::from_millis(250);

/// The consumer name every proxy uses in every group: deliveries are tracked by the proxy, and a
/// single name keeps the group's consumer list from growing.
const CONSUMER: &str = "prism";

/// Takes the next delivery and leases it. KEYS: stream, returned, delayed ids, delayed fields. ARGV:
/// group, now (ms), claim idle (ms), consumer name, lease (ms). Returns `{entry id, fields,
/// attempt}`, or the ms time the next held-back message is due (-1: none).
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local stream, group, now = KEYS[1], ARGV[1], tonumber(ARGV[2])
          local leased = now + tonumber(ARGV[5])
          local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 100)
          for _, id in ipairs(due) do
            local f = redis.call('HMGET', KEYS[4], id .. ':at', id .. ':h', id .. ':p')
            if f[3] then
              redis.call('XADD', stream, '*', 'id', id, 'at', f[1], 'h', f[2], 'p', f[3])
            end
            redis.call('HDEL', KEYS[4], id .. ':at', id .. ':h', id .. ':p')
            redis.call('ZREM', KEYS[3], id)
          end
          local function claim(eid)
            local e = redis.call('XCLAIM', stream, group, ARGV[4], 0, eid)
            if #e == 0 or not e[1] then return nil end
            local p = redis.call('XPENDING', stream, group, eid, eid, 1)
            redis.call('ZADD', KEYS[2], leased, eid)
            return {e[1][1], e[1][2], p[1][4]}
          end
          while true do
            local r = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1)
            if #r == 0 then break end
            redis.call('ZREM', KEYS[2], r[1])
            local c = claim(r[1])
            if c then return c end
          end
          local n = redis.call('XREADGROUP', 'GROUP', group, ARGV[4], 'COUNT', 1, 'STREAMS', stream, '>')
          if n and n[1] and #n[1][2] > 0 then
            local e = n[1][2][1]
            redis.call('ZADD', KEYS[2], leased, e[1])
            return {e[1], e[2], 1}
          end
          local stale = redis.call('XPENDING', stream, group, 'IDLE', ARGV[3], '-', '+', 10)
          for _, p in ipairs(stale) do
            if not redis.call('ZSCORE', KEYS[2], p[1]) then
              local c = claim(p[1])
              if c then return c end
            end
          end
          local soonest = -1
          for _, k in ipairs({KEYS[2], KEYS[3]}) do
            local first = redis.call('ZRANGE', k, 0, 0, 'WITHSCORES')
            if first[2] then
              local at = tonumber(first[2])
              if soonest < 0 or at < soonest then soonest = at end
            end
          end
          return soonest",
    )
});

/// Queues on Redis Streams.
#[derive(Debug)]
pub struct RedisQueue {
    redis: Arc<Connection>,
    retention: Duration,
    claim_idle: Duration,
}

/// The keys of one queue (and, for the returned set, one group).
struct Keys {
    stream: String,
    delayed: String,
    delayed_fields: String,
}

impl RedisQueue {
    pub(super) fn new(redis: Arc<Connection>, retention: Duration, claim_idle: Duration) -> Self {
        Self {
            redis,
            retention,
            claim_idle,
        }
    }

    fn keys(&self, ns: &str, queue: &str) -> Keys {
        let p = &self.redis.prefix;
        Keys {
            stream: format!("{p}:{ns}:q:{queue}"),
            delayed: format!("{p}:{ns}:qd:{queue}"),
            delayed_fields: format!("{p}:{ns}:qm:{queue}"),
        }
    }

    fn returned(&self, ns: &str, queue: &str, group: &str) -> String {
        format!("{}:{ns}:qr:{}:{queue}", self.redis.prefix, hex_token(group))
    }

    /// The oldest entry id a new entry keeps in the stream (`MINID` trimming).
    fn min_id(&self) -> String {
        let retention = i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX);
        format!("{}-0", now_ms().saturating_sub(retention).max(0))
    }
}

fn headers_json(headers: &HashMap<String, String>) -> StoreResult<String> {
    serde_json::to_string(headers).map_err(|e| StoreError::Internal(Box::new(e)))
}

/// A stream entry's fields (`[name, value, …]`) → the message.
fn message_of(fields: &Value) -> StoreResult<QueuedMessage> {
    let Value::Array(items) = fields else {
        return Err(bad_reply("a queue entry", fields));
    };
    let (mut id, mut at, mut headers, mut payload) = (None, 0, HashMap::new(), None);
    for pair in items.chunks(2) {
        let [Value::BulkString(name), Value::BulkString(value)] = pair else {
            return Err(bad_reply("a queue entry", fields));
        };
        match name.as_slice() {
            b"id" => id = Some(String::from_utf8_lossy(value).into_owned()),
            b"at" => {
                at = std::str::from_utf8(value)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0)
            }
            b"h" => {
                headers = serde_json::from_slice(value).map_err(|e| {
                    StoreError::Internal(format!("a queue entry's headers: {e}").into())
                })?;
            }
            b"p" => payload = Some(value.clone()),
            _ => {}
        }
    }
    match (id, payload) {
        (Some(message_id), Some(payload)) => Ok(QueuedMessage {
            message_id,
            payload: payload.into(),
            headers,
            enqueued_at_ms: at,
        }),
        _ => Err(bad_reply("a queue entry", fields)),
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// `Ok(true)` when the group was created, `Ok(false)` when it was there already.
async fn create_group(
    conn: &mut (impl redis::aio::ConnectionLike + Send),
    stream: &str,
    group: &str,
) -> StoreResult<bool> {
    let created = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async::<()>(conn)
        .await;
    match created {
        Ok(()) => Ok(true),
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(false),
        Err(e) => Err(classify(e)),
    }
}

#[async_trait]
impl QueueAdapter for RedisQueue {
    fn capabilities(&self) -> Vec<Capability> {
        every_capability(self.redis.durable)
    }

    async fn enqueue(
        &self,
        ns: &str,
        queue: &str,
        message: QueuedMessage,
        delay: Duration,
    ) -> StoreResult<()> {
        let keys = self.keys(ns, queue);
        let headers = headers_json(&message.headers)?;
        let at = message.enqueued_at_ms.to_string();
        let mut conn = self.redis.conn.clone();
        if delay.is_zero() {
            return redis::cmd("XADD")
                .arg(&keys.stream)
                .arg("MINID")
                .arg("~")
                .arg(self.min_id())
                .arg("*")
                .arg("id")
                .arg(&message.message_id)
                .arg("at")
                .arg(at)
                .arg("h")
                .arg(headers)
                .arg("p")
                .arg(message.payload.as_ref())
                .query_async::<String>(&mut conn)
                .await
                .map(|_| ())
                .map_err(classify);
        }
        let id = &message.message_id;
        let due = now_ms().saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
        redis::pipe()
            .atomic()
            .cmd("HSET")
            .arg(&keys.delayed_fields)
            .arg(format!("{id}:at"))
            .arg(at)
            .arg(format!("{id}:h"))
            .arg(headers)
            .arg(format!("{id}:p"))
            .arg(message.payload.as_ref())
            .ignore()
            .cmd("ZADD")
            .arg(&keys.delayed)
            .arg(due)
            .arg(id)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(classify)
    }

    async fn consumer(
        &self,
        ns: &str,
        queue: &str,
        group: &str,
        lease: Duration,
    ) -> StoreResult<Box<dyn QueueConsumer>> {
        let keys = self.keys(ns, queue);
        create_group(&mut self.redis.conn.clone(), &keys.stream, group).await?;
        Ok(fetcher::consumer(Taking {
            redis: self.redis.clone(),
            conn: None,
            returned: self.returned(ns, queue, group),
            keys,
            group: group.to_string(),
            claim_idle_ms: self.claim_idle.as_millis().to_string(),
            lease_ms: i64::try_from(lease.as_millis()).unwrap_or(i64::MAX),
        }))
    }

    async fn ack(&self, ns: &str, queue: &str, group: &str, receipt: &str) -> StoreResult<()> {
        // XACK of an entry no longer pending acks nothing: the delivery is done either way.
        redis::pipe()
            .atomic()
            .cmd("XACK")
            .arg(self.keys(ns, queue).stream)
            .arg(group)
            .arg(receipt)
            .ignore()
            .cmd("ZREM")
            .arg(self.returned(ns, queue, group))
            .arg(receipt)
            .ignore()
            .query_async::<()>(&mut self.redis.conn.clone())
            .await
            .map_err(classify)
    }

    async fn nack(
        &self,
        ns: &str,
        queue: &str,
        group: &str,
        receipt: &str,
        delay: Duration,
    ) -> StoreResult<()> {
        let due = now_ms().saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
        redis::cmd("ZADD")
            .arg(self.returned(ns, queue, group))
            .arg(due)
            .arg(receipt)
            .query_async::<()>(&mut self.redis.conn.clone())
            .await
            .map_err(classify)
    }
}

/// One consumer's takes, on a connection of its own (its blocking reads hold the connection).
struct Taking {
    redis: Arc<Connection>,
    conn: Option<MultiplexedConnection>,
    keys: Keys,
    returned: String,
    group: String,
    claim_idle_ms: String,
    lease_ms: i64,
}

impl Taking {
    async fn connection(&mut self) -> StoreResult<MultiplexedConnection> {
        if let Some(conn) = &self.conn {
            return Ok(conn.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.redis.connect_timeout))
            .set_response_timeout(Some(self.redis.response_timeout + MAX_BLOCK));
        let conn = self
            .redis
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(classify)?;
        self.conn = Some(conn.clone());
        Ok(conn)
    }

    /// One run of [`TAKE`]: a delivery, or when the next held-back message is due.
    async fn take_now(
        &mut self,
        conn: &mut MultiplexedConnection,
    ) -> StoreResult<Result<Received, i64>> {
        let reply: Value = TAKE
            .key(&self.keys.stream)
            .key(&self.returned)
            .key(&self.keys.delayed)
            .key(&self.keys.delayed_fields)
            .arg(&self.group)
            .arg(now_ms())
            .arg(&self.claim_idle_ms)
            .arg(CONSUMER)
            .arg(self.lease_ms)
            .invoke_async(conn)
            .await
            .map_err(classify)?;
        match &reply {
            Value::Int(due) => Ok(Err(*due)),
            Value::Array(parts) if parts.len() == 3 => {
                let receipt = text(&parts[0]).ok_or_else(|| bad_reply("take", &reply))?;
                let attempt = match &parts[2] {
                    Value::Int(n) => u32::try_from(*n).unwrap_or(u32::MAX),
                    other => return Err(bad_reply("take", other)),
                };
                Ok(Ok(Received {
                    message: message_of(&parts[1])?,
                    attempt,
                    receipt,
                }))
            }
            _ => Err(bad_reply("take", &reply)),
        }
    }

    /// Writes the lease of a delivery the blocking read took. Should that fail, the delivery still
    /// goes to its consumer; only after a crash would it wait `claim_idle_secs` instead.
    async fn lease(&self, conn: &mut MultiplexedConnection, received: &Received) {
        let leased = redis::cmd("ZADD")
            .arg(&self.returned)
            .arg(now_ms().saturating_add(self.lease_ms))
            .arg(&received.receipt)
            .query_async::<()>(conn)
            .await;
        if let Err(e) = leased {
            tracing::warn!(error = %e, receipt = %received.receipt, "could not write a delivery's lease to redis; were this proxy to crash, it would go out again after claim_idle_secs");
        }
    }

    /// Waits up to `wait` for a new entry; takes it when one comes.
    async fn block(
        &mut self,
        conn: &mut MultiplexedConnection,
        wait: Duration,
    ) -> StoreResult<Option<Received>> {
        let reply: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.group)
            .arg(CONSUMER)
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1))
            .arg("STREAMS")
            .arg(&self.keys.stream)
            .arg(">")
            .query_async(conn)
            .await
            .map_err(classify)?;
        // [[stream, [[id, fields]]]] or nil; RESP3 servers may answer with a map.
        let entry = match &reply {
            Value::Nil => return Ok(None),
            Value::Array(streams) => streams.first().and_then(|s| match s {
                Value::Array(pair) => pair.get(1),
                _ => None,
            }),
            Value::Map(streams) => streams.first().map(|(_, entries)| entries),
            _ => None,
        };
        let Some(Value::Array(entries)) = entry else {
            return Err(bad_reply("XREADGROUP", &reply));
        };
        let Some(Value::Array(first)) = entries.first() else {
            return Ok(None);
        };
        let [id, fields] = first.as_slice() else {
            return Err(bad_reply("XREADGROUP", &reply));
        };
        Ok(Some(Received {
            receipt: text(id).ok_or_else(|| bad_reply("XREADGROUP", &reply))?,
            message: message_of(fields)?,
            attempt: 1,
        }))
    }
}

#[async_trait]
impl Take for Taking {
    async fn take(&mut self) -> StoreResult<Option<Received>> {
        let mut conn = self.connection().await?;
        let taken = match self.take_now(&mut conn).await {
            Err(StoreError::Internal(e)) if e.to_string().contains("NOGROUP") => {
                // The stream or group is gone (e.g. a Redis without persistence restarted).
                create_group(&mut conn, &self.keys.stream, &self.group).await?;
                self.take_now(&mut conn).await
            }
            other => other,
        };
        let due = match taken {
            Ok(Ok(received)) => return Ok(Some(received)),
            Ok(Err(due)) => due,
            Err(e) => {
                self.conn = None;
                return Err(e);
            }
        };
        let wait = if due < 0 {
            MAX_BLOCK
        } else {
            Duration::from_millis(u64::try_from(due - now_ms()).unwrap_or(0)).min(MAX_BLOCK)
        };
        if wait.is_zero() {
            return Ok(None);
        }
        let blocked = self.block(&mut conn, wait).await;
        match &blocked {
            Ok(Some(received)) => self.lease(&mut conn, received).await,
            Ok(None) => {}
            Err(_) => self.conn = None,
        }
        blocked
    }

    async fn give_back(&mut self, received: Received) {
        let given = redis::cmd("ZADD")
            .arg(&self.returned)
            .arg(now_ms())
            .arg(&received.receipt)
            .query_async::<()>(&mut self.redis.conn.clone())
            .await;
        if let Err(e) = given {
            tracing::warn!(error = %e, receipt = %received.receipt, "could not give a delivery back to redis; it goes out again when its lease ends");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &[u8]) -> Value {
        Value::BulkString(s.to_vec())
    }

    #[test]
    fn an_entry_becomes_the_message_it_holds() {
        let fields = Value::Array(vec![
            bulk(b"id"),
            bulk(b"m1"),
            bulk(b"at"),
            bulk(b"7"),
            bulk(b"h"),
            bulk(br#"{"k":"v"}"#),
            bulk(b"p"),
            bulk(&[0, 255]),
        ]);
        let m = message_of(&fields).expect("a message");
        assert_eq!(
            (m.message_id.as_str(), m.enqueued_at_ms, m.payload.as_ref()),
            ("m1", 7, &[0u8, 255][..])
        );
        assert_eq!(m.headers.get("k").map(String::as_str), Some("v"));
        assert!(message_of(&Value::Array(vec![bulk(b"id"), bulk(b"m1")])).is_err());
    }
}
