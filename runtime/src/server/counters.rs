//! Counters of the transport's limits biting (connection cap and shedding, timeouts, the request
//! buffer budget, calls without a token, descriptor exhaustion): plain atomics, ready for a metrics
//! exporter, each with a rate limit for the log line that goes with it so a flood of refusals cannot
//! flood the log.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// One event count and when its log line was last written.
#[derive(Debug, Default)]
pub struct Counter {
    count: AtomicU64,
    last_logged_ms: AtomicU64,
}

/// The interval between two log lines of one counter.
const LOG_EVERY_MS: u64 = 1000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Counter {
    /// Counts `n` events; returns the new total when a log line is due (at most one a second).
    pub fn bump(&self, n: u64) -> Option<u64> {
        let total = self.count.fetch_add(n, Ordering::Relaxed) + n;
        let now = now_ms();
        let last = self.last_logged_ms.load(Ordering::Relaxed);
        let due = now.saturating_sub(last) >= LOG_EVERY_MS
            && self
                .last_logged_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        due.then_some(total)
    }

    /// The total so far.
    pub fn get(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// Every transport counter of one proxy.
#[derive(Debug, Default)]
pub struct TransportCounters {
    /// Connections closed at accept because `server.max_connections` were open.
    pub connections_refused: Counter,
    /// Connections closed because they sent no HTTP/2 preface within `server.handshake_timeout_ms`.
    pub handshake_timeouts: Counter,
    /// Connections closed after `server.idle_timeout_ms` without a call.
    pub idle_closed: Counter,
    /// Accept failures for want of file descriptors (EMFILE, ENFILE) or memory.
    pub accept_exhausted: Counter,
    /// Calls refused because in-flight request bodies held `server.max_buffered_request_bytes`.
    pub buffer_refusals: Counter,
    /// Calls whose request body did not arrive within `server.request_body_timeout_ms`.
    pub body_timeouts: Counter,
    /// Connections cut because they were still open when `server.drain_timeout_ms` passed.
    pub drain_cut: Counter,
    /// Subscribe/Consume calls refused because their connection held
    /// `server.max_stream_calls_per_connection`.
    pub stream_calls_refused: Counter,
    /// Connections no authenticated call had used, cut to make room for a new one at
    /// `server.max_connections`.
    pub connections_shed: Counter,
    /// Calls that need no token (health, reflection) refused over
    /// `server.max_unauthenticated_calls_per_connection` or `server.max_unauthenticated_calls`.
    pub unauthenticated_refused: Counter,
    /// Pauses of a connection's reads after one of its calls was refused for want of request-buffer
    /// room.
    pub reads_paused: Counter,
    open: AtomicI64,
}

/// One open connection, counted in [`TransportCounters::open`] until dropped (its task ended or
/// was aborted at the drain's end).
#[derive(Debug)]
pub struct OpenConnection(Arc<TransportCounters>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The counters' values at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountersSnapshot {
    /// See [`TransportCounters::connections_refused`].
    pub connections_refused: u64,
    /// See [`TransportCounters::handshake_timeouts`].
    pub handshake_timeouts: u64,
    /// See [`TransportCounters::idle_closed`].
    pub idle_closed: u64,
    /// See [`TransportCounters::accept_exhausted`].
    pub accept_exhausted: u64,
    /// See [`TransportCounters::buffer_refusals`].
    pub buffer_refusals: u64,
    /// See [`TransportCounters::body_timeouts`].
    pub body_timeouts: u64,
    /// See [`TransportCounters::drain_cut`].
    pub drain_cut: u64,
    /// See [`TransportCounters::stream_calls_refused`].
    pub stream_calls_refused: u64,
    /// See [`TransportCounters::connections_shed`].
    pub connections_shed: u64,
    /// See [`TransportCounters::unauthenticated_refused`].
    pub unauthenticated_refused: u64,
    /// See [`TransportCounters::reads_paused`].
    pub reads_paused: u64,
}

impl TransportCounters {
    /// Counts a connection open until the returned guard drops.
    pub fn opened(self: &Arc<Self>) -> OpenConnection {
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenConnection(self.clone())
    }

    /// Connections open now.
    pub fn open(&self) -> i64 {
        self.open.load(Ordering::Relaxed)
    }

    /// The current values.
    pub fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot {
            connections_refused: self.connections_refused.get(),
            handshake_timeouts: self.handshake_timeouts.get(),
            idle_closed: self.idle_closed.get(),
            accept_exhausted: self.accept_exhausted.get(),
            buffer_refusals: self.buffer_refusals.get(),
            body_timeouts: self.body_timeouts.get(),
            drain_cut: self.drain_cut.get(),
            stream_calls_refused: self.stream_calls_refused.get(),
            connections_shed: self.connections_shed.get(),
            unauthenticated_refused: self.unauthenticated_refused.get(),
            reads_paused: self.reads_paused.get(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_logs_once_and_counts_everything() {
        let c = Counter::default();
        assert_eq!(c.bump(1), Some(1), "the first event is logged");
        assert_eq!(c.bump(1), None, "the next, within a second, is not");
        assert_eq!(c.bump(3), None);
        assert_eq!(c.get(), 5);
    }
}
