//! The accept loop and the drain. Connections are accepted up to `server.max_connections`; at the cap
//! the oldest connection no authenticated call has used is shed to make room ([`Slots`]), and when
//! every one has carried an authenticated call the new one is closed at once (counted and logged);
//! running out of file descriptors backs off instead of spinning.
//! On shutdown the listener is closed first, so new clients fail over at once; every connection is
//! told to drain (GOAWAY; one that never finished its handshake is closed); whatever is still open
//! when the drain bound passes is cut.

use super::connection::{self, Activity, ConnectionService, ConnectionSettings, ResponseBody};
use super::counters::TransportCounters;
use super::slots::{Admission, Slots};
use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// The first pause after an accept fails for want of descriptors; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// The longest pause between accepts while descriptors are exhausted.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Whether an accept error means the process or system is out of descriptors or memory: the
/// pending connection stays queued, so retrying at once would spin.
fn is_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Serves `listener` until `shutdown` resolves, then drains within `drain_timeout`.
pub async fn run<S: ConnectionService<B>, B: ResponseBody>(
    listener: TcpListener,
    service: S,
    settings: Arc<ConnectionSettings>,
    max_connections: usize,
    drain_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let counters: Arc<TransportCounters> = settings.counters.clone();
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let slots = Arc::new(Slots::new(max_connections));
    let mut shutdown = pin!(shutdown);
    let mut backoff = FIRST_BACKOFF;
    let mut paused_until: Option<Instant> = None;
    loop {
        let accept = async {
            if let Some(until) = paused_until {
                tokio::time::sleep_until(until).await;
            }
            listener.accept().await
        };
        tokio::select! {
            () = &mut shutdown => break,
            accepted = accept => {
                paused_until = None;
                match accepted {
                    Ok((stream, peer)) => {
                        backoff = FIRST_BACKOFF;
                        while connections.try_join_next().is_some() {}
                        let activity = Arc::new(Activity::new(settings.max_unauthenticated, Some(peer)));
                        let slot = match slots.admit(&activity) {
                            Admission::Free(slot) => slot,
                            Admission::Shed(slot) => {
                                if let Some(total) = counters.connections_shed.bump(1) {
                                    tracing::warn!(%peer, max_connections, total,
                                        "server.max_connections are open: cut the oldest connection no authenticated call had used");
                                }
                                slot
                            }
                            Admission::Full => {
                                if let Some(total) = counters.connections_refused.bump(1) {
                                    tracing::warn!(%peer, max_connections, total,
                                        "connection refused: server.max_connections are open, each used by an authenticated call");
                                }
                                drop(stream);
                                continue;
                            }
                        };
                        if let Err(e) = stream.set_nodelay(true) {
                            tracing::debug!(%peer, error = %e, "cannot turn off Nagle's algorithm");
                        }
                        let served = connection::serve(
                            stream,
                            service.clone(),
                            settings.clone(),
                            activity,
                            drain_rx.clone(),
                        );
                        let open = counters.opened();
                        connections.spawn(async move {
                            served.await;
                            drop((slot, open));
                        });
                    }
                    Err(e) if is_exhaustion(&e) => {
                        if let Some(total) = counters.accept_exhausted.bump(1) {
                            tracing::error!(error = %e, open = connections.len(), total,
                                pause_ms = backoff.as_millis() as u64,
                                "cannot accept connections: out of file descriptors or memory; backing off");
                        }
                        paused_until = Some(Instant::now() + backoff);
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                    Err(e) => tracing::debug!(error = %e, "accept failed"),
                }
            }
        }
    }
    drop(listener);
    let open = connections.len();
    tracing::info!(
        connections = open,
        bound_ms = drain_timeout.as_millis() as u64,
        "draining: listener closed, GOAWAY sent"
    );
    let _ = drain_tx.send(true);
    let started = Instant::now();
    let bound = tokio::time::sleep(drain_timeout);
    let mut bound = pin!(bound);
    loop {
        tokio::select! {
            next = connections.join_next() => {
                if next.is_none() {
                    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "drained");
                    return;
                }
            }
            () = &mut bound => {
                let cut = connections.len();
                counters.drain_cut.bump(cut as u64);
                tracing::warn!(connections = cut, bound_ms = drain_timeout.as_millis() as u64,
                    "drain bound passed: cutting the connections still open");
                connections.shutdown().await;
                return;
            }
        }
    }
}
