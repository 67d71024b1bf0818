//! Checks shared by the messaging patterns: topic, queue and group names, message headers and
//! payload sizes (each refusal names the field and the limit), and message ids.

use crate::limits::Limits;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use tonic::Status;

/// Whether `c` may appear in a topic, queue or group name.
fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':')
}

/// `Ok` when `value` is a valid name for `field` (`topic`, `queue`, `group`): 1..=max_name_bytes
/// bytes of letters, digits, `.`, `_`, `-`, `/` and `:`, not starting or ending with `.`, without
/// `..`. Backends may rely on this: no wildcard, space or control character reaches them.
pub fn check_name(field: &str, value: &str, limits: &Limits) -> Result<(), Status> {
    if value.is_empty() {
        return Err(Status::invalid_argument(format!("{field} is empty")));
    }
    if value.len() > limits.max_name_bytes {
        return Err(Status::invalid_argument(format!(
            "{field} is {} bytes, over the limit max_name_bytes = {}",
            value.len(),
            limits.max_name_bytes
        )));
    }
    if let Some(bad) = value.chars().find(|c| !name_char(*c)) {
        return Err(Status::invalid_argument(format!(
            "{field} {value:?} contains {bad:?}; names are letters, digits, '.', '_', '-', '/' and ':'"
        )));
    }
    if value.starts_with('.') || value.ends_with('.') || value.contains("..") {
        return Err(Status::invalid_argument(format!(
            "{field} {value:?} starts or ends with '.' or contains '..'"
        )));
    }
    Ok(())
}

/// `name`'s bytes in hex: a token that holds no separator, wildcard or space of any backend, and
/// keeps two different names apart wherever it stands.
pub fn hex_token(name: &str) -> String {
    name.bytes().map(|b| format!("{b:02x}")).collect()
}

/// A short stable name for `parts` (32 hex digits of a SHA-256 over each part and its length, so
/// no two different lists of parts collide by shifting bytes between them): for backends whose
/// names have a length limit (JetStream streams and consumers, PostgreSQL channels).
pub fn digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.len().to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Header name prefixes applications may not use: a backend gives some of them meaning (NATS
/// JetStream's `Nats-Msg-Id` deduplicates, `Nats-Expected-*` makes a publish conditional), and Prism
/// keeps its own in `Prism-*`.
pub const RESERVED_HEADER_PREFIXES: [&str; 2] = ["nats-", "prism-"];

/// `Ok` when a message's payload and headers are within the namespace's limits.
pub fn check_message(
    payload: &[u8],
    headers: &HashMap<String, String>,
    limits: &Limits,
) -> Result<(), Status> {
    if payload.len() > limits.max_value_bytes {
        return Err(Status::resource_exhausted(format!(
            "payload is {} bytes, over the limit max_value_bytes = {}",
            payload.len(),
            limits.max_value_bytes
        )));
    }
    if headers.len() > limits.max_message_headers {
        return Err(Status::resource_exhausted(format!(
            "headers has {} entries, over the limit max_message_headers = {}",
            headers.len(),
            limits.max_message_headers
        )));
    }
    let mut bytes = 0usize;
    for (key, value) in headers {
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_graphic() && c != ':') {
            return Err(Status::invalid_argument(format!(
                "headers key {key:?} must be 1 or more printable ASCII characters without spaces or ':'"
            )));
        }
        let lower = key.to_ascii_lowercase();
        if RESERVED_HEADER_PREFIXES
            .iter()
            .any(|p| lower.starts_with(p))
        {
            return Err(Status::invalid_argument(format!(
                "headers key {key:?} is reserved (names starting with {} belong to Prism and its backends)",
                RESERVED_HEADER_PREFIXES.join(", ")
            )));
        }
        if value.chars().any(char::is_control) {
            return Err(Status::invalid_argument(format!(
                "headers[{key:?}] contains a control character"
            )));
        }
        bytes += key.len() + value.len();
    }
    if bytes > limits.max_message_header_bytes {
        return Err(Status::resource_exhausted(format!(
            "headers are {bytes} bytes, over the limit max_message_header_bytes = {}",
            limits.max_message_header_bytes
        )));
    }
    Ok(())
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A new id, unique within this process and (by its start-time part) across restarts: 12 hex digits
/// of the process's start in microseconds, then a counter.
pub fn new_id() -> String {
    static START: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let start = START.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64)
            & 0xffff_ffff_ffff
    });
    format!("{start:012x}-{:x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("orders", true)]
    #[case("orders.eu/west:1_a-b", true)]
    #[case("", false)]
    #[case("a b", false)]
    #[case("a.*", false)]
    #[case("a.>", false)]
    #[case(".a", false)]
    #[case("a.", false)]
    #[case("a..b", false)]
    #[case("é", false)]
    fn names(#[case] name: &str, #[case] ok: bool) {
        assert_eq!(
            check_name("topic", name, &Limits::default()).is_ok(),
            ok,
            "{name:?}"
        );
    }

    #[test]
    fn a_long_name_names_the_limit() {
        let long = "a".repeat(Limits::default().max_name_bytes + 1);
        let e = check_name("queue", &long, &Limits::default()).expect_err("too long");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("max_name_bytes"), "{}", e.message());
    }

    #[test]
    fn reserved_header_names_are_refused_in_any_case() {
        let limits = Limits::default();
        for key in [
            "Nats-Msg-Id",
            "nats-expected-last-sequence",
            "PRISM-Message-Id",
        ] {
            let headers = HashMap::from([(key.to_string(), "1".to_string())]);
            let e = check_message(b"", &headers, &limits).expect_err(key);
            assert!(e.message().contains("reserved"), "{}", e.message());
        }
        let ok = HashMap::from([("x-prism-dlq-source".to_string(), "q".to_string())]);
        assert!(check_message(b"", &ok, &limits).is_ok());
    }

    #[test]
    fn ids_are_unique() {
        let a = new_id();
        assert_ne!(a, new_id());
    }
}
