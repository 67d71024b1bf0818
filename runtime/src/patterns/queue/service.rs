//! The `prism.queue.v1.Queue` gRPC service. A Consume stream is a task that takes a delivery from
//! the adapter only while it holds fewer than `max_in_flight` (back-pressure, not buffering), records
//! each in the [`Deliveries`] table with its visibility deadline, and returns what it holds when a
//! deadline passes or the stream ends. Ack and Nack find deliveries in the table from any
//! connection. A message whose `max_attempts`-th delivery fails moves to `<queue>.dlq`.

use super::adapter::{QueueAdapter, QueuedMessage, Received};
use super::deliveries::{Deliveries, NotOutstanding, Outstanding};
use super::{DEAD_LETTER_SUFFIX, DEFAULT_GROUP};
use crate::patterns::call::{Call, routed, stream_status, unimplemented};
use crate::patterns::capability::Capability;
use crate::patterns::names::{check_message, check_name, new_id, now_ms};
use crate::patterns::stream::{Drain, Outgoing, Sending, StreamGuard, outgoing};
use crate::telemetry::Redelivery;
use pb::queue_server::Queue;
use prism_proto::queue::v1 as pb;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::{Request, Response, Status};

/// Longest `delay_ms` / `requeue_delay_ms`: 7 days.
pub const MAX_DELAY_MS: u64 = 7 * 24 * 3600 * 1000;
/// Largest `max_in_flight` of one Consume stream.
pub const MAX_IN_FLIGHT: u32 = 10_000;
/// `visibility_timeout_ms` when a Consume leaves it at 0.
pub const DEFAULT_VISIBILITY_MS: u64 = 30_000;
/// Longest `visibility_timeout_ms`: 12 hours.
pub const MAX_VISIBILITY_MS: u64 = 12 * 3600 * 1000;
/// How much longer than the visibility timeout a delivery is leased in the backend: the proxy
/// holding it returns it itself at the timeout, before any other proxy may take it; after a crash
/// the lease lets it go out again this long after the timeout.
pub const LEASE_GRACE: Duration = Duration::from_secs(1);
/// Header a dead-lettered message carries: the queue it came from.
pub const DLQ_SOURCE_HEADER: &str = "x-prism-dlq-source";
/// Header a dead-lettered message carries: how many deliveries failed.
pub const DLQ_ATTEMPTS_HEADER: &str = "x-prism-dlq-attempts";

/// The Queue service: the drain signal and the proxy's delivery table.
#[derive(Clone, Debug)]
pub struct QueueService {
    drain: Drain,
    deliveries: Arc<Deliveries>,
}

impl QueueService {
    /// A service whose Consume streams end when `drain` starts.
    pub fn new(drain: Drain, deliveries: Arc<Deliveries>) -> Self {
        Self { drain, deliveries }
    }
}

fn adapter(call: &Call) -> Result<Arc<dyn QueueAdapter>, Status> {
    call.route
        .primary()
        .backend
        .queue
        .clone()
        .ok_or_else(|| unimplemented(&call.route, Capability::QueueBasic))
}

/// `Ok` for a valid queue name, `<queue>.dlq` included: a dead-letter queue is always consumable,
/// though the suffix may take it over `max_name_bytes`.
fn check_queue(queue: &str, call: &Call) -> Result<(), Status> {
    let base = queue.strip_suffix(DEAD_LETTER_SUFFIX).unwrap_or(queue);
    check_name(
        "queue",
        if base.is_empty() { queue } else { base },
        &call.route.limits,
    )
}

fn group_of(call: &Call, group: String) -> Result<String, Status> {
    let group = if group.is_empty() {
        DEFAULT_GROUP.to_string()
    } else {
        group
    };
    check_name("group", &group, &call.route.limits)?;
    if group != DEFAULT_GROUP {
        call.route.require(Capability::QueueGroups)?;
    }
    Ok(group)
}

fn delay(field: &str, ms: u64) -> Result<Duration, Status> {
    if ms > MAX_DELAY_MS {
        return Err(Status::invalid_argument(format!(
            "{field} is {ms}, over the longest delay of {MAX_DELAY_MS} ms (7 days)"
        )));
    }
    Ok(Duration::from_millis(ms))
}

/// Where a delivery goes when it is returned without an ack.
struct Return<'a> {
    call: &'a Call,
    adapter: &'a Arc<dyn QueueAdapter>,
}

impl Return<'_> {
    /// Returns `held` to its queue after `delay`, or moves it to the dead-letter queue when this
    /// was its last attempt. A first try names its `cause` (counted); a retry passes `None`.
    async fn give_back(
        &self,
        held: &Outstanding,
        delay: Duration,
        cause: Option<Redelivery>,
    ) -> Result<(), Status> {
        let max = self.call.route.limits.max_attempts;
        if held.attempt >= max && self.call.route.require(Capability::QueueDeadLetter).is_ok() {
            return self.dead_letter(held).await;
        }
        if let Some(cause) = cause {
            self.call.route.metrics.messaging.returned(cause, 1);
        }
        let ns = &self.call.route.name;
        self.call
            .backend(
                self.adapter
                    .nack(ns, &held.queue, &held.group, &held.receipt, delay),
            )
            .await
    }

    /// Stores the message in `<queue>.dlq` and acks it on its queue.
    async fn dead_letter(&self, held: &Outstanding) -> Result<(), Status> {
        let ns = &self.call.route.name;
        let mut message: QueuedMessage = held.message.clone();
        message
            .headers
            .insert(DLQ_SOURCE_HEADER.into(), held.queue.clone());
        message
            .headers
            .insert(DLQ_ATTEMPTS_HEADER.into(), held.attempt.to_string());
        let dlq = format!("{}{DEAD_LETTER_SUFFIX}", held.queue);
        self.call
            .backend(self.adapter.enqueue(ns, &dlq, message, Duration::ZERO))
            .await?;
        tracing::info!(namespace = %ns, queue = %held.queue, group = %held.group, message_id = %held.message.message_id, attempts = held.attempt, "dead-lettered");
        self.call.route.metrics.messaging.dead_lettered();
        self.call
            .backend(
                self.adapter
                    .ack(ns, &held.queue, &held.group, &held.receipt),
            )
            .await
    }
}

fn not_outstanding(queue: &str, group: &str, NotOutstanding(id): NotOutstanding) -> Status {
    Status::not_found(format!(
        "delivery '{id}' is not outstanding on queue '{queue}', group '{group}' (unknown, already acked or nacked, past its visibility timeout, or its stream ended)"
    ))
}

type Sent = Result<pb::ConsumeResponse, Status>;

/// How long deliveries the backend could not take back are offered to it again before the
/// backend's own lease is left to return them.
const RETURN_RETRY_FOR: Duration = Duration::from_secs(600);

/// Keeps offering `left` back to the backend (it was down when they were returned), with a
/// growing pause of up to 2 s, so they go out again soon after it is back.
fn return_later(call: Call, adapter: Arc<dyn QueueAdapter>, mut left: Vec<Outstanding>) {
    tokio::spawn(async move {
        let back = Return {
            call: &call,
            adapter: &adapter,
        };
        let started = Instant::now();
        let mut pause = Duration::from_millis(100);
        while !left.is_empty() && started.elapsed() < RETURN_RETRY_FOR {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
            let mut still = Vec::new();
            for h in left {
                if back.give_back(&h, Duration::ZERO, None).await.is_err() {
                    still.push(h);
                }
            }
            left = still;
        }
        if !left.is_empty() {
            tracing::warn!(namespace = %call.route.name, deliveries = left.len(), "gave up returning deliveries; the backend's own lease returns them");
        } else {
            tracing::info!(namespace = %call.route.name, "returned the deliveries held when the backend went down");
        }
    });
}

/// One Consume stream's settings.
struct Consumer {
    call: Call,
    adapter: Arc<dyn QueueAdapter>,
    deliveries: Arc<Deliveries>,
    queue: String,
    group: String,
    max_in_flight: usize,
    visibility: Duration,
}

impl Consumer {
    /// Serves the stream until it ends; returns what it held; sends the final status.
    async fn run(
        self,
        mut supply: Box<dyn super::adapter::QueueConsumer>,
        sending: Sending<pb::ConsumeResponse>,
        guard: StreamGuard,
    ) {
        let tx = sending.items;
        let (stream, changed) = self.deliveries.open_stream();
        let ended = guard.ended();
        tokio::pin!(ended);
        let back = Return {
            call: &self.call,
            adapter: &self.adapter,
        };
        let last: Option<Status> = loop {
            let (held, next_deadline) = self.deliveries.load(stream);
            // Room by count, and room in the buffer: a delivery that timed out while waiting for a
            // slow client still fills a slot there.
            let below = held < self.max_in_flight;
            let room = below && tx.capacity() > 0;
            let timer = async {
                match next_deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                // The end first: once the drain or the token's expiry starts, nothing more goes out.
                biased;
                status = &mut ended => break Some(status),
                () = tx.closed() => break None,
                () = changed.notified() => {}
                _ = tx.reserve(), if below && !room => {}
                () = timer => {
                    let expired = self.deliveries.take_expired(stream, Instant::now());
                    if let Some(e) = self.return_all(&back, expired, Redelivery::Timeout).await {
                        break Some(e);
                    }
                }
                received = supply.next(), if room => match received {
                    Ok(received) => {
                        if let Err(e) = self.deliver(&back, stream, received, &tx).await {
                            break e;
                        }
                    }
                    Err(e) => break Some(stream_status(&self.call.route, e)),
                },
            }
        };
        let held = self.deliveries.close_stream(stream);
        let returned = held.len();
        let cause = if guard.draining() {
            Redelivery::Drain
        } else {
            Redelivery::Disconnect
        };
        if let Some(e) = self.return_all(&back, held, cause).await {
            tracing::warn!(namespace = %self.call.route.name, queue = %self.queue, error = %e, "could not return deliveries at the stream's end; returning them once the backend is back");
        } else if returned > 0 {
            tracing::debug!(namespace = %self.call.route.name, queue = %self.queue, returned, "returned unacked deliveries");
        }
        drop(tx);
        if let Some(status) = last {
            let _ = sending.end.send(status);
        }
        drop(guard);
    }

    /// Returns deliveries to the queue at once; the first error, after trying them all. What the
    /// backend could not take back (it is down) is returned later, by [`return_later`].
    async fn return_all(
        &self,
        back: &Return<'_>,
        held: Vec<Outstanding>,
        cause: Redelivery,
    ) -> Option<Status> {
        let mut first = None;
        let mut left = Vec::new();
        for h in held {
            if let Err(e) = back.give_back(&h, Duration::ZERO, Some(cause)).await {
                first.get_or_insert(e);
                left.push(h);
            }
        }
        if !left.is_empty() {
            return_later(self.call.clone(), self.adapter.clone(), left);
        }
        first
    }

    /// Records and sends one delivery (or dead-letters a message already past its attempts);
    /// `Err` ends the stream, with a status or (`None`) because the client left.
    async fn deliver(
        &self,
        back: &Return<'_>,
        stream: u64,
        received: Received,
        tx: &mpsc::Sender<(Sent, ())>,
    ) -> Result<(), Option<Status>> {
        let route = &self.call.route;
        let held = Outstanding::new(
            &route.name,
            &self.queue,
            &self.group,
            received.receipt,
            received.attempt,
            received.message,
            Instant::now() + self.visibility,
        );
        if held.attempt > route.limits.max_attempts
            && route.require(Capability::QueueDeadLetter).is_ok()
        {
            // Delivered more often than allowed (e.g. returned by a backend's own lease after a
            // proxy restart): it goes to the dead-letter queue without reaching a consumer.
            return back.dead_letter(&held).await.map_err(Some);
        }
        let delivery_id = new_id();
        let delivery = pb::ConsumeResponse {
            event: Some(pb::consume_response::Event::Delivery(pb::Delivery {
                delivery_id: delivery_id.clone(),
                message_id: held.message.message_id.clone(),
                payload: held.message.payload.clone(),
                headers: held.message.headers.clone(),
                attempt: held.attempt,
                enqueued_at_ms: held.message.enqueued_at_ms,
            })),
        };
        self.deliveries.hold(stream, delivery_id, held);
        // The loop took this delivery only with room in the buffer, and only it sends there.
        tx.try_send((Ok(delivery), ())).map_err(|_| None)?;
        route.metrics.messaging.delivered();
        Ok(())
    }
}

#[tonic::async_trait]
impl Queue for QueueService {
    async fn enqueue(
        &self,
        request: Request<pb::EnqueueRequest>,
    ) -> Result<Response<pb::EnqueueResponse>, Status> {
        let (call, r) = routed(request, Capability::QueueBasic)?;
        if r.delay_ms > 0 {
            call.route.require(Capability::QueueDelay)?;
        }
        check_queue(&r.queue, &call)?;
        check_message(&r.payload, &r.headers, &call.route.limits)?;
        let delay = delay("delay_ms", r.delay_ms)?;
        let adapter = adapter(&call)?;
        let message_id = new_id();
        let message = QueuedMessage {
            message_id: message_id.clone(),
            payload: r.payload,
            headers: r.headers,
            enqueued_at_ms: now_ms(),
        };
        call.backend(adapter.enqueue(&call.route.name, &r.queue, message, delay))
            .await?;
        call.route.metrics.messaging.sent(1);
        Ok(Response::new(pb::EnqueueResponse { message_id }))
    }

    type ConsumeStream = Outgoing<pb::ConsumeResponse>;

    async fn consume(
        &self,
        request: Request<pb::ConsumeRequest>,
    ) -> Result<Response<Self::ConsumeStream>, Status> {
        let caller = StreamGuard::caller(&request);
        let (call, r) = routed(request, Capability::QueueBasic)?;
        let guard = StreamGuard::admit(&call.route, caller.as_deref(), &self.drain)?;
        check_queue(&r.queue, &call)?;
        let group = group_of(&call, r.group)?;
        if r.max_in_flight > MAX_IN_FLIGHT {
            return Err(Status::invalid_argument(format!(
                "max_in_flight is {}, over the largest of {MAX_IN_FLIGHT}",
                r.max_in_flight
            )));
        }
        let visibility_ms = match r.visibility_timeout_ms {
            0 => DEFAULT_VISIBILITY_MS,
            ms if ms > MAX_VISIBILITY_MS => {
                return Err(Status::invalid_argument(format!(
                    "visibility_timeout_ms is {ms}, over the longest of {MAX_VISIBILITY_MS} (12 hours)"
                )));
            }
            ms => ms,
        };
        let adapter = adapter(&call)?;
        let visibility = Duration::from_millis(visibility_ms);
        let supply = call
            .backend(adapter.consumer(&call.route.name, &r.queue, &group, visibility + LEASE_GRACE))
            .await?;
        let max_in_flight = r.max_in_flight.max(1) as usize;
        let (sending, response) = outgoing(max_in_flight + 1);
        let _ = sending.items.try_send((
            Ok(pb::ConsumeResponse {
                event: Some(pb::consume_response::Event::Consuming(pb::Consuming {
                    queue: r.queue.clone(),
                    group: group.clone(),
                })),
            }),
            (),
        ));
        let consumer = Consumer {
            call: call.detached(),
            adapter,
            deliveries: self.deliveries.clone(),
            queue: r.queue,
            group,
            max_in_flight,
            visibility,
        };
        tokio::spawn(consumer.run(supply, sending, guard));
        Ok(Response::new(response))
    }

    async fn ack(
        &self,
        request: Request<pb::AckRequest>,
    ) -> Result<Response<pb::AckResponse>, Status> {
        let (call, r) = routed(request, Capability::QueueBasic)?;
        check_queue(&r.queue, &call)?;
        let group = group_of(&call, r.group)?;
        if r.delivery_ids.is_empty() {
            return Err(Status::invalid_argument(
                "delivery_ids is empty (name the deliveries to acknowledge)",
            ));
        }
        let adapter = adapter(&call)?;
        let taken = self
            .deliveries
            .take(&call.route.name, &r.queue, &group, &r.delivery_ids)
            .map_err(|e| not_outstanding(&r.queue, &group, e))?;
        // In a task of its own, so a caller that goes away cannot leave deliveries taken from the
        // table but neither acked nor returned.
        let acked = tokio::spawn(async move {
            let back = Return {
                call: &call,
                adapter: &adapter,
            };
            let mut acked = 0u32;
            let mut rest = taken.into_iter();
            while let Some(held) = rest.next() {
                let ns = &call.route.name;
                if let Err(e) = call
                    .backend(adapter.ack(ns, &held.queue, &held.group, &held.receipt))
                    .await
                {
                    // Not known to be acked: returned, so they are delivered again; what the
                    // backend cannot take back now (it is down) is offered again until it can.
                    let mut left = Vec::new();
                    for h in std::iter::once(held).chain(rest) {
                        if back
                            .give_back(&h, Duration::ZERO, Some(Redelivery::AckFailed))
                            .await
                            .is_err()
                        {
                            left.push(h);
                        }
                    }
                    if !left.is_empty() {
                        return_later(call.clone(), adapter.clone(), left);
                    }
                    return Err(e);
                }
                acked += 1;
            }
            Ok(acked)
        })
        .await
        .map_err(|e| Status::internal(format!("the ack task failed: {e}")))??;
        Ok(Response::new(pb::AckResponse { acked }))
    }

    async fn nack(
        &self,
        request: Request<pb::NackRequest>,
    ) -> Result<Response<pb::NackResponse>, Status> {
        // A delayed return is part of queue.redelivery (every adapter that redelivers can hold a
        // returned message back); queue.delay is about Enqueue.
        let (call, r) = routed(request, Capability::QueueRedelivery)?;
        check_queue(&r.queue, &call)?;
        let group = group_of(&call, r.group)?;
        if r.delivery_id.is_empty() {
            return Err(Status::invalid_argument("delivery_id is empty"));
        }
        let delay = delay("requeue_delay_ms", r.requeue_delay_ms)?;
        let adapter = adapter(&call)?;
        let taken = self
            .deliveries
            .take(
                &call.route.name,
                &r.queue,
                &group,
                std::slice::from_ref(&r.delivery_id),
            )
            .map_err(|e| not_outstanding(&r.queue, &group, e))?;
        tokio::spawn(async move {
            let back = Return {
                call: &call,
                adapter: &adapter,
            };
            // What the backend cannot take back now (it is down) is offered again until it can,
            // so a nack in an outage does not strand the delivery until the backend's lease.
            let mut first = None;
            let mut left = Vec::new();
            for held in taken {
                if let Err(e) = back.give_back(&held, delay, Some(Redelivery::Nack)).await {
                    first.get_or_insert(e);
                    left.push(held);
                }
            }
            if !left.is_empty() {
                return_later(call.clone(), adapter.clone(), left);
            }
            first.map_or(Ok(()), Err)
        })
        .await
        .map_err(|e| Status::internal(format!("the nack task failed: {e}")))??;
        Ok(Response::new(pb::NackResponse {}))
    }
}
