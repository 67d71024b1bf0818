//! Concrete value bytes: text, literal bytes, and deterministic blobs; plus short readable renderings.

use sha2::{Digest, Sha256};

/// Deterministic pseudo-random bytes (SplitMix64) of `len` bytes for `seed`.
pub fn blob(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let take = (len - out.len()).min(8);
        out.extend_from_slice(&z.to_le_bytes()[..take]);
    }
    out
}

/// Hex SHA-256 of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// A short, readable rendering: the text itself when short printable UTF-8, else length + digest.
pub fn render(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) if s.len() <= 80 && !s.chars().any(char::is_control) => format!("{s:?}"),
        _ => format!("<{} bytes, sha256 {}…>", bytes.len(), &digest(bytes)[..16]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_deterministic_and_seeded() {
        assert_eq!(blob(1000, 7), blob(1000, 7));
        assert_ne!(blob(1000, 7), blob(1000, 8));
        assert_eq!(blob(13, 1).len(), 13);
        assert_eq!(&blob(16, 1)[..8], &blob(8, 1)[..]);
    }

    #[test]
    fn renders_text_or_digest() {
        assert_eq!(render(b"hi"), "\"hi\"");
        assert!(render(&[0, 1, 2]).starts_with("<3 bytes, sha256 "));
    }
}
