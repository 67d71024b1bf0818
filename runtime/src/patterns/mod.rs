//! The patterns the proxy serves and the one registry that describes them: per pattern its gRPC
//! service, the permission each method needs, its streaming methods, its capabilities (each
//! [`Capability`] names its pattern), its backend slots and the namespace settings that apply. Server
//! wiring, authorization (fail-closed for methods not listed), config validation and the harness all
//! read [`REGISTRY`], so adding a pattern starts here.

pub mod call;
pub mod capability;
pub mod filter;
pub mod keyvalue;
pub mod mailbox;
pub mod names;
pub mod pubsub;
pub mod queue;
pub mod registry;
pub mod stream;

use crate::auth::Permission;
use capability::Capability;
use serde::{Deserialize, Serialize};

/// Which pattern API a namespace serves.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Pattern {
    /// `prism.keyvalue.v1.KeyValue`.
    Keyvalue,
    /// `prism.pubsub.v1.PubSub`.
    Pubsub,
    /// `prism.queue.v1.Queue`.
    Queue,
    /// `prism.registry.v1.MulticastRegistry`: a composite of a KeyValue and a PubSub backend.
    #[serde(rename = "multicast_registry")]
    MulticastRegistry,
    /// `prism.mailbox.v1.Mailbox`: a queryable inbox in a KeyValue backend.
    Mailbox,
}

impl Pattern {
    /// Every pattern, in registry order.
    pub const ALL: [Pattern; 5] = [
        Pattern::Keyvalue,
        Pattern::Pubsub,
        Pattern::Queue,
        Pattern::MulticastRegistry,
        Pattern::Mailbox,
    ];

    /// The pattern's name as used in configs, scenarios and the Admin API.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// Looks a pattern up by its name.
    pub fn from_name(name: &str) -> Option<Pattern> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The pattern's registry entry.
    pub fn spec(self) -> &'static PatternSpec {
        REGISTRY
            .iter()
            .find(|s| s.pattern == self)
            .expect("every pattern has a registry entry")
    }

    /// The capabilities of this pattern, in a stable order.
    pub fn capabilities(self) -> impl Iterator<Item = Capability> {
        Capability::ALL
            .into_iter()
            .filter(move |c| c.pattern() == self)
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A role a backend plays in a namespace. The plain patterns have one slot, `backend` (written
/// `backend: NAME`); a composite pattern names a backend per slot (`slots: { registry: NAME,
/// messaging: NAME }`).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    /// The one backend of a plain pattern.
    Backend,
    /// Where a Multicast Registry keeps its registrations (a KeyValue backend).
    Registry,
    /// What carries a composite's messages and events (a PubSub backend); a Mailbox's `source:`
    /// topic.
    Messaging,
    /// Where a Mailbox keeps its messages (a KeyValue backend).
    Storage,
}

impl Slot {
    /// The slot's name in configs and the Admin API.
    pub fn name(self) -> &'static str {
        match self {
            Slot::Backend => "backend",
            Slot::Registry => "registry",
            Slot::Messaging => "messaging",
            Slot::Storage => "storage",
        }
    }
}

/// One backend slot of a pattern: the pattern its backend must offer, and the capabilities of
/// that pattern the composite relies on.
#[derive(Debug)]
pub struct SlotSpec {
    /// The slot.
    pub slot: Slot,
    /// The pattern the slot's backend must offer.
    pub offers: Pattern,
    /// Capabilities of that pattern the slot's backend must declare.
    pub needs: &'static [Capability],
    /// Filled only by `slots:` (never by the `backend:` shorthand), and only when a feature of the
    /// namespace uses it (a Mailbox's `source:`).
    pub optional: bool,
}

/// One gRPC method of a pattern.
#[derive(Debug)]
pub struct MethodSpec {
    /// The method name, e.g. `Get`.
    pub name: &'static str,
    /// The permission it needs on the namespace.
    pub permission: Permission,
    /// Whether it answers with a long-lived server stream.
    pub streaming: bool,
}

const fn unary(name: &'static str, permission: Permission) -> MethodSpec {
    MethodSpec {
        name,
        permission,
        streaming: false,
    }
}

const fn stream(name: &'static str, permission: Permission) -> MethodSpec {
    MethodSpec {
        name,
        permission,
        streaming: true,
    }
}

/// What the proxy knows about one pattern.
#[derive(Debug)]
pub struct PatternSpec {
    /// The pattern.
    pub pattern: Pattern,
    /// Its name in configs and scenarios.
    pub name: &'static str,
    /// Its fully qualified gRPC service name.
    pub service: &'static str,
    /// Every method; a method not listed is refused.
    pub methods: &'static [MethodSpec],
    /// Its backend slots, the first being the one `backend:` names and errors name by default.
    pub slots: &'static [SlotSpec],
    /// The namespace settings (`limits:` keys) that apply to it; a namespace of this pattern
    /// setting another is a config error.
    pub settings: &'static [&'static str],
}

impl PatternSpec {
    /// The method named `name`, if the pattern has it.
    pub fn method(&self, name: &str) -> Option<&'static MethodSpec> {
        self.methods.iter().find(|m| m.name == name)
    }

    /// The spec of slot `slot`, if the pattern has it.
    pub fn slot(&self, slot: Slot) -> Option<&'static SlotSpec> {
        self.slots.iter().find(|s| s.slot == slot)
    }
}

/// The one slot of a plain pattern.
const fn plain(pattern: Pattern) -> [SlotSpec; 1] {
    [SlotSpec {
        slot: Slot::Backend,
        offers: pattern,
        needs: &[],
        optional: false,
    }]
}

/// What a composite's records slot needs of its KeyValue backend: records that expire, are
/// scanned in order and written conditionally.
const RECORDS: [Capability; 4] = [
    Capability::KvBasic,
    Capability::KvTtl,
    Capability::KvScan,
    Capability::KvCas,
];

/// The registry slot: records, plus several keys per call (the metadata index).
const REGISTRY_RECORDS: [Capability; 5] = [
    RECORDS[0],
    RECORDS[1],
    RECORDS[2],
    RECORDS[3],
    Capability::KvBatch,
];

/// A composite's slot that keeps records in a KeyValue backend offering `needs`.
const fn records(slot: Slot, needs: &'static [Capability]) -> SlotSpec {
    SlotSpec {
        slot,
        offers: Pattern::Keyvalue,
        needs,
        optional: false,
    }
}

/// A composite's `messaging` slot (a PubSub backend).
const fn messaging(optional: bool) -> SlotSpec {
    SlotSpec {
        slot: Slot::Messaging,
        offers: Pattern::Pubsub,
        needs: &[Capability::PubSubBasic],
        optional,
    }
}

use Permission::{Read, Write};

/// Every pattern the proxy serves.
pub static REGISTRY: [PatternSpec; 5] = [
    PatternSpec {
        pattern: Pattern::Keyvalue,
        name: "keyvalue",
        service: "prism.keyvalue.v1.KeyValue",
        methods: &[
            unary("Get", Read),
            unary("Exists", Read),
            unary("Scan", Read),
            unary("BatchGet", Read),
            unary("Set", Write),
            unary("Delete", Write),
            unary("Expire", Write),
            unary("BatchSet", Write),
            unary("BatchDelete", Write),
        ],
        slots: &plain(Pattern::Keyvalue),
        settings: &[
            "max_key_bytes",
            "max_value_bytes",
            "max_batch_size",
            "max_scan_page",
        ],
    },
    PatternSpec {
        pattern: Pattern::Pubsub,
        name: "pubsub",
        service: "prism.pubsub.v1.PubSub",
        methods: &[stream("Subscribe", Read), unary("Publish", Write)],
        slots: &plain(Pattern::Pubsub),
        settings: &[
            "max_name_bytes",
            "max_value_bytes",
            "max_message_headers",
            "max_message_header_bytes",
            "max_streams",
            "max_streams_per_subject",
            "subscriber_buffer",
            "subscriber_buffer_bytes",
        ],
    },
    PatternSpec {
        pattern: Pattern::Queue,
        name: "queue",
        service: "prism.queue.v1.Queue",
        methods: &[
            stream("Consume", Read),
            unary("Enqueue", Write),
            unary("Ack", Write),
            unary("Nack", Write),
        ],
        slots: &plain(Pattern::Queue),
        settings: &[
            "max_name_bytes",
            "max_value_bytes",
            "max_message_headers",
            "max_message_header_bytes",
            "max_streams",
            "max_streams_per_subject",
            "max_attempts",
        ],
    },
    PatternSpec {
        pattern: Pattern::MulticastRegistry,
        name: "multicast_registry",
        service: "prism.registry.v1.MulticastRegistry",
        methods: &[
            unary("Register", Write),
            unary("Heartbeat", Write),
            unary("Unregister", Write),
            unary("Enumerate", Read),
            unary("Multicast", Write),
            stream("Listen", Read),
            stream("Watch", Read),
        ],
        slots: &[records(Slot::Registry, &REGISTRY_RECORDS), messaging(false)],
        settings: &[
            "max_name_bytes",
            "max_value_bytes",
            "max_message_headers",
            "max_message_header_bytes",
            "max_scan_page",
            "max_streams",
            "max_streams_per_subject",
            "subscriber_buffer",
            "subscriber_buffer_bytes",
            "max_metadata_bytes",
            "max_fanout",
            "max_filter_clauses",
            "max_filter_depth",
        ],
    },
    PatternSpec {
        pattern: Pattern::Mailbox,
        name: "mailbox",
        service: "prism.mailbox.v1.Mailbox",
        methods: &[
            unary("Deliver", Write),
            unary("Query", Read),
            unary("Get", Read),
            unary("Delete", Write),
        ],
        slots: &[records(Slot::Storage, &RECORDS), messaging(true)],
        settings: &[
            "max_name_bytes",
            "max_value_bytes",
            "max_message_headers",
            "max_message_header_bytes",
            "max_scan_page",
            "max_batch_size",
            "max_filter_clauses",
            "max_filter_depth",
            "retention_ms",
        ],
    },
];

/// The pattern and method of a gRPC path `/package.Service/Method`, when a pattern serves it.
pub fn method_of(path: &str) -> Option<(&'static PatternSpec, &'static MethodSpec)> {
    let (service, method) = path.trim_start_matches('/').split_once('/')?;
    let spec = REGISTRY.iter().find(|s| s.service == service)?;
    Some((spec, spec.method(method)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_has_one_entry_and_capabilities() {
        for p in Pattern::ALL {
            assert_eq!(p.spec().pattern, p);
            assert_eq!(Pattern::from_name(p.name()), Some(p));
            assert!(
                p.capabilities().count() > 0,
                "{} has capabilities",
                p.name()
            );
        }
    }

    #[test]
    fn every_namespace_setting_belongs_to_some_pattern() {
        let all = crate::limits::LimitsConfig {
            max_key_bytes: Some(1),
            max_value_bytes: Some(1),
            max_batch_size: Some(1),
            max_scan_page: Some(1),
            max_name_bytes: Some(1),
            max_message_headers: Some(1),
            max_message_header_bytes: Some(1),
            max_streams: Some(1),
            max_streams_per_subject: Some(1),
            subscriber_buffer: Some(1),
            subscriber_buffer_bytes: Some(1),
            max_attempts: Some(1),
            max_metadata_bytes: Some(1),
            max_fanout: Some(1),
            max_filter_clauses: Some(1),
            max_filter_depth: Some(1),
            retention_ms: Some(1),
        };
        for setting in all.set_names() {
            assert!(
                REGISTRY.iter().any(|s| s.settings.contains(&setting)),
                "{setting} applies to no pattern"
            );
        }
    }

    #[test]
    fn paths_resolve_only_to_listed_methods() {
        let (spec, m) = method_of("/prism.queue.v1.Queue/Consume").expect("listed");
        assert_eq!(
            (spec.pattern, m.permission, m.streaming),
            (Pattern::Queue, Read, true)
        );
        assert!(method_of("/prism.queue.v1.Queue/Purge").is_none());
        assert!(method_of("/prism.pubsub.v1.PubSub").is_none());
        assert!(method_of("/nope.Nope/Get").is_none());
    }
}
