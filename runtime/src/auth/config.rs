//! The `auth:` section of the proxy config.

use super::Permission;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Whether calls must carry a valid token.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Bearer JWTs are required (the default).
    #[default]
    Jwt,
    /// No authentication: every caller may do everything. Must be written out; the proxy warns loudly.
    None,
}

impl AuthMode {
    /// The mode's name.
    pub fn name(self) -> &'static str {
        match self {
            AuthMode::Jwt => "jwt",
            AuthMode::None => "none",
        }
    }
}

/// Where the HS256 shared secret comes from.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Hs256Config {
    /// A file holding the secret (trailing newline ignored).
    pub secret_file: Option<PathBuf>,
    /// An environment variable holding the secret.
    pub secret_env: Option<String>,
}

/// A config rule granting permissions by subject or group.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Matches tokens whose `sub` equals this.
    pub sub: Option<String>,
    /// Matches tokens whose `groups` claim contains this.
    pub group: Option<String>,
    /// Namespace (or `prefix-*` glob) → permissions.
    pub namespaces: BTreeMap<String, Vec<Permission>>,
}

/// The `auth:` section.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `jwt` (default) or `none`.
    #[serde(default)]
    pub mode: AuthMode,
    /// HS256 shared secret.
    pub hs256: Option<Hs256Config>,
    /// A JWKS file with RS256 / ES256 public keys.
    pub jwks_file: Option<PathBuf>,
    /// A JWKS URL (an OIDC provider's `jwks_uri`), fetched at start and refreshed.
    pub jwks_url: Option<String>,
    /// How often the JWKS URL is fetched again, in seconds (default 300); an unknown `kid` triggers
    /// an early refresh, at most once per 10 s.
    #[serde(default = "default_refresh")]
    pub jwks_refresh_secs: u64,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud`, when set.
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds (default 5).
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Name of the claim holding `{ "namespaces": { "<ns or glob>": ["read", …] } }` (default `prism`).
    #[serde(default = "default_claim")]
    pub claim: String,
    /// Grants by `sub` or `groups`, added to the token's own claim.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

fn default_refresh() -> u64 {
    300
}
fn default_leeway() -> u64 {
    5
}
fn default_claim() -> String {
    "prism".into()
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            mode: AuthMode::Jwt,
            hs256: None,
            jwks_file: None,
            jwks_url: None,
            jwks_refresh_secs: default_refresh(),
            issuer: None,
            audience: None,
            leeway_secs: default_leeway(),
            claim: default_claim(),
            rules: Vec::new(),
        }
    }
}

impl AuthConfig {
    /// Authentication off (`mode: none`).
    pub fn none() -> Self {
        Self {
            mode: AuthMode::None,
            ..Self::default()
        }
    }

    /// Problems that make the section unusable, in words a user can act on.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.mode == AuthMode::Jwt {
            let has_key =
                self.hs256.is_some() || self.jwks_file.is_some() || self.jwks_url.is_some();
            if !has_key {
                out.push("auth.mode is jwt (the default) but no key is configured: set auth.hs256.secret_file or secret_env, auth.jwks_file or auth.jwks_url — or write `auth: { mode: none }` to turn authentication off".into());
            }
            if let Some(hs) = &self.hs256 {
                if hs.secret_file.is_some() == hs.secret_env.is_some() {
                    out.push("auth.hs256 needs exactly one of secret_file or secret_env".into());
                }
            }
            for (i, rule) in self.rules.iter().enumerate() {
                if rule.sub.is_none() && rule.group.is_none() {
                    out.push(format!("auth.rules[{i}] needs `sub` or `group`"));
                }
            }
        }
        out
    }
}
