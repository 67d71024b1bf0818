//! The KeyValue steps of the scenario model: an operation, its namespace and token, and what it
//! must return.

use crate::scenario::code::StatusCode;
use crate::scenario::model::{NamespaceRef, NumExpect, Template, ValueSpec, Via};
use prism_runtime::patterns::capability::Capability;

/// KeyValue step names, as written in YAML.
pub const OPS: [&str; 10] = [
    "set",
    "get",
    "delete",
    "exists",
    "expire",
    "scan",
    "scan_all",
    "batch_set",
    "batch_get",
    "batch_delete",
];

/// An op step.
#[derive(Clone, Debug)]
pub struct OpStep {
    /// The operation.
    pub op: Op,
    /// Which namespace it addresses.
    pub namespace: NamespaceRef,
    /// Which minted token the call carries (`None`: the run's default token).
    pub token: Option<String>,
    /// Which proxy the call goes through.
    pub via: Via,
    /// The deadline the call carries (`grpc-timeout`), in ms.
    pub deadline_ms: Option<u64>,
    /// What must come back; `None` means "must succeed".
    pub expect: Option<Expect>,
}

/// One BatchSet entry.
#[derive(Clone, Debug)]
pub struct BatchEntry {
    /// The key.
    pub key: Template,
    /// The value.
    pub value: ValueSpec,
    /// Expiry in ms (0 = none).
    pub ttl_ms: u64,
}

/// KeyValue operations.
#[derive(Clone, Debug)]
pub enum Op {
    /// `Set`.
    Set {
        /// Key.
        key: Template,
        /// Value.
        value: ValueSpec,
        /// TTL in ms.
        ttl_ms: u64,
        /// Only if absent.
        if_absent: bool,
        /// Only at this version (number or template).
        if_version: Option<Template>,
    },
    /// `Get`.
    Get {
        /// Key.
        key: Template,
    },
    /// `Delete`.
    Delete {
        /// Key.
        key: Template,
    },
    /// `Exists`.
    Exists {
        /// Key.
        key: Template,
    },
    /// `Expire`.
    Expire {
        /// Key.
        key: Template,
        /// New TTL (0 = persist).
        ttl_ms: u64,
    },
    /// One `Scan` page.
    Scan {
        /// Prefix.
        prefix: Template,
        /// Cursor (template, usually `${c}`).
        cursor: Option<Template>,
        /// Page size.
        limit: u64,
        /// Leave values out.
        keys_only: bool,
    },
    /// Every `Scan` page until done.
    ScanAll {
        /// Prefix.
        prefix: Template,
        /// Page size.
        limit: u64,
        /// Leave values out.
        keys_only: bool,
    },
    /// `BatchSet`.
    BatchSet {
        /// Entries.
        entries: Vec<BatchEntry>,
    },
    /// `BatchGet`.
    BatchGet {
        /// Keys.
        keys: Vec<Template>,
    },
    /// `BatchDelete`.
    BatchDelete {
        /// Keys.
        keys: Vec<Template>,
    },
}

impl Op {
    /// The op's name as written in YAML.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Set { .. } => "set",
            Op::Get { .. } => "get",
            Op::Delete { .. } => "delete",
            Op::Exists { .. } => "exists",
            Op::Expire { .. } => "expire",
            Op::Scan { .. } => "scan",
            Op::ScanAll { .. } => "scan_all",
            Op::BatchSet { .. } => "batch_set",
            Op::BatchGet { .. } => "batch_get",
            Op::BatchDelete { .. } => "batch_delete",
        }
    }

    /// Capabilities a backend needs to serve this op as written.
    pub fn needs(&self) -> Vec<Capability> {
        match self {
            Op::Set {
                ttl_ms,
                if_absent,
                if_version,
                ..
            } => {
                let mut caps = vec![Capability::KvBasic];
                if *ttl_ms > 0 {
                    caps.push(Capability::KvTtl);
                }
                if *if_absent || if_version.is_some() {
                    caps.push(Capability::KvCas);
                }
                caps
            }
            Op::Get { .. } | Op::Delete { .. } | Op::Exists { .. } => vec![Capability::KvBasic],
            Op::Expire { .. } => vec![Capability::KvTtl],
            Op::Scan { .. } | Op::ScanAll { .. } => vec![Capability::KvScan],
            Op::BatchSet { entries } => {
                let mut caps = vec![Capability::KvBatch];
                if entries.iter().any(|e| e.ttl_ms > 0) {
                    caps.push(Capability::KvTtl);
                }
                caps
            }
            Op::BatchGet { .. } | Op::BatchDelete { .. } => vec![Capability::KvBatch],
        }
    }
}

/// What an op must return. Which fields apply depends on the op (checked by the parser).
#[derive(Clone, Debug, Default)]
pub struct Expect {
    /// The call must fail with this code.
    pub error: Option<StatusCode>,
    /// The error message must contain this.
    pub message_contains: Option<String>,
    /// get: found.
    pub found: Option<bool>,
    /// get: exact value.
    pub value: Option<ValueSpec>,
    /// get: value is one of these.
    pub value_in: Vec<ValueSpec>,
    /// set/get: version.
    pub version: Option<NumExpect>,
    /// get: remaining TTL.
    pub ttl_ms: Option<NumExpect>,
    /// delete: deleted.
    pub deleted: Option<bool>,
    /// batch_delete: how many were deleted.
    pub deleted_count: Option<NumExpect>,
    /// exists: exists.
    pub exists: Option<bool>,
    /// expire: updated.
    pub updated: Option<bool>,
    /// scan/scan_all: exact keys in order.
    pub keys: Option<Vec<Template>>,
    /// scan/scan_all: values aligned with keys.
    pub values: Option<Vec<ValueSpec>>,
    /// scan/scan_all/batch_set: item count.
    pub count: Option<NumExpect>,
    /// scan: whether `next_cursor` is empty.
    pub done: Option<bool>,
    /// scan: save `next_cursor` under this name.
    pub save_cursor: Option<String>,
    /// batch_get: per-key expectations.
    pub results: Option<Vec<Expect>>,
}
