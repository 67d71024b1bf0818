//! The Mailbox pattern: a durable, queryable inbox kept in the `storage` slot's KeyValue store —
//! messages delivered into named mailboxes with indexed headers, read back newest first by filter
//! and time range, fetched and deleted by id, and purged after the namespace's `retention_ms`.
//! Every proxy on the same storage backend sees the same mailboxes.

pub mod record;
pub mod service;

pub use service::MailboxService;

use crate::patterns::capability::Capability;
use crate::patterns::{Pattern, Slot};
use crate::router::{RouteSlot, slot_ready};

/// What a Mailbox namespace offers over `slots`: `mailbox.basic` and `mailbox.query` when the
/// storage slot's backend declares every KeyValue capability the slot needs.
pub fn capabilities(slots: &[RouteSlot]) -> Vec<Capability> {
    if slot_ready(Pattern::Mailbox, slots, Slot::Storage) {
        vec![Capability::MailboxBasic, Capability::MailboxQuery]
    } else {
        Vec::new()
    }
}
