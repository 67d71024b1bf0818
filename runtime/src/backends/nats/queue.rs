//! nats's Queue adapter on JetStream: one stream per namespace (file storage, limits retention, so
//! acked messages stay for groups created later), a subject per queue, one durable pull consumer per
//! queue and group with explicit acks. JetStream's delivery count is the attempt; the proxy acks and
//! returns deliveries through their reply subjects, and renews what it holds ([`Leases`]) so a
//! crashed proxy's deliveries go out again soon after their visibility timeout. Each consumer
//! pulls one message at a time, only when the proxy asks, through a task of its own ([`fetcher`]).

use super::leases::Leases;
use super::{Nats, check_size, connected, digest, headers_in, headers_out, token, unavailable};
use crate::backends::error::{StoreError, StoreResult};
use crate::patterns::capability::Capability;
use crate::patterns::queue::adapter::{QueueAdapter, QueueConsumer, QueuedMessage, Received};
use crate::patterns::queue::fetcher::{self, Take};
use async_nats::jetstream::{self, consumer::pull, stream};
use async_trait::async_trait;
use futures_util::StreamExt;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long one pull waits for a message.
const PULL_WAIT: Duration = Duration::from_secs(1);

/// Queues on JetStream.
#[derive(Debug)]
pub struct NatsQueue {
    nats: Arc<Nats>,
    js: jetstream::Context,
    retention: Duration,
    ack_wait: Duration,
    leases: Arc<Leases>,
    streams: Mutex<HashSet<String>>,
}

impl NatsQueue {
    pub(super) fn new(nats: Arc<Nats>, retention: Duration, ack_wait: Duration) -> Self {
        let js = jetstream::new(nats.client.clone());
        Self {
            leases: Leases::start(nats.client.clone(), ack_wait),
            nats,
            js,
            retention,
            ack_wait,
            streams: Mutex::default(),
        }
    }

    fn subject(&self, ns: &str, queue: &str) -> String {
        format!("{}.q.{}.{}", self.nats.prefix, token(ns), token(queue))
    }

    fn stream_name(&self, ns: &str) -> String {
        format!("PRISM_Q_{}", digest(&[&self.nats.prefix, ns]))
    }

    /// Makes sure the namespace's stream exists (one JetStream request the first time, none after);
    /// its name.
    async fn ensure_stream(&self, ns: &str) -> StoreResult<String> {
        let name = self.stream_name(ns);
        let known = self
            .streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&name);
        if !known {
            let config = stream::Config {
                name: name.clone(),
                subjects: vec![format!("{}.q.{}.*", self.nats.prefix, token(ns))],
                storage: stream::StorageType::File,
                retention: stream::RetentionPolicy::Limits,
                max_age: self.retention,
                ..Default::default()
            };
            self.js.get_or_create_stream(config).await.map_err(|e| {
                StoreError::Unavailable(format!("JetStream stream {name}: {e}").into())
            })?;
            self.streams
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name.clone());
        }
        Ok(name)
    }
}

/// A publish that JetStream could not take for want of the connection is UNAVAILABLE; one it
/// refused is the backend's answer (INTERNAL), and does not mark the backend down.
fn publish_error(e: jetstream::context::PublishError) -> StoreError {
    use jetstream::context::PublishErrorKind as K;
    match e.kind() {
        K::TimedOut | K::BrokenPipe | K::MaxAckPending => unavailable(e),
        _ => StoreError::Internal(format!("JetStream refused the message: {e}").into()),
    }
}

fn message_of(m: &jetstream::Message) -> StoreResult<QueuedMessage> {
    let (headers, message_id, enqueued_at_ms) = headers_in(m.headers.as_ref())?;
    Ok(QueuedMessage {
        message_id,
        payload: m.payload.clone(),
        headers,
        enqueued_at_ms,
    })
}

fn received(m: &jetstream::Message) -> StoreResult<Received> {
    let info = m
        .info()
        .map_err(|e| StoreError::Internal(format!("JetStream message info: {e}").into()))?;
    let receipt = m.reply.as_ref().map(|r| r.to_string()).ok_or_else(|| {
        StoreError::Internal("a JetStream message without a reply subject".into())
    })?;
    Ok(Received {
        message: message_of(m)?,
        attempt: u32::try_from(info.delivered).unwrap_or(u32::MAX),
        receipt,
    })
}

#[async_trait]
impl QueueAdapter for NatsQueue {
    fn capabilities(&self) -> Vec<Capability> {
        vec![
            Capability::QueueBasic,
            Capability::QueueRedelivery,
            Capability::QueueGroups,
            Capability::QueueDeadLetter,
            Capability::QueueOrdered,
            Capability::QueueDurable,
        ]
    }

    async fn enqueue(
        &self,
        ns: &str,
        queue: &str,
        message: QueuedMessage,
        delay: Duration,
    ) -> StoreResult<()> {
        if !delay.is_zero() {
            return Err(StoreError::Internal(
                "nats does not offer queue.delay (the service refuses it first)".into(),
            ));
        }
        check_size(&self.nats.client, message.payload.len(), &message.headers)?;
        connected(&self.nats.client)?;
        self.ensure_stream(ns).await?;
        let headers = headers_out(
            &message.headers,
            &message.message_id,
            message.enqueued_at_ms,
        );
        // Returns once JetStream has stored the message (its publish acknowledgement).
        let stored = self
            .js
            .publish_with_headers(self.subject(ns, queue), headers, message.payload)
            .await
            .map_err(publish_error)?
            .await
            .map_err(publish_error)?;
        if stored.duplicate {
            return Err(StoreError::Internal(
                format!(
                    "JetStream dropped message {} as a duplicate",
                    message.message_id
                )
                .into(),
            ));
        }
        Ok(())
    }

    async fn consumer(
        &self,
        ns: &str,
        queue: &str,
        group: &str,
        lease: Duration,
    ) -> StoreResult<Box<dyn QueueConsumer>> {
        let stream = self
            .js
            .get_stream(self.ensure_stream(ns).await?)
            .await
            .map_err(unavailable)?;
        let name = format!("g_{}", digest(&[ns, queue, group]));
        let config = pull::Config {
            durable_name: Some(name.clone()),
            filter_subject: self.subject(ns, queue),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            max_deliver: -1,
            max_ack_pending: 100_000,
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            ..Default::default()
        };
        let refused = |e: &dyn std::fmt::Display| {
            StoreError::Unavailable(format!("JetStream consumer {name}: {e}").into())
        };
        let mut consumer: PullConsumer = stream
            .get_or_create_consumer(&name, config.clone())
            .await
            .map_err(|e| refused(&e))?;
        if consumer.cached_info().config.ack_wait != self.ack_wait {
            // Made with another ack_wait (an earlier config or version): a create request for an
            // existing durable consumer updates it.
            consumer = stream
                .create_consumer(config)
                .await
                .map_err(|e| refused(&e))?;
        }
        let mut lost = self.nats.disconnects.subscribe();
        lost.mark_unchanged();
        Ok(fetcher::consumer(Pulling {
            consumer,
            client: self.nats.client.clone(),
            lost,
            leases: self.leases.clone(),
            lease,
        }))
    }

    async fn ack(&self, _ns: &str, _queue: &str, _group: &str, receipt: &str) -> StoreResult<()> {
        connected(&self.nats.client)?;
        self.leases.forget(receipt);
        // A request, so the ack is known to be processed when this returns.
        self.nats
            .client
            .request(receipt.to_string(), "+ACK".into())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn nack(
        &self,
        _ns: &str,
        _queue: &str,
        _group: &str,
        receipt: &str,
        delay: Duration,
    ) -> StoreResult<()> {
        let body = if delay.is_zero() {
            "-NAK".to_string()
        } else {
            format!("-NAK {{\"delay\":{}}}", delay.as_nanos())
        };
        let client = &self.nats.client;
        connected(client)?;
        self.leases.forget(receipt);
        client
            .publish(receipt.to_string(), body.into())
            .await
            .map_err(unavailable)?;
        client.flush().await.map_err(unavailable)
    }
}

/// One consumer's pulls: one message at a time, waiting up to [`PULL_WAIT`], so no pull request
/// outlives the consumer by more than that. The consumer ends (UNAVAILABLE) when the connection
/// is lost, as a subscription does, and a pull the server does not end in time is an outage.
type PullConsumer = jetstream::consumer::Consumer<pull::Config>;

struct Pulling {
    consumer: PullConsumer,
    client: async_nats::Client,
    lost: tokio::sync::watch::Receiver<u64>,
    leases: Arc<Leases>,
    lease: Duration,
}

/// One pull of at most one message; JetStream ends each pull with a status after its messages, so
/// a message sent for a pull is never missed.
async fn pull(consumer: &PullConsumer) -> StoreResult<Option<jetstream::Message>> {
    let mut batch = consumer
        .batch()
        .max_messages(1)
        .expires(PULL_WAIT)
        .messages()
        .await
        .map_err(unavailable)?;
    match batch.next().await {
        None => Ok(None),
        Some(item) => item.map(Some).map_err(unavailable),
    }
}

#[async_trait]
impl Take for Pulling {
    async fn take(&mut self) -> StoreResult<Option<Received>> {
        if self.lost.has_changed().unwrap_or(true) {
            return Err(unavailable("the connection to the NATS server was lost"));
        }
        let pulled = tokio::select! {
            pulled = tokio::time::timeout(PULL_WAIT * 3, pull(&self.consumer)) => pulled.unwrap_or_else(|_| {
                Err(unavailable("no answer to a JetStream pull"))
            }),
            _ = self.lost.changed() => Err(unavailable("the connection to the NATS server was lost")),
        };
        let Some(message) = pulled? else {
            return Ok(None);
        };
        match received(&message) {
            Ok(r) => {
                self.leases.hold(&r.receipt, self.lease);
                Ok(Some(r))
            }
            Err(e) => {
                let _ = message.ack_with(jetstream::AckKind::Term).await;
                Err(e)
            }
        }
    }

    async fn give_back(&mut self, received: Received) {
        self.leases.forget(&received.receipt);
        let _ = self.client.publish(received.receipt, "-NAK".into()).await;
        let _ = self.client.flush().await;
    }
}
