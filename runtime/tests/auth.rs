//! Authentication and authorization end to end through the proxy: HS256 from a secret file, ES256
//! from a JWKS served over HTTP (with refresh on an unknown key id), config rules, the Admin
//! permission, open health, the metadata limit — and no error ever echoes the token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::ecdsa::SigningKey;
use p256::pkcs8::EncodePrivateKey;
use prism_proto::admin::v1::GetCapabilitiesRequest;
use prism_proto::client::PrismClient;
use prism_proto::keyvalue::v1::{GetRequest, SetRequest};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hs(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn claims(grants: Value) -> Value {
    json!({ "sub": "tester", "iss": "test-issuer", "aud": "prism", "exp": now() + 600, "prism": { "namespaces": grants } })
}

fn jwk(key: &SigningKey, kid: &str) -> Value {
    let p = key.verifying_key().to_encoded_point(false);
    json!({ "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(p.x().unwrap()), "y": URL_SAFE_NO_PAD.encode(p.y().unwrap()) })
}

fn es(key: &SigningKey, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.into());
    let der = key.to_pkcs8_der().unwrap();
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ec_der(der.as_bytes())).unwrap()
}

/// A one-route HTTP server answering every request with the current JWKS document.
async fn jwks_server(doc: Arc<Mutex<String>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                break;
            };
            let body = doc.lock().unwrap().clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(reply.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/jwks.json")
}

mod support;

struct Running {
    url: String,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn start(jwks_url: &str) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let yaml = format!(
        "listen: 127.0.0.1:0\nauth:\n  hs256: {{ secret_file: {} }}\n  jwks_url: {jwks_url}\n  issuer: test-issuer\n  audience: prism\n  leeway_secs: 2\n  rules:\n    - {{ group: auditors, namespaces: {{ 'shop-*': [read] }} }}\nbackends: {{ m: {{ type: memstore }} }}\nnamespaces:\n  shop-orders: {{ pattern: keyvalue, backend: m }}\n  shop-carts: {{ pattern: keyvalue, backend: m }}\n",
        secret.display()
    );
    let served = support::serve(&yaml).await;
    Running {
        url: format!("http://{}", served.addr),
        _stop: served.stop,
        _dir: dir,
    }
}

async fn kv(url: &str, token: Option<&str>, ns: &str) -> prism_proto::client::KeyValue {
    let mut client = PrismClient::connect(url.to_string()).await.unwrap();
    if let Some(t) = token {
        client = client.with_token(t).unwrap();
    }
    client.namespace(ns).keyvalue()
}

fn set(key: &str) -> SetRequest {
    SetRequest {
        key: key.into(),
        value: "v".into(),
        ..Default::default()
    }
}

async fn status_of(token: Option<&str>, p: &Running) -> tonic::Status {
    kv(&p.url, token, "shop-orders")
        .await
        .get(GetRequest { key: "k".into() })
        .await
        .unwrap_err()
}

#[tokio::test]
async fn every_failed_check_is_unauthenticated_and_named_without_the_token() {
    let es_key = SigningKey::random(&mut rand::rngs::OsRng);
    let doc = Arc::new(Mutex::new(
        json!({ "keys": [jwk(&es_key, "k1")] }).to_string(),
    ));
    let p = start(&jwks_server(doc).await).await;
    let grants = json!({ "shop-orders": ["read", "write"] });
    let mut expired = claims(grants.clone());
    expired["exp"] = json!(now() - 60);
    let mut early = claims(grants.clone());
    early["nbf"] = json!(now() + 60);
    let mut wrong_iss = claims(grants.clone());
    wrong_iss["iss"] = json!("evil");
    let mut wrong_aud = claims(grants.clone());
    wrong_aud["aud"] = json!("other");
    let mut no_exp = claims(grants.clone());
    no_exp.as_object_mut().unwrap().remove("exp");
    let other_secret = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(grants.clone()),
        &EncodingKey::from_secret(b"a-different-secret-of-some-length"),
    )
    .unwrap();
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(claims(grants.clone()).to_string())
    );
    let hs384 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS384),
        &claims(grants.clone()),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let without = |claim: &str| {
        let mut c = claims(grants.clone());
        c.as_object_mut().unwrap().remove(claim);
        hs(&c)
    };
    let null = |claim: &str| {
        let mut c = claims(grants.clone());
        c[claim] = Value::Null;
        hs(&c)
    };
    let with_exp = |exp: Value| {
        let mut c = claims(grants.clone());
        c["exp"] = exp;
        hs(&c)
    };
    let mut crit_header = Header::new(Algorithm::HS256);
    crit_header.crit = Some(vec!["urn:example:unknown".into()]);
    let crit = jsonwebtoken::encode(
        &crit_header,
        &claims(grants.clone()),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let cases: Vec<(Option<String>, &str)> = vec![
        (Some(without("iss")), "missing required claim `iss`"),
        (Some(null("iss")), "missing required claim `iss`"),
        (Some(without("aud")), "missing required claim `aud`"),
        (Some(null("aud")), "missing required claim `aud`"),
        (Some(crit), "`crit`"),
        (None, "missing bearer token"),
        (Some("not-a-jwt".into()), "malformed token"),
        (Some(other_secret), "invalid signature"),
        (Some(unsigned), "alg none"),
        (
            Some(hs384),
            "algorithm HS384 is not accepted (accepted: HS256, RS256, ES256)",
        ),
        (Some(hs(&expired)), "token expired"),
        (Some(hs(&early)), "not yet valid"),
        (Some(hs(&wrong_iss)), "issuer not accepted"),
        (Some(hs(&wrong_aud)), "audience not accepted"),
        (Some(hs(&no_exp)), "missing required claim `exp`"),
        (Some(null("exp")), "missing required claim `exp`"),
        (Some(with_exp(json!(-1))), "invalid claim `exp`"),
        (Some(with_exp(json!(1e20))), "invalid claim `exp`"),
        (Some(with_exp(json!("soon"))), "invalid claim `exp`"),
        (
            Some(es(&es_key, "k-unknown", &claims(grants.clone()))),
            "no verification key for kid \"k-unknown\"",
        ),
    ];
    for (token, reason) in cases {
        let status = status_of(token.as_deref(), &p).await;
        assert_eq!(status.code(), Code::Unauthenticated, "{reason}: {status:?}");
        assert!(
            status.message().contains(reason),
            "expected {reason:?} in {:?}",
            status.message()
        );
        if let Some(t) = &token {
            assert!(
                !status.message().contains(t.as_str()),
                "the token was echoed"
            );
        }
    }
}

#[tokio::test]
async fn grants_decide_per_namespace_and_permission() {
    let es_key = SigningKey::random(&mut rand::rngs::OsRng);
    let doc = Arc::new(Mutex::new(
        json!({ "keys": [jwk(&es_key, "k1")] }).to_string(),
    ));
    let p = start(&jwks_server(doc).await).await;

    let writer = hs(&claims(json!({ "shop-orders": ["read", "write"] })));
    let mut kv_writer = kv(&p.url, Some(&writer), "shop-orders").await;
    kv_writer.set(set("k")).await.unwrap();
    let denied = kv(&p.url, Some(&writer), "shop-carts")
        .await
        .get(GetRequest { key: "k".into() })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(
        denied.message(),
        "tester lacks the read permission on namespace 'shop-carts'"
    );

    let reader = es(&es_key, "k1", &claims(json!({ "shop-*": ["read"] })));
    let mut kv_reader = kv(&p.url, Some(&reader), "shop-orders").await;
    assert!(
        kv_reader
            .get(GetRequest { key: "k".into() })
            .await
            .unwrap()
            .into_inner()
            .found
    );
    let denied = kv_reader.set(set("k")).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(
        denied
            .message()
            .contains("lacks the write permission on namespace 'shop-orders'")
    );

    let mut auditor = claims(json!({}));
    auditor["groups"] = json!(["auditors"]);
    let auditor = hs(&auditor);
    let mut kv_auditor = kv(&p.url, Some(&auditor), "shop-carts").await;
    kv_auditor
        .get(GetRequest { key: "k".into() })
        .await
        .expect("the auditors rule grants read on shop-*");
    assert_eq!(
        kv_auditor.set(set("k")).await.unwrap_err().code(),
        Code::PermissionDenied
    );
}

#[tokio::test]
async fn admin_needs_admin_and_reports_the_auth_mode() {
    let doc = Arc::new(Mutex::new(
        json!({ "keys": [jwk(&SigningKey::random(&mut rand::rngs::OsRng), "k1")] }).to_string(),
    ));
    let p = start(&jwks_server(doc).await).await;
    let rw = hs(&claims(json!({ "shop-orders": ["read", "write"] })));
    let client = PrismClient::connect(p.url.clone())
        .await
        .unwrap()
        .with_token(&rw)
        .unwrap();
    let err = client
        .admin()
        .get_capabilities(GetCapabilitiesRequest {
            namespace: "shop-orders".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message()
            .contains("admin permission on namespace 'shop-orders'")
    );

    let admin = hs(&claims(json!({ "shop-orders": ["admin"] })));
    let client = PrismClient::connect(p.url.clone())
        .await
        .unwrap()
        .with_token(&admin)
        .unwrap();
    let caps = client
        .admin()
        .get_capabilities(GetCapabilitiesRequest {
            namespace: "shop-orders".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(caps.auth_mode, "jwt");
    let list = client
        .admin()
        .list_namespaces(prism_proto::admin::v1::ListNamespacesRequest {})
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = list.namespaces.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        ["shop-orders"],
        "only namespaces the caller administers are listed"
    );

    let anonymous = PrismClient::connect(p.url.clone()).await.unwrap();
    let err = anonymous
        .admin()
        .list_namespaces(prism_proto::admin::v1::ListNamespacesRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn health_stays_open_and_metadata_is_bounded() {
    let doc = Arc::new(Mutex::new(
        json!({ "keys": [jwk(&SigningKey::random(&mut rand::rngs::OsRng), "k1")] }).to_string(),
    ));
    let p = start(&jwks_server(doc).await).await;
    let channel = tonic::transport::Endpoint::from_shared(p.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health needs no token");

    let mut raw = prism_proto::keyvalue::v1::key_value_client::KeyValueClient::new(channel);
    let mut request = tonic::Request::new(GetRequest { key: "k".into() });
    for i in 0..80 {
        request.metadata_mut().insert(
            tonic::metadata::MetadataKey::from_bytes(format!("x-filler-{i}").as_bytes()).unwrap(),
            "x".parse().unwrap(),
        );
    }
    let err = raw.get(request).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(
        err.message().contains("max_headers = 64"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn a_rotated_key_is_fetched_when_a_token_names_it() {
    let old = SigningKey::random(&mut rand::rngs::OsRng);
    let new = SigningKey::random(&mut rand::rngs::OsRng);
    let doc = Arc::new(Mutex::new(
        json!({ "keys": [jwk(&old, "old")] }).to_string(),
    ));
    let p = start(&jwks_server(doc.clone()).await).await;
    let grants = json!({ "shop-orders": ["read"] });
    let token = es(&new, "new", &claims(grants.clone()));
    // A token of the old key is verified (and cached by the proxy) before any rotation.
    let old_token = es(&old, "old", &claims(grants.clone()));
    let mut old_kv = kv(&p.url, Some(&old_token), "shop-orders").await;
    old_kv
        .get(GetRequest { key: "k".into() })
        .await
        .expect("the old key verifies");
    let first = status_of(Some(&token), &p).await;
    assert!(
        first
            .message()
            .contains("no verification key for kid \"new\""),
        "{first:?}"
    );

    *doc.lock().unwrap() = json!({ "keys": [jwk(&old, "old"), jwk(&new, "new")] }).to_string();
    // The unknown kid above asked for a refresh; the refresh after that is rate-limited to one per 10 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(25);
    let mut kv = kv(&p.url, Some(&token), "shop-orders").await;
    loop {
        match kv.get(GetRequest { key: "k".into() }).await {
            Ok(_) => break,
            Err(s) if std::time::Instant::now() < deadline => {
                assert_eq!(s.code(), Code::Unauthenticated);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(s) => panic!("the new key was never fetched: {s:?}"),
        }
    }

    // The old key is withdrawn: once the proxy refetches (asked for by a token naming an unknown
    // kid, at most once per 10 s), the old token is checked again and refused, cache or not.
    *doc.lock().unwrap() = json!({ "keys": [jwk(&new, "new")] }).to_string();
    let unknown = es(&new, "unknown", &claims(grants));
    let deadline = std::time::Instant::now() + Duration::from_secs(25);
    loop {
        let _ = status_of(Some(&unknown), &p).await;
        match old_kv.get(GetRequest { key: "k".into() }).await {
            Err(s) if s.code() == Code::Unauthenticated => {
                assert!(s.message().contains("kid \"old\""), "{s:?}");
                break;
            }
            Ok(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => panic!("the withdrawn key still verifies: {other:?}"),
        }
    }
}
