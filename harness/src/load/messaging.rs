//! Messaging load (`pubsub-fanout`, `queue-work`): senders publish or enqueue at the profile's rate,
//! receivers (every subscriber gets every message; consumers compete and ack) take what arrives.
//! Each payload carries its send time and a sequence number, so the run measures publish→deliver
//! and enqueue→ack latency in µs, and at the end checks the delivery ledger: every message a sender
//! was told was accepted must have arrived (pubsub: at every subscriber, or been counted in its
//! `dropped`; queue: acked by some consumer). The same driver runs through the proxy
//! ([`GrpcBus`]) and straight on the adapter ([`DirectBus`], for `--baseline direct`).

use super::stats::Recorder;
use crate::scenario::code::StatusCode;
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use prism_proto::client::{PubSub, Queue};
use prism_proto::pubsub::v1 as ps;
use prism_proto::queue::v1 as qu;
use prism_runtime::patterns::names::{new_id, now_ms};
use prism_runtime::patterns::pubsub::adapter::{PubSubAdapter, Published};
use prism_runtime::patterns::queue::DEFAULT_GROUP;
use prism_runtime::patterns::queue::adapter::{QueueAdapter, QueuedMessage};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

/// The lease of a direct consumer's deliveries: what a Consume stream with the default visibility
/// timeout asks for.
const DIRECT_LEASE: Duration =
    Duration::from_millis(prism_runtime::patterns::queue::service::DEFAULT_VISIBILITY_MS)
        .saturating_add(prism_runtime::patterns::queue::service::LEASE_GRACE);

/// A messaging profile's settings (`messaging:` in the profile).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagingLoad {
    /// Publishers (pubsub) or producers (queue).
    pub senders: usize,
    /// Subscribers, each getting every message (pubsub), or competing consumers (queue).
    pub receivers: usize,
    /// Payload size in bytes (at least 16: the send time and a sequence number).
    #[serde(default = "default_payload")]
    pub payload_bytes: usize,
    /// Deliveries one consumer holds unacked (queue).
    #[serde(default = "default_in_flight")]
    pub max_in_flight: u32,
    /// How long after the senders stop the run waits for what is still on its way, e.g. `10s`.
    #[serde(default = "default_drain")]
    pub drain: String,
}

fn default_payload() -> usize {
    256
}
fn default_in_flight() -> u32 {
    64
}
fn default_drain() -> String {
    "10s".into()
}

/// The payload's header: send time (ns since the run's clock started) and sequence number.
const HEADER: usize = 16;

/// What the ledger found at the end of a run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Ledger {
    /// Messages the senders were told were accepted.
    pub sent: u64,
    /// Deliveries the ledger expects (pubsub: sent × subscribers; queue: sent).
    pub expected: u64,
    /// Distinct messages that arrived (pubsub: per subscriber, summed) or were acked (queue).
    pub arrived: u64,
    /// Messages a subscriber was told it missed (its buffer was full).
    pub dropped: u64,
    /// Expected and neither arrived nor reported dropped: lost.
    pub lost: u64,
    /// Deliveries of a message that had already arrived.
    pub duplicates: u64,
    /// Deliveries with an attempt above 1 (queue).
    pub redeliveries: u64,
}

/// One message as a receiver sees it.
pub struct Arrival {
    /// The payload.
    pub payload: Bytes,
    /// What acks it (queue).
    pub receipt: String,
    /// Its attempt (queue; 1 for pubsub).
    pub attempt: u32,
    /// Messages missed before this one (pubsub).
    pub dropped: u64,
}

/// A receiver's stream of arrivals; an `Err` is a status code name.
pub type Inbox = Pin<Box<dyn Stream<Item = Result<Arrival, String>> + Send>>;

/// How the driver talks to a topic or queue: through the proxy, or to the adapter.
#[async_trait]
pub trait Bus: Send + Sync {
    /// Whether arrivals are acked (queue) or not (pubsub).
    fn acks(&self) -> bool;
    /// Publishes or enqueues one payload; returns once it was accepted.
    async fn send(&self, payload: Bytes) -> Result<(), String>;
    /// Subscribes or starts consuming; live when it returns.
    async fn open(&self) -> Result<Inbox, String>;
    /// Acks one arrival.
    async fn ack(&self, receipt: String) -> Result<(), String>;
}

fn code(s: &tonic::Status) -> String {
    StatusCode::from(s.code()).to_string()
}

/// PubSub or Queue through the proxy.
pub enum GrpcBus {
    /// A topic.
    PubSub {
        /// The client.
        client: PubSub,
        /// The topic.
        topic: String,
    },
    /// A queue, consumed in the default group.
    Queue {
        /// The client.
        client: Queue,
        /// The queue.
        queue: String,
        /// Deliveries a consumer holds.
        max_in_flight: u32,
    },
}

#[async_trait]
impl Bus for GrpcBus {
    fn acks(&self) -> bool {
        matches!(self, GrpcBus::Queue { .. })
    }

    async fn send(&self, payload: Bytes) -> Result<(), String> {
        match self {
            GrpcBus::PubSub { client, topic } => client
                .clone()
                .publish(ps::PublishRequest {
                    topic: topic.clone(),
                    payload,
                    headers: HashMap::new(),
                })
                .await
                .map(|_| ())
                .map_err(|s| code(&s)),
            GrpcBus::Queue { client, queue, .. } => client
                .clone()
                .enqueue(qu::EnqueueRequest {
                    queue: queue.clone(),
                    payload,
                    headers: HashMap::new(),
                    delay_ms: 0,
                })
                .await
                .map(|_| ())
                .map_err(|s| code(&s)),
        }
    }

    async fn open(&self) -> Result<Inbox, String> {
        match self {
            GrpcBus::PubSub { client, topic } => {
                let mut stream = client
                    .clone()
                    .subscribe(ps::SubscribeRequest {
                        topic: topic.clone(),
                    })
                    .await
                    .map_err(|s| code(&s))?
                    .into_inner();
                // Live once the confirmation arrives.
                stream.message().await.map_err(|s| code(&s))?;
                Ok(Box::pin(stream.filter_map(|item| {
                    std::future::ready(match item {
                        Err(s) => Some(Err(code(&s))),
                        Ok(ps::SubscribeResponse {
                            event: Some(ps::subscribe_response::Event::Message(m)),
                        }) => Some(Ok(Arrival {
                            payload: m.payload,
                            receipt: String::new(),
                            attempt: 1,
                            dropped: m.dropped,
                        })),
                        Ok(_) => None,
                    })
                })))
            }
            GrpcBus::Queue {
                client,
                queue,
                max_in_flight,
            } => {
                let mut stream = client
                    .clone()
                    .consume(qu::ConsumeRequest {
                        queue: queue.clone(),
                        group: String::new(),
                        max_in_flight: *max_in_flight,
                        visibility_timeout_ms: 0,
                    })
                    .await
                    .map_err(|s| code(&s))?
                    .into_inner();
                stream.message().await.map_err(|s| code(&s))?;
                Ok(Box::pin(stream.filter_map(|item| {
                    std::future::ready(match item {
                        Err(s) => Some(Err(code(&s))),
                        Ok(qu::ConsumeResponse {
                            event: Some(qu::consume_response::Event::Delivery(d)),
                        }) => Some(Ok(Arrival {
                            payload: d.payload,
                            receipt: d.delivery_id,
                            attempt: d.attempt,
                            dropped: 0,
                        })),
                        Ok(_) => None,
                    })
                })))
            }
        }
    }

    async fn ack(&self, receipt: String) -> Result<(), String> {
        match self {
            GrpcBus::PubSub { .. } => Ok(()),
            GrpcBus::Queue { client, queue, .. } => client
                .clone()
                .ack(qu::AckRequest {
                    queue: queue.clone(),
                    group: String::new(),
                    delivery_ids: vec![receipt],
                })
                .await
                .map(|_| ())
                .map_err(|s| code(&s)),
        }
    }
}

/// PubSub or Queue straight on the adapter, in this process (no proxy, no gRPC).
pub enum DirectBus {
    /// A topic.
    PubSub {
        /// The adapter.
        adapter: Arc<dyn PubSubAdapter>,
        /// Namespace.
        ns: String,
        /// Topic.
        topic: String,
    },
    /// A queue, consumed in the default group.
    Queue {
        /// The adapter.
        adapter: Arc<dyn QueueAdapter>,
        /// Namespace.
        ns: String,
        /// Queue.
        queue: String,
    },
}

fn store_error(e: prism_runtime::backends::error::StoreError) -> String {
    use prism_runtime::backends::error::StoreError as E;
    match e {
        E::Unavailable(_) => "UNAVAILABLE",
        E::OverBackendLimit(_) | E::TooLarge { .. } => "RESOURCE_EXHAUSTED",
        _ => "INTERNAL",
    }
    .to_string()
}

#[async_trait]
impl Bus for DirectBus {
    fn acks(&self) -> bool {
        matches!(self, DirectBus::Queue { .. })
    }

    async fn send(&self, payload: Bytes) -> Result<(), String> {
        match self {
            DirectBus::PubSub { adapter, ns, topic } => adapter
                .publish(
                    ns,
                    Published {
                        topic: topic.clone(),
                        payload,
                        headers: HashMap::new(),
                        message_id: new_id(),
                        published_at_ms: now_ms(),
                    },
                )
                .await
                .map_err(store_error),
            DirectBus::Queue { adapter, ns, queue } => adapter
                .enqueue(
                    ns,
                    queue,
                    QueuedMessage {
                        message_id: new_id(),
                        payload,
                        headers: HashMap::new(),
                        enqueued_at_ms: now_ms(),
                    },
                    Duration::ZERO,
                )
                .await
                .map_err(store_error),
        }
    }

    async fn open(&self) -> Result<Inbox, String> {
        match self {
            DirectBus::PubSub { adapter, ns, topic } => {
                let sub = adapter.subscribe(ns, topic).await.map_err(store_error)?;
                Ok(Box::pin(sub.map(|m| {
                    m.map(|m| Arrival {
                        payload: m.payload,
                        receipt: String::new(),
                        attempt: 1,
                        dropped: 0,
                    })
                    .map_err(store_error)
                })))
            }
            DirectBus::Queue { adapter, ns, queue } => {
                let consumer = adapter
                    .consumer(ns, queue, DEFAULT_GROUP, DIRECT_LEASE)
                    .await
                    .map_err(store_error)?;
                Ok(Box::pin(futures_util::stream::unfold(
                    consumer,
                    |mut c| async move {
                        let next = c.next().await.map_err(store_error).map(|r| Arrival {
                            payload: r.message.payload,
                            receipt: r.receipt,
                            attempt: r.attempt,
                            dropped: 0,
                        });
                        Some((next, c))
                    },
                )))
            }
        }
    }

    async fn ack(&self, receipt: String) -> Result<(), String> {
        match self {
            DirectBus::PubSub { .. } => Ok(()),
            DirectBus::Queue { adapter, ns, queue } => adapter
                .ack(ns, queue, DEFAULT_GROUP, &receipt)
                .await
                .map_err(store_error),
        }
    }
}

/// What one messaging run measured.
pub struct MessagingOutcome {
    /// Send calls (`publish`/`enqueue`), arrivals (`deliver`: send→arrival), acks (`ack`: the call;
    /// `work`: enqueue→ack).
    pub recorder: Recorder,
    /// From the first send to the end of the drain.
    pub elapsed: Duration,
    /// The delivery ledger.
    pub ledger: Ledger,
}

/// Shared counters of one run.
#[derive(Default)]
struct Counts {
    sent: Mutex<HashSet<u64>>,
    /// Per receiver (pubsub) or one for all (queue): the sequence numbers that arrived.
    arrived: Vec<Mutex<HashSet<u64>>>,
    dropped: AtomicU64,
    duplicates: AtomicU64,
    redeliveries: AtomicU64,
}

fn payload(epoch: Instant, seq: u64, size: usize) -> Bytes {
    let mut p = vec![0u8; size.max(HEADER)];
    let at = u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
    p[..8].copy_from_slice(&at.to_le_bytes());
    p[8..16].copy_from_slice(&seq.to_le_bytes());
    p.into()
}

/// The send time (as an offset of the run's clock) and sequence number of a payload.
fn stamp(payload: &[u8]) -> Option<(Duration, u64)> {
    let at = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
    let seq = u64::from_le_bytes(payload.get(8..16)?.try_into().ok()?);
    Some((Duration::from_nanos(at), seq))
}

/// Runs senders for `duration` (at `rate` messages/s in all, or as fast as they go) with the
/// receivers open, then waits up to the drain time for the ledger to balance. `tick` gets the
/// calls and failures so far.
pub async fn drive(
    bus: Arc<dyn Bus>,
    load: &MessagingLoad,
    duration: Duration,
    rate: Option<f64>,
    tick: impl Fn(u64, u64),
) -> Result<MessagingOutcome, String> {
    let drain = super::profile::parse_duration(&load.drain).unwrap_or(Duration::from_secs(10));
    let queue = bus.acks();
    let receivers = load.receivers.max(1);
    let recorder = Arc::new(Recorder::new());
    let counts = Arc::new(Counts {
        arrived: (0..if queue { 1 } else { receivers })
            .map(|_| Mutex::default())
            .collect(),
        ..Counts::default()
    });
    let epoch = Instant::now();
    let (stop, stopped) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for r in 0..receivers {
        let inbox = bus
            .open()
            .await
            .map_err(|c| format!("open receiver {r}: {c}"))?;
        tasks.spawn(receive(
            inbox,
            bus.clone(),
            recorder.clone(),
            counts.clone(),
            if queue { 0 } else { r },
            epoch,
            stopped.clone(),
            Arc::new(Semaphore::new(load.max_in_flight.max(1) as usize)),
        ));
    }
    let started = Instant::now();
    let end = started + duration;
    let senders = load.senders.max(1);
    let mut sending = tokio::task::JoinSet::new();
    for s in 0..senders {
        let (bus, recorder, counts) = (bus.clone(), recorder.clone(), counts.clone());
        let every = rate.map(|r| Duration::from_secs_f64(senders as f64 / r.max(0.001)));
        let size = load.payload_bytes;
        sending.spawn(async move {
            let op = if bus.acks() { "enqueue" } else { "publish" };
            let mut next = Instant::now();
            let mut n = 0u64;
            while Instant::now() < end {
                if let Some(every) = every {
                    next += every;
                    tokio::time::sleep_until(next).await;
                }
                let seq = ((s as u64) << 40) | n;
                n += 1;
                let t0 = Instant::now();
                let sent = bus.send(payload(epoch, seq, size)).await;
                if sent.is_ok() {
                    counts.sent.lock().expect("sent lock").insert(seq);
                }
                recorder.record(op, t0.elapsed(), sent);
            }
        });
    }
    let mut ticks = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            done = sending.join_next() => if done.is_none() { break },
            _ = ticks.tick() => {
                let (calls, failures) = recorder.counts();
                tick(calls, failures);
            }
        }
    }
    // The drain: until every accepted message has arrived everywhere it should, or the bound.
    let drained_by = Instant::now() + drain;
    while !balanced(&counts, queue) && Instant::now() < drained_by {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    let _ = stop.send(true);
    while tasks.join_next().await.is_some() {}
    let ledger = ledger(&counts, queue);
    let recorder = Arc::try_unwrap(recorder).map_err(|_| "a receiver outlived the run")?;
    Ok(MessagingOutcome {
        recorder,
        elapsed,
        ledger,
    })
}

fn balanced(counts: &Counts, queue: bool) -> bool {
    let l = ledger(counts, queue);
    l.arrived + l.dropped >= l.expected
}

fn ledger(counts: &Counts, queue: bool) -> Ledger {
    let sent = counts.sent.lock().expect("sent lock");
    let mut arrived = 0u64;
    for a in &counts.arrived {
        let a = a.lock().expect("arrived lock");
        arrived += sent.iter().filter(|s| a.contains(s)).count() as u64;
    }
    let expected = sent.len() as u64
        * if queue {
            1
        } else {
            counts.arrived.len() as u64
        };
    let dropped = counts.dropped.load(Ordering::Relaxed);
    Ledger {
        sent: sent.len() as u64,
        expected,
        arrived,
        dropped,
        lost: expected.saturating_sub(arrived + dropped),
        duplicates: counts.duplicates.load(Ordering::Relaxed),
        redeliveries: counts.redeliveries.load(Ordering::Relaxed),
    }
}

/// One receiver: records each arrival's latency and, for a queue, acks it (at most
/// `max_in_flight` acks outstanding) and records the enqueue→ack time.
#[allow(clippy::too_many_arguments)]
async fn receive(
    mut inbox: Inbox,
    bus: Arc<dyn Bus>,
    recorder: Arc<Recorder>,
    counts: Arc<Counts>,
    slot: usize,
    epoch: Instant,
    mut stopped: watch::Receiver<bool>,
    acking: Arc<Semaphore>,
) {
    let mut acks = tokio::task::JoinSet::new();
    loop {
        let arrival = tokio::select! {
            _ = stopped.changed() => break,
            a = inbox.next() => a,
        };
        let Some(arrival) = arrival else { break };
        let arrival = match arrival {
            Ok(a) => a,
            Err(code) => {
                recorder.record("deliver", Duration::ZERO, Err(code));
                break;
            }
        };
        let Some((at, seq)) = stamp(&arrival.payload) else {
            recorder.record("deliver", Duration::ZERO, Err("MALFORMED".into()));
            continue;
        };
        recorder.record("deliver", epoch.elapsed().saturating_sub(at), Ok(()));
        counts.dropped.fetch_add(arrival.dropped, Ordering::Relaxed);
        if arrival.attempt > 1 {
            counts.redeliveries.fetch_add(1, Ordering::Relaxed);
        }
        if !bus.acks() {
            if !counts.arrived[slot]
                .lock()
                .expect("arrived lock")
                .insert(seq)
            {
                counts.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        let Ok(permit) = acking.clone().acquire_owned().await else {
            break;
        };
        let (bus, recorder, counts) = (bus.clone(), recorder.clone(), counts.clone());
        acks.spawn(async move {
            let t0 = Instant::now();
            let acked = bus.ack(arrival.receipt).await;
            recorder.record("ack", t0.elapsed(), acked.clone());
            if acked.is_ok() {
                recorder.record("work", epoch.elapsed().saturating_sub(at), Ok(()));
                if !counts.arrived[0].lock().expect("arrived lock").insert(seq) {
                    counts.duplicates.fetch_add(1, Ordering::Relaxed);
                }
            }
            drop(permit);
        });
        while acks.try_join_next().is_some() {}
    }
    while acks.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use prism_runtime::backends::memstore::{MemPubSub, MemQueue};

    #[test]
    fn a_payload_carries_its_time_and_sequence() {
        let epoch = Instant::now();
        let p = payload(epoch, 7 << 40 | 3, 4);
        assert_eq!(p.len(), HEADER, "never shorter than its header");
        assert_eq!(stamp(&p).map(|(_, s)| s), Some(7 << 40 | 3));
        assert_eq!(stamp(b"short"), None);
    }

    fn load(senders: usize, receivers: usize) -> MessagingLoad {
        MessagingLoad {
            senders,
            receivers,
            payload_bytes: 64,
            max_in_flight: 8,
            drain: "5s".into(),
        }
    }

    #[tokio::test]
    async fn fanout_on_memstore_balances_its_ledger() {
        let bus = Arc::new(DirectBus::PubSub {
            adapter: Arc::new(MemPubSub::default()),
            ns: "ns".into(),
            topic: "t".into(),
        });
        let out = drive(
            bus,
            &load(2, 3),
            Duration::from_millis(200),
            Some(500.0),
            |_, _| {},
        )
        .await
        .expect("runs");
        let l = out.ledger;
        assert!(l.sent > 10, "{l:?}");
        assert_eq!((l.expected, l.arrived, l.lost), (l.sent * 3, l.sent * 3, 0));
    }

    #[tokio::test]
    async fn queue_work_on_memstore_acks_every_message_once() {
        let bus = Arc::new(DirectBus::Queue {
            adapter: Arc::new(MemQueue::default()),
            ns: "ns".into(),
            queue: "q".into(),
        });
        let out = drive(
            bus,
            &load(2, 2),
            Duration::from_millis(200),
            Some(500.0),
            |_, _| {},
        )
        .await
        .expect("runs");
        let l = out.ledger;
        assert!(l.sent > 10, "{l:?}");
        assert_eq!((l.arrived, l.lost, l.duplicates), (l.sent, 0, 0));
        let stats = out.recorder.summary("direct", out.elapsed);
        let ops: Vec<&str> = stats.operations.iter().map(|o| o.op.as_str()).collect();
        assert_eq!(ops, ["ack", "deliver", "enqueue", "work"]);
    }
}
