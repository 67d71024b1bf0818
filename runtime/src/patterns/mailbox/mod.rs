//! The Mailbox pattern: a durable, queryable inbox kept in the `storage` slot's KeyValue store —
//! messages delivered into named mailboxes with indexed headers, read back newest first by filter
//! and time range, fetched and deleted by id, and purged after the namespace's `retention_ms`.
//! Every proxy on the same storage backend sees the same mailboxes. With `source:` the namespace
//! also stores what a topic of its messaging slot carries (`source.rs`).

pub mod record;
pub mod service;
pub mod source;

pub use service::MailboxService;

use crate::patterns::capability::Capability;
use crate::patterns::{Pattern, Slot};
use crate::router::{RouteSlot, slot_ready};

/// What a Mailbox namespace offers over `slots`: `mailbox.basic` and `mailbox.query` when the
/// storage slot's backend declares every KeyValue capability the slot needs, and `mailbox.source`
/// when it also has a messaging slot (which it has only with `source:`) ready.
pub fn capabilities(slots: &[RouteSlot]) -> Vec<Capability> {
    let mut caps = Vec::new();
    if slot_ready(Pattern::Mailbox, slots, Slot::Storage) {
        caps.extend([Capability::MailboxBasic, Capability::MailboxQuery]);
        if slot_ready(Pattern::Mailbox, slots, Slot::Messaging) {
            caps.push(Capability::MailboxSource);
        }
    }
    caps
}
