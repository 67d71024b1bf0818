//! The proxy's table of outstanding deliveries: which stream holds which delivery, until when, and
//! how to return it. Acks from any connection find their delivery here; a stream knows how many it
//! holds (its back-pressure) and which of them have passed their visibility deadline. One lock guards
//! the table, so an Ack, a timeout and a stream's end never both claim one delivery.

use super::adapter::QueuedMessage;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tokio::time::Instant;

/// One delivery a consumer holds and has not acked.
#[derive(Clone, Debug)]
pub struct Outstanding {
    /// The namespace it was delivered in.
    pub namespace: String,
    /// Its queue.
    pub queue: String,
    /// Its group.
    pub group: String,
    /// The adapter's handle.
    pub receipt: String,
    /// Its attempt number.
    pub attempt: u32,
    /// The message (for the dead-letter queue).
    pub message: QueuedMessage,
    /// When it is returned if not acked.
    pub deadline: Instant,
    stream: u64,
}

#[derive(Debug, Default)]
struct StreamEntry {
    ids: HashSet<String>,
    changed: Arc<Notify>,
}

#[derive(Debug, Default)]
struct Table {
    by_id: HashMap<String, Outstanding>,
    streams: HashMap<u64, StreamEntry>,
    next_stream: u64,
}

/// Every outstanding delivery of the proxy.
#[derive(Debug, Default)]
pub struct Deliveries(Mutex<Table>);

/// Why an Ack or Nack could not take its deliveries.
#[derive(Debug, PartialEq, Eq)]
pub struct NotOutstanding(pub String);

impl Deliveries {
    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new stream; returns its id and the notify that fires when it loses a delivery.
    pub fn open_stream(&self) -> (u64, Arc<Notify>) {
        let mut t = self.table();
        t.next_stream += 1;
        let id = t.next_stream;
        let entry = StreamEntry::default();
        let changed = entry.changed.clone();
        t.streams.insert(id, entry);
        (id, changed)
    }

    /// How many deliveries consumers hold, by namespace.
    pub fn held_by_namespace(&self) -> HashMap<String, usize> {
        let t = self.table();
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for held in t.by_id.values() {
            *counts.entry(held.namespace.as_str()).or_default() += 1;
        }
        counts
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    /// Records a delivery held by `stream`.
    pub fn hold(&self, stream: u64, delivery_id: String, mut held: Outstanding) {
        held.stream = stream;
        let mut t = self.table();
        if let Some(s) = t.streams.get_mut(&stream) {
            s.ids.insert(delivery_id.clone());
        }
        t.by_id.insert(delivery_id, held);
    }

    /// How many deliveries `stream` holds, and the earliest deadline among them.
    pub fn load(&self, stream: u64) -> (usize, Option<Instant>) {
        let t = self.table();
        let Some(s) = t.streams.get(&stream) else {
            return (0, None);
        };
        let deadline = s
            .ids
            .iter()
            .filter_map(|id| t.by_id.get(id))
            .map(|o| o.deadline)
            .min();
        (s.ids.len(), deadline)
    }

    /// Takes the deliveries named by an Ack or Nack: all of them, or none when one is not
    /// outstanding in this namespace, queue and group (the error names it).
    pub fn take(
        &self,
        namespace: &str,
        queue: &str,
        group: &str,
        ids: &[String],
    ) -> Result<Vec<Outstanding>, NotOutstanding> {
        let mut t = self.table();
        for id in ids {
            let ok = t
                .by_id
                .get(id)
                .is_some_and(|o| o.namespace == namespace && o.queue == queue && o.group == group);
            if !ok {
                return Err(NotOutstanding(id.clone()));
            }
        }
        let mut taken = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(o) = t.by_id.remove(id) {
                if let Some(s) = t.streams.get_mut(&o.stream) {
                    s.ids.remove(id);
                    s.changed.notify_one();
                }
                taken.push(o);
            }
        }
        Ok(taken)
    }

    /// Takes the deliveries of `stream` whose deadline is at or before `now`.
    pub fn take_expired(&self, stream: u64, now: Instant) -> Vec<Outstanding> {
        self.take_where(stream, |o| o.deadline <= now, false)
    }

    /// Takes every delivery of `stream` and forgets the stream.
    pub fn close_stream(&self, stream: u64) -> Vec<Outstanding> {
        self.take_where(stream, |_| true, true)
    }

    fn take_where(
        &self,
        stream: u64,
        pick: impl Fn(&Outstanding) -> bool,
        close: bool,
    ) -> Vec<Outstanding> {
        let mut t = self.table();
        let Table { by_id, streams, .. } = &mut *t;
        let Some(s) = streams.get_mut(&stream) else {
            return Vec::new();
        };
        let picked: Vec<String> = s
            .ids
            .iter()
            .filter(|id| by_id.get(*id).is_some_and(&pick))
            .cloned()
            .collect();
        let mut taken = Vec::with_capacity(picked.len());
        for id in picked {
            s.ids.remove(&id);
            if let Some(o) = by_id.remove(&id) {
                taken.push(o);
            }
        }
        if close {
            streams.remove(&stream);
        }
        taken
    }
}

impl Outstanding {
    /// A delivery of `message` to be held until `deadline`.
    pub fn new(
        namespace: &str,
        queue: &str,
        group: &str,
        receipt: String,
        attempt: u32,
        message: QueuedMessage,
        deadline: Instant,
    ) -> Self {
        Self {
            namespace: namespace.to_string(),
            queue: queue.to_string(),
            group: group.to_string(),
            receipt,
            attempt,
            message,
            deadline,
            stream: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn held(ns: &str, deadline: Instant) -> Outstanding {
        let message = QueuedMessage {
            message_id: "m".into(),
            payload: Default::default(),
            headers: Default::default(),
            enqueued_at_ms: 0,
        };
        Outstanding::new(ns, "q", "g", "r".into(), 1, message, deadline)
    }

    #[test]
    fn an_ack_takes_all_or_nothing_and_only_in_its_namespace() {
        let d = Deliveries::default();
        let (s, _) = d.open_stream();
        let later = Instant::now() + Duration::from_secs(60);
        d.hold(s, "d1".into(), held("a", later));
        d.hold(s, "d2".into(), held("a", later));
        assert_eq!(
            d.take("b", "q", "g", &["d1".into()])
                .expect_err("other tenant"),
            NotOutstanding("d1".into())
        );
        assert_eq!(
            d.take("a", "q", "g", &["d1".into(), "nope".into()])
                .expect_err("one unknown"),
            NotOutstanding("nope".into())
        );
        assert_eq!(d.load(s).0, 2, "nothing taken by a refused ack");
        assert_eq!(
            d.take("a", "q", "g", &["d1".into()]).expect("held").len(),
            1
        );
        assert!(
            d.take("a", "q", "g", &["d1".into()]).is_err(),
            "acked twice"
        );
        assert_eq!(
            d.close_stream(s).len(),
            1,
            "d2 returned at the stream's end"
        );
        assert_eq!(d.load(s).0, 0);
    }

    #[test]
    fn only_expired_deliveries_are_taken_by_the_timer() {
        let d = Deliveries::default();
        let (s, _) = d.open_stream();
        let now = Instant::now();
        d.hold(s, "old".into(), held("a", now));
        d.hold(s, "new".into(), held("a", now + Duration::from_secs(60)));
        assert_eq!(d.load(s), (2, Some(now)));
        let expired = d.take_expired(s, now);
        assert_eq!(expired.len(), 1);
        assert_eq!(d.load(s).0, 1);
    }
}
