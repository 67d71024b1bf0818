//! memstore's PubSub adapter: per namespace and topic, the list of live subscribers. A publish hands
//! the message to each under one lock, so every subscriber sees one topic's messages in publish
//! order (`pubsub.ordered`).

use crate::backends::error::StoreResult;
use crate::patterns::capability::Capability;
use crate::patterns::pubsub::adapter::{PubSubAdapter, Published, Subscription};
use async_trait::async_trait;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

type Topic = (String, String);

/// In-memory fan-out.
#[derive(Debug, Default)]
pub struct MemPubSub {
    topics: Mutex<HashMap<Topic, Vec<mpsc::UnboundedSender<Published>>>>,
}

#[async_trait]
impl PubSubAdapter for MemPubSub {
    fn capabilities(&self) -> Vec<Capability> {
        vec![Capability::PubSubBasic, Capability::PubSubOrdered]
    }

    async fn publish(&self, ns: &str, message: Published) -> StoreResult<()> {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        let key = (ns.to_string(), message.topic.clone());
        if let Some(subscribers) = topics.get_mut(&key) {
            // The proxy's subscription task drains each channel as fast as it fills, so these
            // stay short; a subscriber that is gone is forgotten here.
            subscribers.retain(|s| s.send(message.clone()).is_ok());
            if subscribers.is_empty() {
                topics.remove(&key);
            }
        }
        Ok(())
    }

    async fn subscribe(&self, ns: &str, topic: &str) -> StoreResult<Subscription> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((ns.to_string(), topic.to_string()))
            .or_default()
            .push(tx);
        Ok(Box::pin(UnboundedReceiverStream::new(rx).map(Ok)))
    }
}
