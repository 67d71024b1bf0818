//! The delivery ledger of a messaging scenario: every acknowledged enqueue, every delivery, and why
//! a delivery was returned. At the end the runner checks that each message enqueued to a queue was
//! delivered at least once in every group that consumed that queue, and counts duplicates with
//! their cause.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Why a message was delivered more than once to a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cause {
    /// The scenario nacked it.
    Nack,
    /// The stream holding it ended (disconnect).
    Disconnect,
    /// Neither: its visibility timeout passed.
    Timeout,
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cause::Nack => "nack",
            Cause::Disconnect => "disconnect",
            Cause::Timeout => "redelivery after visibility timeout",
        })
    }
}

/// A queue of one namespace: `namespace/queue`.
pub type QueueKey = String;

/// What the scenario did and saw.
#[derive(Debug, Default)]
pub struct Ledger {
    enqueued: BTreeMap<QueueKey, BTreeSet<String>>,
    consumed: BTreeSet<(QueueKey, String)>,
    deliveries: BTreeMap<(QueueKey, String, String), u64>,
    returned: BTreeMap<(QueueKey, String, String), Cause>,
    duplicates: BTreeMap<Cause, u64>,
}

/// The ledger's verdict.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Enqueues acknowledged by the proxy.
    pub enqueued: u64,
    /// `(queue, group, message_id)` never delivered.
    pub lost: Vec<(QueueKey, String, String)>,
    /// Deliveries beyond the first, by cause.
    pub duplicates: BTreeMap<Cause, u64>,
}

impl Verdict {
    /// One line for a report: counts, and the first lost messages.
    pub fn summary(&self) -> String {
        let dups: u64 = self.duplicates.values().sum();
        let mut text = format!(
            "ledger: {} enqueued, {} lost, {dups} duplicate deliveries",
            self.enqueued,
            self.lost.len()
        );
        if dups > 0 {
            let causes: Vec<String> = self
                .duplicates
                .iter()
                .map(|(c, n)| format!("{n} {c}"))
                .collect();
            text.push_str(&format!(" ({})", causes.join(", ")));
        }
        if !self.lost.is_empty() {
            let first: Vec<String> = self
                .lost
                .iter()
                .take(5)
                .map(|(q, g, id)| format!("{id} on {q} group {g}"))
                .collect();
            text.push_str(&format!("; never delivered: {}", first.join(", ")));
            if self.lost.len() > 5 {
                text.push_str(&format!(" and {} more", self.lost.len() - 5));
            }
        }
        text
    }
}

impl Ledger {
    /// The proxy acknowledged an enqueue.
    pub fn enqueued(&mut self, queue: &str, message_id: &str) {
        self.enqueued
            .entry(queue.to_string())
            .or_default()
            .insert(message_id.to_string());
    }

    /// A consumer of `group` on `queue` was opened.
    pub fn consuming(&mut self, queue: &str, group: &str) {
        self.consumed.insert((queue.to_string(), group.to_string()));
    }

    /// A delivery arrived.
    pub fn delivered(&mut self, queue: &str, group: &str, message_id: &str) {
        let key = (queue.to_string(), group.to_string(), message_id.to_string());
        let seen = self.deliveries.entry(key.clone()).or_default();
        *seen += 1;
        if *seen > 1 {
            let cause = self.returned.remove(&key).unwrap_or(Cause::Timeout);
            *self.duplicates.entry(cause).or_default() += 1;
        }
    }

    /// The scenario returned a delivery (nack, or a disconnect while holding it); recorded before
    /// the call, so a redelivery that overtakes its answer still counts under this cause.
    pub fn returned(&mut self, queue: &str, group: &str, message_id: &str, cause: Cause) {
        self.returned.insert(
            (queue.to_string(), group.to_string(), message_id.to_string()),
            cause,
        );
    }

    /// The return recorded by [`Ledger::returned`] failed (the nack was refused).
    pub fn not_returned(&mut self, queue: &str, group: &str, message_id: &str) {
        self.returned
            .remove(&(queue.to_string(), group.to_string(), message_id.to_string()));
    }

    /// Whether the scenario used a queue at all.
    pub fn is_empty(&self) -> bool {
        self.enqueued.is_empty() && self.consumed.is_empty()
    }

    /// Every acknowledged enqueue must have been delivered in every group that consumed its queue,
    /// and every delivery the scenario returned must have come back (to its group, or to the
    /// dead-letter queue).
    pub fn verdict(&self) -> Verdict {
        let mut lost = Vec::new();
        for (queue, group, id) in self.returned.keys() {
            let dlq = format!("{queue}.dlq");
            let dead_lettered = self.deliveries.keys().any(|(q, _, m)| *q == dlq && m == id);
            if !dead_lettered {
                lost.push((queue.clone(), group.clone(), id.clone()));
            }
        }
        for (queue, group) in &self.consumed {
            for id in self.enqueued.get(queue).into_iter().flatten() {
                let key = (queue.clone(), group.clone(), id.clone());
                if !self.deliveries.contains_key(&key) {
                    lost.push(key);
                }
            }
        }
        Verdict {
            enqueued: self.enqueued.values().map(|s| s.len() as u64).sum(),
            lost,
            duplicates: self.duplicates.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seeded_lost_message_fails_and_seeded_duplicates_are_counted_by_cause() {
        let mut l = Ledger::default();
        l.consuming("ns/q", "g");
        for id in ["a", "b", "c"] {
            l.enqueued("ns/q", id);
        }
        l.delivered("ns/q", "g", "a");
        l.delivered("ns/q", "g", "b");
        l.returned("ns/q", "g", "b", Cause::Nack);
        l.delivered("ns/q", "g", "b");
        l.delivered("ns/q", "g", "a");
        let v = l.verdict();
        assert_eq!(
            v.lost,
            vec![("ns/q".into(), "g".into(), "c".into())],
            "c was never delivered"
        );
        assert_eq!(
            v.duplicates,
            BTreeMap::from([(Cause::Nack, 1), (Cause::Timeout, 1)])
        );
        assert!(v.summary().contains("1 lost"), "{}", v.summary());
        l.delivered("ns/q", "g", "c");
        assert!(l.verdict().lost.is_empty());
    }

    #[test]
    fn a_returned_delivery_that_never_comes_back_is_lost_unless_dead_lettered() {
        let mut l = Ledger::default();
        l.consuming("ns/q", "g");
        l.enqueued("ns/q", "a");
        l.enqueued("ns/q", "b");
        l.delivered("ns/q", "g", "a");
        l.delivered("ns/q", "g", "b");
        l.returned("ns/q", "g", "a", Cause::Nack);
        l.returned("ns/q", "g", "b", Cause::Disconnect);
        l.delivered("ns/q.dlq", "g", "b");
        assert_eq!(
            l.verdict().lost,
            vec![("ns/q".into(), "g".into(), "a".into())]
        );
        l.delivered("ns/q", "g", "a");
        assert!(l.verdict().lost.is_empty());
    }

    #[test]
    fn every_consuming_group_must_see_every_message_and_unconsumed_queues_are_not_judged() {
        let mut l = Ledger::default();
        l.enqueued("ns/q", "m");
        l.enqueued("ns/unread", "x");
        l.consuming("ns/q", "a");
        l.consuming("ns/q", "b");
        l.delivered("ns/q", "a", "m");
        assert_eq!(
            l.verdict().lost,
            vec![("ns/q".into(), "b".into(), "m".into())]
        );
    }
}
