//! The Queue adapter traits. Names reach an adapter already checked
//! ([`check_name`](crate::patterns::names::check_name)); namespaces must stay apart. An adapter
//! keeps messages, per-group positions and attempts; the proxy decides when a delivery is returned
//! (visibility timeout, nack, stream end) and when a message is dead-lettered.

use crate::backends::error::StoreResult;
use crate::patterns::capability::Capability;
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::HashMap;
use std::time::Duration;

/// A stored message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedMessage {
    /// Unique id, assigned by the proxy at enqueue (kept when dead-lettered).
    pub message_id: String,
    /// The payload bytes.
    pub payload: Bytes,
    /// Application headers.
    pub headers: HashMap<String, String>,
    /// When it was first enqueued, in ms since the Unix epoch.
    pub enqueued_at_ms: i64,
}

/// A message handed to one consumer of a group.
#[derive(Clone, Debug)]
pub struct Received {
    /// The message.
    pub message: QueuedMessage,
    /// 1 for the first delivery to the group, then one more per redelivery.
    pub attempt: u32,
    /// The adapter's handle for acking or returning this delivery.
    pub receipt: String,
}

/// Every Queue capability, `queue.durable` only when `durable`: what an adapter that implements
/// the whole pattern declares.
pub fn every_capability(durable: bool) -> Vec<Capability> {
    Capability::ALL
        .into_iter()
        .filter(|c| c.pattern() == crate::patterns::Pattern::Queue)
        .filter(|c| durable || *c != Capability::QueueDurable)
        .collect()
}

/// A Queue adapter (`queue.basic` and what else it declares).
#[async_trait]
pub trait QueueAdapter: Send + Sync {
    /// The capabilities this adapter declares.
    fn capabilities(&self) -> Vec<Capability>;
    /// Stores `message`, not deliverable before `delay` has passed; returns once it is stored.
    async fn enqueue(
        &self,
        ns: &str,
        queue: &str,
        message: QueuedMessage,
        delay: Duration,
    ) -> StoreResult<()>;
    /// A consumer of `group` on `queue` (the group is created at the oldest message still held).
    /// Each delivery it takes is leased in the backend for `lease`: one neither acked nor
    /// returned by then (the proxy that took it crashed) is deliverable again, to any proxy.
    async fn consumer(
        &self,
        ns: &str,
        queue: &str,
        group: &str,
        lease: Duration,
    ) -> StoreResult<Box<dyn QueueConsumer>>;
    /// The delivery is done: never delivered to the group again.
    async fn ack(&self, ns: &str, queue: &str, group: &str, receipt: &str) -> StoreResult<()>;
    /// Returns the delivery: deliverable to the group again after `delay`, with one more attempt.
    async fn nack(
        &self,
        ns: &str,
        queue: &str,
        group: &str,
        receipt: &str,
        delay: Duration,
    ) -> StoreResult<()>;
}

/// One consumer's supply of deliveries.
#[async_trait]
pub trait QueueConsumer: Send {
    /// Waits for the group's next deliverable message and takes it. Must be cancellation-safe: a
    /// call dropped before it returns has taken nothing.
    async fn next(&mut self) -> StoreResult<Received>;
}
