//! memstore's Queue adapter. Per namespace and queue: the messages still held, and per group the
//! messages it may take (with the time each becomes visible), those it has out, and how often each
//! was delivered. A message is held until every group that exists has acked it; a new group starts
//! with everything still held. Consumers wait on the queue's [`Notify`] and a timer for the next
//! message to become visible.

use crate::backends::error::{StoreError, StoreResult};
use crate::patterns::capability::Capability;
use crate::patterns::queue::adapter::{
    QueueAdapter, QueueConsumer, QueuedMessage, Received, every_capability,
};
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Debug, Default)]
struct Group {
    /// Messages the group may take: seq → visible from.
    ready: BTreeMap<u64, Instant>,
    /// Messages out with a consumer.
    out: HashMap<u64, ()>,
    /// Deliveries so far, per message.
    attempts: HashMap<u64, u32>,
}

#[derive(Debug, Default)]
struct QueueState {
    next_seq: u64,
    /// Held messages and how many groups have not yet acked each.
    held: BTreeMap<u64, (QueuedMessage, usize, Instant)>,
    groups: HashMap<String, Group>,
}

impl QueueState {
    fn group(&mut self, name: &str) -> &mut Group {
        if !self.groups.contains_key(name) {
            let mut group = Group::default();
            for (seq, (_, pending, visible)) in self.held.iter_mut() {
                group.ready.insert(*seq, *visible);
                *pending += 1;
            }
            self.groups.insert(name.to_string(), group);
        }
        self.groups.get_mut(name).expect("inserted above")
    }

    /// Takes the group's first visible message, or tells when the next one becomes visible.
    fn take(&mut self, group: &str, now: Instant) -> Result<Received, Option<Instant>> {
        let held = &self.held;
        let g = self.groups.get_mut(group).ok_or(None)?;
        let Some((&seq, _)) = g.ready.iter().find(|(_, visible)| **visible <= now) else {
            return Err(g.ready.values().min().copied());
        };
        g.ready.remove(&seq);
        g.out.insert(seq, ());
        let attempt = g.attempts.entry(seq).or_default();
        *attempt += 1;
        let message = held.get(&seq).map(|(m, _, _)| m.clone()).ok_or(None)?;
        Ok(Received {
            message,
            attempt: *attempt,
            receipt: seq.to_string(),
        })
    }

    fn done(&mut self, group: &str, seq: u64) -> StoreResult<()> {
        let g = self
            .groups
            .get_mut(group)
            .ok_or_else(|| unknown(group, seq))?;
        g.out.remove(&seq).ok_or_else(|| unknown(group, seq))?;
        g.attempts.remove(&seq);
        if let Some((_, pending, _)) = self.held.get_mut(&seq) {
            *pending = pending.saturating_sub(1);
            if *pending == 0 {
                self.held.remove(&seq);
            }
        }
        Ok(())
    }

    fn give_back(&mut self, group: &str, seq: u64, visible: Instant) -> StoreResult<()> {
        let g = self
            .groups
            .get_mut(group)
            .ok_or_else(|| unknown(group, seq))?;
        g.out.remove(&seq).ok_or_else(|| unknown(group, seq))?;
        g.ready.insert(seq, visible);
        Ok(())
    }
}

fn unknown(group: &str, seq: u64) -> StoreError {
    StoreError::Internal(format!("memstore: group {group:?} has no delivery {seq} out").into())
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<QueueState>,
    changed: Notify,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// In-memory queues.
#[derive(Debug, Default)]
pub struct MemQueue {
    queues: Mutex<HashMap<(String, String), Arc<Shared>>>,
}

impl MemQueue {
    fn queue(&self, ns: &str, queue: &str) -> Arc<Shared> {
        self.queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((ns.to_string(), queue.to_string()))
            .or_default()
            .clone()
    }
}

fn seq_of(receipt: &str) -> StoreResult<u64> {
    receipt.parse().map_err(|_| {
        StoreError::Internal(format!("memstore: malformed receipt {receipt:?}").into())
    })
}

#[async_trait]
impl QueueAdapter for MemQueue {
    fn capabilities(&self) -> Vec<Capability> {
        every_capability(false)
    }

    async fn enqueue(
        &self,
        ns: &str,
        queue: &str,
        message: QueuedMessage,
        delay: Duration,
    ) -> StoreResult<()> {
        let shared = self.queue(ns, queue);
        {
            let mut q = shared.state();
            let visible = Instant::now() + delay;
            let seq = q.next_seq;
            q.next_seq += 1;
            let groups = q.groups.len();
            for g in q.groups.values_mut() {
                g.ready.insert(seq, visible);
            }
            q.held.insert(seq, (message, groups, visible));
        }
        shared.changed.notify_waiters();
        Ok(())
    }

    async fn consumer(
        &self,
        ns: &str,
        queue: &str,
        group: &str,
        _lease: Duration,
    ) -> StoreResult<Box<dyn QueueConsumer>> {
        // The store lives in the proxy's process: a crash takes the deliveries with it, so no
        // lease is needed to get them back.
        let shared = self.queue(ns, queue);
        shared.state().group(group);
        Ok(Box::new(MemConsumer {
            shared,
            group: group.to_string(),
        }))
    }

    async fn ack(&self, ns: &str, queue: &str, group: &str, receipt: &str) -> StoreResult<()> {
        let seq = seq_of(receipt)?;
        self.queue(ns, queue).state().done(group, seq)
    }

    async fn nack(
        &self,
        ns: &str,
        queue: &str,
        group: &str,
        receipt: &str,
        delay: Duration,
    ) -> StoreResult<()> {
        let seq = seq_of(receipt)?;
        let shared = self.queue(ns, queue);
        shared
            .state()
            .give_back(group, seq, Instant::now() + delay)?;
        shared.changed.notify_waiters();
        Ok(())
    }
}

struct MemConsumer {
    shared: Arc<Shared>,
    group: String,
}

#[async_trait]
impl QueueConsumer for MemConsumer {
    async fn next(&mut self) -> StoreResult<Received> {
        loop {
            // Registered before looking, so a message enqueued right after the look wakes us.
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let next_visible = match self.shared.state().take(&self.group, Instant::now()) {
                Ok(received) => return Ok(received),
                Err(next) => next,
            };
            match next_visible {
                Some(at) => {
                    tokio::select! {
                        () = &mut changed => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(30);

    fn message(id: &str) -> QueuedMessage {
        QueuedMessage {
            message_id: id.into(),
            payload: id.as_bytes().to_vec().into(),
            headers: HashMap::new(),
            enqueued_at_ms: 0,
        }
    }

    #[tokio::test]
    async fn groups_each_get_every_message_and_held_messages_go_once_all_acked() {
        let q = MemQueue::default();
        q.enqueue("ns", "q", message("before"), Duration::ZERO)
            .await
            .expect("enqueue");
        let mut a = q.consumer("ns", "q", "a", LEASE).await.expect("a");
        let mut b = q.consumer("ns", "q", "b", LEASE).await.expect("b");
        q.enqueue("ns", "q", message("after"), Duration::ZERO)
            .await
            .expect("enqueue");
        for c in [&mut a, &mut b] {
            let first = c.next().await.expect("first");
            let second = c.next().await.expect("second");
            assert_eq!(
                (
                    first.message.message_id.as_str(),
                    second.message.message_id.as_str()
                ),
                ("before", "after")
            );
        }
        for g in ["a", "b"] {
            q.ack("ns", "q", g, "0").await.expect("ack");
            q.ack("ns", "q", g, "1").await.expect("ack");
        }
        let shared = q.queue("ns", "q");
        assert!(
            shared.state().held.is_empty(),
            "acked by every group: forgotten"
        );
        assert!(q.ack("ns", "q", "a", "0").await.is_err(), "acked twice");
    }

    #[tokio::test]
    async fn a_returned_message_comes_back_with_the_next_attempt_and_namespaces_are_apart() {
        let q = MemQueue::default();
        q.enqueue("ns", "q", message("m"), Duration::ZERO)
            .await
            .expect("enqueue");
        let mut other = q
            .consumer("other", "q", "g", LEASE)
            .await
            .expect("consumer");
        let mut c = q.consumer("ns", "q", "g", LEASE).await.expect("consumer");
        let first = c.next().await.expect("first");
        assert_eq!(first.attempt, 1);
        q.nack("ns", "q", "g", &first.receipt, Duration::ZERO)
            .await
            .expect("nack");
        let again = c.next().await.expect("again");
        assert_eq!((again.attempt, again.message.message_id.as_str()), (2, "m"));
        let nothing = tokio::time::timeout(Duration::from_millis(50), other.next()).await;
        assert!(
            nothing.is_err(),
            "another namespace's queue of the same name is empty"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_delayed_message_is_invisible_until_its_time() {
        let q = MemQueue::default();
        let mut c = q.consumer("ns", "q", "g", LEASE).await.expect("consumer");
        q.enqueue("ns", "q", message("late"), Duration::from_secs(5))
            .await
            .expect("enqueue");
        q.enqueue("ns", "q", message("now"), Duration::ZERO)
            .await
            .expect("enqueue");
        let started = Instant::now();
        assert_eq!(c.next().await.expect("now").message.message_id, "now");
        assert_eq!(c.next().await.expect("late").message.message_id, "late");
        assert!(started.elapsed() >= Duration::from_secs(5));
    }
}
