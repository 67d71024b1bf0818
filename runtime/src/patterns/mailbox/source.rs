//! A Mailbox's topic source (`source: { namespace, topic }`): while the proxy serves, it subscribes
//! to the topic of the PubSub namespace on the mailbox's messaging slot and stores every message
//! that arrives — in the mailbox its `mailbox_header` names, else `source.mailbox`, else the topic's
//! name — under the message's own id (a message seen twice is stored once), with the headers a
//! sender may set (others are left out), `topic` and `principal: source:NAMESPACE`. PubSub keeps nothing
//! for absent subscribers: what is published while no proxy is subscribed is not stored. A lost
//! subscription is taken up again with backoff; the drain ends it.

use super::record;
use super::service::store;
use crate::config::SourceConfig;
use crate::patterns::Slot;
use crate::patterns::call::Call;
use crate::patterns::pubsub::adapter::Published;
use crate::patterns::stream::Drain;
use crate::router::NamespaceRoute;
use futures_util::StreamExt;
use prism_proto::mailbox::v1::MailMessage;
use std::sync::Arc;
use std::time::Duration;
use tonic::Code;

/// Longest wait before subscribing again after a failure.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Starts the source of `route`, if it has one, until `drain` starts or a reload retires the route.
pub fn spawn(route: Arc<NamespaceRoute>, drain: Drain) {
    let Some(source) = route.source.clone() else {
        return;
    };
    tokio::spawn(async move {
        let retired = route.retired();
        tokio::select! {
            () = drain.started() => {}
            _ = retired => {}
            () = run(route, source) => {}
        }
    });
}

async fn run(route: Arc<NamespaceRoute>, source: SourceConfig) {
    let slot = route.slot(Slot::Messaging);
    let Some(bus) = slot.backend.pubsub.clone() else {
        tracing::error!(namespace = %route.name, backend = %slot.backend_name, "mailbox source: the messaging slot's backend offers no pubsub");
        return;
    };
    let call = Call {
        route: route.clone(),
        deadline: None,
        method: crate::telemetry::methods::methods().other(),
        traced: None,
    };
    let mut backoff = Duration::from_millis(100);
    loop {
        let subscribed = call
            .on(slot, bus.subscribe(&source.namespace, &source.topic))
            .await;
        let mut subscription = match subscribed {
            Ok(s) => s,
            Err(status) => {
                tracing::warn!(namespace = %route.name, topic = %source.topic, error = %status.message(), retry_in_ms = backoff.as_millis() as u64, "mailbox source: cannot subscribe");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        tracing::info!(namespace = %route.name, source = %source.namespace, topic = %source.topic, "mailbox source: subscribed");
        while let Some(item) = subscription.next().await {
            match item {
                Ok(message) => keep(&call, &source, message).await,
                Err(e) => {
                    tracing::warn!(namespace = %route.name, topic = %source.topic, error = %e, "mailbox source: subscription lost; subscribing again");
                    break;
                }
            }
        }
    }
}

/// Stores one message of the source topic.
async fn keep(call: &Call, source: &SourceConfig, m: Published) {
    let limits = &call.route.limits;
    let mailbox = m
        .headers
        .get(&source.mailbox_header)
        .cloned()
        .or_else(|| source.mailbox.clone())
        .unwrap_or_else(|| source.topic.clone());
    if let Err(status) = record::check_mailbox(&mailbox, limits) {
        tracing::warn!(namespace = %call.route.name, error = %status.message(), "mailbox source: message not stored");
        return;
    }
    let stamp_us = record::stamp_us();
    let mut headers: std::collections::HashMap<String, String> = m
        .headers
        .into_iter()
        .filter(|(k, _)| record::sender_header(k))
        .collect();
    headers.insert("topic".into(), source.topic.clone());
    headers.insert("message_id".into(), m.message_id.clone());
    headers.insert("timestamp".into(), (stamp_us / 1000).to_string());
    headers.insert("principal".into(), format!("source:{}", source.namespace));
    let message = MailMessage {
        headers,
        payload: m.payload,
        message_id: m.message_id,
        timestamp_ms: stamp_us / 1000,
    };
    match store(call, &mailbox, stamp_us, &message).await {
        Ok(()) => {}
        Err(status) if status.code() == Code::AlreadyExists => {}
        Err(status) => {
            tracing::warn!(namespace = %call.route.name, mailbox = %mailbox, error = %status.message(), "mailbox source: message not stored");
        }
    }
}
