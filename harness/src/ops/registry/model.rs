//! The Multicast Registry steps of the scenario model: register, heartbeat, unregister, enumerate
//! (every page), multicast with exact outcomes, and the named `listen` and `watch` streams that
//! `hear`, `events` and `close` work on. Parsed in `parse.rs`, printed in `print.rs`, executed by
//! `exec.rs` (all in this folder).

use crate::ops::messaging::model::Caller;
use crate::scenario::code::StatusCode;
use crate::scenario::model::Template;
use prism_proto::filter::v1::Filter;
use prism_runtime::patterns::capability::Capability;
use std::collections::BTreeMap;
use std::time::Duration;

/// The registry step names.
pub const REG_STEPS: [&str; 10] = [
    "register",
    "heartbeat",
    "unregister",
    "enumerate",
    "multicast",
    "listen",
    "watch",
    "hear",
    "events",
    "close",
];

/// What a registry call must return; unset fields are not checked (a call without `error` must
/// succeed).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RegExpect {
    /// The call fails with this code.
    pub error: Option<StatusCode>,
    /// The error message contains this.
    pub message_contains: Option<String>,
    /// Register: whether it replaced an existing registration.
    pub replaced: Option<bool>,
    /// Unregister: whether the identity was registered.
    pub existed: Option<bool>,
    /// Enumerate: every identity over all pages, in order.
    pub identities: Option<Vec<Template>>,
    /// Enumerate: how many pages the walk took.
    pub pages: Option<u64>,
    /// Multicast: the identities that got the message, in identity order.
    pub delivered_to: Option<Vec<Template>>,
    /// Multicast: the identities that did not, in identity order.
    pub failed_to: Option<Vec<Template>>,
}

/// One expected Watch event: its kind (`present`, `synced`, `registered`, …) and identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventSpec {
    /// The kind, lower case.
    pub kind: String,
    /// The identity (`None` for `synced`).
    pub identity: Option<Template>,
}

/// One registry step.
#[derive(Clone, Debug, PartialEq)]
pub enum RegStep {
    /// Register an identity.
    Register {
        /// The identity.
        identity: Template,
        /// Its metadata.
        metadata: BTreeMap<String, Template>,
        /// Time to live (0: none).
        ttl_ms: u64,
        /// Replace an existing registration.
        replace: bool,
        /// Namespace and token.
        caller: Caller,
        /// Expected outcome.
        expect: RegExpect,
    },
    /// Extend an identity's time to live.
    Heartbeat {
        /// The identity.
        identity: Template,
        /// The new time to live.
        ttl_ms: u64,
        /// Namespace and token.
        caller: Caller,
        /// Expected outcome.
        expect: RegExpect,
    },
    /// Remove an identity.
    Unregister {
        /// The identity.
        identity: Template,
        /// Namespace and token.
        caller: Caller,
        /// Expected outcome.
        expect: RegExpect,
    },
    /// Walk every page of Enumerate.
    Enumerate {
        /// The filter.
        filter: Filter,
        /// Page size (0: the proxy's default).
        limit: u64,
        /// Namespace and token.
        caller: Caller,
        /// Expected outcome.
        expect: RegExpect,
    },
    /// Multicast a text payload.
    Multicast {
        /// The filter.
        filter: Filter,
        /// The payload.
        payload: Template,
        /// Namespace and token.
        caller: Caller,
        /// Expected outcome.
        expect: RegExpect,
    },
    /// Open a Listen stream as a named handle.
    Listen {
        /// The identity.
        identity: Template,
        /// Handle name.
        name: String,
        /// Namespace and token.
        caller: Caller,
        /// Expected outcome of opening it.
        expect: RegExpect,
    },
    /// Open a Watch stream as a named handle.
    Watch {
        /// The filter.
        filter: Filter,
        /// Handle name.
        name: String,
        /// Namespace and token.
        caller: Caller,
        /// Expected outcome of opening it.
        expect: RegExpect,
    },
    /// A listener receives exactly these payloads next, in order.
    Hear {
        /// The listener handle.
        from: String,
        /// The payloads.
        payloads: Vec<Template>,
        /// How long to wait for them.
        within: Duration,
    },
    /// A watcher receives exactly these events next, in order.
    Events {
        /// The watch handle.
        from: String,
        /// The events.
        events: Vec<EventSpec>,
        /// How long to wait for them.
        within: Duration,
    },
    /// Close a listener or watcher (as a client disconnecting).
    Close {
        /// The handle.
        handle: String,
    },
}

impl RegStep {
    /// The step's YAML name.
    pub fn name(&self) -> &'static str {
        match self {
            RegStep::Register { .. } => "register",
            RegStep::Heartbeat { .. } => "heartbeat",
            RegStep::Unregister { .. } => "unregister",
            RegStep::Enumerate { .. } => "enumerate",
            RegStep::Multicast { .. } => "multicast",
            RegStep::Listen { .. } => "listen",
            RegStep::Watch { .. } => "watch",
            RegStep::Hear { .. } => "hear",
            RegStep::Events { .. } => "events",
            RegStep::Close { .. } => "close",
        }
    }

    /// The namespace and token of a call step.
    pub fn caller(&self) -> Option<&Caller> {
        match self {
            RegStep::Register { caller, .. }
            | RegStep::Heartbeat { caller, .. }
            | RegStep::Unregister { caller, .. }
            | RegStep::Enumerate { caller, .. }
            | RegStep::Multicast { caller, .. }
            | RegStep::Listen { caller, .. }
            | RegStep::Watch { caller, .. } => Some(caller),
            RegStep::Hear { .. } | RegStep::Events { .. } | RegStep::Close { .. } => None,
        }
    }

    /// Capabilities the step's call needs.
    pub fn needs(&self) -> Vec<Capability> {
        match self {
            RegStep::Register { .. }
            | RegStep::Heartbeat { .. }
            | RegStep::Unregister { .. }
            | RegStep::Enumerate { .. } => vec![Capability::RegistryBasic],
            RegStep::Multicast { .. } | RegStep::Listen { .. } => {
                vec![Capability::RegistryMulticast]
            }
            RegStep::Watch { .. } => vec![Capability::RegistryWatch],
            RegStep::Hear { .. } | RegStep::Events { .. } | RegStep::Close { .. } => Vec::new(),
        }
    }
}
