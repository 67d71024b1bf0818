//! What the PostgreSQL and SQLite Queue adapters share. Both keep a messages table and one
//! delivery row per group and message (its attempts so far and the time it may next be taken:
//! when due, when a returned delivery comes back, or when a claim's lease runs out). Taking a
//! delivery raises its attempts and moves that time a lease ahead (the stream's visibility timeout
//! and [`LEASE_GRACE`](crate::patterns::queue::service::LEASE_GRACE), so a crashed proxy's
//! deliveries go out again soon after their timeout); a receipt names the message and
//! the attempt, so an ack or return of a delivery that was since taken again changes nothing.
//! Consumers wait on an in-process [`Notify`] per queue, woken by enqueues and returns (and, on
//! PostgreSQL, by `NOTIFY` from other proxies), and look again at least every [`MAX_WAIT`].

use crate::backends::error::{StoreError, StoreResult};
use crate::patterns::names::hex_token;
use crate::patterns::queue::adapter::{QueuedMessage, Received};
use crate::patterns::queue::fetcher::Take;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::Notify;

/// Longest a consumer waits before looking again (for deliveries that became due, or wake-ups
/// that were missed).
pub const MAX_WAIT: Duration = Duration::from_millis(500);

/// One group of one queue in one namespace.
#[derive(Clone, Debug)]
pub struct GroupRef {
    /// The namespace.
    pub ns: String,
    /// The queue.
    pub queue: String,
    /// The group.
    pub group: String,
}

/// The key of a queue's waiters: both names in hex, so no two pairs share one.
pub fn wake_key(ns: &str, queue: &str) -> String {
    format!("{}.{}", hex_token(ns), hex_token(queue))
}

/// The waiters of each queue this process consumes.
#[derive(Debug, Default)]
pub struct Wakers {
    queues: Mutex<HashMap<String, Weak<Notify>>>,
}

impl Wakers {
    fn queues(&self) -> std::sync::MutexGuard<'_, HashMap<String, Weak<Notify>>> {
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The [`Notify`] of the queue with `key` (see [`wake_key`]), kept while a consumer holds it.
    pub fn notify(&self, key: &str) -> Arc<Notify> {
        let mut queues = self.queues();
        if let Some(n) = queues.get(key).and_then(Weak::upgrade) {
            return n;
        }
        queues.retain(|_, n| n.strong_count() > 0);
        let n = Arc::new(Notify::new());
        queues.insert(key.to_string(), Arc::downgrade(&n));
        n
    }

    /// Wakes the consumers of the queue with `key`.
    pub fn wake(&self, key: &str) {
        if let Some(n) = self.queues().get(key).and_then(Weak::upgrade) {
            n.notify_waiters();
        }
    }

    /// Wakes every consumer (wake-ups may have been missed).
    pub fn wake_all(&self) {
        for n in self.queues().values().filter_map(Weak::upgrade) {
            n.notify_waiters();
        }
    }
}

/// A delivery's receipt: `<seq>.<attempt>`.
pub fn receipt(seq: i64, attempt: i32) -> String {
    format!("{seq}.{attempt}")
}

/// The message sequence number and attempt a receipt names.
pub fn parse_receipt(receipt: &str) -> StoreResult<(i64, i32)> {
    receipt
        .split_once('.')
        .and_then(|(seq, attempt)| Some((seq.parse().ok()?, attempt.parse().ok()?)))
        .ok_or_else(|| StoreError::Internal(format!("malformed queue receipt {receipt:?}").into()))
}

/// Headers as stored: a JSON object.
pub fn headers_json(headers: &HashMap<String, String>) -> StoreResult<String> {
    serde_json::to_string(headers).map_err(|e| StoreError::Internal(Box::new(e)))
}

/// A taken row's columns → the delivery.
pub fn received(
    seq: i64,
    attempts: i32,
    message_id: String,
    payload: Vec<u8>,
    headers: &str,
    enqueued_at_ms: i64,
) -> StoreResult<Received> {
    let headers = serde_json::from_str(headers)
        .map_err(|e| StoreError::Internal(format!("a queue message's headers: {e}").into()))?;
    Ok(Received {
        message: QueuedMessage {
            message_id,
            payload: payload.into(),
            headers,
            enqueued_at_ms,
        },
        attempt: u32::try_from(attempts).unwrap_or(0),
        receipt: receipt(seq, attempts),
    })
}

/// How long until something is due, from a database's answer in ms (`None`: nothing held).
pub fn due_in(ms: Option<i64>) -> Option<Duration> {
    ms.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

/// A SQL queue's claims, as its consumers use them.
#[async_trait]
pub trait Claims: Send + Sync + 'static {
    /// Takes the group's first due delivery for `lease`; or how long until the next one is due
    /// (`None`: the group has nothing).
    async fn claim(
        &self,
        group: &GroupRef,
        lease: Duration,
    ) -> StoreResult<Result<Received, Option<Duration>>>;
    /// Makes a claimed delivery that never reached a consumer due again at once, with the attempt
    /// it had before.
    async fn unclaim(&self, group: &GroupRef, receipt: &str) -> StoreResult<()>;
}

/// One consumer's takes: claim, or wait for a wake-up or the next due time (at most
/// [`MAX_WAIT`]).
pub struct Taking<C> {
    claims: Arc<C>,
    group: GroupRef,
    woken: Arc<Notify>,
    lease: Duration,
}

impl<C: Claims> Taking<C> {
    /// Takes from `group` of `claims` for `lease` each, woken by `woken`.
    pub fn new(claims: Arc<C>, group: GroupRef, woken: Arc<Notify>, lease: Duration) -> Self {
        Self {
            claims,
            group,
            woken,
            lease,
        }
    }
}

#[async_trait]
impl<C: Claims> Take for Taking<C> {
    async fn take(&mut self) -> StoreResult<Option<Received>> {
        // Registered before looking, so a wake-up right after the look is not missed.
        let woken = self.woken.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let wait = match self.claims.claim(&self.group, self.lease).await? {
            Ok(received) => return Ok(Some(received)),
            Err(due) => due.map_or(MAX_WAIT, |d| d.min(MAX_WAIT)),
        };
        if !wait.is_zero() {
            tokio::select! {
                () = &mut woken => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
        Ok(None)
    }

    async fn give_back(&mut self, received: Received) {
        if let Err(e) = self.claims.unclaim(&self.group, &received.receipt).await {
            tracing::warn!(error = %e, queue = %self.group.queue, receipt = %received.receipt, "could not give a delivery back; it goes out again when its lease ends");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_round_trip_and_bad_ones_are_refused() {
        assert_eq!(parse_receipt(&receipt(42, 3)).expect("parses"), (42, 3));
        for bad in ["", "42", "a.1", "1.b", "1.2.3"] {
            assert!(parse_receipt(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_row_becomes_its_delivery() {
        let headers = headers_json(&HashMap::from([("k".into(), "v".into())])).expect("json");
        let r = received(7, 2, "m".into(), vec![0, 255], &headers, 9).expect("a delivery");
        assert_eq!(
            (
                r.attempt,
                r.receipt.as_str(),
                r.message.payload.as_ref(),
                r.message.enqueued_at_ms
            ),
            (2, "7.2", &[0u8, 255][..], 9)
        );
        assert_eq!(r.message.headers.get("k").map(String::as_str), Some("v"));
        assert!(received(1, 1, "m".into(), vec![], "not json", 0).is_err());
    }

    #[test]
    fn wake_keys_keep_names_apart() {
        assert_ne!(wake_key("a.b", "c"), wake_key("a", "b.c"));
    }

    #[tokio::test]
    async fn a_wake_reaches_the_queue_it_names_only() {
        let wakers = Wakers::default();
        let mine = wakers.notify(&wake_key("ns", "q"));
        let other = wakers.notify(&wake_key("ns", "r"));
        {
            let woken = mine.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let not_woken = other.notified();
            tokio::pin!(not_woken);
            not_woken.as_mut().enable();
            wakers.wake(&wake_key("ns", "q"));
            tokio::time::timeout(Duration::from_millis(100), woken)
                .await
                .expect("woken");
            assert!(
                tokio::time::timeout(Duration::from_millis(20), not_woken)
                    .await
                    .is_err()
            );
        }
        drop((mine, other));
        let _kept = wakers.notify("x");
        assert_eq!(
            wakers.queues().len(),
            1,
            "queues nobody waits on are forgotten"
        );
    }
}
