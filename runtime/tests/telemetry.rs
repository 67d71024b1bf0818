//! The admin HTTP listener and its metrics end to end: calls through the real proxy move the call,
//! backend and messaging families, read back with a Prometheus parser; an invented namespace
//! creates no series; the probes and OpenMetrics answer as scrapers and Kubernetes expect (the
//! probes' 503s are unit tests of `telemetry::http`).

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use prism_proto::admin::v1::GetCapabilitiesRequest;
use prism_proto::client::PrismClient;
use prism_proto::keyvalue::v1::{GetRequest, SetRequest};
use prism_proto::pubsub::v1::{PublishRequest, SubscribeRequest};
use prism_proto::queue::v1::{AckRequest, ConsumeRequest, EnqueueRequest, NackRequest};
use prometheus_parse::{Sample, Scrape, Value};
use serde_json::json;
use std::net::SocketAddr;
use tonic::Code;

mod support;

const CONFIG: &str = "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nauth: { mode: none }\nbackends:\n  mem: { type: memstore }\nnamespaces:\n  cache: { pattern: keyvalue, backend: mem }\n  events: { pattern: pubsub, backend: mem }\n  jobs: { pattern: queue, backend: mem }\n";

async fn scrape(admin: SocketAddr) -> Scrape {
    let answer = support::http(admin, "GET", "/metrics", None).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.content_type,
        "text/plain; version=0.0.4; charset=utf-8"
    );
    Scrape::parse(answer.body.lines().map(|l| Ok(l.to_string()))).unwrap()
}

/// The value of the sample of `name` whose labels include every pair of `labels`.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s: &&Sample| {
            s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(h) => h.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => f64::NAN,
        })
}

#[tokio::test]
async fn calls_move_the_call_backend_and_messaging_families() {
    let served = support::serve(CONFIG).await;
    let admin = served.admin.expect("admin_listen is set");
    let client = PrismClient::connect(format!("http://{}", served.addr))
        .await
        .unwrap();
    let mut kv = client.namespace("cache").keyvalue();
    kv.set(SetRequest {
        key: "k".into(),
        value: b"v".to_vec().into(),
        ..Default::default()
    })
    .await
    .unwrap();
    for _ in 0..3 {
        kv.get(GetRequest { key: "k".into() }).await.unwrap();
    }
    let missing = kv.get(GetRequest { key: "nope".into() }).await.unwrap();
    assert!(!missing.into_inner().found);
    // A namespace nobody configured: its name must not become a label.
    let invented = client
        .namespace("invented-by-a-caller")
        .keyvalue()
        .get(GetRequest { key: "k".into() })
        .await
        .unwrap_err();
    assert_eq!(invented.code(), Code::NotFound);

    let mut pubsub = client.namespace("events").pubsub();
    let mut subscription = pubsub
        .subscribe(SubscribeRequest { topic: "t".into() })
        .await
        .unwrap()
        .into_inner();
    subscription.message().await.unwrap().expect("confirmation");
    pubsub
        .publish(PublishRequest {
            topic: "t".into(),
            payload: b"m".to_vec().into(),
            ..Default::default()
        })
        .await
        .unwrap();
    subscription.message().await.unwrap().expect("the message");

    let mut queue = client.namespace("jobs").queue();
    for _ in 0..2 {
        queue
            .enqueue(EnqueueRequest {
                queue: "q".into(),
                payload: b"job".to_vec().into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let mut consumer = queue
        .consume(ConsumeRequest {
            queue: "q".into(),
            max_in_flight: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    consumer.message().await.unwrap().expect("consuming");
    let first = delivery_id(consumer.message().await.unwrap().unwrap());
    queue
        .nack(NackRequest {
            queue: "q".into(),
            delivery_id: first,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut acked = 0;
    while acked < 2 {
        let id = delivery_id(consumer.message().await.unwrap().unwrap());
        queue
            .ack(AckRequest {
                queue: "q".into(),
                delivery_ids: vec![id],
                ..Default::default()
            })
            .await
            .unwrap();
        acked += 1;
    }

    let s = scrape(admin).await;
    let get = [
        ("rpc_method", "prism.keyvalue.v1.KeyValue/Get"),
        ("namespace", "cache"),
        ("pattern", "keyvalue"),
    ];
    let calls = "rpc_server_call_duration_seconds";
    let ok = [get.as_slice(), &[("rpc_status_code", "OK")]].concat();
    assert_eq!(value(&s, calls, &ok), Some(4.0));
    let unrouted = [
        ("rpc_method", "prism.keyvalue.v1.KeyValue/Get"),
        ("rpc_status_code", "NOT_FOUND"),
        ("namespace", ""),
    ];
    assert_eq!(
        value(&s, calls, &unrouted),
        Some(1.0),
        "the invented namespace is counted without its name"
    );
    assert!(
        s.samples
            .iter()
            .all(|x| x.labels.values().all(|v| !v.contains("invented"))),
        "no label carries the invented name"
    );
    // The 20 µs hop has buckets of its own: the first bound is 5 µs.
    let first_bucket = s
        .samples
        .iter()
        .find(|x| x.metric == "rpc_server_call_duration_seconds")
        .map(|x| match &x.value {
            Value::Histogram(h) => h[0].less_than,
            _ => f64::NAN,
        });
    assert_eq!(first_bucket, Some(0.000_005));
    assert_eq!(
        value(
            &s,
            "db_client_operation_duration_seconds",
            &[
                ("db_system_name", "memstore"),
                ("backend", "mem"),
                ("db_operation_name", "Get"),
                ("outcome", "ok")
            ]
        ),
        Some(4.0),
        "every routed Get reached the backend (found or not)"
    );
    assert_eq!(
        value(
            &s,
            "messaging_client_operation_duration_seconds",
            &[
                ("messaging_system", "memstore"),
                ("messaging_operation_name", "Publish"),
                ("outcome", "ok")
            ]
        ),
        Some(1.0)
    );
    let events = [("namespace", "events")];
    assert_eq!(value(&s, "prism_messages_sent_total", &events), Some(1.0));
    assert_eq!(
        value(&s, "prism_messages_delivered_total", &events),
        Some(1.0)
    );
    let jobs = [("namespace", "jobs")];
    assert_eq!(value(&s, "prism_messages_sent_total", &jobs), Some(2.0));
    assert_eq!(
        value(&s, "prism_messages_delivered_total", &jobs),
        Some(3.0),
        "two, one of them twice"
    );
    assert_eq!(
        value(
            &s,
            "prism_queue_redeliveries_total",
            &[("namespace", "jobs"), ("cause", "nack")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "prism_queue_deliveries_in_flight", &jobs),
        Some(0.0)
    );
    assert_eq!(value(&s, "prism_streams_open", &events), Some(1.0));
    assert_eq!(value(&s, "prism_streams_open", &jobs), Some(1.0));
    assert_eq!(
        value(
            &s,
            "rpc_server_active_calls",
            &[("rpc_method", "prism.pubsub.v1.PubSub/Subscribe")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "prism_backend_up", &[("backend", "mem")]),
        Some(1.0)
    );
    assert_eq!(value(&s, "prism_connections_open", &[]), Some(1.0));
    assert_eq!(value(&s, "prism_draining", &[]), Some(0.0));
    assert_eq!(value(&s, "prism_config_generation", &[]), Some(1.0));
    assert!(value(&s, "prism_rpc_response_bytes_total", &get).unwrap() > 0.0);
    assert!(value(&s, "process_resident_memory_bytes", &[]).unwrap() > 0.0);
    // Every series once: a name and label set that repeats is an invalid exposition.
    let text = support::http(admin, "GET", "/metrics", None).await.body;
    let mut seen = std::collections::HashSet::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let series = line.rsplit_once(' ').unwrap().0;
        assert!(seen.insert(series.to_string()), "repeated: {series}");
    }
    drop((consumer, subscription));
}

fn delivery_id(r: prism_proto::queue::v1::ConsumeResponse) -> String {
    match r.event {
        Some(prism_proto::queue::v1::consume_response::Event::Delivery(d)) => d.delivery_id,
        other => panic!("expected a delivery, got {other:?}"),
    }
}

#[tokio::test]
async fn probes_openmetrics_and_wrong_requests() {
    let served = support::serve(CONFIG).await;
    let admin = served.admin.unwrap();
    let live = support::http(admin, "GET", "/livez", None).await;
    assert_eq!((live.status, live.body.as_str()), (200, "ok\n"));
    let ready = support::http(admin, "GET", "/readyz", None).await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
    let om = support::http(
        admin,
        "GET",
        "/metrics",
        Some("application/openmetrics-text; version=1.0.0,text/plain;q=0.5"),
    )
    .await;
    assert_eq!(om.status, 200);
    assert!(
        om.content_type.starts_with("application/openmetrics-text"),
        "{}",
        om.content_type
    );
    assert!(om.body.ends_with("# EOF\n"));
    assert!(om.body.contains("# TYPE prism_messages_sent counter\n"));
    assert!(
        om.body
            .contains("# UNIT rpc_server_call_duration_seconds seconds\n")
    );
    let missing = support::http(admin, "GET", "/nope", None).await;
    assert_eq!(missing.status, 404);
    assert!(
        missing.body.contains("/metrics"),
        "the 404 names what is served"
    );
    let post = support::http(admin, "POST", "/metrics", None).await;
    assert_eq!(post.status, 405);
}

#[tokio::test]
async fn authentication_failures_and_denials_are_counted_by_check_never_by_token() {
    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nauth:\n  hs256: {{ secret_file: {} }}\nbackends: {{ m: {{ type: memstore }} }}\nnamespaces:\n  a: {{ pattern: keyvalue, backend: m }}\n  b: {{ pattern: keyvalue, backend: m }}\n",
        secret.display()
    );
    let served = support::serve(&yaml).await;
    let url = format!("http://{}", served.addr);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sign = |claims: serde_json::Value| {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    let reader =
        sign(json!({ "sub": "r", "exp": exp + 600, "prism": { "namespaces": { "a": ["read"] } } }));
    let expired =
        sign(json!({ "sub": "r", "exp": exp - 600, "prism": { "namespaces": { "a": ["read"] } } }));
    let get = |token: Option<String>, ns: &'static str| {
        let url = url.clone();
        async move {
            let mut client = PrismClient::connect(url).await.unwrap();
            if let Some(t) = token {
                client = client.with_token(&t).unwrap();
            }
            client
                .namespace(ns)
                .keyvalue()
                .get(GetRequest { key: "k".into() })
                .await
                .map_or_else(|e| e.code(), |_| Code::Ok)
        }
    };
    assert_eq!(get(None, "a").await, Code::Unauthenticated);
    assert_eq!(
        get(Some("not.a.jwt".into()), "a").await,
        Code::Unauthenticated
    );
    assert_eq!(get(Some(expired.clone()), "a").await, Code::Unauthenticated);
    assert_eq!(get(Some(reader.clone()), "b").await, Code::PermissionDenied);
    assert_eq!(get(Some(reader.clone()), "a").await, Code::Ok);
    // Admin's own checks count too: the reader lacks admin on `a`.
    let denied = PrismClient::connect(url.clone())
        .await
        .unwrap()
        .with_token(&reader)
        .unwrap()
        .admin()
        .get_capabilities(GetCapabilitiesRequest {
            namespace: "a".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let answer = support::http(served.admin.unwrap(), "GET", "/metrics", None).await;
    assert!(
        !answer.body.contains(&expired) && !answer.body.contains(&reader),
        "no token in the exposition"
    );
    let s = Scrape::parse(answer.body.lines().map(|l| Ok(l.to_string()))).unwrap();
    let failures = "prism_auth_failures_total";
    assert_eq!(value(&s, failures, &[("check", "missing")]), Some(1.0));
    assert_eq!(value(&s, failures, &[("check", "malformed")]), Some(1.0));
    assert_eq!(value(&s, failures, &[("check", "expired")]), Some(1.0));
    assert_eq!(
        value(&s, "prism_authz_denials_total", &[("permission", "read")]),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "prism_authz_denials_total", &[("permission", "admin")]),
        Some(1.0)
    );
    assert_eq!(
        value(
            &s,
            "rpc_server_call_duration_seconds",
            &[("namespace", "a"), ("rpc_status_code", "UNAUTHENTICATED")]
        ),
        Some(3.0)
    );
}

/// Label names that share a prefix with metric names.
const LABELS: [&str; 6] = [
    "rpc_method",
    "rpc_status_code",
    "db_system_name",
    "db_operation_name",
    "messaging_system",
    "messaging_operation_name",
];

/// The metric names a PromQL expression reads.
fn metrics_named(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| {
            ["rpc_", "db_", "messaging_", "prism_", "process_"]
                .iter()
                .any(|p| t.starts_with(p))
                && !LABELS.contains(t)
        })
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn the_shipped_dashboard_and_alert_rules_read_only_metrics_the_proxy_exports() {
    let served = support::serve(CONFIG).await;
    let body = support::http(served.admin.unwrap(), "GET", "/metrics", None)
        .await
        .body;
    // What a query may name: each family's samples as the text format writes them.
    let mut exported = std::collections::BTreeSet::new();
    for line in body.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (name, kind) = line.split_once(' ').unwrap();
        exported.insert(name.to_string());
        if kind == "histogram" {
            for suffix in ["_bucket", "_count", "_sum"] {
                exported.insert(format!("{name}{suffix}"));
            }
        }
    }
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(examples.join("grafana-dashboard.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let mut queries: Vec<String> = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let targets = panel["targets"]
            .as_array()
            .expect("every panel has targets");
        assert!(!targets.is_empty(), "{}", panel["title"]);
        for t in targets {
            queries.push(t["expr"].as_str().expect("a PromQL expr").to_string());
        }
    }
    let rules: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(examples.join("prometheus-alerts.yaml")).unwrap(),
    )
    .expect("the alert rules are YAML");
    let mut alerts = Vec::new();
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            alerts.push(rule["alert"].as_str().expect("alert name").to_string());
            queries.push(rule["expr"].as_str().expect("expr").to_string());
        }
    }
    for wanted in [
        "PrismCallLatencyHigh",
        "PrismCallLatencyCritical",
        "PrismBackendDown",
        "PrismSubscriberDrops",
        "PrismDeadLetters",
    ] {
        assert!(alerts.iter().any(|a| a == wanted), "{wanted} in {alerts:?}");
    }
    for query in &queries {
        let named = metrics_named(query);
        assert!(!named.is_empty(), "no metric in {query}");
        for metric in named {
            assert!(
                exported.contains(&metric),
                "{metric} (in {query}) is not exported"
            );
        }
    }
    assert!(queries.len() >= 30, "{} queries", queries.len());
}
