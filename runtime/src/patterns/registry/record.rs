//! How the Multicast Registry lays its state out in the registry slot's KeyValue store, and the
//! checks on what callers register. Under the namespace's own KeyValue namespace:
//! `r/<identity>` holds the encoded [`Registration`] with the backend's own expiry set to its time
//! to live (so every proxy on the same backend sees it, and it is gone on read once expired), and
//! `l/<identity>/<listener>` marks a live listener, renewed while its Listen stream lasts.

use crate::limits::Limits;
use crate::patterns::names::check_name;
use bytes::Bytes;
use prism_proto::registry::v1::Registration;
use prost::Message as _;
use std::collections::HashMap;
use std::time::Duration;
use tonic::Status;

/// Key prefix of registrations.
pub const REGISTRATIONS: &str = "r/";
/// Key prefix of listener marks.
pub const LISTENERS: &str = "l/";
/// How long a listener's mark lives unless renewed: a proxy that dies without removing its marks
/// lets them lapse within this (until then a Multicast may count its listeners as reached).
pub const LISTENER_TTL: Duration = Duration::from_secs(10);
/// How often a live listener renews its mark.
pub const LISTENER_RENEW: Duration = Duration::from_secs(3);
/// The messaging slot's topic that carries the registry's events to watchers.
pub const EVENTS_TOPIC: &str = "registry-events";

/// The registration key of `identity`.
pub fn registration_key(identity: &str) -> String {
    format!("{REGISTRATIONS}{identity}")
}

/// The mark of listener `listener` of `identity`.
pub fn listener_key(identity: &str, listener: &str) -> String {
    format!("{LISTENERS}{identity}/{listener}")
}

/// The identity a listener mark belongs to (`l/<identity>/<listener>`; listener ids hold no `/`).
pub fn listener_identity(key: &str) -> Option<&str> {
    key.strip_prefix(LISTENERS)?
        .rsplit_once('/')
        .map(|(identity, _)| identity)
}

/// The messaging slot's topic a listener of `identity` subscribes to.
pub fn listen_topic(identity: &str) -> String {
    format!("listen/{identity}")
}

/// `Ok` for a valid identity (the rules of topic names, so it can name a topic in every backend).
pub fn check_identity(identity: &str, limits: &Limits) -> Result<(), Status> {
    check_name("identity", identity, limits)
}

/// `Ok` for metadata within `max_metadata_bytes`, with printable keys.
pub fn check_metadata(metadata: &HashMap<String, String>, limits: &Limits) -> Result<(), Status> {
    let mut bytes = 0usize;
    for (key, value) in metadata {
        if key.is_empty() || key.chars().any(char::is_control) {
            return Err(Status::invalid_argument(format!(
                "metadata key {key:?} must be 1 or more characters without control characters"
            )));
        }
        bytes += key.len() + value.len();
    }
    if bytes > limits.max_metadata_bytes {
        return Err(Status::resource_exhausted(format!(
            "metadata is {bytes} bytes, over the limit max_metadata_bytes = {}",
            limits.max_metadata_bytes
        )));
    }
    Ok(())
}

/// A registration's stored bytes.
pub fn encode(registration: &Registration) -> Bytes {
    registration.encode_to_vec().into()
}

/// A stored registration, or `None` when the bytes are not one or it has expired by `now_ms`
/// (the backend's expiry is checked on read too; this guards the moment between).
pub fn decode(bytes: &[u8], now_ms: i64) -> Option<Registration> {
    let r = Registration::decode(bytes).ok()?;
    (r.expires_at_ms == 0 || r.expires_at_ms > now_ms).then_some(r)
}

/// The expiry of a time to live from `now_ms` (0: never).
pub fn expires_at(now_ms: i64, ttl: Option<Duration>) -> i64 {
    ttl.map_or(0, |t| {
        now_ms.saturating_add(i64::try_from(t.as_millis()).unwrap_or(i64::MAX))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_marks_round_trip() {
        let key = listener_key("svc/a:1", "abc");
        assert!(key.starts_with(LISTENERS));
        assert_eq!(listener_identity(&key), Some("svc/a:1"));
        assert_eq!(listener_identity("r/x"), None);
        assert_eq!(registration_key("a"), "r/a");
    }

    #[test]
    fn expired_records_read_as_gone() {
        let r = Registration {
            identity: "a".into(),
            expires_at_ms: 100,
            ..Registration::default()
        };
        let bytes = encode(&r);
        assert_eq!(decode(&bytes, 99).map(|r| r.identity), Some("a".into()));
        assert!(decode(&bytes, 100).is_none());
        assert!(decode(b"\xff\xff", 0).is_none());
        assert_eq!(expires_at(5, None), 0);
        assert_eq!(expires_at(5, Some(Duration::from_millis(10))), 15);
    }

    #[test]
    fn metadata_over_the_limit_names_it() {
        let limits = Limits {
            max_metadata_bytes: 4,
            ..Limits::default()
        };
        let m = HashMap::from([("ab".to_string(), "cde".to_string())]);
        let e = check_metadata(&m, &limits).expect_err("5 bytes");
        assert!(e.message().contains("max_metadata_bytes"));
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    }
}
