//! Authentication and authorization. A [`layer::AuthLayer`] in front of every service verifies the
//! bearer JWT ([`verify::Verifier`]) and checks the caller's permission on the namespace it addresses;
//! health and reflection stay open. Who may do what comes from [`Principal`] grants: the token's
//! `prism` claim and the config's rules.

pub mod cache;
pub mod config;
pub mod keys;
pub mod layer;
pub mod verify;

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// What a caller may do in a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// Reads: Get, Exists, Scan, BatchGet (and Subscribe, Consume for messaging patterns).
    Read,
    /// Writes: Set, Delete, Expire, BatchSet, BatchDelete (and Publish, Enqueue, Ack, Nack).
    Write,
    /// The Admin API for the namespace.
    Admin,
}

impl Permission {
    /// The permission's name.
    pub fn name(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Admin => "admin",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Permissions on the namespaces a pattern matches: an exact name, or a prefix glob ending in `*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// `orders` or `metrics-*` (`*` alone matches every namespace).
    pub pattern: String,
    /// What is allowed there.
    pub permissions: BTreeSet<Permission>,
}

impl Grant {
    /// Whether this grant covers `namespace`.
    pub fn matches(&self, namespace: &str) -> bool {
        match self.pattern.strip_suffix('*') {
            Some(prefix) => namespace.starts_with(prefix),
            None => self.pattern == namespace,
        }
    }
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The token's subject (`anonymous` when authentication is off).
    pub subject: String,
    /// Everything the caller may do.
    pub grants: Vec<Grant>,
    /// Unix seconds after which the caller's token is no longer accepted (`exp` plus the leeway);
    /// long-lived streams end then. `None` when authentication is off.
    pub valid_until: Option<u64>,
}

impl Principal {
    /// The caller when `auth.mode: none`: everything everywhere.
    pub fn unauthenticated() -> Self {
        Self {
            subject: "anonymous".into(),
            grants: vec![Grant {
                pattern: "*".into(),
                permissions: [Permission::Read, Permission::Write, Permission::Admin].into(),
            }],
            valid_until: None,
        }
    }

    /// Whether the caller holds `permission` on `namespace`.
    pub fn allows(&self, namespace: &str, permission: Permission) -> bool {
        self.grants
            .iter()
            .any(|g| g.matches(namespace) && g.permissions.contains(&permission))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(pattern: &str, perms: &[Permission]) -> Grant {
        Grant {
            pattern: pattern.into(),
            permissions: perms.iter().copied().collect(),
        }
    }

    #[test]
    fn exact_and_prefix_globs() {
        let p = Principal {
            subject: "s".into(),
            grants: vec![
                grant("orders", &[Permission::Read, Permission::Write]),
                grant("metrics-*", &[Permission::Read]),
            ],
            valid_until: None,
        };
        assert!(p.allows("orders", Permission::Write));
        assert!(!p.allows("orders2", Permission::Read));
        assert!(p.allows("metrics-cpu", Permission::Read));
        assert!(!p.allows("metrics-cpu", Permission::Write));
        assert!(!p.allows("metrics", Permission::Read));
        assert!(!p.allows("orders", Permission::Admin));
        assert!(Principal::unauthenticated().allows("anything", Permission::Admin));
    }
}
