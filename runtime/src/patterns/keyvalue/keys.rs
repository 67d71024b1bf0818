//! Key-range helpers shared by the ordered backends.

/// The smallest string greater than every string that starts with `prefix` (in UTF-8 byte order, which
/// is code-point order), or `None` when there is none (empty prefix, or only U+10FFFF characters).
pub fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            '\u{D7FF}' => Some('\u{E000}'),
            c => char::from_u32(c as u32 + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Where a scan page starts: after the cursor key when it lies within the prefix (exclusive), else at
/// the prefix itself (inclusive). Returns the bound and whether it is exclusive.
pub fn scan_start<'a>(prefix: &'a str, after: Option<&'a str>) -> (&'a str, bool) {
    match after {
        Some(a) if a >= prefix => (a, true),
        _ => (prefix, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_every_key_with_the_prefix() {
        assert_eq!(prefix_end("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_end("a/").as_deref(), Some("a0"));
        assert_eq!(prefix_end("").as_deref(), None);
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_end("\u{D7FF}").as_deref(), Some("\u{E000}"));
        let end = prefix_end("p/é").unwrap();
        for key in ["p/é", "p/é\u{10FFFF}\u{10FFFF}", "p/éz"] {
            assert!(key.as_bytes() < end.as_bytes(), "{key}");
        }
        assert!("p/ê".as_bytes() >= end.as_bytes());
    }
}
