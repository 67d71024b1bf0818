//! Tokens already verified, so a client that sends the same bearer token on every call pays for the
//! signature check, the base64 and the JSON once, not per call.
//!
//! The cache is per worker thread (no lock, nothing shared on the request path) and per
//! [`Verifier`](super::verify::Verifier) (each has an id). An entry is the caller the full check
//! produced, good until the token's `exp` plus the leeway, and only while the key set is the one it
//! was checked against: a JWKS refresh bumps the key store's generation and the entry is checked
//! again. A token that failed any check is never cached. Entries live as long as their worker
//! thread; verifier ids are never reused, so a dropped verifier's entries are never hit.

use super::Principal;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

/// Most tokens kept per thread and verifier; when full, the thread's entries are dropped at once
/// (clients reuse a few tokens each, so a full cache means churn and there is nothing to keep).
pub const MAX_ENTRIES: usize = 1024;

/// One verified token.
#[derive(Clone, Debug)]
pub struct Verified {
    /// The caller.
    pub principal: Arc<Principal>,
    /// Unix seconds after which the token is no longer accepted (`exp` + leeway).
    pub valid_until: u64,
    /// The key store generation it was verified against.
    pub generation: u64,
}

thread_local! {
    static VERIFIED: RefCell<HashMap<u64, HashMap<Box<str>, Verified>>> = RefCell::new(HashMap::new());
}

/// The caller for `token` if this thread verified it for `verifier` under key `generation` and it is
/// still within its validity at `now` (Unix seconds).
pub fn lookup(verifier: u64, token: &str, generation: u64, now: u64) -> Option<Arc<Principal>> {
    VERIFIED.with(|cell| {
        let map = cell.borrow();
        let hit = map.get(&verifier)?.get(token)?;
        (hit.generation == generation && now <= hit.valid_until).then(|| hit.principal.clone())
    })
}

/// Remembers a token that passed every check.
pub fn remember(verifier: u64, token: &str, entry: Verified) {
    VERIFIED.with(|cell| {
        let mut map = cell.borrow_mut();
        let tokens = map.entry(verifier).or_default();
        if tokens.len() >= MAX_ENTRIES {
            tokens.clear();
        }
        tokens.insert(token.into(), entry);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(valid_until: u64, generation: u64) -> Verified {
        Verified {
            principal: Arc::new(Principal::unauthenticated()),
            valid_until,
            generation,
        }
    }

    #[test]
    fn hits_only_for_the_same_verifier_generation_and_time() {
        remember(1, "tok", entry(100, 7));
        assert!(lookup(1, "tok", 7, 100).is_some());
        assert!(lookup(1, "tok", 7, 101).is_none(), "expired");
        assert!(lookup(1, "tok", 8, 50).is_none(), "keys changed");
        assert!(lookup(2, "tok", 7, 50).is_none(), "another verifier");
        assert!(lookup(1, "tok2", 7, 50).is_none(), "another token");
    }

    #[test]
    fn a_full_cache_starts_over() {
        for i in 0..MAX_ENTRIES {
            remember(3, &format!("t{i}"), entry(100, 0));
        }
        assert!(lookup(3, "t0", 0, 1).is_some());
        remember(3, "one-more", entry(100, 0));
        assert!(lookup(3, "t0", 0, 1).is_none());
        assert!(lookup(3, "one-more", 0, 1).is_some());
    }
}
