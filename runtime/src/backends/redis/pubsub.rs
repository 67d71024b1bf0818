//! redis's PubSub adapter: Redis pub/sub, one channel per namespace and topic
//! (`<prefix>:<ns>:ps:<topic>`, subscribed by exact name, so no topic is a pattern). A message
//! travels as its `prism.pubsub.v1.Message` encoding. Each subscription has its own connection;
//! `SUBSCRIBE` returns once Redis has confirmed it, so the subscriber is live when told so. One
//! publisher's messages go out in order over the shared connection (`pubsub.ordered`).

use super::{Connection, classify};
use crate::backends::error::{StoreError, StoreResult};
use crate::patterns::capability::Capability;
use crate::patterns::pubsub::adapter::{PubSubAdapter, Published, Subscription};
use async_trait::async_trait;
use futures_util::StreamExt;
use prism_proto::pubsub::v1 as pb;
use prost::Message as _;
use std::sync::Arc;

/// PubSub on Redis pub/sub.
#[derive(Debug)]
pub struct RedisPubSub {
    redis: Arc<Connection>,
}

impl RedisPubSub {
    pub(super) fn new(redis: Arc<Connection>) -> Self {
        Self { redis }
    }

    fn channel(&self, ns: &str, topic: &str) -> String {
        format!("{}:{ns}:ps:{topic}", self.redis.prefix)
    }
}

fn encode(message: &Published) -> Vec<u8> {
    pb::Message {
        topic: message.topic.clone(),
        payload: message.payload.clone(),
        headers: message.headers.clone(),
        message_id: message.message_id.clone(),
        published_at_ms: message.published_at_ms,
        dropped: 0,
    }
    .encode_to_vec()
}

fn decode(bytes: &[u8]) -> Result<Published, prost::DecodeError> {
    let m = pb::Message::decode(bytes)?;
    Ok(Published {
        topic: m.topic,
        payload: m.payload,
        headers: m.headers,
        message_id: m.message_id,
        published_at_ms: m.published_at_ms,
    })
}

#[async_trait]
impl PubSubAdapter for RedisPubSub {
    fn capabilities(&self) -> Vec<Capability> {
        vec![Capability::PubSubBasic, Capability::PubSubOrdered]
    }

    async fn publish(&self, ns: &str, message: Published) -> StoreResult<()> {
        redis::cmd("PUBLISH")
            .arg(self.channel(ns, &message.topic))
            .arg(encode(&message))
            .query_async::<i64>(&mut self.redis.conn.clone())
            .await
            .map(|_receivers| ())
            .map_err(classify)
    }

    async fn subscribe(&self, ns: &str, topic: &str) -> StoreResult<Subscription> {
        let connect = self.redis.client.get_async_pubsub();
        let mut pubsub = tokio::time::timeout(self.redis.connect_timeout, connect)
            .await
            .map_err(|_| {
                StoreError::Unavailable("no connection to redis within connect_timeout_ms".into())
            })?
            .map_err(classify)?;
        let channel = self.channel(ns, topic);
        pubsub.subscribe(&channel).await.map_err(classify)?;
        let messages = pubsub.into_on_message().filter_map(move |m| {
            let decoded = decode(m.get_payload_bytes());
            if let Err(e) = &decoded {
                tracing::warn!(channel = %channel, error = %e, "skipped a message that is not a Prism message");
            }
            std::future::ready(decoded.ok().map(Ok))
        });
        Ok(Box::pin(messages))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn a_message_round_trips_through_its_encoding() {
        let message = Published {
            topic: "t/1".into(),
            payload: vec![0u8, 255, 10].into(),
            headers: HashMap::from([("k".to_string(), "v".to_string())]),
            message_id: "id".into(),
            published_at_ms: 42,
        };
        assert_eq!(decode(&encode(&message)).expect("decodes"), message);
        assert!(decode(b"\xff\xff").is_err());
    }
}
