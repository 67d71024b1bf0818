//! Config reload end to end (Admin `ReloadConfig`; SIGHUP is in binary.rs): namespaces added,
//! removed and changed under load with no failed call on the ones that stay, streams of a removed
//! namespace ended with UNAVAILABLE naming why, a bad config refused whole with the old one serving,
//! the admin permission required on every namespace a reload changes, and rotated keys taking effect.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use prism_proto::admin::v1::{ListNamespacesRequest, ReloadConfigRequest};
use prism_proto::client::PrismClient;
use prism_proto::keyvalue::v1::{GetRequest, SetRequest};
use prism_proto::pubsub::v1::{PublishRequest, SubscribeRequest, subscribe_response::Event};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tonic::Code;

mod support;

const BEFORE: &str = "listen: 127.0.0.1:0\nauth: { mode: none }\nbackends:\n  mem: { type: memstore }\nnamespaces:\n  stays: { pattern: keyvalue, backend: mem }\n  events: { pattern: pubsub, backend: mem }\n  doomed: { pattern: pubsub, backend: mem }\n  tuned: { pattern: keyvalue, backend: mem }\n";

fn after(db: &Path) -> String {
    format!(
        "listen: 127.0.0.1:0\nauth: {{ mode: none }}\nbackends:\n  mem: {{ type: memstore }}\n  lite: {{ type: sqlite, path: {} }}\nnamespaces:\n  stays: {{ pattern: keyvalue, backend: mem }}\n  events: {{ pattern: pubsub, backend: mem }}\n  tuned: {{ pattern: keyvalue, backend: mem, disable: [keyvalue.scan] }}\n  fresh: {{ pattern: keyvalue, backend: lite }}\n",
        db.display()
    )
}

async fn next_event(s: &mut tonic::Streaming<prism_proto::pubsub::v1::SubscribeResponse>) -> Event {
    tokio::time::timeout(Duration::from_secs(5), s.message())
        .await
        .expect("an event within 5 s")
        .expect("the stream goes on")
        .expect("an event")
        .event
        .expect("an event body")
}

async fn subscribe(
    client: &PrismClient,
    ns: &str,
) -> tonic::Streaming<prism_proto::pubsub::v1::SubscribeResponse> {
    let mut s = client
        .namespace(ns)
        .pubsub()
        .subscribe(SubscribeRequest { topic: "t".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(next_event(&mut s).await, Event::Subscribed(_)));
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_come_and_go_under_load_without_failing_the_ones_that_stay() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prism.yaml");
    std::fs::write(&file, BEFORE).unwrap();
    let served = support::serve_file(&file).await;
    let client = PrismClient::connect(format!("http://{}", served.addr))
        .await
        .unwrap();

    // Calls on `stays` run throughout; none may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let (calls, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (client, stop, calls, failed) =
            (client.clone(), stop.clone(), calls.clone(), failed.clone());
        tokio::spawn(async move {
            let mut kv = client.namespace("stays").keyvalue();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let set = kv
                    .set(SetRequest {
                        key: format!("k{}", i % 50),
                        value: b"v".to_vec().into(),
                        ..Default::default()
                    })
                    .await;
                let get = kv
                    .get(GetRequest {
                        key: format!("k{}", i % 50),
                    })
                    .await;
                calls.fetch_add(2, Ordering::Relaxed);
                if set.is_err() || get.is_err() {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let mut events = subscribe(&client, "events").await;
    let mut doomed = subscribe(&client, "doomed").await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    std::fs::write(&file, after(&dir.path().join("lite.db"))).unwrap();
    let reloaded = client
        .admin()
        .reload_config(ReloadConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reloaded.config_generation, 2);
    assert_eq!(reloaded.namespaces_added, ["fresh"]);
    assert_eq!(reloaded.namespaces_removed, ["doomed"]);
    assert_eq!(reloaded.namespaces_changed, ["tuned"]);
    assert_eq!(reloaded.backends_opened, ["lite"]);
    assert!(reloaded.backends_closed.is_empty(), "mem is still used");

    // The removed namespace's stream ends, saying why; its calls are NOT_FOUND from now on.
    let ended = tokio::time::timeout(Duration::from_secs(5), doomed.message())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(ended.code(), Code::Unavailable);
    assert!(
        ended.message().contains("namespace 'doomed' was removed"),
        "{}",
        ended.message()
    );
    let gone = client
        .namespace("doomed")
        .pubsub()
        .publish(PublishRequest {
            topic: "t".into(),
            payload: b"x".to_vec().into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    // The unchanged namespace's stream goes on.
    client
        .namespace("events")
        .pubsub()
        .publish(PublishRequest {
            topic: "t".into(),
            payload: b"after".to_vec().into(),
            ..Default::default()
        })
        .await
        .unwrap();
    match next_event(&mut events).await {
        Event::Message(m) => assert_eq!(&m.payload[..], b"after"),
        other => panic!("expected the message, got {other:?}"),
    }
    // The new namespace serves, on the newly opened backend; the changed one has its new setting.
    let mut fresh = client.namespace("fresh").keyvalue();
    fresh
        .set(SetRequest {
            key: "k".into(),
            value: b"new".to_vec().into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        &fresh
            .get(GetRequest { key: "k".into() })
            .await
            .unwrap()
            .into_inner()
            .value[..],
        b"new"
    );
    let scan = client
        .namespace("tuned")
        .keyvalue()
        .scan(prism_proto::keyvalue::v1::ScanRequest::default())
        .await
        .unwrap_err();
    assert_eq!(scan.code(), Code::Unimplemented, "{}", scan.message());

    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    assert!(calls.load(Ordering::Relaxed) > 100, "the load ran");
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no call on the namespace that stayed failed"
    );
    let listed = client
        .admin()
        .list_namespaces(ListNamespacesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.config_generation, 2);
    let names: Vec<_> = listed.namespaces.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["events", "fresh", "stays", "tuned"]);
}

#[tokio::test]
async fn a_bad_config_is_refused_whole_and_the_running_one_serves() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prism.yaml");
    let before = BEFORE.replace(
        "listen: 127.0.0.1:0\n",
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n",
    );
    let before = before.as_str();
    std::fs::write(&file, before).unwrap();
    let served = support::serve_file(&file).await;
    let client = PrismClient::connect(format!("http://{}", served.addr))
        .await
        .unwrap();
    let mut admin = client.admin();

    std::fs::write(
        &file,
        before.replace("tuned:", "tuned_:").replace(
            "backend: mem }\n  doomed",
            "backend: mem, colour: red }\n  doomed",
        ),
    )
    .unwrap();
    let refused = admin
        .reload_config(ReloadConfigRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("prism.yaml:"),
        "located: {}",
        refused.message()
    );
    assert!(
        refused.message().contains("colour"),
        "{}",
        refused.message()
    );
    assert!(
        refused.message().contains("the running one stays"),
        "{}",
        refused.message()
    );

    std::fs::write(
        &file,
        before.replace("listen: 127.0.0.1:0", "listen: 127.0.0.1:1"),
    )
    .unwrap();
    let refused = admin
        .reload_config(ReloadConfigRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused
            .message()
            .contains("`listen` cannot change without a restart"),
        "{}",
        refused.message()
    );

    // Still generation 1, every namespace as it was.
    let listed = admin
        .list_namespaces(ListNamespacesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.config_generation, 1);
    assert_eq!(listed.namespaces.len(), 4);
    client
        .namespace("tuned")
        .keyvalue()
        .get(GetRequest { key: "k".into() })
        .await
        .unwrap();

    // Unchanged file: a reload that changes nothing still takes (a new generation, nothing listed).
    std::fs::write(&file, before).unwrap();
    let same = admin
        .reload_config(ReloadConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(same.config_generation, 2);
    assert!(
        same.namespaces_added.is_empty()
            && same.namespaces_removed.is_empty()
            && same.namespaces_changed.is_empty()
    );
}

#[tokio::test]
async fn a_reload_needs_admin_on_every_namespace_it_changes_and_rotated_keys_take_effect() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    let (old_key, new_key) = (
        "0123456789abcdef0123456789abcdef",
        "fedcba9876543210fedcba9876543210",
    );
    std::fs::write(&secret, old_key).unwrap();
    let file = dir.path().join("prism.yaml");
    let config = |extra: &str| {
        format!(
            "listen: 127.0.0.1:0\nauth:\n  hs256: {{ secret_file: {} }}\nbackends: {{ m: {{ type: memstore }} }}\nnamespaces:\n  a: {{ pattern: keyvalue, backend: m }}\n{extra}",
            secret.display()
        )
    };
    std::fs::write(&file, config("")).unwrap();
    let served = support::serve_file(&file).await;
    let url = format!("http://{}", served.addr);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token = |key: &str, grants: serde_json::Value| {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &json!({ "sub": "op", "exp": exp, "prism": { "namespaces": grants } }),
            &EncodingKey::from_secret(key.as_bytes()),
        )
        .unwrap()
    };
    let client = |t: String| {
        let url = url.clone();
        async move {
            PrismClient::connect(url)
                .await
                .unwrap()
                .with_token(&t)
                .unwrap()
        }
    };
    let admin_of_a = client(token(old_key, json!({ "a": ["admin", "read"] }))).await;
    let admin_of_all = client(token(old_key, json!({ "*": ["admin", "read"] }))).await;

    std::fs::write(&file, config("  b: { pattern: keyvalue, backend: m }\n")).unwrap();
    let denied = admin_of_a
        .admin()
        .reload_config(ReloadConfigRequest {})
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(
        denied.message().contains("1 namespace(s)") && !denied.message().contains("'b'"),
        "counts, never names: {}",
        denied.message()
    );

    std::fs::write(&secret, new_key).unwrap();
    admin_of_all
        .admin()
        .reload_config(ReloadConfigRequest {})
        .await
        .unwrap();
    // The rotated secret: tokens signed with the old one are refused, the new one's accepted.
    let old = admin_of_all
        .namespace("b")
        .keyvalue()
        .get(GetRequest { key: "k".into() })
        .await
        .unwrap_err();
    assert_eq!(old.code(), Code::Unauthenticated);
    let fresh = client(token(new_key, json!({ "b": ["read"] }))).await;
    fresh
        .namespace("b")
        .keyvalue()
        .get(GetRequest { key: "k".into() })
        .await
        .unwrap();
}
