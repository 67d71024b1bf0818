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

#[async_trait]
impl PubSubAdapter for RedisPubSub {
    fn capabilities(&self) -> Vec<Capability> {
        vec![Capability::PubSubBasic, Capability::PubSubOrdered]
    }

    async fn publish(&self, ns: &str, message: Published) -> StoreResult<()> {
        redis::cmd("PUBLISH")
            .arg(self.channel(ns, &message.topic))
            .arg(message.encode())
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
            let decoded = Published::decode(m.get_payload_bytes());
            if let Err(e) = &decoded {
                tracing::warn!(channel = %channel, error = %e, "skipped a message that is not a Prism message");
            }
            std::future::ready(decoded.ok().map(Ok))
        });
        Ok(Box::pin(messages))
    }
}
