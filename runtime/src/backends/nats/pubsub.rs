//! nats's PubSub adapter: core NATS publish and subscribe, one subject per namespace and topic. A
//! subscription is confirmed only after a round trip to the server, so the server knows it before
//! the client is told it is listening; the proxy's one connection keeps one publisher's order. A
//! subscription ends (UNAVAILABLE) when the connection is lost: what was published meanwhile is
//! gone, so the subscriber is told rather than resubscribed silently.

use super::{Nats, check_size, connected, headers_in, headers_out, round_trip, token, unavailable};
use crate::backends::error::StoreResult;
use crate::patterns::capability::Capability;
use crate::patterns::pubsub::adapter::{PubSubAdapter, Published, Subscription};
use async_trait::async_trait;
use futures_util::StreamExt;
use std::sync::Arc;

/// PubSub on core NATS.
#[derive(Debug)]
pub struct NatsPubSub {
    nats: Arc<Nats>,
}

impl NatsPubSub {
    pub(super) fn new(nats: Arc<Nats>) -> Self {
        Self { nats }
    }

    fn subject(&self, ns: &str, topic: &str) -> String {
        format!("{}.ps.{}.{}", self.nats.prefix, token(ns), token(topic))
    }
}

fn published(topic: &str, m: async_nats::Message) -> StoreResult<Published> {
    let (headers, message_id, published_at_ms) = headers_in(m.headers.as_ref())?;
    Ok(Published {
        topic: topic.to_string(),
        payload: m.payload,
        headers,
        message_id,
        published_at_ms,
    })
}

#[async_trait]
impl PubSubAdapter for NatsPubSub {
    fn capabilities(&self) -> Vec<Capability> {
        vec![Capability::PubSubBasic, Capability::PubSubOrdered]
    }

    async fn publish(&self, ns: &str, message: Published) -> StoreResult<()> {
        check_size(&self.nats.client, message.payload.len(), &message.headers)?;
        let headers = headers_out(
            &message.headers,
            &message.message_id,
            message.published_at_ms,
        );
        let client = &self.nats.client;
        connected(client)?;
        client
            .publish_with_headers(self.subject(ns, &message.topic), headers, message.payload)
            .await
            .map_err(unavailable)?;
        // The round trip makes a publish the server has not taken an error, not a silent loss, and
        // a publish through another proxy after this one returns comes after it.
        round_trip(&self.nats).await
    }

    async fn subscribe(&self, ns: &str, topic: &str) -> StoreResult<Subscription> {
        let client = &self.nats.client;
        let mut lost = self.nats.disconnects.subscribe();
        lost.mark_unchanged();
        let subscriber = client
            .subscribe(self.subject(ns, topic))
            .await
            .map_err(unavailable)?;
        // Confirmed only once the server has the subscription: a publish through another proxy
        // after the confirmation reaches it.
        round_trip(&self.nats).await?;
        let topic = topic.to_string();
        let messages = subscriber
            .map(move |m| published(&topic, m))
            .take_until(async move {
                let _ = lost.changed().await;
            })
            .chain(futures_util::stream::once(std::future::ready(Err(
                unavailable("the connection to the NATS server was lost; subscribe again"),
            ))));
        Ok(Box::pin(messages))
    }
}
