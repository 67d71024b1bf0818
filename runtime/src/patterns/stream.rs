//! What every long-lived server stream (Subscribe, Consume) shares: the proxy's drain signal, the
//! caller's token expiry, and the namespace's stream budget and each caller's share of it. A stream
//! handler selects on [`StreamGuard::ended`] beside its own work: when the proxy drains it ends with
//! UNAVAILABLE (so clients retry elsewhere), when the caller's token expires with UNAUTHENTICATED.

use crate::auth::Principal;
use crate::budget::{Budget, Held};
use crate::router::NamespaceRoute;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot, watch};
use tonic::{Request, Status};

/// The proxy's drain broadcast, handed to every pattern service that serves streams. Each stream
/// task holds a clone until it has finished (returned what it held), so the server knows when the
/// last one is done: the mini-redis shape, where completion is the last sender dropping.
#[derive(Clone, Debug)]
pub struct Drain {
    signal: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
}

/// The server's end of a [`Drain`]: starts it, then waits for the streams to finish.
#[derive(Debug)]
pub struct DrainControl {
    start: watch::Sender<bool>,
    done: mpsc::Receiver<()>,
}

impl Drain {
    /// A drain signal for the services and its control for the server.
    pub fn new() -> (DrainControl, Drain) {
        let (start, signal) = watch::channel(false);
        let (alive, done) = mpsc::channel(1);
        (
            DrainControl { start, done },
            Drain {
                signal,
                _alive: alive,
            },
        )
    }

    /// Resolves once the drain has started (at once if it already has, or if the server is gone).
    pub async fn started(&self) {
        let mut rx = self.signal.clone();
        let _ = rx.wait_for(|draining| *draining).await;
    }
}

impl DrainControl {
    /// Tells every stream to end.
    pub fn start(&self) {
        let _ = self.start.send(true);
    }

    /// Resolves when every [`Drain`] clone is gone: the services and every stream task.
    pub async fn finished(mut self) {
        let _ = self.done.recv().await;
    }
}

/// Live streams of one namespace, against its `max_streams` limit, and of each caller (a token's
/// subject) against `max_streams_per_subject`.
#[derive(Debug, Default)]
pub struct StreamCount {
    total: AtomicUsize,
    by_subject: Mutex<HashMap<String, usize>>,
}

impl StreamCount {
    /// Live streams now.
    pub fn live(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    fn subjects(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.by_subject.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One live stream's place in its namespace's count (and its caller's); released on drop.
#[derive(Debug)]
pub struct StreamSlot {
    route: Arc<NamespaceRoute>,
    subject: Option<String>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let count = &self.route.streams;
        if let Some(subject) = &self.subject {
            let mut subjects = count.subjects();
            if let Some(n) = subjects.get_mut(subject) {
                *n -= 1;
                if *n == 0 {
                    subjects.remove(subject);
                }
            }
        }
        count.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A stream's slot, drain signal and token expiry.
#[derive(Debug)]
pub struct StreamGuard {
    slot: StreamSlot,
    drain: Drain,
    expires_in: Option<Duration>,
}

impl StreamGuard {
    /// Whether the proxy's drain has started.
    pub fn draining(&self) -> bool {
        *self.drain.signal.borrow()
    }

    /// The caller of `request`, as the guard authenticated it.
    pub fn caller<T>(request: &Request<T>) -> Option<Arc<Principal>> {
        request.extensions().get::<Arc<Principal>>().cloned()
    }

    /// Admits a stream on `route` for `caller`: RESOURCE_EXHAUSTED when the namespace already has
    /// `max_streams` live ones, or an authenticated caller has `max_streams_per_subject` of them.
    /// The stream ends when the caller's token does.
    pub fn admit(
        route: &Arc<NamespaceRoute>,
        caller: Option<&Principal>,
        drain: &Drain,
    ) -> Result<StreamGuard, Status> {
        let max = route.limits.max_streams;
        let count = &route.streams;
        if count
            .total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_err()
        {
            return Err(Status::resource_exhausted(format!(
                "namespace '{}' has {max} live streams, the limit max_streams",
                route.name
            )));
        }
        // Callers are told apart by their token's subject; with authentication off there are none
        // to tell apart.
        let valid_until = caller.and_then(|c| c.valid_until);
        let subject = caller
            .filter(|c| c.valid_until.is_some())
            .map(|c| c.subject.clone());
        let mut slot = StreamSlot {
            route: route.clone(),
            subject: None,
        };
        if let Some(subject) = subject {
            let share = route.limits.max_streams_per_subject;
            let mut subjects = count.subjects();
            let held = subjects.entry(subject.clone()).or_default();
            if *held >= share {
                let who = if subject.is_empty() {
                    "tokens without a subject hold".to_string()
                } else {
                    format!("subject '{subject}' holds")
                };
                return Err(Status::resource_exhausted(format!(
                    "{who} {share} live streams in namespace '{}', the limit max_streams_per_subject",
                    route.name
                )));
            }
            *held += 1;
            slot.subject = Some(subject);
        }
        let expires_in = valid_until.map(|until| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            Duration::from_secs(until).saturating_sub(now)
        });
        Ok(StreamGuard {
            slot,
            drain: drain.clone(),
            expires_in,
        })
    }

    /// Resolves with the status the stream must end with: UNAVAILABLE when the proxy drains or a
    /// config reload removes or replaces the namespace, UNAUTHENTICATED when the caller's token
    /// expires. Pending otherwise.
    pub fn ended(&self) -> impl Future<Output = Status> + Send + 'static {
        let drain = self.drain.clone();
        let retired = self.slot.route.retired();
        let expires = self.expires_in.map(|d| tokio::time::Instant::now() + d);
        async move {
            let expiry = async {
                match expires {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = drain.started() => Status::unavailable(
                    "the proxy is draining (shutting down); reconnect and retry, to another instance if there is one",
                ),
                () = expiry => Status::unauthenticated(
                    "the caller's token expired; open the stream again with a fresh token",
                ),
                reason = retired => Status::unavailable(reason),
            }
        }
    }
}

/// A stream call's response: the items of a bounded buffer, then the final status — which travels
/// on its own channel, so it never waits for room behind the items nor is lost when they fill it.
pub type Outgoing<T> = Pin<Box<dyn futures_util::Stream<Item = Result<T, Status>> + Send>>;

/// The sending ends of an [`Outgoing`] stream. Each item travels with an `R` that lives until the
/// client's side takes the item from the buffer (e.g. the buffer room it holds).
#[derive(Debug)]
pub struct Sending<T, R = ()> {
    /// Items, at most `capacity` waiting for the client.
    pub items: mpsc::Sender<(Result<T, Status>, R)>,
    /// The status that ends the stream after the items (dropped unsent: the stream just ends).
    pub end: oneshot::Sender<Status>,
}

/// A response stream with room for `capacity` items.
pub fn outgoing<T: Send + 'static, R: Send + 'static>(
    capacity: usize,
) -> (Sending<T, R>, Outgoing<T>) {
    let (items, rx) = mpsc::channel(capacity.max(1));
    let (end, end_rx) = oneshot::channel::<Status>();
    let finale =
        futures_util::stream::once(end_rx).filter_map(|r| std::future::ready(r.ok().map(Err)));
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx)
        .map(|(item, _room)| item)
        .chain(finale);
    (Sending { items, end }, Box::pin(stream))
}

/// The byte room a buffered message holds: its share of its stream's own byte budget and of the
/// process's.
pub type Room = Option<(Held, Held)>;

/// A stream a slow reader may lose messages of (Subscribe, Listen): each message takes room in the
/// stream's own byte budget and the process's, and a place in the stream's buffer; without either
/// it is dropped, counted in the namespace's metrics and reported in the next message that goes out.
#[derive(Debug)]
pub struct Lossy {
    own: Arc<Budget>,
    all: Arc<Budget>,
    route: Arc<NamespaceRoute>,
    dropped: u64,
}

/// What became of an offered message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// In the buffer.
    Sent,
    /// Dropped for want of room.
    Dropped,
    /// The client has gone.
    Closed,
}

impl Lossy {
    /// Bounds a stream of `route` by `own` bytes and the process's `all`.
    pub fn new(route: Arc<NamespaceRoute>, own: usize, all: Arc<Budget>) -> Self {
        Self {
            own: Arc::new(Budget::new(own)),
            all,
            route,
            dropped: 0,
        }
    }

    /// Offers a message of `size` bytes, made by `make(drops since the last message sent)`.
    pub fn offer<T>(
        &mut self,
        tx: &mpsc::Sender<(Result<T, Status>, Room)>,
        size: usize,
        make: impl FnOnce(u64) -> T,
    ) -> Offered {
        let counters = &self.route.metrics.messaging;
        let room = self
            .own
            .take_at_least_one(size)
            .and_then(|mine| self.all.take(size).map(|shared| (mine, shared)));
        if room.is_none() {
            self.dropped += 1;
            counters.dropped();
            return Offered::Dropped;
        }
        match tx.try_send((Ok(make(self.dropped)), room)) {
            Ok(()) => {
                self.dropped = 0;
                counters.delivered();
                Offered::Sent
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped += 1;
                counters.dropped();
                Offered::Dropped
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Offered::Closed,
        }
    }

    /// Drops not yet reported to the client.
    pub fn unreported(&self) -> u64 {
        self.dropped
    }
}
