//! The networked backends' configs (`type: redis`, `nats`, `postgres`). They are compiled into
//! every build, with or without the backend's cargo feature, so a proxy config that names a backend
//! this build lacks still parses and is refused with the feature to build with, not with "unknown
//! variant". The adapters live in `redis/`, `nats/` and `postgres/`, each behind its feature.

use crate::secret::SecretUrl;
use serde::{Deserialize, Serialize};

/// Config of a `redis` backend.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[:password@]host:port[/db]`; `${ENV}` references are expanded.
    pub url: SecretUrl,
    /// Prefix of every key Prism writes (letters, digits, `.`, `_`, `-`).
    #[serde(default = "redis_prefix")]
    pub key_prefix: String,
    /// Connect timeout in milliseconds.
    #[serde(default = "redis_connect_ms")]
    pub connect_timeout_ms: u64,
    /// Per-command timeout in milliseconds; a backend that does not answer gives UNAVAILABLE.
    #[serde(default = "redis_response_ms")]
    pub response_timeout_ms: u64,
    /// How long queue messages stay in their stream, in hours (they stay after being acked, so a
    /// group created later still sees them; default 168).
    #[serde(default = "redis_retention")]
    pub retention_hours: u64,
    /// How long a delivery pending without a lease may stay so before any consumer takes it over,
    /// in seconds (default 600). Every delivery is leased for its visibility timeout plus 1 s when
    /// taken; this only covers one whose lease could not be written (a proxy that crashed between
    /// a blocking read and the lease write) or was taken by an earlier version.
    #[serde(default = "redis_claim_idle")]
    pub claim_idle_secs: u64,
}

fn redis_prefix() -> String {
    "prism".into()
}
fn redis_connect_ms() -> u64 {
    2000
}
fn redis_response_ms() -> u64 {
    5000
}
fn redis_retention() -> u64 {
    168
}
fn redis_claim_idle() -> u64 {
    600
}

/// Config of a `nats` backend.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// `nats://[user:password@]host:port`; `${ENV}` references are expanded.
    pub url: SecretUrl,
    /// First token of every subject Prism uses (letters, digits, `_`, `-`).
    #[serde(default = "nats_prefix")]
    pub subject_prefix: String,
    /// How long JetStream keeps queue messages, in hours (they stay after being acked, so a group
    /// created later still sees them; default 168).
    #[serde(default = "nats_retention")]
    pub retention_hours: u64,
    /// JetStream's ack wait, in seconds (default 3): the proxy holding a delivery renews it (an
    /// in-progress ack) while the delivery's visibility timeout lasts, so a delivery a crashed
    /// proxy held goes out again at most this long after its visibility timeout.
    #[serde(default = "nats_ack_wait")]
    pub ack_wait_secs: u64,
    /// Connect timeout in milliseconds.
    #[serde(default = "nats_connect_ms")]
    pub connect_timeout_ms: u64,
}

fn nats_prefix() -> String {
    "prism".into()
}
fn nats_retention() -> u64 {
    168
}
fn nats_ack_wait() -> u64 {
    3
}
fn nats_connect_ms() -> u64 {
    2000
}

/// Config of a `postgres` backend.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// `postgres://user[:password]@host:port/db`; `${ENV}` references are expanded.
    pub url: SecretUrl,
    /// Connection pool settings.
    #[serde(default)]
    pub pool: PoolConfig,
    /// Seconds between purges of expired rows (default 30); each purge deletes at most 1,000.
    #[serde(default = "postgres_purge_secs")]
    pub purge_interval_secs: u64,
    /// No longer used: a queue delivery's lease is now its visibility timeout plus one second.
    /// Accepted (with a warning at start) so configs written for earlier versions still load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_idle_secs: Option<u64>,
    /// What `url` reaches: PostgreSQL itself or a session-pooling PgBouncer (`none`, the
    /// default), or a transaction-pooling PgBouncer (`transaction`): then every call runs in a
    /// transaction of its own with unnamed statements, and `statement_timeout` is set per
    /// transaction instead of at connect (such a pooler refuses the startup parameter).
    #[serde(default, skip_serializing_if = "Pooler::is_none")]
    pub pooler: Pooler,
    /// A session connection for `LISTEN` (PubSub subscriptions, queue wake-ups) when `pooler` is
    /// `transaction`: PostgreSQL itself or a session-pooling PgBouncer. Without it such a backend
    /// offers no PubSub (a namespace that asks for it is refused at start) and its queue consumers
    /// look for work every 500 ms instead of being woken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_url: Option<SecretUrl>,
}

impl PostgresConfig {
    /// Whether this backend can `LISTEN` (so offers PubSub).
    pub fn listens(&self) -> bool {
        self.pooler == Pooler::None || self.listen_url.is_some()
    }
}

/// What stands between the proxy and PostgreSQL.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Pooler {
    /// PostgreSQL itself, or a pooler that gives each client a server session.
    #[default]
    None,
    /// A pooler that gives a client a server connection per transaction (PgBouncer's
    /// `pool_mode = transaction`).
    Transaction,
}

impl Pooler {
    fn is_none(&self) -> bool {
        *self == Pooler::None
    }
}

fn postgres_purge_secs() -> u64 {
    30
}

/// Pool settings.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Most connections (default 16).
    #[serde(default = "postgres_max")]
    pub max: u32,
    /// Connections kept open when idle (default 0).
    #[serde(default)]
    pub min: u32,
    /// How long a call waits for a connection before UNAVAILABLE, in milliseconds (default 5000).
    #[serde(default = "postgres_acquire_ms")]
    pub acquire_timeout_ms: u64,
    /// Most connections held by `LISTEN`: one per PubSub subscription, one for queue wake-ups
    /// (default 64).
    #[serde(default = "postgres_listeners")]
    pub listeners: u32,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max: postgres_max(),
            min: 0,
            acquire_timeout_ms: postgres_acquire_ms(),
            listeners: postgres_listeners(),
        }
    }
}

fn postgres_listeners() -> u32 {
    64
}

fn postgres_max() -> u32 {
    16
}
fn postgres_acquire_ms() -> u64 {
    5000
}
