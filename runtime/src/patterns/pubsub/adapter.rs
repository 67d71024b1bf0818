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

impl Published {
    /// Its `prism.pubsub.v1.Message` encoding: how backends that carry bytes (Redis channels,
    /// PostgreSQL notifications) carry a message.
    pub fn encode(&self) -> Vec<u8> {
        use prost::Message as _;
        prism_proto::pubsub::v1::Message {
            topic: self.topic.clone(),
            payload: self.payload.clone(),
            headers: self.headers.clone(),
            message_id: self.message_id.clone(),
            published_at_ms: self.published_at_ms,
            dropped: 0,
        }
        .encode_to_vec()
    }

    /// The bytes it holds in a subscriber's buffer: payload, topic, id and headers.
    pub fn buffered_bytes(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        self.payload.len() + self.topic.len() + self.message_id.len() + headers
    }

    /// A message back from [`encode`](Self::encode)'s bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, prost::DecodeError> {
        use prost::Message as _;
        let m = prism_proto::pubsub::v1::Message::decode(bytes)?;
        Ok(Self {
            topic: m.topic,
            payload: m.payload,
            headers: m.headers,
            message_id: m.message_id,
            published_at_ms: m.published_at_ms,
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_round_trips_through_its_encoding() {
        let message = Published {
            topic: "t/1".into(),
            payload: vec![0u8, 255, 10].into(),
            headers: HashMap::from([("k".to_string(), "v".to_string())]),
            message_id: "id".into(),
            published_at_ms: 42,
        };
        assert_eq!(
            Published::decode(&message.encode()).expect("decodes"),
            message
        );
        assert!(Published::decode(b"\xff\xff").is_err());
    }
}
