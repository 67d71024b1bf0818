//! Verification keys: the HS256 secret (file or env) and RS256/ES256 public keys from a JWKS file or
//! URL. A JWKS URL is fetched at start, refreshed on a timer, and early when a token names an unknown
//! `kid` (at most once per 10 s). Secrets are never logged or echoed.

use super::config::AuthConfig;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{AlgorithmFamily, DecodingKey};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Shortest time between two fetches of the JWKS URL triggered by unknown key ids.
const EARLY_REFRESH_GAP: Duration = Duration::from_secs(10);
/// Longest a JWKS fetch may take.
#[cfg(feature = "jwks-url")]
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why key material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The HS256 secret file could not be read.
    #[error("auth.hs256.secret_file {path}: {source}")]
    SecretFile {
        /// The path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The secret is missing or empty.
    #[error("{0}")]
    Secret(String),
    /// A JWKS document is unreadable or holds no usable key.
    #[error("{0}")]
    Jwks(String),
}

/// One public key from a JWKS.
#[derive(Clone)]
pub struct PublicKey {
    /// Its `kid`, if any.
    pub kid: Option<String>,
    /// RSA or EC.
    pub family: AlgorithmFamily,
    /// The key.
    pub key: DecodingKey,
}

/// The keys the verifier uses.
pub struct KeyStore {
    hs256: Option<DecodingKey>,
    public: RwLock<Vec<PublicKey>>,
    url: Option<String>,
    last_fetch: Mutex<Option<Instant>>,
    generation: AtomicU64,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("hs256", &self.hs256.is_some())
            .field(
                "public_keys",
                &self.public.read().map(|k| k.len()).unwrap_or(0),
            )
            .field("jwks_url", &self.url)
            .finish()
    }
}

fn read_secret(config: &AuthConfig) -> Result<Option<DecodingKey>, KeyError> {
    let Some(hs) = &config.hs256 else {
        return Ok(None);
    };
    let secret = match (&hs.secret_file, &hs.secret_env) {
        (Some(path), _) => std::fs::read(path).map_err(|source| KeyError::SecretFile {
            path: path.display().to_string(),
            source,
        })?,
        (None, Some(var)) => std::env::var(var)
            .map_err(|_| {
                KeyError::Secret(format!(
                    "auth.hs256.secret_env: environment variable {var} is not set"
                ))
            })?
            .into_bytes(),
        (None, None) => {
            return Err(KeyError::Secret(
                "auth.hs256 needs secret_file or secret_env".into(),
            ));
        }
    };
    let trimmed = secret.trim_ascii_end();
    if trimmed.len() < 16 {
        return Err(KeyError::Secret(format!(
            "the HS256 secret is {} bytes; use at least 16 (32 random bytes recommended)",
            trimmed.len()
        )));
    }
    Ok(Some(DecodingKey::from_secret(trimmed)))
}

/// Parses a JWKS document into its usable public keys (RSA and EC); symmetric keys are refused.
pub fn parse_jwks(text: &str, source: &str) -> Result<Vec<PublicKey>, KeyError> {
    let set: JwkSet = serde_json::from_str(text)
        .map_err(|e| KeyError::Jwks(format!("{source}: not a JWKS document: {e}")))?;
    let mut keys = Vec::new();
    for (i, jwk) in set.keys.iter().enumerate() {
        let family = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => AlgorithmFamily::Rsa,
            AlgorithmParameters::EllipticCurve(_) => AlgorithmFamily::Ec,
            _ => {
                return Err(KeyError::Jwks(format!(
                    "{source}: keys[{i}] is not an RSA or EC public key (symmetric keys do not belong in a JWKS)"
                )));
            }
        };
        let key = DecodingKey::from_jwk(jwk)
            .map_err(|e| KeyError::Jwks(format!("{source}: keys[{i}]: {e}")))?;
        keys.push(PublicKey {
            kid: jwk.common.key_id.clone(),
            family,
            key,
        });
    }
    if keys.is_empty() {
        return Err(KeyError::Jwks(format!("{source}: the JWKS holds no key")));
    }
    Ok(keys)
}

#[cfg(feature = "jwks-url")]
async fn fetch(url: &str) -> Result<Vec<PublicKey>, KeyError> {
    let client = reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .build()
        .map_err(|e| KeyError::Jwks(format!("cannot build an HTTP client: {e}")))?;
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| KeyError::Jwks(format!("fetching {url}: {e}")))?;
    if !response.status().is_success() {
        return Err(KeyError::Jwks(format!(
            "fetching {url}: HTTP {}",
            response.status()
        )));
    }
    let text = response
        .text()
        .await
        .map_err(|e| KeyError::Jwks(format!("reading {url}: {e}")))?;
    parse_jwks(&text, url)
}

/// Without the `jwks-url` feature there is no HTTP client: [`KeyStore::load`] refuses a JWKS URL
/// before anything would fetch it.
#[cfg(not(feature = "jwks-url"))]
async fn fetch(url: &str) -> Result<Vec<PublicKey>, KeyError> {
    Err(no_http_client(url))
}

#[cfg(not(feature = "jwks-url"))]
fn no_http_client(url: &str) -> KeyError {
    KeyError::Jwks(format!(
        "auth.jwks_url {url}: this build of prism has no HTTP client (rebuild with the cargo feature `jwks-url`, on by default for prism-proxy), or give the keys as auth.jwks_file"
    ))
}

impl KeyStore {
    /// Loads the secret and JWKS file, and fetches the JWKS URL once (a failed fetch is logged and
    /// retried by the refresher, so the proxy can start while the identity provider is down).
    pub async fn load(config: &AuthConfig) -> Result<Arc<Self>, KeyError> {
        #[cfg(not(feature = "jwks-url"))]
        if let Some(url) = &config.jwks_url {
            return Err(no_http_client(url));
        }
        let hs256 = read_secret(config)?;
        let mut public = Vec::new();
        if let Some(path) = &config.jwks_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| KeyError::Jwks(format!("auth.jwks_file {}: {e}", path.display())))?;
            public.extend(parse_jwks(&text, &path.display().to_string())?);
        }
        let store = Arc::new(Self {
            hs256,
            public: RwLock::new(public),
            url: config.jwks_url.clone(),
            last_fetch: Mutex::new(None),
            generation: AtomicU64::new(0),
        });
        if let Some(url) = &config.jwks_url {
            store.refresh().await;
            let weak = Arc::downgrade(&store);
            let every = Duration::from_secs(config.jwks_refresh_secs.max(10));
            let url = url.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let Some(store) = weak.upgrade() else { break };
                    tracing::debug!(url = %url, "refreshing JWKS");
                    store.refresh().await;
                }
            });
        }
        Ok(store)
    }

    /// A store with only an HS256 secret (for tests and embedded use).
    pub fn from_secret(secret: &[u8]) -> Arc<Self> {
        Arc::new(Self {
            hs256: Some(DecodingKey::from_secret(secret)),
            public: RwLock::new(Vec::new()),
            url: None,
            last_fetch: Mutex::new(None),
            generation: AtomicU64::new(0),
        })
    }

    /// Fetches the JWKS URL now, keeping the previous keys when the fetch fails.
    pub async fn refresh(&self) {
        let Some(url) = &self.url else { return };
        if let Ok(mut last) = self.last_fetch.lock() {
            *last = Some(Instant::now());
        }
        match fetch(url).await {
            Ok(keys) => {
                tracing::info!(url = %url, keys = keys.len(), "JWKS loaded");
                if let Ok(mut public) = self.public.write() {
                    *public = keys;
                    self.generation.fetch_add(1, Ordering::Release);
                }
            }
            Err(e) => tracing::error!(error = %e, "JWKS fetch failed; keeping the previous keys"),
        }
    }

    /// Asks for an early refresh because a token named an unknown key (rate-limited).
    pub fn refresh_soon(self: &Arc<Self>) {
        if self.url.is_none() {
            return;
        }
        let due = self
            .last_fetch
            .lock()
            .map(|last| last.is_none_or(|t| t.elapsed() >= EARLY_REFRESH_GAP))
            .unwrap_or(false);
        if due {
            let store = self.clone();
            tokio::spawn(async move { store.refresh().await });
        }
    }

    /// Bumped each time the public keys are replaced; tokens verified under an older generation
    /// are verified again.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The HS256 key, if configured.
    pub fn hs256(&self) -> Option<&DecodingKey> {
        self.hs256.as_ref()
    }

    /// Whether any public key is configured (or expected from a URL).
    pub fn has_public_keys(&self) -> bool {
        self.url.is_some() || self.public.read().map(|k| !k.is_empty()).unwrap_or(false)
    }

    /// The public key for `family` and `kid`: by id, or the only key of that family when no id is given.
    pub fn public_key(&self, family: AlgorithmFamily, kid: Option<&str>) -> Option<DecodingKey> {
        let keys = self.public.read().ok()?;
        let of_family: Vec<&PublicKey> = keys.iter().filter(|k| k.family == family).collect();
        match kid {
            Some(kid) => of_family
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .map(|k| k.key.clone()),
            None if of_family.len() == 1 => Some(of_family[0].key.clone()),
            None => None,
        }
    }
}
