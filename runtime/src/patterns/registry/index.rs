//! The registry's metadata index, in the registry slot beside the registrations: every metadata
//! pair `key = value` of a registration has an entry `x/<hex key>.<hex value>/<identity>` with the
//! registration's time to live (rewritten by each Heartbeat). Enumerate and Multicast read a filter
//! (and Watch its starting set) through the entries of its last top-level `eq` comparison whose value is not a number (a number
//! compares numerically, so `"10"` also matches `"10.0"`, which no exact entry can find) and then
//! check each candidate's stored registration against the whole filter — so an entry left by a
//! replaced or removed registration only costs a read, and the answers are those of a full walk.
//! Register (when it replaces) and Unregister delete the entries the old registration no longer
//! needs *before* they write or delete the registration, and every write of entries comes *after*
//! its registration's: so whatever the interleaving of calls for one identity, a stored
//! registration always has its entries (a late delete can only remove an entry whose registration
//! was rewritten after it). Reads never delete: an entry a Heartbeat rewrote for metadata a racing
//! Register just replaced stays until its time to live ends.

use super::record::{self, REGISTRATIONS};
use super::store::{each_registration, on_registry};
use crate::patterns::Slot;
use crate::patterns::call::{Call, unimplemented};
use crate::patterns::capability::Capability;
use crate::patterns::filter::{self, is_number};
use crate::patterns::keyvalue::store::{BatchItem, KvBatch, KvStore};
use crate::patterns::keyvalue::walk::Records;
use crate::patterns::names::{hex_token, now_ms};
use bytes::Bytes;
use prism_proto::filter::v1::{Compare, Filter, compare::Op, filter::Clause};
use prism_proto::registry::v1::Registration;
use std::time::Duration;
use tonic::Status;

/// Key prefix of index entries.
pub const INDEX: &str = "x/";
/// Index entries read per batch after the first.
const PAGE: usize = 512;

/// The prefix of the entries of pair `key = value`.
pub fn prefix(key: &str, value: &str) -> String {
    format!("{INDEX}{}.{}/", hex_token(key), hex_token(value))
}

/// The pair a filter is read through, if it has one (see the module docs).
pub fn plan(filter: Option<&Filter>) -> Option<(&str, &str)> {
    fn exact(f: &Filter) -> Option<(&str, &str)> {
        match &f.clause {
            Some(Clause::Compare(c)) => exact_eq(c),
            _ => None,
        }
    }
    let f = filter?;
    match &f.clause {
        Some(Clause::All(list)) => list.filters.iter().rev().find_map(exact),
        _ => exact(f),
    }
}

fn exact_eq(c: &Compare) -> Option<(&str, &str)> {
    (Op::try_from(c.op) == Ok(Op::Eq) && !is_number(&c.value))
        .then_some((c.key.as_str(), c.value.as_str()))
}

/// The registry slot's several-keys-per-call API (the slot needs `keyvalue.batch`).
fn batch<'a>(call: &Call, kv: &'a dyn KvStore) -> Result<&'a dyn KvBatch, Status> {
    kv.batch()
        .ok_or_else(|| unimplemented(&call.route, Capability::RegistryBasic))
}

/// Writes the entries of every metadata pair of `registration`, expiring after `ttl`.
pub async fn write(
    call: &Call,
    kv: &dyn KvStore,
    registration: &Registration,
    ttl: Option<Duration>,
) -> Result<(), Status> {
    let items: Vec<BatchItem> = registration
        .metadata
        .iter()
        .map(|(k, v)| BatchItem {
            key: format!("{}{}", prefix(k, v), registration.identity),
            value: Bytes::new(),
            ttl,
        })
        .collect();
    if items.is_empty() {
        return Ok(());
    }
    let batch = batch(call, kv)?;
    on_registry(call, batch.batch_set(&call.route.name, items)).await?;
    Ok(())
}

/// Deletes the entries of `old`'s pairs that `new` (its replacement, if any) does not have.
pub async fn forget(
    call: &Call,
    kv: &dyn KvStore,
    old: &Registration,
    new: Option<&Registration>,
) -> Result<(), Status> {
    let keys: Vec<String> = old
        .metadata
        .iter()
        .filter(|(k, v)| new.and_then(|n| n.metadata.get(*k)) != Some(*v))
        .map(|(k, v)| format!("{}{}", prefix(k, v), old.identity))
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    let batch = batch(call, kv)?;
    on_registry(call, batch.batch_delete(&call.route.name, &keys)).await?;
    Ok(())
}

/// Walks the live registrations that match `filter`, in identity order from after the
/// registration key `after`, handing each with its registration key to `visit` until it returns
/// `false`: through the index when [`plan`] finds a pair, else over every registration. `want` is
/// how many matches the caller needs at most (a page of Enumerate), the size of the first batch of
/// index entries read.
pub async fn each_match(
    call: &Call,
    kv: &dyn KvStore,
    filter: Option<&Filter>,
    after: Option<String>,
    want: usize,
    mut visit: impl FnMut(Registration, &str) -> Result<bool, Status>,
) -> Result<(), Status> {
    let visit = |r: Registration, key: &str| {
        if filter::matches(filter, &r.metadata) {
            visit(r, key)
        } else {
            Ok(true)
        }
    };
    match plan(filter) {
        Some(pair) => each_candidate(call, kv, pair, after.as_deref(), want, visit).await,
        None => each_registration(call, kv, after, visit).await,
    }
}

/// Walks every live registration that matches `filter` (see [`each_match`]).
pub async fn each_of_all(
    call: &Call,
    kv: &dyn KvStore,
    filter: Option<&Filter>,
    visit: impl FnMut(Registration, &str) -> Result<bool, Status>,
) -> Result<(), Status> {
    each_match(call, kv, filter, None, usize::MAX, visit).await
}

/// Walks the live registrations that have an entry of pair `key = value`, in identity order from
/// after the registration key `after`, reading `want` entries first and then [`PAGE`] at a time.
async fn each_candidate(
    call: &Call,
    kv: &dyn KvStore,
    (key, value): (&str, &str),
    after: Option<&str>,
    want: usize,
    mut visit: impl FnMut(Registration, &str) -> Result<bool, Status>,
) -> Result<(), Status> {
    let prefix = prefix(key, value);
    let records = Records {
        slot: Slot::Registry,
        capability: Capability::RegistryBasic,
        kv,
    };
    let batch = batch(call, kv)?;
    let max_bytes = call.route.limits.max_message_bytes();
    let mut after = after
        .and_then(|k| k.strip_prefix(REGISTRATIONS))
        .map(|identity| format!("{prefix}{identity}"));
    let mut size = want.clamp(1, PAGE);
    loop {
        let (items, more) = records
            .page(call, &prefix, after.as_deref(), size, true)
            .await?;
        size = PAGE;
        let keys: Vec<String> = items
            .iter()
            .filter_map(|i| i.key.strip_prefix(&prefix))
            .map(record::registration_key)
            .collect();
        let stored = on_registry(call, batch.batch_get(&call.route.name, &keys, max_bytes)).await?;
        let now = now_ms();
        for (key_of, entry) in keys.iter().zip(stored) {
            let Some(r) = entry.and_then(|e| record::decode(&e.value, now)) else {
                continue;
            };
            if !visit(r, key_of)? {
                return Ok(());
            }
        }
        match (more, items.last()) {
            (true, Some(last)) => after = Some(last.key.clone()),
            _ => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prism_proto::filter::v1::Filters;

    fn eq(key: &str, value: &str) -> Filter {
        Filter {
            clause: Some(Clause::Compare(Compare {
                key: key.into(),
                op: Op::Eq as i32,
                value: value.into(),
            })),
        }
    }

    #[test]
    fn the_last_exact_eq_of_the_top_level_is_read() {
        let all = |filters| Filter {
            clause: Some(Clause::All(Filters { filters })),
        };
        assert_eq!(plan(Some(&eq("zone", "eu"))), Some(("zone", "eu")));
        assert_eq!(
            plan(Some(&all(vec![eq("run", "r1"), eq("group", "g3")]))),
            Some(("group", "g3"))
        );
        // A number compares numerically: no exact entry can find "10.0" for "10".
        assert_eq!(
            plan(Some(&all(vec![eq("run", "r1"), eq("load", "10")]))),
            Some(("run", "r1"))
        );
        assert_eq!(plan(Some(&eq("load", "10"))), None);
        let any = Filter {
            clause: Some(Clause::Any(Filters {
                filters: vec![eq("a", "x")],
            })),
        };
        assert_eq!(plan(Some(&any)), None);
        assert_eq!(plan(None), None);
        assert!(prefix("a", "b/c").starts_with(INDEX));
        assert_ne!(prefix("a.b", "c"), prefix("a", "b.c"));
    }
}
