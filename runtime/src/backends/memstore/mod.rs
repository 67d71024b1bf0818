//! `memstore`: an in-process, in-memory backend offering KeyValue, PubSub and Queue with every
//! capability except durability. It is a backend in its own right (ordered maps, monotonic versions,
//! exact expiry, per-group queue state), not a mock of another.

mod keyvalue;
mod pubsub;
mod queue;

pub use keyvalue::MemStore;
pub use pubsub::MemPubSub;
pub use queue::MemQueue;

use super::health::{Health, Ping};
use super::{Backend, Closer};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Config of a `memstore` backend (no settings yet; unknown keys are rejected).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MemStoreConfig {}

/// The running bundle: one store per pattern, sharing nothing but the process.
pub(super) fn open(
    kind: &'static str,
    health: impl FnOnce(Arc<dyn Ping>) -> Arc<Health>,
) -> Backend {
    let kv = Arc::new(MemStore::new());
    kv.spawn_sweeper();
    let mut backend = Backend::new(kind, health(kv.clone()), Closer::Nothing);
    backend.keyvalue = Some(kv);
    backend.pubsub = Some(Arc::new(MemPubSub::default()));
    backend.queue = Some(Arc::new(MemQueue::default()));
    backend
}
