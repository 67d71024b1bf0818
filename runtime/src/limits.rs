//! Per-namespace request limits and their defaults, for every pattern.

use serde::{Deserialize, Serialize};

/// Resolved limits for one namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest key, in bytes (keys longer are INVALID_ARGUMENT).
    pub max_key_bytes: usize,
    /// Largest value, in bytes (values larger are RESOURCE_EXHAUSTED).
    pub max_value_bytes: usize,
    /// Most entries or keys in one batch call (more is RESOURCE_EXHAUSTED).
    pub max_batch_size: usize,
    /// Largest Scan page (a larger `limit` is RESOURCE_EXHAUSTED).
    pub max_scan_page: usize,
    /// Longest topic, queue or group name, in bytes (longer is INVALID_ARGUMENT).
    pub max_name_bytes: usize,
    /// Most headers on one message (more is RESOURCE_EXHAUSTED).
    pub max_message_headers: usize,
    /// Most bytes of header keys and values on one message (more is RESOURCE_EXHAUSTED).
    pub max_message_header_bytes: usize,
    /// Most live Subscribe and Consume streams in the namespace (more is RESOURCE_EXHAUSTED).
    pub max_streams: usize,
    /// Most live streams one caller (a token's subject) may hold in the namespace, so one client
    /// cannot take every `max_streams` slot (more is RESOURCE_EXHAUSTED; not applied with
    /// `auth.mode: none`, where callers have no identity).
    pub max_streams_per_subject: usize,
    /// Messages a subscriber's buffer holds; when it is full, later messages are dropped and counted.
    pub subscriber_buffer: usize,
    /// Bytes of payload and headers a subscriber's buffer holds; a message that would exceed it is
    /// dropped and counted like one over `subscriber_buffer` (one message larger than this passes
    /// when the buffer is empty).
    pub subscriber_buffer_bytes: usize,
    /// Deliveries of one message to one group before it moves to `<queue>.dlq`.
    pub max_attempts: u32,
    /// Most bytes of keys and values in one registration's metadata (more is INVALID_ARGUMENT).
    pub max_metadata_bytes: usize,
    /// Most targets one Multicast may address (more is RESOURCE_EXHAUSTED; narrow the filter).
    pub max_fanout: usize,
    /// Most clauses (comparisons, `exists`, and each `all`/`any`/`not`) in one filter.
    pub max_filter_clauses: usize,
    /// Deepest nesting of `all`/`any`/`not` in one filter.
    pub max_filter_depth: usize,
    /// How long a mailbox keeps a message, in milliseconds (older ones are purged and no longer
    /// read).
    pub retention_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_key_bytes: 1024,
            max_value_bytes: 4 * 1024 * 1024,
            max_batch_size: 1000,
            max_scan_page: 1000,
            max_name_bytes: 255,
            max_message_headers: 64,
            max_message_header_bytes: 16 * 1024,
            max_streams: 1024,
            max_streams_per_subject: 256,
            subscriber_buffer: 1024,
            subscriber_buffer_bytes: 16 * 1024 * 1024,
            max_attempts: 5,
            max_metadata_bytes: 4096,
            max_fanout: 10_000,
            max_filter_clauses: 64,
            max_filter_depth: 8,
            retention_ms: 7 * 24 * 3600 * 1000,
        }
    }
}

/// Room for framing and metadata beside the largest value in one gRPC message.
pub const MESSAGE_OVERHEAD: usize = 1024 * 1024;

impl Limits {
    /// The largest message (request or response) a namespace sends or accepts.
    pub fn max_message_bytes(&self) -> usize {
        self.max_value_bytes.saturating_add(MESSAGE_OVERHEAD)
    }
}

/// Scan page size used when a request leaves `limit` at 0.
pub const DEFAULT_SCAN_PAGE: usize = 100;

/// Limits as written in the config; unset fields keep their defaults.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// See [`Limits::max_key_bytes`].
    pub max_key_bytes: Option<usize>,
    /// See [`Limits::max_value_bytes`].
    pub max_value_bytes: Option<usize>,
    /// See [`Limits::max_batch_size`].
    pub max_batch_size: Option<usize>,
    /// See [`Limits::max_scan_page`].
    pub max_scan_page: Option<usize>,
    /// See [`Limits::max_name_bytes`].
    pub max_name_bytes: Option<usize>,
    /// See [`Limits::max_message_headers`].
    pub max_message_headers: Option<usize>,
    /// See [`Limits::max_message_header_bytes`].
    pub max_message_header_bytes: Option<usize>,
    /// See [`Limits::max_streams`].
    pub max_streams: Option<usize>,
    /// See [`Limits::max_streams_per_subject`].
    pub max_streams_per_subject: Option<usize>,
    /// See [`Limits::subscriber_buffer`].
    pub subscriber_buffer: Option<usize>,
    /// See [`Limits::subscriber_buffer_bytes`].
    pub subscriber_buffer_bytes: Option<usize>,
    /// See [`Limits::max_attempts`].
    pub max_attempts: Option<u32>,
    /// See [`Limits::max_metadata_bytes`].
    pub max_metadata_bytes: Option<usize>,
    /// See [`Limits::max_fanout`].
    pub max_fanout: Option<usize>,
    /// See [`Limits::max_filter_clauses`].
    pub max_filter_clauses: Option<usize>,
    /// See [`Limits::max_filter_depth`].
    pub max_filter_depth: Option<usize>,
    /// See [`Limits::retention_ms`].
    pub retention_ms: Option<u64>,
}

impl LimitsConfig {
    /// The names of the settings this config sets.
    pub fn set_names(&self) -> Vec<&'static str> {
        let set = [
            ("max_key_bytes", self.max_key_bytes.is_some()),
            ("max_value_bytes", self.max_value_bytes.is_some()),
            ("max_batch_size", self.max_batch_size.is_some()),
            ("max_scan_page", self.max_scan_page.is_some()),
            ("max_name_bytes", self.max_name_bytes.is_some()),
            ("max_message_headers", self.max_message_headers.is_some()),
            (
                "max_message_header_bytes",
                self.max_message_header_bytes.is_some(),
            ),
            ("max_streams", self.max_streams.is_some()),
            (
                "max_streams_per_subject",
                self.max_streams_per_subject.is_some(),
            ),
            ("subscriber_buffer", self.subscriber_buffer.is_some()),
            (
                "subscriber_buffer_bytes",
                self.subscriber_buffer_bytes.is_some(),
            ),
            ("max_attempts", self.max_attempts.is_some()),
            ("max_metadata_bytes", self.max_metadata_bytes.is_some()),
            ("max_fanout", self.max_fanout.is_some()),
            ("max_filter_clauses", self.max_filter_clauses.is_some()),
            ("max_filter_depth", self.max_filter_depth.is_some()),
            ("retention_ms", self.retention_ms.is_some()),
        ];
        set.into_iter()
            .filter(|(_, s)| *s)
            .map(|(n, _)| n)
            .collect()
    }

    /// Applies the configured fields over `base`.
    pub fn resolve(&self, base: Limits) -> Limits {
        Limits {
            max_key_bytes: self.max_key_bytes.unwrap_or(base.max_key_bytes),
            max_value_bytes: self.max_value_bytes.unwrap_or(base.max_value_bytes),
            max_batch_size: self.max_batch_size.unwrap_or(base.max_batch_size),
            max_scan_page: self.max_scan_page.unwrap_or(base.max_scan_page),
            max_name_bytes: self.max_name_bytes.unwrap_or(base.max_name_bytes),
            max_message_headers: self.max_message_headers.unwrap_or(base.max_message_headers),
            max_message_header_bytes: self
                .max_message_header_bytes
                .unwrap_or(base.max_message_header_bytes),
            max_streams: self.max_streams.unwrap_or(base.max_streams),
            max_streams_per_subject: self
                .max_streams_per_subject
                .unwrap_or(base.max_streams_per_subject)
                .max(1),
            subscriber_buffer: self
                .subscriber_buffer
                .unwrap_or(base.subscriber_buffer)
                .max(1),
            subscriber_buffer_bytes: self
                .subscriber_buffer_bytes
                .unwrap_or(base.subscriber_buffer_bytes)
                .max(1),
            max_attempts: self.max_attempts.unwrap_or(base.max_attempts).max(1),
            max_metadata_bytes: self.max_metadata_bytes.unwrap_or(base.max_metadata_bytes),
            max_fanout: self.max_fanout.unwrap_or(base.max_fanout).max(1),
            max_filter_clauses: self
                .max_filter_clauses
                .unwrap_or(base.max_filter_clauses)
                .max(1),
            max_filter_depth: self
                .max_filter_depth
                .unwrap_or(base.max_filter_depth)
                .max(1),
            retention_ms: self.retention_ms.unwrap_or(base.retention_ms).max(1),
        }
    }
}
