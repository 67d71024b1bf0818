//! What the proxy tells operators: Prometheus metrics (recorded in atomics on the call path and
//! rendered only when scraped), the admin HTTP listener that serves them with the liveness and
//! readiness probes, and the access log.
//!
//! Cardinality is bounded by construction: a call's namespace label is the configured route the
//! header resolved to (or none), its method label an index into the served methods, its status
//! one of gRPC's 17 codes; topic, queue, key, group and identity names never become labels.

pub mod calls;
pub mod exposition;
pub mod histogram;
pub mod http;
pub mod methods;
mod render;
pub mod trace;

pub use render::render;

use histogram::Histogram;
use methods::{MethodId, methods};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// gRPC's status codes by number, as the conventions' `rpc.response.status_code` spells them.
pub const CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// A histogram per label value, allocated the first time that value is seen (most methods only
/// ever see a few codes or outcomes).
#[derive(Debug)]
struct Lazy<const N: usize>([OnceLock<Box<Histogram>>; N]);

impl<const N: usize> Default for Lazy<N> {
    fn default() -> Self {
        Self(std::array::from_fn(|_| OnceLock::new()))
    }
}

impl<const N: usize> Lazy<N> {
    fn get(&self, i: usize) -> &Histogram {
        self.0[i.min(N - 1)].get_or_init(Box::default)
    }

    fn seen(&self) -> impl Iterator<Item = (usize, &Histogram)> {
        self.0
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.get().map(|h| (i, &**h)))
    }
}

/// One method's calls in one namespace.
#[derive(Debug, Default)]
struct MethodCells {
    active: AtomicI64,
    request_bytes: AtomicU64,
    response_bytes: AtomicU64,
    by_code: Lazy<17>,
}

/// The calls and messages of one namespace (or of calls that named no configured namespace).
#[derive(Debug)]
pub struct NamespaceMetrics {
    /// The namespace's name; empty for calls without a configured namespace.
    pub name: String,
    /// Its pattern's name; empty without a namespace.
    pub pattern: &'static str,
    calls: Box<[MethodCells]>,
    /// Its messaging counters.
    pub messaging: MessagingCounters,
}

impl NamespaceMetrics {
    /// Empty cells for namespace `name` of `pattern`.
    pub fn new(name: &str, pattern: &'static str) -> Self {
        Self {
            name: name.to_string(),
            pattern,
            calls: (0..methods().len())
                .map(|_| MethodCells::default())
                .collect(),
            messaging: MessagingCounters::default(),
        }
    }

    fn cells(&self, method: MethodId) -> &MethodCells {
        &self.calls[usize::from(method).min(self.calls.len() - 1)]
    }

    /// A call of `method` began.
    pub fn started(&self, method: MethodId) {
        self.cells(method).active.fetch_add(1, Ordering::Relaxed);
    }

    /// A call of `method` ended with `code` after `elapsed`, having answered `response_bytes`.
    pub fn finished(&self, method: MethodId, code: usize, elapsed: Duration, response_bytes: u64) {
        let cells = self.cells(method);
        cells.active.fetch_sub(1, Ordering::Relaxed);
        cells.by_code.get(code).observe(elapsed);
        if response_bytes > 0 {
            cells
                .response_bytes
                .fetch_add(response_bytes, Ordering::Relaxed);
        }
    }

    /// A request body of `method` carried `bytes` (counted when the body is done with).
    pub fn request_bytes(&self, method: MethodId, bytes: u64) {
        self.cells(method)
            .request_bytes
            .fetch_add(bytes, Ordering::Relaxed);
    }
}

/// Why a queue message was delivered again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redelivery {
    /// Its visibility timeout passed before an Ack.
    Timeout,
    /// Its consumer asked for it (Nack).
    Nack,
    /// Its consumer's stream ended while holding it.
    Disconnect,
    /// The proxy drained while a consumer held it.
    Drain,
    /// Its Ack failed at the backend, so it is not known to be acked.
    AckFailed,
}

impl Redelivery {
    /// Every cause, in label order.
    pub const ALL: [Redelivery; 5] = [
        Redelivery::Timeout,
        Redelivery::Nack,
        Redelivery::Disconnect,
        Redelivery::Drain,
        Redelivery::AckFailed,
    ];

    /// The `cause` label.
    pub fn label(self) -> &'static str {
        match self {
            Redelivery::Timeout => "timeout",
            Redelivery::Nack => "nack",
            Redelivery::Disconnect => "disconnect",
            Redelivery::Drain => "drain",
            Redelivery::AckFailed => "ack_failed",
        }
    }
}

/// Messages through one namespace's PubSub, Queue, registry or mailbox calls.
#[derive(Debug, Default)]
pub struct MessagingCounters {
    sent: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    dead_lettered: AtomicU64,
    returned: [AtomicU64; 5],
}

impl MessagingCounters {
    /// Counts `n` messages accepted by Publish, Enqueue, Multicast or a mailbox.
    pub fn sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one message handed to a subscriber's, consumer's or listener's stream.
    pub fn delivered(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one message a slow subscriber or listener lost.
    pub fn dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one queue message moved to its dead-letter queue.
    pub fn dead_lettered(&self) {
        self.dead_lettered.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts `n` messages given back for redelivery, for `cause`.
    pub fn returned(&self, cause: Redelivery, n: u64) {
        self.returned[cause as usize].fetch_add(n, Ordering::Relaxed);
    }

    fn returned_by(&self, cause: Redelivery) -> u64 {
        self.returned[cause as usize].load(Ordering::Relaxed)
    }
}

/// What a backend call ended with: `ok`, or the class of its failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The backend answered.
    Ok,
    /// A conflict: the key exists, or its version moved.
    Conflict,
    /// Over a size limit of the proxy or the backend.
    TooLarge,
    /// The backend could not be reached.
    Unavailable,
    /// The backend failed otherwise.
    Internal,
    /// No answer within the backend call timeout.
    Timeout,
    /// Refused at once: the backend was known to be down.
    RefusedDown,
    /// The caller's deadline passed first.
    CallerDeadline,
}

impl Outcome {
    const LABELS: [&'static str; 8] = [
        "ok",
        "conflict",
        "too_large",
        "unavailable",
        "internal",
        "timeout",
        "refused_down",
        "caller_deadline",
    ];
}

/// Which of the conventions' families a backend call belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// A store: KeyValue, the registry's identities (`db.client.operation.duration`).
    Db,
    /// A broker: PubSub, Queue (`messaging.client.operation.duration`).
    Messaging,
}

/// What a backend call does: the gRPC method that made it and the family of its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    /// The method whose call made it.
    pub method: MethodId,
    /// Its family.
    pub family: Family,
}

/// One backend's calls and reconnects.
#[derive(Debug)]
pub struct BackendMetrics {
    enabled: AtomicBool,
    ops: Box<[[Lazy<8>; 2]]>,
    reconnects: AtomicU64,
}

impl Default for BackendMetrics {
    fn default() -> Self {
        Self {
            enabled: AtomicBool::new(false),
            ops: (0..methods().len()).map(|_| Default::default()).collect(),
            reconnects: AtomicU64::new(0),
        }
    }
}

impl BackendMetrics {
    /// Starts recording (the proxy does when metrics are served).
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::Relaxed);
    }

    /// Whether calls are recorded.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Records one call.
    pub fn observe(&self, op: Operation, outcome: Outcome, elapsed: Duration) {
        let row = &self.ops[usize::from(op.method).min(self.ops.len() - 1)];
        row[op.family as usize]
            .get(outcome as usize)
            .observe(elapsed);
    }

    /// The backend answered a ping after an outage.
    pub fn reconnected(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }
}

/// Everything a scrape reads.
#[derive(Debug)]
pub struct Sources {
    /// The namespaces and backends.
    pub router: std::sync::Arc<crate::router::LiveRouter>,
    /// The proxy's own cells.
    pub proxy: std::sync::Arc<ProxyMetrics>,
    /// The transport's limit counters.
    pub transport: std::sync::Arc<crate::server::counters::TransportCounters>,
    /// The guard, with its authentication and authorization counters.
    pub guard: std::sync::Arc<crate::auth::layer::Guard>,
    /// The queue deliveries consumers hold.
    pub deliveries: std::sync::Arc<crate::patterns::queue::deliveries::Deliveries>,
    /// The tracer, when traces are on.
    pub tracer: Option<std::sync::Arc<trace::Tracer>>,
}

/// The proxy's own state, beside the per-namespace and per-backend cells.
#[derive(Debug)]
pub struct ProxyMetrics {
    /// Calls that named no configured namespace (or none at all: health, reflection, Admin).
    pub unrouted: std::sync::Arc<NamespaceMetrics>,
    /// Whether the proxy is draining.
    pub draining: AtomicBool,
    /// The config's generation: 1 at start, one more for each reload that took.
    pub generation: AtomicU64,
    /// Reloads applied.
    pub reloads_applied: AtomicU64,
    /// Reloads refused.
    pub reloads_refused: AtomicU64,
}

impl Default for ProxyMetrics {
    fn default() -> Self {
        Self {
            unrouted: std::sync::Arc::new(NamespaceMetrics::new("", "")),
            draining: AtomicBool::new(false),
            generation: AtomicU64::new(1),
            reloads_applied: AtomicU64::new(0),
            reloads_refused: AtomicU64::new(0),
        }
    }
}
