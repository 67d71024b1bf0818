//! How the Mailbox lays its messages out in the storage slot's KeyValue store, and the checks on
//! what callers deliver. Under the namespace's own KeyValue namespace, a message of mailbox `M`
//! stored at `T` microseconds with id `I` is `m/M|R|I`, `R` being `T` counted down from a far date
//! in 16 digits — so an ordered scan of `m/M|` reads the mailbox newest first — and `i/M|I` holds
//! that key, for Get, Delete and duplicate ids. A proxy stamps its deliveries strictly increasing
//! ([`stamp_us`]), so messages it stores one after another read back in that order. `|` is not allowed in mailbox names or ids, so one
//! mailbox's prefix never covers another's. Both keys carry the namespace's retention as their
//! backend expiry, and reads also skip a message older than the retention.

use crate::limits::Limits;
use crate::patterns::names::check_name;
use bytes::Bytes;
use prism_proto::mailbox::v1::MailMessage;
use prost::Message as _;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use tonic::Status;

/// The headers the proxy sets on every message.
pub const SET_BY_PROXY: [&str; 3] = ["message_id", "timestamp", "principal"];
/// The indexed headers a sender may set.
pub const SET_BY_SENDER: [&str; 4] = ["topic", "content_type", "schema_id", "correlation_id"];
/// The prefix of free headers.
pub const FREE_PREFIX: &str = "x-";
/// Timestamps (µs) are stored counted down from this (year 2286), so newer sorts first.
const FAR: i64 = 9_999_999_999_999_999;

/// Now in microseconds since the Unix epoch, strictly greater than every earlier stamp of this
/// process.
pub fn stamp_us() -> i64 {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    let prev = LAST
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(now.max(last + 1))
        })
        .unwrap_or(now);
    now.max(prev + 1)
}

/// The key prefix of mailbox `mailbox`'s messages.
pub fn messages_prefix(mailbox: &str) -> String {
    format!("m/{mailbox}|")
}

/// The key of a message stored at `stamp_us` with id `id`.
pub fn message_key(mailbox: &str, stamp_us: i64, id: &str) -> String {
    format!("m/{mailbox}|{:016}|{id}", FAR - stamp_us.clamp(0, FAR))
}

/// The key after which a newest-first scan finds the messages stored before `until_ms`.
pub fn before_key(mailbox: &str, until_ms: i64) -> String {
    let until_us = until_ms.saturating_mul(1000);
    format!("m/{mailbox}|{:016}|~", FAR - until_us.clamp(0, FAR))
}

/// The index key of message `id`.
pub fn index_key(mailbox: &str, id: &str) -> String {
    format!("i/{mailbox}|{id}")
}

/// `Ok` for a valid mailbox name.
pub fn check_mailbox(mailbox: &str, limits: &Limits) -> Result<(), Status> {
    check_name("mailbox", mailbox, limits)
}

/// `Ok` for a valid message id.
pub fn check_id(field: &str, id: &str, limits: &Limits) -> Result<(), Status> {
    check_name(field, id, limits)
}

/// `Ok` when every header is one a sender may set.
pub fn check_headers(headers: &HashMap<String, String>) -> Result<(), Status> {
    for name in headers.keys() {
        if SET_BY_PROXY.contains(&name.as_str()) {
            return Err(Status::invalid_argument(format!(
                "headers.{name} is set by the proxy, not the sender"
            )));
        }
        if !sender_header(name) {
            return Err(Status::invalid_argument(format!(
                "headers.{name} is not a mailbox header: use topic, content_type, schema_id, correlation_id or a name starting with 'x-'"
            )));
        }
    }
    Ok(())
}

/// Whether a sender may set header `name` (an indexed one or an `x-` one).
pub fn sender_header(name: &str) -> bool {
    SET_BY_SENDER.contains(&name) || is_free(name)
}

/// Whether `name` is a header a filter may name.
pub fn is_indexed(name: &str) -> bool {
    SET_BY_PROXY.contains(&name) || SET_BY_SENDER.contains(&name) || is_free(name)
}

fn is_free(name: &str) -> bool {
    name.len() > FREE_PREFIX.len() && name.starts_with(FREE_PREFIX)
}

/// A message's stored bytes.
pub fn encode(message: &MailMessage) -> Bytes {
    message.encode_to_vec().into()
}

/// A stored message, or `None` when the bytes are not one or it is older than `retention_ms` at
/// `now_ms` (the backend's expiry purges it; this hides it in the moment between).
pub fn decode(bytes: &[u8], now_ms: i64, retention_ms: u64) -> Option<MailMessage> {
    let m = MailMessage::decode(bytes).ok()?;
    let retention = i64::try_from(retention_ms).unwrap_or(i64::MAX);
    (m.timestamp_ms.saturating_add(retention) > now_ms).then_some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_messages_sort_first_and_mailboxes_stay_apart() {
        let older = message_key("a", 1_000, "x");
        let newer = message_key("a", 1_001, "x");
        assert!(newer < older);
        assert!(older.starts_with(&messages_prefix("a")));
        assert!(!message_key("a/b", 1, "x").starts_with(&messages_prefix("a")));
        // A scan after `before_key(until)` starts at the newest message stored before `until`.
        let at = message_key("a", 1_500_000, "zz");
        let before = message_key("a", 1_499_999, "0");
        assert!(before_key("a", 1_500).as_str() >= at.as_str());
        assert!(before_key("a", 1_500).as_str() < before.as_str());
        let (a, b) = (stamp_us(), stamp_us());
        assert!(b > a);
    }

    #[test]
    fn headers_are_checked_by_name() {
        let ok = HashMap::from([
            ("content_type".to_string(), "json".to_string()),
            ("x-tenant".to_string(), "t1".to_string()),
        ]);
        assert!(check_headers(&ok).is_ok());
        for bad in ["timestamp", "color", "x-"] {
            let h = HashMap::from([(bad.to_string(), String::new())]);
            let e = check_headers(&h).expect_err(bad);
            assert!(e.message().contains(bad), "{}", e.message());
        }
        assert!(is_indexed("principal") && is_indexed("x-a") && !is_indexed("color"));
    }

    #[test]
    fn retention_hides_old_messages() {
        let m = MailMessage {
            timestamp_ms: 100,
            ..MailMessage::default()
        };
        let bytes = encode(&m);
        assert!(decode(&bytes, 149, 50).is_some());
        assert!(decode(&bytes, 150, 50).is_none());
    }
}
