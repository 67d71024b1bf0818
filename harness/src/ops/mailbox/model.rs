//! The Mailbox steps of the scenario model: deliver (saving the id and time under a name), query
//! (every page, newest first), get_message and delete_messages. Parsed in `parse.rs`, printed in
//! `print.rs`, executed by `exec.rs` (all in this folder).

use crate::ops::messaging::model::Caller;
use crate::scenario::code::StatusCode;
use crate::scenario::model::Template;
use prism_proto::filter::v1::Filter;
use prism_runtime::patterns::capability::Capability;
use std::collections::BTreeMap;

/// The mailbox step names.
pub const MAIL_STEPS: [&str; 5] = [
    "deliver",
    "query",
    "get_message",
    "delete_messages",
    "source_publish",
];

/// What a mailbox call must return; unset fields are not checked (a call without `error` must
/// succeed).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MailExpect {
    /// The call fails with this code.
    pub error: Option<StatusCode>,
    /// The error message contains this.
    pub message_contains: Option<String>,
    /// Query: every payload over all pages, newest first; get_message: the one payload.
    pub payloads: Option<Vec<Template>>,
    /// Query: how many pages the walk took.
    pub pages: Option<u64>,
    /// get_message, and every message a query returns: these headers with these values.
    pub headers: Option<BTreeMap<String, Template>>,
    /// delete_messages: how many of the ids the mailbox held.
    pub deleted: Option<u64>,
}

/// One mailbox step.
#[derive(Clone, Debug, PartialEq)]
pub enum MailStep {
    /// Deliver a text payload.
    Deliver {
        /// The mailbox.
        mailbox: Template,
        /// The payload.
        payload: Template,
        /// Its headers.
        headers: BTreeMap<String, Template>,
        /// The id to store it under (`None`: the proxy assigns one).
        message_id: Option<Template>,
        /// Saves the id as `${NAME}` and the stored time (ms) as `${NAME_at}`.
        save: Option<String>,
        /// Namespace and token.
        caller: Caller,
        /// Expected outcome.
        expect: MailExpect,
    },
    /// Walk every page of a Query.
    Query {
        /// The mailbox.
        mailbox: Template,
        /// The header filter.
        filter: Filter,
        /// Lower time bound in ms (a template such as `${m2_at}`).
        since_ms: Option<Template>,
        /// Upper time bound in ms, exclusive.
        until_ms: Option<Template>,
        /// Page size (0: the proxy's default).
        limit: u64,
        /// Leave payloads out.
        headers_only: bool,
        /// Namespace and token.
        caller: Caller,
        /// Expected outcome.
        expect: MailExpect,
    },
    /// Read one message by id.
    Get {
        /// The mailbox.
        mailbox: Template,
        /// The id.
        message_id: Template,
        /// Namespace and token.
        caller: Caller,
        /// Expected outcome.
        expect: MailExpect,
    },
    /// Publish to the namespace's `source:` topic (through its companion PubSub namespace), with
    /// the mailbox named in the `x-mailbox` header.
    SourcePublish {
        /// The mailbox.
        mailbox: Template,
        /// The payload.
        payload: Template,
        /// Its headers.
        headers: BTreeMap<String, Template>,
        /// Token (the namespace is always the companion).
        caller: Caller,
        /// Expected outcome of the publish.
        expect: MailExpect,
    },
    /// Delete messages by id.
    Delete {
        /// The mailbox.
        mailbox: Template,
        /// The ids.
        message_ids: Vec<Template>,
        /// Namespace and token.
        caller: Caller,
        /// Expected outcome.
        expect: MailExpect,
    },
}

impl MailStep {
    /// The step's YAML name.
    pub fn name(&self) -> &'static str {
        match self {
            MailStep::Deliver { .. } => "deliver",
            MailStep::Query { .. } => "query",
            MailStep::Get { .. } => "get_message",
            MailStep::Delete { .. } => "delete_messages",
            MailStep::SourcePublish { .. } => "source_publish",
        }
    }

    /// The namespace and token of the step's call, and what it must return.
    pub fn call(&self) -> (&Caller, &MailExpect) {
        match self {
            MailStep::Deliver { caller, expect, .. }
            | MailStep::Query { caller, expect, .. }
            | MailStep::Get { caller, expect, .. }
            | MailStep::SourcePublish { caller, expect, .. }
            | MailStep::Delete { caller, expect, .. } => (caller, expect),
        }
    }

    /// The step's call and expectation, to change for a probe.
    pub fn call_mut(&mut self) -> (&mut Caller, &mut MailExpect) {
        match self {
            MailStep::Deliver { caller, expect, .. }
            | MailStep::Query { caller, expect, .. }
            | MailStep::Get { caller, expect, .. }
            | MailStep::SourcePublish { caller, expect, .. }
            | MailStep::Delete { caller, expect, .. } => (caller, expect),
        }
    }

    /// Capabilities the step's call needs (a publish to the source needs none of the mailbox's:
    /// `mailbox.source` is a property of the namespace).
    pub fn needs(&self) -> Vec<Capability> {
        match self {
            MailStep::Query { .. } => vec![Capability::MailboxQuery],
            MailStep::SourcePublish { .. } => Vec::new(),
            _ => vec![Capability::MailboxBasic],
        }
    }
}
