//! Tokens for runs against the in-process proxy: a fresh HS256 secret and ES256 key pair per run, the
//! proxy's matching `auth:` config, and the token matrix scenarios select with `token: NAME` — valid
//! ones and every kind of bad one.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::ecdsa::SigningKey;
use p256::pkcs8::EncodePrivateKey;
use prism_runtime::auth::config::{AuthConfig, AuthMode, Hs256Config};
use rand::RngCore;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// The issuer minted tokens carry and the proxy requires.
pub const ISSUER: &str = "prism-conform";
/// The audience minted tokens carry and the proxy requires.
pub const AUDIENCE: &str = "prism";
/// Key id of the run's ES256 key in the JWKS.
const ES_KID: &str = "prism-conform-es256";

/// Every token name a scenario step may select, with what it is.
pub const TOKEN_NAMES: [(&str, &str); 15] = [
    (
        "default",
        "valid HS256, read/write/admin on the run's namespaces",
    ),
    ("none", "no authorization metadata at all"),
    ("malformed", "not a JWT"),
    ("wrong_signature", "HS256 signed with another secret"),
    ("alg_none", "unsigned, alg none"),
    (
        "hs_with_public_key",
        "HS256 signed with the ES256 public key (key confusion)",
    ),
    ("expired", "exp an hour ago"),
    ("not_yet_valid", "nbf an hour ahead"),
    ("wrong_issuer", "iss is not the proxy's issuer"),
    ("wrong_audience", "aud is not the proxy's audience"),
    ("no_namespace_claim", "valid, but without the prism claim"),
    ("other_namespace", "valid, granting only another namespace"),
    ("read_only", "valid, read only on the run's namespaces"),
    ("glob", "valid, read/write on the prefix glob conform-*"),
    (
        "es256",
        "valid ES256 from the JWKS, read/write on the run's namespaces",
    ),
];

/// Key material for one run.
pub struct TokenMint {
    secret: Vec<u8>,
    es_key: SigningKey,
}

impl std::fmt::Debug for TokenMint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenMint { .. }")
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn grants(namespaces: &[&str], perms: &[&str]) -> Value {
    let map: serde_json::Map<String, Value> = namespaces
        .iter()
        .map(|ns| (ns.to_string(), json!(perms)))
        .collect();
    json!({ "namespaces": map })
}

impl Default for TokenMint {
    fn default() -> Self {
        Self::new()
    }
}

impl TokenMint {
    /// Fresh random keys.
    pub fn new() -> Self {
        let mut secret = vec![0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        Self {
            secret,
            es_key: SigningKey::random(&mut rand::rngs::OsRng),
        }
    }

    fn es_public_xy(&self) -> (String, String) {
        let point = self.es_key.verifying_key().to_encoded_point(false);
        let x = point
            .x()
            .map(|x| URL_SAFE_NO_PAD.encode(x))
            .unwrap_or_default();
        let y = point
            .y()
            .map(|y| URL_SAFE_NO_PAD.encode(y))
            .unwrap_or_default();
        (x, y)
    }

    /// The JWKS document with the run's ES256 public key.
    pub fn jwks(&self) -> String {
        let (x, y) = self.es_public_xy();
        json!({ "keys": [{ "kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": ES_KID, "alg": "ES256", "use": "sig" }] })
            .to_string()
    }

    /// Writes the secret (mode 0600) and JWKS into `dir` and returns the proxy's `auth:` config.
    pub fn auth_config(&self, dir: &Path) -> std::io::Result<AuthConfig> {
        let secret_path = dir.join("hs256.secret");
        let hex: String = self.secret.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(&secret_path, hex)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret_path, std::fs::Permissions::from_mode(0o600))?;
        let jwks_path = dir.join("jwks.json");
        std::fs::write(&jwks_path, self.jwks())?;
        Ok(AuthConfig {
            mode: AuthMode::Jwt,
            hs256: Some(Hs256Config {
                secret_file: Some(secret_path),
                secret_env: None,
            }),
            jwks_file: Some(jwks_path),
            issuer: Some(ISSUER.into()),
            audience: Some(AUDIENCE.into()),
            ..AuthConfig::default()
        })
    }

    fn hs(&self, claims: &Value, secret: &[u8]) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret),
        )
        .expect("HS256 signing cannot fail")
    }

    fn secret_text(&self) -> Vec<u8> {
        self.secret
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
            .into_bytes()
    }

    fn claims(&self, extra: Value, exp: u64) -> Value {
        let mut c = json!({ "sub": "prism-conform", "iss": ISSUER, "aud": AUDIENCE, "iat": now(), "exp": exp });
        if let (Some(obj), Some(more)) = (c.as_object_mut(), extra.as_object()) {
            for (k, v) in more {
                obj.insert(k.clone(), v.clone());
            }
        }
        c
    }

    /// Every named token for a run on `namespaces` (the scenario namespace and its second one);
    /// `None` means "send no token".
    pub fn tokens(&self, namespaces: &[&str]) -> BTreeMap<String, Option<String>> {
        let hour = 3600;
        let exp = now() + hour;
        let all = grants(namespaces, &["read", "write", "admin"]);
        let rw = grants(namespaces, &["read", "write"]);
        let valid = |claim: Value| self.claims(json!({ "prism": claim }), exp);
        let secret = self.secret_text();
        let mut out = BTreeMap::new();
        out.insert(
            "default".into(),
            Some(self.hs(&valid(all.clone()), &secret)),
        );
        out.insert("none".into(), None);
        out.insert("malformed".into(), Some("not-a-jwt".into()));
        out.insert(
            "wrong_signature".into(),
            Some(self.hs(&valid(all.clone()), b"another-secret-entirely-32-bytes")),
        );
        let unsigned_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let unsigned_body = URL_SAFE_NO_PAD.encode(valid(all.clone()).to_string());
        out.insert(
            "alg_none".into(),
            Some(format!("{unsigned_header}.{unsigned_body}.")),
        );
        let mut confused = Header::new(Algorithm::HS256);
        confused.kid = Some(ES_KID.into());
        let public = self.jwks();
        out.insert(
            "hs_with_public_key".into(),
            Some(
                jsonwebtoken::encode(
                    &confused,
                    &valid(all.clone()),
                    &EncodingKey::from_secret(public.as_bytes()),
                )
                .expect("HS256 signing cannot fail"),
            ),
        );
        out.insert(
            "expired".into(),
            Some(self.hs(&self.claims(json!({ "prism": all }), now() - hour), &secret)),
        );
        let mut early = valid(all.clone());
        early["nbf"] = json!(now() + hour);
        out.insert("not_yet_valid".into(), Some(self.hs(&early, &secret)));
        let mut wrong_iss = valid(all.clone());
        wrong_iss["iss"] = json!("someone-else");
        out.insert("wrong_issuer".into(), Some(self.hs(&wrong_iss, &secret)));
        let mut wrong_aud = valid(all.clone());
        wrong_aud["aud"] = json!("another-service");
        out.insert("wrong_audience".into(), Some(self.hs(&wrong_aud, &secret)));
        out.insert(
            "no_namespace_claim".into(),
            Some(self.hs(&self.claims(json!({}), exp), &secret)),
        );
        let elsewhere: Vec<String> = namespaces.iter().map(|ns| format!("not-{ns}")).collect();
        let elsewhere: Vec<&str> = elsewhere.iter().map(String::as_str).collect();
        out.insert(
            "other_namespace".into(),
            Some(self.hs(
                &valid(grants(&elsewhere, &["read", "write", "admin"])),
                &secret,
            )),
        );
        out.insert(
            "read_only".into(),
            Some(self.hs(&valid(grants(namespaces, &["read"])), &secret)),
        );
        out.insert(
            "glob".into(),
            Some(self.hs(
                &valid(json!({ "namespaces": { "conform-*": ["read", "write"] } })),
                &secret,
            )),
        );
        let der = self
            .es_key
            .to_pkcs8_der()
            .expect("a P-256 key encodes as PKCS#8");
        let mut es = Header::new(Algorithm::ES256);
        es.kid = Some(ES_KID.into());
        out.insert(
            "es256".into(),
            Some(
                jsonwebtoken::encode(&es, &valid(rw), &EncodingKey::from_ec_der(der.as_bytes()))
                    .expect("ES256 signing"),
            ),
        );
        out
    }
}

/// Signs an HS256 token granting `grants` (`namespace-or-glob` → permissions) to `subject`.
pub fn mint_hs256(
    secret: &[u8],
    subject: &str,
    grants: &BTreeMap<String, Vec<String>>,
    ttl_secs: u64,
    issuer: Option<&str>,
    audience: Option<&str>,
) -> String {
    let mut claims = json!({
        "sub": subject,
        "iat": now(),
        "exp": now() + ttl_secs,
        "prism": { "namespaces": grants },
    });
    if let Some(iss) = issuer {
        claims["iss"] = json!(iss);
    }
    if let Some(aud) = audience {
        claims["aud"] = json!(aud);
    }
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("HS256 signing cannot fail")
}
