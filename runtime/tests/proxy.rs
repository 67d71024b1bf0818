//! The proxy end to end over real gRPC: namespace resolution errors, capability refusal, Admin,
//! health, reflection, isolation on a shared backend, the registry's index entries in its slot, and
//! graceful drain.

use prism_proto::admin::v1::{GetCapabilitiesRequest, ListNamespacesRequest};
use prism_proto::client::PrismClient;
use prism_proto::filter::v1::{Compare, Filter, compare::Op, filter::Clause};
use prism_proto::keyvalue::v1::key_value_client::KeyValueClient;
use prism_proto::keyvalue::v1::{GetRequest, ScanRequest, SetRequest};
use prism_proto::registry::v1::{EnumerateRequest, RegisterRequest, UnregisterRequest};
use prism_runtime::backends::sqlite::{SqliteConfig, SqliteStore};
use prism_runtime::patterns::keyvalue::store::KvStore;
use tokio::sync::oneshot;
use tonic::Code;

mod support;

struct Running {
    url: String,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    dir: tempfile::TempDir,
}

async fn start(extra_namespaces: &str) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "listen: 127.0.0.1:0\nauth: {{ mode: none }}\nbackends:\n  mem: {{ type: memstore }}\n  lite: {{ type: sqlite, path: {db} }}\nnamespaces:\n  a: {{ pattern: keyvalue, backend: lite }}\n  b: {{ pattern: keyvalue, backend: lite }}\n  m: {{ pattern: keyvalue, backend: mem }}\n{extra_namespaces}",
        db = dir.path().join("t.db").display()
    );
    let served = support::serve(&yaml).await;
    Running {
        url: format!("http://{}", served.addr),
        stop: served.stop,
        task: served.task,
        dir,
    }
}

impl Running {
    /// A raw channel, for clients that add no Prism metadata.
    async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(self.url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }
}

fn set(key: &str, value: &'static str) -> SetRequest {
    SetRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn missing_and_unknown_namespaces_are_named_without_listing_the_others() {
    let p = start("").await;
    let channel = p.channel().await;
    let err = KeyValueClient::new(channel)
        .get(GetRequest { key: "k".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("x-prism-namespace"),
        "{}",
        err.message()
    );

    let client = PrismClient::connect(p.url.clone()).await.unwrap();
    let err = client
        .namespace("nope")
        .keyvalue()
        .get(GetRequest { key: "k".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("'nope'"), "{}", err.message());
    for other in ["a, b", "'a'", "'m'", "configured:"] {
        assert!(
            !err.message().contains(other),
            "the answer must not reveal which other tenants exist: {}",
            err.message()
        );
    }
}

#[tokio::test]
async fn disabled_capability_is_unimplemented_and_named() {
    let p = start(
        "  noscan: { pattern: keyvalue, backend: mem, disable: [keyvalue.scan, keyvalue.ttl] }\n",
    )
    .await;
    let client = PrismClient::connect(p.url.clone()).await.unwrap();
    let mut kv = client.namespace("noscan").keyvalue();
    let err = kv
        .scan(ScanRequest {
            prefix: "p".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    assert!(err.message().contains("keyvalue.scan"), "{}", err.message());
    let err = kv
        .set(SetRequest {
            ttl_ms: 10,
            ..set("k", "v")
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    assert!(err.message().contains("keyvalue.ttl"), "{}", err.message());
    kv.set(set("k", "v")).await.expect("basic set still works");

    let caps = client
        .admin()
        .get_capabilities(GetCapabilitiesRequest {
            namespace: "noscan".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        caps.capabilities,
        ["keyvalue.basic", "keyvalue.batch", "keyvalue.cas"]
    );
    assert_eq!(caps.backend_kind, "memstore");
}

#[tokio::test]
async fn admin_lists_namespaces_and_capabilities() {
    let p = start("").await;
    let client = PrismClient::connect(p.url.clone()).await.unwrap();
    let list = client
        .admin()
        .list_namespaces(ListNamespacesRequest {})
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = list
        .namespaces
        .iter()
        .map(|n| (n.name.as_str(), n.backend_kind.as_str()))
        .collect();
    assert_eq!(names, [("a", "sqlite"), ("b", "sqlite"), ("m", "memstore")]);
    let caps = client
        .admin()
        .get_capabilities(GetCapabilitiesRequest {
            namespace: "a".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(caps.pattern, "keyvalue");
    assert_eq!(
        caps.capabilities,
        [
            "keyvalue.basic",
            "keyvalue.ttl",
            "keyvalue.scan",
            "keyvalue.batch",
            "keyvalue.cas",
            "keyvalue.durable"
        ]
    );
    let limits = caps.limits.unwrap();
    assert_eq!(
        (limits.max_key_bytes, limits.max_value_bytes),
        (1024, 4 * 1024 * 1024)
    );
    let err = client
        .admin()
        .get_capabilities(GetCapabilitiesRequest {
            namespace: "zz".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn health_and_reflection_are_served() {
    use tokio_stream::StreamExt;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let p = start("").await;
    let channel = p.channel().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "prism.keyvalue.v1.KeyValue".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );

    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = stream.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer: {response:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for wanted in [
        "prism.keyvalue.v1.KeyValue",
        "prism.admin.v1.Admin",
        "grpc.health.v1.Health",
    ] {
        assert!(names.contains(&wanted), "{names:?} lacks {wanted}");
    }
}

#[tokio::test]
async fn reflection_v1alpha_is_served_for_older_clients() {
    use tokio_stream::StreamExt;
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

    let p = start("").await;
    let mut reflection = ServerReflectionClient::new(p.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(
            "prism.keyvalue.v1.KeyValue".into(),
        )),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("grpc.reflection.v1alpha is served")
        .into_inner();
    let answer = answers.next().await.unwrap().unwrap();
    let Some(MessageResponse::FileDescriptorResponse(files)) = answer.message_response else {
        panic!("unexpected reflection answer: {answer:?}");
    };
    assert!(!files.file_descriptor_proto.is_empty());
}

#[tokio::test]
async fn namespaces_sharing_a_backend_are_isolated() {
    let p = start("").await;
    let client = PrismClient::connect(p.url.clone()).await.unwrap();
    let mut a = client.namespace("a").keyvalue();
    let mut b = client.namespace("b").keyvalue();
    a.set(set("shared/k", "from-a")).await.unwrap();
    b.set(set("shared/k", "from-b")).await.unwrap();
    a.set(set("shared/only-a", "x")).await.unwrap();
    let got = a
        .get(GetRequest {
            key: "shared/k".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(&got.value[..], b"from-a");
    let got = b
        .get(GetRequest {
            key: "shared/only-a".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!got.found);
    let scan = b
        .scan(ScanRequest {
            prefix: "shared/".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let keys: Vec<_> = scan.items.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["shared/k"]);
}

/// The keys of namespace `ns` under `prefix` in the proxy's SQLite file, read by a second store.
async fn stored_keys(p: &Running, ns: &str, prefix: &str) -> Vec<String> {
    let store = SqliteStore::open(&SqliteConfig {
        path: p.dir.path().join("t.db").display().to_string(),
        readers: 1,
        claim_idle_secs: None,
    })
    .await
    .unwrap();
    let scan = store.scan().expect("sqlite scans");
    let items = scan
        .scan(ns, prefix, None, 100, usize::MAX, true)
        .await
        .unwrap();
    store.close().await;
    items.into_iter().map(|i| i.key).collect()
}

#[tokio::test]
async fn registry_index_entries_follow_replacement_and_removal() {
    let p =
        start("  r: { pattern: multicast_registry, slots: { registry: lite, messaging: mem } }\n")
            .await;
    let client = PrismClient::connect(p.url.clone()).await.unwrap();
    let mut r = client.namespace("r").registry();
    let register = |zone: &str, replace| RegisterRequest {
        identity: "a".into(),
        metadata: [("zone", zone), ("tier", "gold")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ttl_ms: 0,
        replace,
    };
    r.register(register("eu", false)).await.unwrap();
    assert_eq!(
        stored_keys(&p, "r", "x/").await.len(),
        2,
        "one entry per pair"
    );
    r.register(register("us", true)).await.unwrap();
    let entries = stored_keys(&p, "r", "x/").await;
    assert_eq!(
        entries.len(),
        2,
        "the replaced pair's entry is gone: {entries:?}"
    );
    let found = r
        .enumerate(EnumerateRequest {
            filter: Some(Filter {
                clause: Some(Clause::Compare(Compare {
                    key: "zone".into(),
                    op: Op::Eq as i32,
                    value: "us".into(),
                })),
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.registrations.len(), 1);
    r.unregister(UnregisterRequest {
        identity: "a".into(),
    })
    .await
    .unwrap();
    let entries = stored_keys(&p, "r", "x/").await;
    assert!(entries.is_empty(), "removal leaves no entry: {entries:?}");
}

#[tokio::test]
async fn shutdown_lets_in_flight_calls_finish() {
    let p = start("").await;
    let client = PrismClient::connect(p.url.clone()).await.unwrap();
    let value = vec![7u8; 1024 * 1024];
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..16 {
        let mut kv = client.namespace("a").keyvalue();
        let value = value.clone();
        calls.spawn(async move {
            kv.set(SetRequest {
                key: format!("drain/{i}"),
                value: value.into(),
                ..Default::default()
            })
            .await
        });
    }
    // Wait for the first call to complete, so the rest are on the wire or being served.
    let first = calls.join_next().await.unwrap().unwrap();
    assert!(first.is_ok(), "{first:?}");
    p.stop.send(()).unwrap();
    while let Some(result) = calls.join_next().await {
        let result = result.unwrap();
        assert!(result.is_ok(), "an in-flight call was cut off: {result:?}");
    }
    p.task.await.unwrap();
    assert!(
        PrismClient::connect(p.url.clone()).await.is_err(),
        "the listener is closed after drain"
    );
}
