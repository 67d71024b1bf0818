//! Request validation for KeyValue calls: every error names the offending field and the limit.

use crate::limits::Limits;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::time::Duration;
use tonic::Status;

/// Checks a key: non-empty, at most `max_key_bytes`, no NUL.
pub fn key(field: &str, key: &str, limits: &Limits) -> Result<(), Status> {
    if key.is_empty() {
        return Err(Status::invalid_argument(format!(
            "{field} must not be empty"
        )));
    }
    if key.len() > limits.max_key_bytes {
        return Err(Status::invalid_argument(format!(
            "{field} is {} bytes, over the limit max_key_bytes = {}",
            key.len(),
            limits.max_key_bytes
        )));
    }
    if key.contains('\0') {
        return Err(Status::invalid_argument(format!(
            "{field} must not contain NUL"
        )));
    }
    Ok(())
}

/// Checks a value's size against `max_value_bytes` (RESOURCE_EXHAUSTED when over).
pub fn value(field: &str, value: &[u8], limits: &Limits) -> Result<(), Status> {
    if value.len() > limits.max_value_bytes {
        return Err(Status::resource_exhausted(format!(
            "{field} is {} bytes, over the limit max_value_bytes = {}",
            value.len(),
            limits.max_value_bytes
        )));
    }
    Ok(())
}

/// Checks a batch's length against `max_batch_size` (RESOURCE_EXHAUSTED when over).
pub fn batch_len(field: &str, len: usize, limits: &Limits) -> Result<(), Status> {
    if len > limits.max_batch_size {
        return Err(Status::resource_exhausted(format!(
            "{field} has {len} items, over the limit max_batch_size = {}",
            limits.max_batch_size
        )));
    }
    Ok(())
}

/// Resolves a Scan `limit` (0 = default) against `max_scan_page`.
pub fn scan_limit(limit: u32, limits: &Limits) -> Result<usize, Status> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if limit == 0 {
        return Ok(crate::limits::DEFAULT_SCAN_PAGE.min(limits.max_scan_page));
    }
    if limit > limits.max_scan_page {
        return Err(Status::resource_exhausted(format!(
            "limit is {limit}, over the limit max_scan_page = {}",
            limits.max_scan_page
        )));
    }
    Ok(limit)
}

/// Longest accepted TTL: 100 years, far beyond any real use and far from every clock's overflow.
pub const MAX_TTL_MS: u64 = 100 * 365 * 24 * 3600 * 1000;

/// A `ttl_ms` field as an optional duration (0 = none); over [`MAX_TTL_MS`] is INVALID_ARGUMENT.
pub fn ttl(field: &str, ttl_ms: u64) -> Result<Option<Duration>, Status> {
    if ttl_ms > MAX_TTL_MS {
        return Err(Status::invalid_argument(format!(
            "{field} is {ttl_ms}, over the limit of {MAX_TTL_MS} (100 years)"
        )));
    }
    Ok((ttl_ms > 0).then(|| Duration::from_millis(ttl_ms)))
}

/// Milliseconds of a remaining TTL, rounded up so a live key never reports 0 (= no expiry).
pub fn ttl_ms(ttl: Option<Duration>) -> u64 {
    ttl.map_or(0, |t| {
        let ms = t.as_micros().div_ceil(1000);
        u64::try_from(ms).unwrap_or(u64::MAX).max(1)
    })
}

/// Encodes the last key of a page as an opaque cursor.
pub fn encode_cursor(last_key: &str) -> String {
    URL_SAFE_NO_PAD.encode(last_key.as_bytes())
}

/// Decodes a cursor, checking it belongs to `prefix`.
pub fn decode_cursor(cursor: &str, prefix: &str) -> Result<Option<String>, Status> {
    if cursor.is_empty() {
        return Ok(None);
    }
    let bad =
        || Status::invalid_argument("cursor is not a cursor returned by Scan for this prefix");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let key = String::from_utf8(bytes).map_err(|_| bad())?;
    if !key.starts_with(prefix) {
        return Err(bad());
    }
    Ok(Some(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_errors_name_the_field_and_limit() {
        let limits = Limits::default();
        assert!(key("key", "a", &limits).is_ok());
        let empty = key("key", "", &limits).unwrap_err();
        assert_eq!(empty.code(), tonic::Code::InvalidArgument);
        assert!(empty.message().contains("key must not be empty"));
        let long = key("keys[2]", &"x".repeat(1025), &limits).unwrap_err();
        assert!(long.message().contains("keys[2] is 1025 bytes"));
        assert!(long.message().contains("max_key_bytes = 1024"));
    }

    #[test]
    fn cursors_round_trip_and_reject_foreign_prefixes() {
        let c = encode_cursor("p/k1");
        assert_eq!(decode_cursor(&c, "p/").unwrap().as_deref(), Some("p/k1"));
        assert!(decode_cursor(&c, "q/").is_err());
        assert!(decode_cursor("!!", "").is_err());
    }

    #[test]
    fn ttl_rounds_up() {
        assert_eq!(ttl_ms(None), 0);
        assert_eq!(ttl_ms(Some(Duration::from_micros(1))), 1);
        assert_eq!(ttl_ms(Some(Duration::from_micros(1500))), 2);
    }
}
