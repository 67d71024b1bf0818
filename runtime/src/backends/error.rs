//! The error every adapter of every pattern returns; each pattern service maps it to a gRPC status.

/// Errors an adapter returns; the service maps each to a gRPC status.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `if_absent` write on a key that exists.
    #[error("key {key:?} already exists")]
    AlreadyExists {
        /// The key.
        key: String,
    },
    /// `if_version` write whose expected version does not match.
    #[error("key {key:?} is at version {current}, not the expected {expected}", current = current.map_or("absent".to_string(), |v| v.to_string()))]
    VersionMismatch {
        /// The key.
        key: String,
        /// The version the caller expected.
        expected: u64,
        /// The current version, `None` if the key is absent.
        current: Option<u64>,
    },
    /// The answer would exceed the response size limit.
    #[error(
        "the values of these keys add up to more than the response limit of {limit} bytes (max_value_bytes + 1 MiB); ask for fewer keys"
    )]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The request is over a limit of the backend itself (e.g. NATS's `max_payload`).
    #[error("{0}")]
    OverBackendLimit(String),
    /// The backend could not be reached or timed out; the call may be retried.
    #[error("backend unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Anything else the backend reported.
    #[error("backend error: {0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Result type of adapter calls.
pub type StoreResult<T> = Result<T, StoreError>;
