//! Capability names: what a backend adapter declares it can do, per pattern.

use super::Pattern;
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
    /// Acknowledged writes survive a proxy restart and a backend restart (a crash of its process).
    #[serde(rename = "keyvalue.durable")]
    KvDurable,
    /// Publish and Subscribe: every live subscriber gets every later message.
    #[serde(rename = "pubsub.basic")]
    PubSubBasic,
    /// One publisher's messages reach each subscriber in publish order, per topic.
    #[serde(rename = "pubsub.ordered")]
    PubSubOrdered,
    /// Enqueue, Consume, Ack.
    #[serde(rename = "queue.basic")]
    QueueBasic,
    /// Nack (with or without a requeue delay), visibility timeouts and redelivery of what a
    /// finished stream held.
    #[serde(rename = "queue.redelivery")]
    QueueRedelivery,
    /// Several consumer groups, each getting every message.
    #[serde(rename = "queue.groups")]
    QueueGroups,
    /// Messages that fail `max_attempts` times move to `<queue>.dlq`.
    #[serde(rename = "queue.dead_letter")]
    QueueDeadLetter,
    /// Enqueue with `delay_ms`.
    #[serde(rename = "queue.delay")]
    QueueDelay,
    /// One consumer with `max_in_flight: 1` sees enqueue order.
    #[serde(rename = "queue.ordered")]
    QueueOrdered,
    /// Enqueued messages survive a proxy restart and a backend restart.
    #[serde(rename = "queue.durable")]
    QueueDurable,
    /// Register, Heartbeat, Unregister, Enumerate (the registry slot's KeyValue).
    #[serde(rename = "multicast_registry.basic")]
    RegistryBasic,
    /// Listen and Multicast (the messaging slot's PubSub).
    #[serde(rename = "multicast_registry.multicast")]
    RegistryMulticast,
    /// Watch (the messaging slot's PubSub carries the registry's events).
    #[serde(rename = "multicast_registry.watch")]
    RegistryWatch,
    /// Deliver, Get, Delete (the storage slot's KeyValue).
    #[serde(rename = "mailbox.basic")]
    MailboxBasic,
    /// Query by header filter and time range, newest first.
    #[serde(rename = "mailbox.query")]
    MailboxQuery,
    /// The namespace stores what a topic of its messaging slot carries (`source:`).
    #[serde(rename = "mailbox.source")]
    MailboxSource,
}

impl Capability {
    /// Every capability, in a stable order.
    pub const ALL: [Capability; 21] = [
        Capability::KvBasic,
        Capability::KvTtl,
        Capability::KvScan,
        Capability::KvBatch,
        Capability::KvCas,
        Capability::KvDurable,
        Capability::PubSubBasic,
        Capability::PubSubOrdered,
        Capability::QueueBasic,
        Capability::QueueRedelivery,
        Capability::QueueGroups,
        Capability::QueueDeadLetter,
        Capability::QueueDelay,
        Capability::QueueOrdered,
        Capability::QueueDurable,
        Capability::RegistryBasic,
        Capability::RegistryMulticast,
        Capability::RegistryWatch,
        Capability::MailboxBasic,
        Capability::MailboxQuery,
        Capability::MailboxSource,
    ];

    /// The wire name, e.g. `keyvalue.ttl`.
    pub fn name(self) -> &'static str {
        match self {
            Capability::KvBasic => "keyvalue.basic",
            Capability::KvTtl => "keyvalue.ttl",
            Capability::KvScan => "keyvalue.scan",
            Capability::KvBatch => "keyvalue.batch",
            Capability::KvCas => "keyvalue.cas",
            Capability::KvDurable => "keyvalue.durable",
            Capability::PubSubBasic => "pubsub.basic",
            Capability::PubSubOrdered => "pubsub.ordered",
            Capability::QueueBasic => "queue.basic",
            Capability::QueueRedelivery => "queue.redelivery",
            Capability::QueueGroups => "queue.groups",
            Capability::QueueDeadLetter => "queue.dead_letter",
            Capability::QueueDelay => "queue.delay",
            Capability::QueueOrdered => "queue.ordered",
            Capability::QueueDurable => "queue.durable",
            Capability::RegistryBasic => "multicast_registry.basic",
            Capability::RegistryMulticast => "multicast_registry.multicast",
            Capability::RegistryWatch => "multicast_registry.watch",
            Capability::MailboxBasic => "mailbox.basic",
            Capability::MailboxQuery => "mailbox.query",
            Capability::MailboxSource => "mailbox.source",
        }
    }

    /// The pattern the capability belongs to.
    pub fn pattern(self) -> Pattern {
        match self {
            Capability::KvBasic
            | Capability::KvTtl
            | Capability::KvScan
            | Capability::KvBatch
            | Capability::KvCas
            | Capability::KvDurable => Pattern::Keyvalue,
            Capability::PubSubBasic | Capability::PubSubOrdered => Pattern::Pubsub,
            Capability::QueueBasic
            | Capability::QueueRedelivery
            | Capability::QueueGroups
            | Capability::QueueDeadLetter
            | Capability::QueueDelay
            | Capability::QueueOrdered
            | Capability::QueueDurable => Pattern::Queue,
            Capability::RegistryBasic
            | Capability::RegistryMulticast
            | Capability::RegistryWatch => Pattern::MulticastRegistry,
            Capability::MailboxBasic | Capability::MailboxQuery | Capability::MailboxSource => {
                Pattern::Mailbox
            }
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
    fn names_round_trip_and_carry_their_pattern() {
        for c in Capability::ALL {
            assert_eq!(Capability::from_name(c.name()), Some(c));
            assert!(
                c.name().starts_with(&format!("{}.", c.pattern().name())),
                "{c} belongs to {}",
                c.pattern().name()
            );
        }
        assert_eq!(Capability::from_name("keyvalue.nope"), None);
    }
}
