//! The Listen stream: a subscription on the messaging slot to the identity's own topic, and a mark
//! in the registry slot (renewed while the stream lasts, removed when it ends) that tells every
//! proxy's Multicast this identity has a live listener. Messages reach the client through a buffer
//! bounded like a PubSub subscriber's; drops are counted in the next delivery's `dropped`.

use super::record::{self, LISTENER_RENEW, LISTENER_TTL};
use super::service::{RegistryService, stored};
use super::store::{self, on_messaging, on_registry};
use crate::backends::error::StoreError;
use crate::patterns::Slot;
use crate::patterns::call::{routed, slot_stream_status};
use crate::patterns::capability::Capability;
use crate::patterns::names::new_id;
use crate::patterns::pubsub::adapter::Published;
use crate::patterns::stream::{Lossy, Offered, Outgoing, Room, StreamGuard, outgoing};
use bytes::Bytes;
use futures_util::StreamExt;
use prism_proto::registry::v1 as pb;
use tonic::{Request, Response, Status};

fn delivery(m: Published, dropped: u64) -> pb::ListenResponse {
    pb::ListenResponse {
        event: Some(pb::listen_response::Event::Message(pb::Delivery {
            payload: m.payload,
            headers: m.headers,
            message_id: m.message_id,
            sent_at_ms: m.published_at_ms,
            dropped,
        })),
    }
}

/// Serves one Listen call.
pub async fn listen(
    service: &RegistryService,
    request: Request<pb::ListenRequest>,
) -> Result<Response<Outgoing<pb::ListenResponse>>, Status> {
    let caller = StreamGuard::caller(&request);
    let (call, r) = routed(request, Capability::RegistryMulticast)?;
    let guard = StreamGuard::admit(&call.route, caller.as_deref(), &service.drain)?;
    let identity = r.identity;
    record::check_identity(&identity, &call.route.limits)?;
    if stored(&call, &identity).await?.is_none() {
        return Err(Status::not_found(format!(
            "identity '{identity}' is not registered (or its time to live ran out); register it before listening"
        )));
    }
    let kv = store::keyvalue(&call)?;
    let bus = store::messaging(&call)?;
    let ns = call.route.name.clone();
    let mut subscription =
        on_messaging(&call, bus.subscribe(&ns, &record::listen_topic(&identity))).await?;
    let mark = record::listener_key(&identity, &new_id());
    on_registry(&call, kv.set(&ns, &mark, Bytes::new(), Some(LISTENER_TTL))).await?;
    let limits = call.route.limits;
    let (sending, response) = outgoing::<_, Room>(limits.subscriber_buffer + 1);
    let tx = sending.items;
    let listening = pb::ListenResponse {
        event: Some(pb::listen_response::Event::Listening(pb::Listening {
            identity: identity.clone(),
        })),
    };
    let _ = tx.try_send((Ok(listening), None));
    let mut lossy = Lossy::new(
        call.route.clone(),
        limits.subscriber_buffer_bytes,
        service.buffered.clone(),
    );
    let call = call.detached();
    tokio::spawn(async move {
        let route = call.route.clone();
        let ended = guard.ended();
        tokio::pin!(ended);
        let mut renew = tokio::time::interval(LISTENER_RENEW);
        renew.tick().await;
        let last: Option<Status> = loop {
            tokio::select! {
                biased;
                status = &mut ended => break Some(status),
                () = tx.closed() => break None,
                _ = renew.tick() => {
                    if let Err(status) = on_registry(&call, kv.set(&ns, &mark, Bytes::new(), Some(LISTENER_TTL))).await {
                        tracing::warn!(namespace = %ns, identity = %identity, error = %status.message(), "listener mark not renewed");
                    }
                }
                item = subscription.next() => match item {
                    Some(Ok(m)) => {
                        if lossy.offer(&tx, m.buffered_bytes(), |dropped| delivery(m, dropped)) == Offered::Closed {
                            break None;
                        }
                    }
                    Some(Err(e)) => break Some(slot_stream_status(&route, route.slot(Slot::Messaging), e)),
                    None => break Some(slot_stream_status(&route, route.slot(Slot::Messaging), StoreError::Unavailable(
                        "the messaging backend ended the subscription; listen again".into(),
                    ))),
                },
            }
        };
        drop(subscription);
        if let Err(status) = on_registry(&call, kv.delete(&ns, &mark)).await {
            tracing::debug!(namespace = %ns, identity = %identity, error = %status.message(), "listener mark left to lapse");
        }
        drop(tx);
        if let Some(status) = last {
            let _ = sending.end.send(status);
        }
        drop(guard);
    });
    Ok(Response::new(response))
}
