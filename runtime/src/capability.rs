//! Capability names: what a backend adapter declares it can do, per pattern.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One capability a backend may declare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Capability {
    /// Get, Set, Delete, Exists.
    #[serde(rename = "keyvalue.basic")]
    KvBasic,
    /// Set with `ttl_ms`, Expire, remaining TTL on Get.
    #[serde(rename = "keyvalue.ttl")]
    KvTtl,
    /// Ordered prefix Scan with cursors.
    #[serde(rename = "keyvalue.scan")]
    KvScan,
    /// BatchSet, BatchGet, BatchDelete.
    #[serde(rename = "keyvalue.batch")]
    KvBatch,
    /// Set with `if_absent` / `if_version`.
    #[serde(rename = "keyvalue.cas")]
    KvCas,
}

impl Capability {
    /// Every capability, in a stable order.
    pub const ALL: [Capability; 5] = [
        Capability::KvBasic,
        Capability::KvTtl,
        Capability::KvScan,
        Capability::KvBatch,
        Capability::KvCas,
    ];

    /// The wire name, e.g. `keyvalue.ttl`.
    pub fn name(self) -> &'static str {
        match self {
            Capability::KvBasic => "keyvalue.basic",
            Capability::KvTtl => "keyvalue.ttl",
            Capability::KvScan => "keyvalue.scan",
            Capability::KvBatch => "keyvalue.batch",
            Capability::KvCas => "keyvalue.cas",
        }
    }

    /// Looks a capability up by its wire name.
    pub fn from_name(name: &str) -> Option<Capability> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in Capability::ALL {
            assert_eq!(Capability::from_name(c.name()), Some(c));
        }
        assert_eq!(Capability::from_name("keyvalue.nope"), None);
    }
}
