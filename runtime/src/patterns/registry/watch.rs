//! The Watch stream: list, then watch. It subscribes to the registry's events on the messaging
//! slot first, then reads the matching registrations from the registry slot and sends them as
//! `PRESENT` with one `SYNCED` after them, then turns each event into the change it makes to the
//! watched set. Expiry needs no event: the stream keeps each member's expiry and, when one passes,
//! reads the registration again (a heartbeat may have extended it) before reporting `EXPIRED`.
//! A registration found gone at its expiry is held back for [`EXPIRY_GRACE_MS`] first: if an
//! UNREGISTERED event for it arrives meanwhile (an Unregister racing the expiry check), that is
//! what the watcher is told.
//! A watcher that reads too slowly is ended with RESOURCE_EXHAUSTED rather than silently missing a
//! change; it can watch again and gets the current set.

use super::index;
use super::record::EVENTS_TOPIC;
use super::service::{RegistryService, stored};
use super::store::{self, on_messaging};
use crate::backends::error::StoreError;
use crate::patterns::Slot;
use crate::patterns::call::{routed, slot_stream_status};
use crate::patterns::capability::Capability;
use crate::patterns::filter;
use crate::patterns::names::now_ms;
use crate::patterns::stream::{Outgoing, StreamGuard, outgoing};
use futures_util::StreamExt;
use pb::watch_response::Kind;
use prism_proto::registry::v1 as pb;
use prost::Message as _;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

/// How long a registration found gone at its expiry waits for an UNREGISTERED event before it is
/// reported EXPIRED, in milliseconds.
pub const EXPIRY_GRACE_MS: i64 = 250;

/// The watched set: members by identity, their expiries in time order, and members found gone at
/// their expiry that wait out the grace before they are reported EXPIRED.
#[derive(Debug, Default)]
struct Members {
    by_identity: BTreeMap<String, pb::Registration>,
    expiries: BTreeSet<(i64, String)>,
    gone: BTreeMap<String, (i64, pb::Registration)>,
}

impl Members {
    fn insert(&mut self, r: pb::Registration) {
        self.remove(&r.identity);
        if r.expires_at_ms > 0 {
            self.expiries.insert((r.expires_at_ms, r.identity.clone()));
        }
        self.by_identity.insert(r.identity.clone(), r);
    }

    fn remove(&mut self, identity: &str) -> Option<pb::Registration> {
        let old = self.by_identity.remove(identity)?;
        self.expiries
            .remove(&(old.expires_at_ms, old.identity.clone()));
        Some(old)
    }

    /// The earliest expiry or end of a grace, if any.
    fn next_expiry(&self) -> Option<i64> {
        let grace = self.gone.values().map(|(at, _)| *at).min();
        match (self.expiries.first().map(|(at, _)| *at), grace) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Holds a member found gone at its expiry until `report_at`.
    fn hold_gone(&mut self, identity: &str, report_at: i64) {
        if let Some(old) = self.remove(identity) {
            self.gone.insert(identity.to_string(), (report_at, old));
        }
    }

    /// The EXPIRED events of members whose grace ended by `now`.
    fn expire(&mut self, now: i64) -> Vec<pb::WatchResponse> {
        let ended: Vec<String> = self
            .gone
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        ended
            .into_iter()
            .filter_map(|id| self.gone.remove(&id))
            .map(|(_, old)| event_of(Kind::Expired, old))
            .collect()
    }

    /// Members whose expiry is at or before `now`.
    fn due(&self, now: i64) -> Vec<String> {
        self.expiries
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| id.clone())
            .collect()
    }

    /// The changes an event makes to the set.
    fn apply(
        &mut self,
        event: pb::WatchResponse,
        filter: Option<&prism_proto::filter::v1::Filter>,
    ) -> Vec<pb::WatchResponse> {
        let Some(r) = event.registration.as_ref() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Some((_, old)) = self.gone.remove(&r.identity) {
            if event.kind == Kind::Unregistered as i32 {
                return vec![event_of(Kind::Unregistered, old)];
            }
            out.push(event_of(Kind::Expired, old));
        }
        out.extend(self.change(event, filter));
        out
    }

    /// The change an event makes to the members, if any.
    fn change(
        &mut self,
        event: pb::WatchResponse,
        filter: Option<&prism_proto::filter::v1::Filter>,
    ) -> Option<pb::WatchResponse> {
        let r = event.registration?;
        let known = self.by_identity.get(&r.identity);
        let kind = match Kind::try_from(event.kind).ok()? {
            Kind::Registered | Kind::Updated => {
                if known.is_some_and(|k| k.revision == r.revision) {
                    return None; // already in the initial set
                }
                match (known.is_some(), filter::matches(filter, &r.metadata)) {
                    (false, true) => Kind::Registered,
                    (true, true) => Kind::Updated,
                    (true, false) => {
                        let old = self.remove(&r.identity)?;
                        return Some(event_of(Kind::Left, old));
                    }
                    (false, false) => return None,
                }
            }
            Kind::Unregistered => {
                let old = self.remove(&r.identity)?;
                return Some(event_of(Kind::Unregistered, old));
            }
            _ => return None,
        };
        self.insert(r.clone());
        Some(event_of(kind, r))
    }
}

fn event_of(kind: Kind, registration: pb::Registration) -> pb::WatchResponse {
    pb::WatchResponse {
        kind: kind as i32,
        registration: Some(registration),
    }
}

/// Serves one Watch call.
pub async fn watch(
    service: &RegistryService,
    request: Request<pb::WatchRequest>,
) -> Result<Response<Outgoing<pb::WatchResponse>>, Status> {
    let caller = StreamGuard::caller(&request);
    let (call, r) = routed(request, Capability::RegistryWatch)?;
    let guard = StreamGuard::admit(&call.route, caller.as_deref(), &service.drain)?;
    filter::check("filter", r.filter.as_ref(), &call.route.limits)?;
    let kv = store::keyvalue(&call)?;
    let bus = store::messaging(&call)?;
    // Subscribe before reading, so no change between the read and the subscription is missed.
    let mut events = on_messaging(&call, bus.subscribe(&call.route.name, EVENTS_TOPIC)).await?;
    let mut members = Members::default();
    index::each_of_all(&call, kv.as_ref(), r.filter.as_ref(), |reg, _| {
        members.insert(reg);
        Ok(true)
    })
    .await?;
    let capacity = call.route.limits.subscriber_buffer;
    let (sending, response) = outgoing::<_, ()>(capacity + 1);
    let tx = sending.items;
    let call = call.detached();
    let filter = r.filter;
    tokio::spawn(async move {
        let route = call.route.clone();
        let messaging = route.slot(Slot::Messaging);
        for r in members.by_identity.values() {
            if tx
                .send((Ok(event_of(Kind::Present, r.clone())), ()))
                .await
                .is_err()
            {
                return;
            }
        }
        let synced = pb::WatchResponse {
            kind: Kind::Synced as i32,
            registration: None,
        };
        if tx.send((Ok(synced), ())).await.is_err() {
            return;
        }
        let ended = guard.ended();
        tokio::pin!(ended);
        let last: Option<Status> = 'watch: loop {
            let until_expiry = members.next_expiry().map(|at| {
                Duration::from_millis(u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0))
            });
            let mut out = Vec::new();
            tokio::select! {
                biased;
                status = &mut ended => break Some(status),
                () = tx.closed() => break None,
                () = async {
                    match until_expiry {
                        Some(d) => tokio::time::sleep(d).await,
                        None => std::future::pending().await,
                    }
                } => {
                    out.extend(members.expire(now_ms()));
                    for identity in members.due(now_ms()) {
                        match stored(&call, &identity).await {
                            Ok(Some((renewed, _))) if renewed.expires_at_ms > now_ms() || renewed.expires_at_ms == 0 => {
                                if filter::matches(filter.as_ref(), &renewed.metadata) {
                                    members.insert(renewed);
                                } else if let Some(old) = members.remove(&identity) {
                                    out.push(event_of(Kind::Left, old));
                                }
                            }
                            Ok(_) => members.hold_gone(&identity, now_ms() + EXPIRY_GRACE_MS),
                            Err(status) => break 'watch Some(status),
                        }
                    }
                }
                item = events.next() => match item {
                    Some(Ok(m)) => {
                        let Ok(event) = pb::WatchResponse::decode(m.payload.as_ref()) else {
                            continue;
                        };
                        out.extend(members.apply(event, filter.as_ref()));
                    }
                    Some(Err(e)) => break Some(slot_stream_status(&route, messaging, e)),
                    None => break Some(slot_stream_status(&route, messaging, StoreError::Unavailable(
                        "the messaging backend ended the event subscription; watch again".into(),
                    ))),
                },
            }
            for event in out {
                match tx.try_send((Ok(event), ())) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        break 'watch Some(Status::resource_exhausted(format!(
                            "the watcher fell behind: {capacity} events were waiting (subscriber_buffer); watch again for the current set"
                        )));
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => break 'watch None,
                }
            }
        };
        drop(events);
        drop(tx);
        if let Some(status) = last {
            let _ = sending.end.send(status);
        }
        drop(guard);
    });
    Ok(Response::new(response))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prism_proto::filter::v1 as fpb;
    use std::collections::HashMap;

    fn reg(
        identity: &str,
        revision: &str,
        meta: &[(&str, &str)],
        expires: i64,
    ) -> pb::Registration {
        pb::Registration {
            identity: identity.into(),
            metadata: meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
            expires_at_ms: expires,
            registered_at_ms: 0,
            revision: revision.into(),
        }
    }

    fn kind_of(e: &[pb::WatchResponse]) -> Vec<Kind> {
        e.iter()
            .filter_map(|e| Kind::try_from(e.kind).ok())
            .collect()
    }

    #[test]
    fn events_become_changes_of_the_watched_set() {
        let only_eu = fpb::Filter {
            clause: Some(fpb::filter::Clause::Compare(fpb::Compare {
                key: "region".into(),
                op: fpb::compare::Op::Eq as i32,
                value: "eu".into(),
            })),
        };
        let f = Some(&only_eu);
        let eu = &[("region", "eu")];
        let mut m = Members::default();
        m.insert(reg("a", "1", eu, 50));
        let apply = |m: &mut Members, kind, r| kind_of(&m.apply(event_of(kind, r), f));
        // The initial read already holds revision 1: its event is not repeated.
        assert_eq!(
            apply(&mut m, Kind::Registered, reg("a", "1", eu, 50)),
            vec![]
        );
        assert_eq!(
            apply(&mut m, Kind::Registered, reg("b", "2", eu, 0)),
            vec![Kind::Registered]
        );
        assert_eq!(
            apply(
                &mut m,
                Kind::Registered,
                reg("c", "3", &[("region", "us")], 0)
            ),
            vec![]
        );
        let more = &[("region", "eu"), ("x", "1")];
        assert_eq!(
            apply(&mut m, Kind::Updated, reg("b", "4", more, 0)),
            vec![Kind::Updated]
        );
        assert_eq!(
            apply(&mut m, Kind::Updated, reg("b", "5", &[("region", "us")], 0)),
            vec![Kind::Left]
        );
        assert_eq!(
            apply(&mut m, Kind::Unregistered, reg("b", "", &[], 0)),
            vec![]
        );
        assert_eq!(m.next_expiry(), Some(50));
        assert_eq!(m.due(49), Vec::<String>::new());
        assert_eq!(m.due(50), vec!["a".to_string()]);
        // Found gone at its expiry: an Unregister racing the check wins during the grace.
        m.hold_gone("a", 300);
        assert_eq!(m.next_expiry(), Some(300));
        assert!(m.expire(299).is_empty());
        let gone = m.apply(event_of(Kind::Unregistered, reg("a", "", &[], 0)), f);
        assert_eq!(kind_of(&gone), vec![Kind::Unregistered]);
        assert_eq!(
            gone[0].registration.as_ref().map(|r| r.metadata.len()),
            Some(1)
        );
        assert_eq!(m.next_expiry(), None);
        // Without one, it is reported expired when the grace ends.
        m.insert(reg("d", "6", eu, 70));
        m.hold_gone("d", 320);
        assert_eq!(kind_of(&m.expire(320)), vec![Kind::Expired]);
        assert!(m.gone.is_empty());
    }
}
