//! Backend URLs from config: `${ENV}` references are expanded at load time, and the password is never
//! shown — `Display` and `Debug` print `redis://user:***@host:6379`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A connection URL that may hold a password.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wraps a URL (no `${ENV}` expansion).
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The full URL, password included: only for handing to a client library.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its password replaced by `***`.
    pub fn redacted(&self) -> String {
        redact(&self.0)
    }
}

/// Replaces the password of `scheme://user:password@host…` with `***`; other text is kept.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}://{}:***{}",
            &url[..scheme_end],
            &userinfo[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

/// Expands every `${NAME}` from the environment; an unset variable is an error naming it.
pub fn expand_env(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed '${{' in {:?}", redact(text)))?;
        let name = &after[..end];
        let value = std::env::var(name).map_err(|_| {
            format!("environment variable {name} is not set (referenced as ${{{name}}})")
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

impl<'de> Deserialize<'de> for SecretUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        let url = expand_env(&raw).map_err(serde::de::Error::custom)?;
        if !url.contains("://") {
            return Err(serde::de::Error::custom(format!(
                "{:?} is not a URL (expected scheme://host:port/…)",
                redact(&url)
            )));
        }
        Ok(Self(url))
    }
}

/// Writes the full URL, password included, so a config written for another process (the load
/// tool's proxy) opens the same backend. Configs are serialized only into such files, never into
/// logs or reports, which use `Display` (redacted).
impl Serialize for SecretUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({:?})", self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("redis://:hunter2@h:6379/0"), "redis://:***@h:6379/0");
        assert_eq!(
            redact("postgres://u:p@ss@h/db?x=1"),
            "postgres://u:***@h/db?x=1"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("redis://h:6379"), "redis://h:6379");
        let url = SecretUrl::new("redis://u:secret@h");
        assert!(!format!("{url} {url:?}").contains("secret"));
        assert_eq!(url.expose(), "redis://u:secret@h");
    }

    #[test]
    fn env_references_expand_or_name_the_missing_variable() {
        assert_eq!(expand_env("plain").unwrap(), "plain");
        let path = std::env::var("PATH").unwrap();
        assert_eq!(expand_env("x${PATH}y").unwrap(), format!("x{path}y"));
        let err = expand_env("${PRISM_SURELY_UNSET_VARIABLE}").unwrap_err();
        assert!(
            err.contains("PRISM_SURELY_UNSET_VARIABLE is not set"),
            "{err}"
        );
    }
}
