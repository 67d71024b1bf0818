//! The Multicast Registry's access to its two slots: the registry slot's KeyValue adapter (reads,
//! conditional writes, scans of every registration or listener mark) and the messaging slot's
//! PubSub adapter (registry events), each call under its own slot's health gate.

use super::record::{self, EVENTS_TOPIC, LISTENERS, REGISTRATIONS};
use crate::backends::error::StoreResult;
use crate::patterns::Slot;
use crate::patterns::call::{Call, unimplemented};
use crate::patterns::capability::Capability;
use crate::patterns::keyvalue::store::{KvStore, ScanItem};
use crate::patterns::keyvalue::walk;
use crate::patterns::names::{new_id, now_ms};
use crate::patterns::pubsub::adapter::{PubSubAdapter, Published};
use prism_proto::registry::v1::{Registration, WatchResponse, watch_response::Kind};
use prost::Message as _;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tonic::Status;

/// Keys read per scan call when walking every registration or listener mark.
const PAGE: usize = 2048;

/// The registry slot's KeyValue adapter.
pub fn keyvalue(call: &Call) -> Result<Arc<dyn KvStore>, Status> {
    call.route
        .slot(Slot::Registry)
        .backend
        .keyvalue
        .clone()
        .ok_or_else(|| unimplemented(&call.route, Capability::RegistryBasic))
}

/// The messaging slot's PubSub adapter.
pub fn messaging(call: &Call) -> Result<Arc<dyn PubSubAdapter>, Status> {
    call.route
        .slot(Slot::Messaging)
        .backend
        .pubsub
        .clone()
        .ok_or_else(|| unimplemented(&call.route, Capability::RegistryMulticast))
}

/// Runs a call on the registry slot's backend.
pub async fn on_registry<T>(
    call: &Call,
    work: impl Future<Output = StoreResult<T>>,
) -> Result<T, Status> {
    call.on(call.route.slot(Slot::Registry), work).await
}

/// Runs a call on the messaging slot's backend.
pub async fn on_messaging<T>(
    call: &Call,
    work: impl Future<Output = StoreResult<T>>,
) -> Result<T, Status> {
    call.on(call.route.slot(Slot::Messaging), work).await
}

/// One page of registry-slot keys under `prefix` after `after`, and whether more may follow.
async fn page(
    call: &Call,
    kv: &dyn KvStore,
    prefix: &str,
    after: Option<&str>,
    keys_only: bool,
) -> Result<(Vec<ScanItem>, bool), Status> {
    walk::Records {
        slot: Slot::Registry,
        capability: Capability::RegistryBasic,
        kv,
    }
    .page(call, prefix, after, PAGE, keys_only)
    .await
}

/// Walks live registrations in identity order from after `after` (a registration key), handing each
/// with its key to `visit` until it returns `false`.
pub async fn each_registration(
    call: &Call,
    kv: &dyn KvStore,
    mut after: Option<String>,
    mut visit: impl FnMut(Registration, &str) -> Result<bool, Status>,
) -> Result<(), Status> {
    loop {
        let (items, more) = page(call, kv, REGISTRATIONS, after.as_deref(), false).await?;
        let now = now_ms();
        for item in &items {
            let Some(r) = item.value.as_deref().and_then(|v| record::decode(v, now)) else {
                continue;
            };
            if !visit(r, &item.key)? {
                return Ok(());
            }
        }
        match (more, items.last()) {
            (true, Some(last)) => after = Some(last.key.clone()),
            _ => return Ok(()),
        }
    }
}

/// The identities that have a live listener (anywhere, on any proxy of these backends).
pub async fn listening(call: &Call, kv: &dyn KvStore) -> Result<HashSet<String>, Status> {
    let mut found = HashSet::new();
    let mut after: Option<String> = None;
    loop {
        let (items, more) = page(call, kv, LISTENERS, after.as_deref(), true).await?;
        found.extend(
            items
                .iter()
                .filter_map(|i| record::listener_identity(&i.key))
                .map(str::to_string),
        );
        match (more, items.last()) {
            (true, Some(last)) => after = Some(last.key.clone()),
            _ => return Ok(found),
        }
    }
}

/// Tells watchers (through the messaging slot) that `registration` changed. A failure is logged,
/// not returned: the change itself is stored, and a watcher whose backend failed has its stream
/// ended and starts again from the stored registry.
pub async fn publish_event(call: &Call, kind: Kind, registration: Registration) {
    let Ok(bus) = messaging(call) else {
        return;
    };
    let event = WatchResponse {
        kind: kind as i32,
        registration: Some(registration),
    };
    let message = Published {
        topic: EVENTS_TOPIC.to_string(),
        payload: event.encode_to_vec().into(),
        headers: HashMap::new(),
        message_id: new_id(),
        published_at_ms: now_ms(),
    };
    if let Err(status) = on_messaging(call, bus.publish(&call.route.name, message)).await {
        tracing::warn!(namespace = %call.route.name, error = %status.message(), "registry event not published; watchers will miss it until they watch again");
    }
}
