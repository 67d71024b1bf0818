//! The Multicast Registry pattern, a composite of two backend slots: identities register with
//! metadata and a time to live in the `registry` slot's KeyValue store, and multicasts and registry
//! events travel over the `messaging` slot's PubSub. Both go through the same adapters the plain
//! patterns use, so every KeyValue backend can hold a registry and every PubSub backend can carry
//! it, and every proxy on the same backends sees the same registry.

pub mod index;
pub mod listen;
pub mod record;
pub mod service;
pub mod store;
pub mod watch;

pub use service::RegistryService;

use crate::patterns::capability::Capability;
use crate::patterns::{Pattern, Slot};
use crate::router::{RouteSlot, slot_ready};

/// What a Multicast Registry namespace offers over `slots`: `multicast_registry.basic` when the
/// registry slot's backend declares every KeyValue capability the slot needs, and `.multicast` and
/// `.watch` when the messaging slot's backend declares PubSub too.
pub fn capabilities(slots: &[RouteSlot]) -> Vec<Capability> {
    let ready = |slot: Slot| slot_ready(Pattern::MulticastRegistry, slots, slot);
    let mut caps = Vec::new();
    if ready(Slot::Registry) {
        caps.push(Capability::RegistryBasic);
        if ready(Slot::Messaging) {
            caps.extend([Capability::RegistryMulticast, Capability::RegistryWatch]);
        }
    }
    caps
}
