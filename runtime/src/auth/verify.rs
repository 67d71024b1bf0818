//! Token verification: shape, `alg` allow-list (never `none`), key by family and `kid`, signature,
//! `exp` / `nbf` with leeway, `iss`, `aud`; then the caller's grants from the token's claim and the
//! config's rules. Every failure says which check failed and never echoes the token.

use super::cache;
use super::config::{AuthConfig, RuleConfig};
use super::keys::KeyStore;
use super::{Grant, Permission, Principal};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily, Validation};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a token was refused (each maps to UNAUTHENTICATED).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `authorization: Bearer …` metadata.
    #[error("missing bearer token: send `authorization: Bearer <JWT>`")]
    Missing,
    /// Not a JWT.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// An algorithm outside the allow-list.
    #[error("{0}")]
    Algorithm(String),
    /// No key for the token's `kid`.
    #[error("no verification key for kid {0:?}")]
    UnknownKey(String),
    /// The signature does not verify.
    #[error("invalid signature")]
    Signature,
    /// `exp` is in the past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid (nbf is in the future)")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("issuer not accepted (expected {0:?})")]
    Issuer(String),
    /// `aud` does not contain the configured audience.
    #[error("audience not accepted (expected {0:?})")]
    Audience(String),
    /// A required claim is missing or malformed.
    #[error("{0}")]
    Claims(String),
}

impl AuthError {
    /// Every check's label, in [`AuthError::check`]'s numbering.
    pub const CHECKS: [&'static str; 10] = [
        "missing",
        "malformed",
        "algorithm",
        "unknown_key",
        "signature",
        "expired",
        "not_yet_valid",
        "issuer",
        "audience",
        "claims",
    ];

    /// The number of the check that failed (an index into [`AuthError::CHECKS`]): a metric label
    /// that never carries the token or its claims.
    pub fn check(&self) -> usize {
        match self {
            AuthError::Missing => 0,
            AuthError::Malformed(_) => 1,
            AuthError::Algorithm(_) => 2,
            AuthError::UnknownKey(_) => 3,
            AuthError::Signature => 4,
            AuthError::Expired => 5,
            AuthError::NotYetValid => 6,
            AuthError::Issuer(_) => 7,
            AuthError::Audience(_) => 8,
            AuthError::Claims(_) => 9,
        }
    }
}

/// Verifies bearer tokens for the proxy.
pub struct Verifier {
    id: u64,
    keys: Arc<KeyStore>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
    claim: String,
    rules: Vec<RuleConfig>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

fn header_alg(token: &str) -> Result<String, AuthError> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err(AuthError::Malformed(format!(
            "a JWT has 3 dot-separated parts, this has {}",
            parts.len()
        )));
    }
    let header = URL_SAFE_NO_PAD
        .decode(parts[0].trim_end_matches('='))
        .map_err(|_| AuthError::Malformed("the header is not base64url".into()))?;
    let header: Value = serde_json::from_slice(&header)
        .map_err(|_| AuthError::Malformed("the header is not JSON".into()))?;
    // RFC 7515 §4.1.11: a recipient that does not understand every extension listed in `crit`
    // must reject the token. Prism understands none, so any `crit` is refused.
    if let Some(crit) = header.get("crit") {
        return Err(AuthError::Malformed(format!(
            "the header's `crit` lists extensions this proxy does not understand ({crit})"
        )));
    }
    header
        .get("alg")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| AuthError::Malformed("the header has no `alg`".into()))
}

/// Whether the payload of `token` (whose signature has verified) has a claim named `name` with a
/// value other than null: the JWT library reports a claim it cannot read as a number (`-1`,
/// `1e20`, a string) as missing.
fn has_claim(token: &str, name: &str) -> bool {
    token
        .split('.')
        .nth(1)
        .and_then(|payload| URL_SAFE_NO_PAD.decode(payload).ok())
        .and_then(|json| serde_json::from_slice::<Value>(&json).ok())
        .is_some_and(|claims| claims.get(name).is_some_and(|v| !v.is_null()))
}

/// `Ok` when the configured `iss` and `aud` are present, non-null and accepted: a token without them
/// is refused when the config names them (jsonwebtoken would only compare claims that are present).
fn check_iss_aud(
    claims: &Value,
    issuer: Option<&str>,
    audience: Option<&str>,
) -> Result<(), AuthError> {
    if let Some(expected) = issuer {
        match claims.get("iss") {
            None | Some(Value::Null) => {
                return Err(AuthError::Claims(
                    "missing required claim `iss` (the proxy requires an issuer)".into(),
                ));
            }
            Some(Value::String(iss)) if iss == expected => {}
            Some(_) => return Err(AuthError::Issuer(expected.to_string())),
        }
    }
    if let Some(expected) = audience {
        let accepted = match claims.get("aud") {
            None | Some(Value::Null) => {
                return Err(AuthError::Claims(
                    "missing required claim `aud` (the proxy requires an audience)".into(),
                ));
            }
            Some(Value::String(aud)) => aud == expected,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(expected)),
            Some(_) => false,
        };
        if !accepted {
            return Err(AuthError::Audience(expected.to_string()));
        }
    }
    Ok(())
}

fn grants_from(value: &Value, what: &str) -> Result<Vec<Grant>, AuthError> {
    let Some(map) = value.as_object() else {
        return Err(AuthError::Claims(format!(
            "{what} must map namespaces to permission lists"
        )));
    };
    let mut grants = Vec::new();
    for (pattern, perms) in map {
        let list = perms.as_array().ok_or_else(|| {
            AuthError::Claims(format!("{what}.{pattern} must be a list of permissions"))
        })?;
        let mut permissions = BTreeSet::new();
        for p in list {
            let perm: Permission = serde_json::from_value(p.clone()).map_err(|_| {
                AuthError::Claims(format!(
                    "{what}.{pattern}: unknown permission {p} (expected read, write, admin)"
                ))
            })?;
            permissions.insert(perm);
        }
        grants.push(Grant {
            pattern: pattern.clone(),
            permissions,
        });
    }
    Ok(grants)
}

impl Verifier {
    /// A verifier with `keys`, checking what `config` asks for.
    pub fn new(config: &AuthConfig, keys: Arc<KeyStore>) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            keys,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            leeway: config.leeway_secs,
            claim: config.claim.clone(),
            rules: config.rules.clone(),
        }
    }

    fn accepted(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.keys.hs256().is_some() {
            out.push("HS256");
        }
        if self.keys.has_public_keys() {
            out.extend(["RS256", "ES256"]);
        }
        out
    }

    /// Verifies `token` and returns the caller; a token this thread already verified under the
    /// current keys, and not yet expired, is answered from [`cache`](super::cache).
    pub fn verify(&self, token: &str) -> Result<Arc<Principal>, AuthError> {
        let now = jsonwebtoken::get_current_timestamp();
        let generation = self.keys.generation();
        if let Some(principal) = cache::lookup(self.id, token, generation, now) {
            return Ok(principal);
        }
        let (mut principal, exp) = self.verify_fully(token)?;
        let valid_until = exp.saturating_add(self.leeway);
        principal.valid_until = Some(valid_until);
        let principal = Arc::new(principal);
        cache::remember(
            self.id,
            token,
            cache::Verified {
                principal: principal.clone(),
                valid_until,
                generation,
            },
        );
        Ok(principal)
    }

    /// Every check, without the cache; returns the caller and the token's `exp`.
    fn verify_fully(&self, token: &str) -> Result<(Principal, u64), AuthError> {
        let alg_name = header_alg(token)?;
        if alg_name.eq_ignore_ascii_case("none") {
            return Err(AuthError::Algorithm(
                "unsigned tokens (alg none) are never accepted".into(),
            ));
        }
        let not_accepted = || {
            AuthError::Algorithm(format!(
                "algorithm {alg_name} is not accepted (accepted: {})",
                self.accepted().join(", ")
            ))
        };
        let alg = match alg_name.as_str() {
            "HS256" => Algorithm::HS256,
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            _ => return Err(not_accepted()),
        };
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
        let key = match alg.family() {
            AlgorithmFamily::Hmac => self.keys.hs256().cloned().ok_or_else(not_accepted)?,
            family => {
                if !self.keys.has_public_keys() {
                    return Err(not_accepted());
                }
                match self.keys.public_key(family, header.kid.as_deref()) {
                    Some(k) => k,
                    None => {
                        self.keys.refresh_soon();
                        return Err(AuthError::UnknownKey(header.kid.unwrap_or_default()));
                    }
                }
            }
        };
        let mut validation = Validation::new(alg);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        // `iss` and `aud` are checked in one place, `check_iss_aud`, after the signature.
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<Value>(token, &key, &validation).map_err(|e| match e
            .kind()
        {
            ErrorKind::InvalidSignature => AuthError::Signature,
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::MissingRequiredClaim(c) if has_claim(token, c) => AuthError::Claims(
                format!("invalid claim `{c}`: it must be a whole number of seconds since the Unix epoch, from 0 to 2^64 - 1"),
            ),
            ErrorKind::MissingRequiredClaim(c) => {
                AuthError::Claims(format!("missing required claim `{c}`"))
            }
            ErrorKind::InvalidAlgorithm => {
                AuthError::Algorithm(format!("algorithm {alg_name} does not match the key"))
            }
            other => AuthError::Malformed(format!("{other:?}")),
        })?;
        check_iss_aud(
            &data.claims,
            self.issuer.as_deref(),
            self.audience.as_deref(),
        )?;
        // `exp` is a required claim, so the validation above has seen a number.
        let exp = data
            .claims
            .get("exp")
            .and_then(|e| e.as_u64().or_else(|| e.as_f64().map(|f| f as u64)))
            .ok_or_else(|| AuthError::Claims("`exp` must be a number of seconds".into()))?;
        Ok((self.principal(&data.claims)?, exp))
    }

    fn principal(&self, claims: &Value) -> Result<Principal, AuthError> {
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let mut grants = Vec::new();
        if let Some(claim) = claims.get(&self.claim) {
            let namespaces = claim.get("namespaces").ok_or_else(|| {
                AuthError::Claims(format!(
                    "claim `{}` must be {{\"namespaces\": {{…}}}}",
                    self.claim
                ))
            })?;
            grants.extend(grants_from(
                namespaces,
                &format!("{}.namespaces", self.claim),
            )?);
        }
        let groups: Vec<&str> = claims
            .get("groups")
            .and_then(Value::as_array)
            .map(|g| g.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for rule in &self.rules {
            let by_sub = rule.sub.as_deref().is_some_and(|s| s == subject);
            let by_group = rule.group.as_deref().is_some_and(|g| groups.contains(&g));
            if by_sub || by_group {
                for (pattern, perms) in &rule.namespaces {
                    grants.push(Grant {
                        pattern: pattern.clone(),
                        permissions: perms.iter().copied().collect(),
                    });
                }
            }
        }
        Ok(Principal {
            subject,
            grants,
            valid_until: None,
        })
    }
}
