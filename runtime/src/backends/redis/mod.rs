//! `redis`: KeyValue, PubSub and Queue on Redis (redis crate, tokio, connection manager).
//!
//! KeyValue's layout, per namespace `ns` under the configured `key_prefix` (default `prism`):
//! - `prism:ns:d:<key>` — a hash `{v: value, n: version}`; expiry is the hash's own Redis TTL, so an
//!   expired key is gone for every read at once;
//! - `prism:ns:i` — a sorted set of the namespace's keys (all score 0), giving byte-ordered scans with
//!   `ZRANGEBYLEX`; members whose hash has expired or been deleted are dropped when a scan meets them,
//!   and a background sweep clears the rest every 30 s;
//! - `prism:v` — the version counter (`INCR`), so versions strictly increase across every write.
//!
//! Every operation that reads then writes is one Lua script, so it is atomic; batches are one script
//! call (one round trip, atomic). Scans page by the last key returned: each page is a consistent
//! snapshot, a key present for the whole scan is returned exactly once, keys written behind the cursor
//! during a scan are not seen, and keys written ahead of it are.
//!
//! This file holds the connection and the helpers (the config is in `../config.rs`); `keyvalue.rs`, `pubsub.rs` (Redis
//! pub/sub) and `queue.rs` (Redis Streams) the adapters, each documenting its keys.

mod conn;
mod keyvalue;
mod pubsub;
mod queue;
mod server;

pub use pubsub::RedisPubSub;
pub use queue::RedisQueue;

pub use super::config::RedisConfig;
use crate::patterns::keyvalue::keys::prefix_end;
use crate::patterns::keyvalue::store::{
    BatchItem, Condition, Entry, KvBasic, KvBatch, KvCas, KvScan, KvTtl, ScanItem, StoreError,
    StoreResult,
};
use async_trait::async_trait;
use bytes::Bytes;
use conn::Conn;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, ProtocolVersion};
use redis::{Script, Value};
use std::collections::BTreeSet;
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

/// The client and shared connection every adapter of one Redis backend uses.
pub(crate) struct Connection {
    client: redis::Client,
    conn: Conn,
    prefix: String,
    connect_timeout: Duration,
    response_timeout: Duration,
    /// Whether the server's persistence makes acknowledged writes durable (read at connect).
    durable: bool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Connection {
    /// Connects (lazily: a Redis that is down now gives UNAVAILABLE per call until it is back),
    /// over RESP3 unless the URL names a protocol (`?protocol=resp2` for a Redis before 6.0).
    pub(crate) async fn open(config: &RedisConfig) -> Result<Self, redis::RedisError> {
        let url = config.url.expose();
        let mut info = url.into_connection_info()?;
        if !url.contains("protocol=") {
            let settings = info
                .redis_settings()
                .clone()
                .set_protocol(ProtocolVersion::RESP3);
            info = info.set_redis_settings(settings);
        }
        let client = redis::Client::open(info)?;
        let connect_timeout = Duration::from_millis(config.connect_timeout_ms);
        let response_timeout = Duration::from_millis(config.response_timeout_ms);
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(response_timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = Conn(ConnectionManager::new_lazy_with_config(
            client.clone(),
            manager_config,
        )?);
        let mut probe = conn.clone();
        let durable = match redis::cmd("PING").query_async::<String>(&mut probe).await {
            Ok(_) => server::check(&mut probe, &config.url).await?,
            Err(e) => {
                tracing::warn!(url = %config.url, error = %e, "redis is not answering yet; calls get UNAVAILABLE until it does (its persistence unread: keyvalue.durable and queue.durable not declared)");
                false
            }
        };
        Ok(Self {
            client,
            conn,
            prefix: config.key_prefix.clone(),
            connect_timeout,
            response_timeout,
            durable,
        })
    }

    /// The bundle: KeyValue, PubSub and Queue over this connection.
    pub(crate) fn adapters(
        self,
        config: &RedisConfig,
    ) -> (Arc<RedisStore>, Arc<RedisPubSub>, Arc<RedisQueue>) {
        let kv = RedisStore {
            conn: self.conn.clone(),
            prefix: self.prefix.clone(),
            namespaces: Arc::default(),
            durable: self.durable,
        };
        kv.spawn_sweeper();
        let shared = Arc::new(self);
        (
            Arc::new(kv),
            Arc::new(RedisPubSub::new(shared.clone())),
            Arc::new(RedisQueue::new(
                shared,
                Duration::from_secs(config.retention_hours.max(1) * 3600),
                Duration::from_secs(config.claim_idle_secs.max(1)),
            )),
        )
    }
}

/// `{v, n, pttl}` of a live key, or nil.
/// Write with optional condition. ARGV: value, ttl_ms, mode (''/'absent'/'version'), expected, member.
/// Returns {version} or {-1, current} (exists) or {-2, current-or-''} (version mismatch).
static SET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local cur = redis.call('HGET', KEYS[1], 'n')
          if ARGV[3] == 'absent' and cur then return {-1, cur} end
          if ARGV[3] == 'version' and cur ~= ARGV[4] then return {-2, cur or ''} end
          local ver = redis.call('INCR', KEYS[3])
          redis.call('HSET', KEYS[1], 'v', ARGV[1], 'n', ver)
          if ARGV[2] ~= '0' then redis.call('PEXPIRE', KEYS[1], ARGV[2]) else redis.call('PERSIST', KEYS[1]) end
          redis.call('ZADD', KEYS[2], 0, ARGV[5])
          return {ver}",
    )
});

/// Deletes a key and its index entry; returns 1 if it existed.
static DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local n = redis.call('DEL', KEYS[1])
          redis.call('ZREM', KEYS[2], ARGV[1])
          return n",
    )
});

/// Sets (ARGV[1] > 0) or removes the expiry of an existing key; returns 1 if it existed.
static EXPIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
          if ARGV[1] == '0' then redis.call('PERSIST', KEYS[1]) else redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
          return 1",
    )
});

/// One scan page. KEYS: index. ARGV: data-key prefix, min, max, limit, keys_only ('1'/'0'),
/// max_bytes. Returns a flat list key, value, key, value…, stopping after the item that takes the
/// page over max_bytes; drops index members whose hash is gone.
static SCAN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local out = {}
          local start = ARGV[2]
          local limit = tonumber(ARGV[4])
          local chunk = limit + 16
          local budget = tonumber(ARGV[6])
          local used = 0
          local full = false
          while #out < limit * 2 and not full do
            local members = redis.call('ZRANGEBYLEX', KEYS[1], start, ARGV[3], 'LIMIT', 0, chunk)
            if #members == 0 then break end
            for _, m in ipairs(members) do
              local v = redis.call('HGET', ARGV[1] .. m, 'v')
              if v then
                if ARGV[5] == '1' then v = '' end
                out[#out + 1] = m
                out[#out + 1] = v
                used = used + #m + #v
                if used > budget then full = true break end
                if #out >= limit * 2 then break end
              else
                redis.call('ZREM', KEYS[1], m)
              end
            end
            if #members < chunk then break end
            start = '(' .. members[#members]
          end
          return out",
    )
});

/// Batch write. KEYS: index, counter. ARGV: data-key prefix, then key, value, ttl_ms triples.
static BATCH_SET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local out = {}
          for i = 2, #ARGV, 3 do
            local dk = ARGV[1] .. ARGV[i]
            local ver = redis.call('INCR', KEYS[2])
            redis.call('HSET', dk, 'v', ARGV[i + 1], 'n', ver)
            if ARGV[i + 2] ~= '0' then redis.call('PEXPIRE', dk, ARGV[i + 2]) else redis.call('PERSIST', dk) end
            redis.call('ZADD', KEYS[1], 0, ARGV[i])
            out[#out + 1] = ver
          end
          return out",
    )
});

/// Batch read. ARGV: data-key prefix, max_bytes, then keys. Returns per key {v, n, pttl} or false,
/// or -1 when the values add up to more than max_bytes.
static BATCH_GET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local out = {}
          local budget = tonumber(ARGV[2])
          local used = 0
          for i = 3, #ARGV do
            local dk = ARGV[1] .. ARGV[i]
            local r = redis.call('HMGET', dk, 'v', 'n')
            if r[2] then
              used = used + #r[1]
              if used > budget then return -1 end
              out[#out + 1] = {r[1], r[2], redis.call('PTTL', dk)}
            else
              out[#out + 1] = false
            end
          end
          return out",
    )
});

/// Batch delete. KEYS: index. ARGV: data-key prefix, then keys. Returns how many existed.
static BATCH_DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local n = 0
          for i = 2, #ARGV do
            n = n + redis.call('DEL', ARGV[1] .. ARGV[i])
            redis.call('ZREM', KEYS[1], ARGV[i])
          end
          return n",
    )
});

/// Drops index members whose key is gone. KEYS: index. ARGV: data-key prefix, start, chunk size.
/// Returns {removed, next start or ''}.
static SWEEP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local chunk = tonumber(ARGV[3])
          local members = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[2], '+', 'LIMIT', 0, chunk)
          local removed = 0
          for _, m in ipairs(members) do
            if redis.call('EXISTS', ARGV[1] .. m) == 0 then
              redis.call('ZREM', KEYS[1], m)
              removed = removed + 1
            end
          end
          local nxt = ''
          if #members == chunk then nxt = '(' .. members[#members] end
          return {removed, nxt}",
    )
});

/// How often each namespace's scan index is swept of expired keys, and how many members per call.
const SWEEP_EVERY: Duration = Duration::from_secs(30);
const SWEEP_CHUNK: usize = 500;

/// The Redis store.
#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    prefix: String,
    namespaces: Arc<RwLock<BTreeSet<String>>>,
    /// Whether the server's persistence makes acknowledged writes durable.
    durable: bool,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish()
    }
}

fn classify(e: redis::RedisError) -> StoreError {
    let transient = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.kind(),
            redis::ErrorKind::Server(
                redis::ServerErrorKind::BusyLoading | redis::ServerErrorKind::TryAgain
            )
        );
    if transient {
        StoreError::Unavailable(Box::new(e))
    } else {
        StoreError::Internal(Box::new(e))
    }
}

fn bad_reply(what: &str, v: &Value) -> StoreError {
    StoreError::Internal(format!("unexpected Redis reply to {what}: {v:?}").into())
}

fn as_bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        other => std::str::from_utf8(&as_bytes(other)?).ok()?.parse().ok(),
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => std::str::from_utf8(&as_bytes(other)?).ok()?.parse().ok(),
    }
}

/// A value, its version and its `PTTL` reply → entry.
fn entry_from(value: &Value, version: &Value, pttl: &Value) -> StoreResult<Entry> {
    let bad = |v: &Value| bad_reply("get", v);
    Ok(Entry {
        value: Bytes::from(as_bytes(value).ok_or_else(|| bad(value))?),
        version: as_u64(version).ok_or_else(|| bad(version))?,
        ttl: u64::try_from(as_i64(pttl).ok_or_else(|| bad(pttl))?)
            .ok()
            .map(Duration::from_millis),
    })
}

/// `{v, n, pttl}` (an item of `BATCH_GET`) → entry; nil/false → `None`.
fn entry(v: &Value) -> StoreResult<Option<Entry>> {
    match v {
        Value::Nil | Value::Boolean(false) => Ok(None),
        Value::Array(parts) if parts.len() == 3 => {
            entry_from(&parts[0], &parts[1], &parts[2]).map(Some)
        }
        other => Err(bad_reply("get", other)),
    }
}

/// The replies of `HMGET key v n` and `PTTL key` → entry; no version (no such key) → `None`.
fn hmget_entry(fields: &Value, pttl: &Value) -> StoreResult<Option<Entry>> {
    match fields {
        Value::Array(parts) => match parts.as_slice() {
            [_, Value::Nil] => Ok(None),
            [value, version] => entry_from(value, version, pttl).map(Some),
            _ => Err(bad_reply("get", fields)),
        },
        other => Err(bad_reply("get", other)),
    }
}

fn ttl_arg(ttl: Option<Duration>) -> String {
    // A TTL under 1 ms would be 0 = persist; round it up instead.
    ttl.map_or(0, |t| {
        u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1)
    })
    .to_string()
}

impl RedisStore {
    /// A KeyValue store alone on its own connection (lazily connected, like the bundle's).
    pub async fn open(config: &RedisConfig) -> Result<Self, redis::RedisError> {
        let connection = Connection::open(config).await?;
        Ok(Self {
            conn: connection.conn,
            prefix: connection.prefix,
            namespaces: Arc::default(),
            durable: connection.durable,
        })
    }

    /// Starts a background task that sweeps each written namespace's scan index of keys Redis has
    /// expired (scans drop such members too; this bounds the index of keys nobody scans). It ends
    /// when the store is dropped.
    pub fn spawn_sweeper(&self) {
        let weak = Arc::downgrade(&self.namespaces);
        let store = Self {
            conn: self.conn.clone(),
            prefix: self.prefix.clone(),
            namespaces: Arc::default(),
            durable: self.durable,
        };
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(namespaces) = weak.upgrade() else {
                    break;
                };
                let list: Vec<String> = namespaces
                    .read()
                    .map(|n| n.iter().cloned().collect())
                    .unwrap_or_default();
                drop(namespaces);
                for ns in list {
                    if let Err(e) = store.sweep_index(&ns).await {
                        tracing::debug!(namespace = %ns, error = %e, "redis index sweep failed");
                    }
                }
            }
        });
    }

    /// Removes the scan-index members of `ns` whose key is gone, in bounded chunks; returns how many.
    pub async fn sweep_index(&self, ns: &str) -> StoreResult<u64> {
        let mut start = "-".to_string();
        let mut removed = 0u64;
        loop {
            let (n, next): (u64, String) = SWEEP
                .key(self.index_key(ns))
                .arg(self.data_prefix(ns))
                .arg(&start)
                .arg(SWEEP_CHUNK)
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(classify)?;
            removed += n;
            if next.is_empty() {
                return Ok(removed);
            }
            start = next;
        }
    }

    /// Notes a namespace for the sweeper; after its first write this is a shared read lock.
    fn remember(&self, ns: &str) {
        if self.namespaces.read().is_ok_and(|seen| seen.contains(ns)) {
            return;
        }
        if let Ok(mut seen) = self.namespaces.write() {
            seen.insert(ns.to_string());
        }
    }

    fn data_prefix(&self, ns: &str) -> String {
        format!("{}:{ns}:d:", self.prefix)
    }
    fn data_key(&self, ns: &str, key: &str) -> String {
        format!("{}:{ns}:d:{key}", self.prefix)
    }
    fn index_key(&self, ns: &str) -> String {
        format!("{}:{ns}:i", self.prefix)
    }
    fn counter_key(&self) -> String {
        format!("{}:v", self.prefix)
    }

    async fn write(
        &self,
        ns: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        condition: Option<Condition>,
    ) -> StoreResult<u64> {
        self.remember(ns);
        let (mode, expected) = match condition {
            None => ("", String::new()),
            Some(Condition::IfAbsent) => ("absent", String::new()),
            Some(Condition::IfVersion(v)) => ("version", v.to_string()),
        };
        let reply: Value = SET
            .key(self.data_key(ns, key))
            .key(self.index_key(ns))
            .key(self.counter_key())
            .arg(value)
            .arg(ttl_arg(ttl))
            .arg(mode)
            .arg(expected)
            .arg(key)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(classify)?;
        let Value::Array(parts) = &reply else {
            return Err(bad_reply("set", &reply));
        };
        match parts.first().and_then(as_i64) {
            Some(-1) => Err(StoreError::AlreadyExists {
                key: key.to_string(),
            }),
            Some(-2) => Err(StoreError::VersionMismatch {
                key: key.to_string(),
                expected: match condition {
                    Some(Condition::IfVersion(v)) => v,
                    _ => 0,
                },
                current: parts.get(1).and_then(as_u64),
            }),
            Some(v) if v > 0 => Ok(v as u64),
            _ => Err(bad_reply("set", &reply)),
        }
    }
}

#[async_trait]
impl crate::backends::health::Ping for RedisStore {
    async fn ping(&self) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<()>(&mut conn)
            .await
            .map_err(classify)
    }
}
