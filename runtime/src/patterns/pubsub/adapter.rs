//! The PubSub adapter trait. Topic names reach an adapter already checked
//! ([`check_name`](crate::patterns::names::check_name)); namespaces must stay apart.

use crate::backends::error::StoreResult;
use crate::patterns::capability::Capability;
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;
use std::collections::HashMap;
use std::pin::Pin;

/// A published message as subscribers receive it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    /// The topic.
    pub topic: String,
    /// The payload bytes.
    pub payload: Bytes,
    /// Application headers.
    pub headers: HashMap<String, String>,
    /// Unique id, assigned by the proxy.
    pub message_id: String,
    /// When the proxy accepted it, in ms since the Unix epoch.
    pub published_at_ms: i64,
}

/// A live subscription: every message published after it was returned, until dropped. The stream
/// ends (or yields an error) only when the backend loses the subscription.
pub type Subscription = Pin<Box<dyn Stream<Item = StoreResult<Published>> + Send>>;

/// A PubSub adapter (`pubsub.basic`, optionally `pubsub.ordered`).
#[async_trait]
pub trait PubSubAdapter: Send + Sync {
    /// The capabilities this adapter declares.
    fn capabilities(&self) -> Vec<Capability>;
    /// Delivers `message` to every live subscriber of its topic in `ns`.
    async fn publish(&self, ns: &str, message: Published) -> StoreResult<()>;
    /// Subscribes to `topic` in `ns`; live once it returns.
    async fn subscribe(&self, ns: &str, topic: &str) -> StoreResult<Subscription>;
}
