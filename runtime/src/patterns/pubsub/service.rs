//! The `prism.pubsub.v1.PubSub` gRPC service. Each subscription is a task that reads the adapter's
//! stream as fast as it yields and hands messages to the client through a buffer bounded in messages
//! (`subscriber_buffer`) and in bytes (`subscriber_buffer_bytes`, and `server.max_subscriber_buffer_bytes`
//! across every subscriber): when the client reads too slowly the buffer fills, later messages are
//! dropped and the count travels in the next delivered message's `dropped` — memory never grows with
//! a slow subscriber, and nothing is lost silently.

use super::adapter::{PubSubAdapter, Published};
use crate::backends::error::StoreError;
use crate::budget::Budget;
use crate::patterns::call::{Call, routed, stream_status, unimplemented};
use crate::patterns::capability::Capability;
use crate::patterns::names::{check_message, check_name, new_id, now_ms};
use crate::patterns::stream::{Drain, Lossy, Offered, Outgoing, Room, StreamGuard, outgoing};
use futures_util::StreamExt;
use pb::pub_sub_server::PubSub;
use prism_proto::pubsub::v1 as pb;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The PubSub service.
#[derive(Clone, Debug)]
pub struct PubSubService {
    drain: Drain,
    buffered: Arc<Budget>,
}

impl PubSubService {
    /// A service whose subscriptions end when `drain` starts, and whose subscribers' buffers hold
    /// at most `buffered` bytes in all.
    pub fn new(drain: Drain, buffered: Arc<Budget>) -> Self {
        Self { drain, buffered }
    }
}

fn adapter(call: &Call) -> Result<Arc<dyn PubSubAdapter>, Status> {
    call.route
        .primary()
        .backend
        .pubsub
        .clone()
        .ok_or_else(|| unimplemented(&call.route, Capability::PubSubBasic))
}

fn message(m: Published, dropped: u64) -> pb::SubscribeResponse {
    pb::SubscribeResponse {
        event: Some(pb::subscribe_response::Event::Message(pb::Message {
            topic: m.topic,
            payload: m.payload,
            headers: m.headers,
            message_id: m.message_id,
            published_at_ms: m.published_at_ms,
            dropped,
        })),
    }
}

#[tonic::async_trait]
impl PubSub for PubSubService {
    async fn publish(
        &self,
        request: Request<pb::PublishRequest>,
    ) -> Result<Response<pb::PublishResponse>, Status> {
        let (call, r) = routed(request, Capability::PubSubBasic)?;
        let limits = &call.route.limits;
        check_name("topic", &r.topic, limits)?;
        check_message(&r.payload, &r.headers, limits)?;
        let adapter = adapter(&call)?;
        let message_id = new_id();
        let published = Published {
            topic: r.topic,
            payload: r.payload,
            headers: r.headers,
            message_id: message_id.clone(),
            published_at_ms: now_ms(),
        };
        call.backend(adapter.publish(&call.route.name, published))
            .await?;
        call.route.metrics.messaging.sent(1);
        Ok(Response::new(pb::PublishResponse { message_id }))
    }

    type SubscribeStream = Outgoing<pb::SubscribeResponse>;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let caller = StreamGuard::caller(&request);
        let (call, r) = routed(request, Capability::PubSubBasic)?;
        let guard = StreamGuard::admit(&call.route, caller.as_deref(), &self.drain)?;
        check_name("topic", &r.topic, &call.route.limits)?;
        let adapter = adapter(&call)?;
        let mut subscription = call
            .backend(adapter.subscribe(&call.route.name, &r.topic))
            .await?;
        let (sending, response) = outgoing::<_, Room>(call.route.limits.subscriber_buffer + 1);
        let tx = sending.items;
        let confirmed = pb::SubscribeResponse {
            event: Some(pb::subscribe_response::Event::Subscribed(pb::Subscribed {
                topic: r.topic.clone(),
            })),
        };
        let _ = tx.try_send((Ok(confirmed), None));
        let route = call.route.clone();
        let mut lossy = Lossy::new(
            route.clone(),
            route.limits.subscriber_buffer_bytes,
            self.buffered.clone(),
        );
        tokio::spawn(async move {
            let ended = guard.ended();
            tokio::pin!(ended);
            let last: Status = loop {
                tokio::select! {
                    // The end first: once the drain or the token's expiry starts, nothing more goes out.
                    biased;
                    status = &mut ended => break status,
                    () = tx.closed() => return,
                    item = subscription.next() => match item {
                        Some(Ok(m)) => {
                            if lossy.offer(&tx, m.buffered_bytes(), |dropped| message(m, dropped)) == Offered::Closed {
                                return;
                            }
                        }
                        Some(Err(e)) => break stream_status(&route, e),
                        None => break stream_status(&route, StoreError::Unavailable(
                            "the backend ended the subscription; subscribe again".into(),
                        )),
                    },
                }
            };
            let dropped = lossy.unreported();
            if dropped > 0 {
                tracing::debug!(namespace = %route.name, topic = %r.topic, dropped, "subscription ended with undelivered drops");
            }
            drop(tx);
            let _ = sending.end.send(last);
            drop(guard);
        });
        Ok(Response::new(response))
    }
}
