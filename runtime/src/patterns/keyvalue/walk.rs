//! Paging through a composite pattern's records in a slot's KeyValue store: one ordered scan page
//! under a prefix, run under that slot's health gate. The Multicast Registry walks registrations
//! and listener marks with it, the Mailbox its messages.

use crate::patterns::Slot;
use crate::patterns::call::{Call, unimplemented};
use crate::patterns::capability::Capability;
use crate::patterns::keyvalue::store::{KvStore, ScanItem};
use tonic::Status;

/// A composite's records in one slot's KeyValue store.
#[derive(Clone, Copy)]
pub struct Records<'a> {
    /// The slot whose backend holds them.
    pub slot: Slot,
    /// The capability named when the store cannot scan.
    pub capability: Capability,
    /// The slot's store.
    pub kv: &'a dyn KvStore,
}

impl Records<'_> {
    /// One page of up to `limit` keys under `prefix` after `after` (with their values unless
    /// `keys_only`), and whether more may follow.
    pub async fn page(
        &self,
        call: &Call,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        keys_only: bool,
    ) -> Result<(Vec<ScanItem>, bool), Status> {
        let scan = self
            .kv
            .scan()
            .ok_or_else(|| unimplemented(&call.route, self.capability))?;
        let max_bytes = call.route.limits.max_message_bytes();
        let items = call
            .on(
                call.route.slot(self.slot),
                scan.scan(&call.route.name, prefix, after, limit, max_bytes, keys_only),
            )
            .await?;
        let bytes: usize = items.iter().map(ScanItem::size).sum();
        let more = items.len() >= limit || bytes > max_bytes;
        Ok((items, more))
    }
}
