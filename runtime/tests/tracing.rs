//! Traces end to end: a test OTLP receiver (the collector's TraceService over gRPC) gets the
//! proxy's spans; a sampled `traceparent` is continued (same trace, the caller's span as parent),
//! backend calls are child spans of the call's, an unsampled or absent parent at ratio 0 is not
//! traced, and only server-side codes are recorded as errors.

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind, status::StatusCode};
use prism_proto::client::PrismClient;
use prism_proto::keyvalue::v1::{GetRequest, SetRequest};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::metadata::MetadataValue;

mod support;

/// A collector that keeps every span it is sent.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut kept = self.spans.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref()?.value.as_ref())
                .map(|v| match v {
                    Value::StringValue(s) => s.clone(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                kept.extend(ss.spans.into_iter().map(|s| (service.clone(), s)));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

async fn receiver() -> (Receiver, std::net::SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let receiver = Receiver::default();
    let service = TraceServiceServer::new(receiver.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    (receiver, addr)
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref()?.value.as_ref())
}

fn text(span: &Span, key: &str) -> String {
    match attr(span, key) {
        Some(Value::StringValue(s)) => s.clone(),
        other => panic!("{key}: {other:?} on {}", span.name),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Waits until the receiver holds `n` spans (the exporter sends at least every second).
async fn spans(receiver: &Receiver, n: usize) -> Vec<(String, Span)> {
    for _ in 0..100 {
        if receiver.spans.lock().unwrap().len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    receiver.spans.lock().unwrap().clone()
}

#[tokio::test]
async fn a_sampled_traceparent_is_continued_and_backend_calls_are_its_children() {
    let (receiver, collector) = receiver().await;
    let yaml = format!(
        "listen: 127.0.0.1:0\nauth: {{ mode: none }}\ntracing: {{ otlp_endpoint: 'http://{collector}', sample_ratio: 0.0, service_name: prism-test }}\nbackends:\n  mem: {{ type: memstore }}\nnamespaces:\n  cache: {{ pattern: keyvalue, backend: mem }}\n"
    );
    let served = support::serve(&yaml).await;
    let client = PrismClient::connect(format!("http://{}", served.addr))
        .await
        .unwrap();
    let mut kv = client.namespace("cache").keyvalue();
    // Not traced: no parent at ratio 0, and an unsampled parent.
    kv.set(SetRequest {
        key: "k".into(),
        value: b"v".to_vec().into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut unsampled = tonic::Request::new(GetRequest { key: "k".into() });
    unsampled.metadata_mut().insert(
        "traceparent",
        MetadataValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"),
    );
    kv.get(unsampled).await.unwrap();
    // Traced: a sampled parent.
    let mut sampled = tonic::Request::new(GetRequest { key: "k".into() });
    sampled.metadata_mut().insert(
        "traceparent",
        MetadataValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    );
    kv.get(sampled).await.unwrap();
    // And one whose answer is the caller's fault: traced, but not an error.
    let mut missing = tonic::Request::new(GetRequest { key: String::new() });
    missing.metadata_mut().insert(
        "traceparent",
        MetadataValue::from_static("00-11111111111111111111111111111111-2222222222222222-01"),
    );
    kv.get(missing).await.unwrap_err();

    let got = spans(&receiver, 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got_later = receiver.spans.lock().unwrap().len();
    assert_eq!(
        got.len(),
        3,
        "two server spans and one backend span: {got:#?}"
    );
    assert_eq!(got_later, 3, "nothing else was traced");
    assert!(got.iter().all(|(service, _)| service == "prism-test"));
    let of = |trace: &str| {
        got.iter()
            .map(|(_, s)| s)
            .filter(|s| hex(&s.trace_id) == trace)
            .cloned()
            .collect::<Vec<_>>()
    };
    let traced = of("4bf92f3577b34da6a3ce929d0e0e4736");
    let server = traced
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .expect("a server span");
    let backend = traced
        .iter()
        .find(|s| s.kind == SpanKind::Client as i32)
        .expect("a backend span");
    assert_eq!(server.name, "prism.keyvalue.v1.KeyValue/Get");
    assert_eq!(
        hex(&server.parent_span_id),
        "00f067aa0ba902b7",
        "the caller's span is the parent"
    );
    assert_eq!(
        backend.parent_span_id, server.span_id,
        "the backend call is the call's child"
    );
    assert_eq!(text(server, "rpc.system"), "grpc");
    assert_eq!(text(server, "rpc.service"), "prism.keyvalue.v1.KeyValue");
    assert_eq!(text(server, "rpc.method"), "Get");
    assert_eq!(text(server, "prism.namespace"), "cache");
    assert!(matches!(
        attr(server, "rpc.grpc.status_code"),
        Some(Value::IntValue(0))
    ));
    assert_eq!(text(backend, "db.system.name"), "memstore");
    assert_eq!(text(backend, "db.operation.name"), "Get");
    assert_eq!(text(backend, "prism.backend"), "mem");
    assert_eq!(text(backend, "prism.pattern"), "keyvalue");
    assert!(server.start_time_unix_nano <= backend.start_time_unix_nano);
    assert!(backend.end_time_unix_nano <= server.end_time_unix_nano);
    assert!(
        server
            .status
            .as_ref()
            .is_none_or(|s| s.code != StatusCode::Error as i32)
    );
    let refused = of("11111111111111111111111111111111");
    assert_eq!(refused.len(), 1, "refused before any backend call");
    assert!(matches!(
        attr(&refused[0], "rpc.grpc.status_code"),
        Some(Value::IntValue(3))
    ));
    assert!(
        refused[0]
            .status
            .as_ref()
            .is_none_or(|s| s.code != StatusCode::Error as i32),
        "INVALID_ARGUMENT is the caller's, not an error of the server"
    );
}

#[tokio::test]
async fn at_ratio_one_every_call_starts_a_trace_and_a_down_collector_costs_no_call() {
    let (receiver, collector) = receiver().await;
    let yaml = format!(
        "listen: 127.0.0.1:0\nauth: {{ mode: none }}\ntracing: {{ otlp_endpoint: 'http://{collector}', sample_ratio: 1.0 }}\nbackends:\n  mem: {{ type: memstore }}\nnamespaces:\n  cache: {{ pattern: keyvalue, backend: mem }}\n"
    );
    let served = support::serve(&yaml).await;
    let client = PrismClient::connect(format!("http://{}", served.addr))
        .await
        .unwrap();
    let mut kv = client.namespace("cache").keyvalue();
    for _ in 0..5 {
        kv.get(GetRequest { key: "k".into() }).await.unwrap();
    }
    let got = spans(&receiver, 10).await;
    let servers: Vec<_> = got
        .iter()
        .filter(|(_, s)| s.kind == SpanKind::Server as i32)
        .collect();
    assert_eq!(servers.len(), 5);
    assert!(
        servers
            .iter()
            .all(|(service, s)| service == "prism-proxy" && s.parent_span_id.is_empty())
    );
    let traces: std::collections::HashSet<_> =
        servers.iter().map(|(_, s)| s.trace_id.clone()).collect();
    assert_eq!(traces.len(), 5, "a trace each");

    // A collector nobody listens on: calls go on as before.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let yaml = yaml.replace(&collector.to_string(), &dead.to_string());
    let served = support::serve(&yaml).await;
    let client = PrismClient::connect(format!("http://{}", served.addr))
        .await
        .unwrap();
    let mut kv = client.namespace("cache").keyvalue();
    for _ in 0..20 {
        kv.get(GetRequest { key: "k".into() }).await.unwrap();
    }
}
