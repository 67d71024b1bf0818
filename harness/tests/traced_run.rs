//! `prism-conform run --otlp-endpoint`: every call of a case carries one sampled `traceparent`, so
//! the trace id a failing case reports finds its calls at the collector: a server span per call of
//! the case, each with its backend call as a child span.

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use prism_conform::provision::{self, Mode};
use prism_conform::report::model::CaseStatus;
use prism_conform::runner::{self, RunOptions};
use prism_conform::scenario::parse::parse_scenario;
use prism_runtime::telemetry::trace::TracingConfig;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A collector that keeps every span it is sent.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut kept = self.0.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            for ss in rs.scope_spans {
                kept.extend(ss.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

const SCENARIO: &str = r#"
name: a case that fails on purpose
description: Writes a value, then expects another one back.
pattern: keyvalue
requires: [keyvalue.basic]
steps:
  - set: { key: "${prefix}k", value: written }
  - get: { key: "${prefix}k" }
    expect: { found: true, value: not-what-was-written }
"#;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_case_reports_the_trace_its_calls_were_recorded_under() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_addr = listener.local_addr().unwrap();
    let collector = Collector::default();
    let service = TraceServiceServer::new(collector.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let dir = provision::run_dir().unwrap();
    let memstore = provision::provision(
        "memstore",
        Mode::Embedded,
        &Default::default(),
        dir.path(),
        provision::Persistence::Durable,
    )
    .await
    .unwrap();
    let tracing = TracingConfig {
        otlp_endpoint: format!("http://{collector_addr}"),
        sample_ratio: 0.0,
        service_name: "conform-test".into(),
    };
    let env = provision::launch(
        vec![memstore],
        dir,
        &provision::Launch {
            tracing: Some(tracing),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let scenario = Arc::new(parse_scenario(SCENARIO, Path::new("traced.yaml")).unwrap());
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let report = runner::run(&env.targets, &[scenario], &RunOptions::default(), tx).await;
    let failure = report
        .suites
        .iter()
        .flat_map(|s| &s.cases)
        .find(|c| c.status == CaseStatus::Failed)
        .and_then(|c| c.failure.clone())
        .expect("the case fails");
    let trace = failure.trace_id.expect("a failing case names its trace");
    assert_eq!(trace.len(), 32, "{trace}");

    // The exporter sends at least once a second.
    let mut ours = Vec::new();
    for _ in 0..100 {
        ours = collector
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|s| hex(&s.trace_id) == trace)
            .cloned()
            .collect::<Vec<_>>();
        if ours.len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.stop().await;
    let servers: Vec<&Span> = ours
        .iter()
        .filter(|s| s.name.starts_with("prism.keyvalue.v1.KeyValue/"))
        .collect();
    let names: Vec<&str> = servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "prism.keyvalue.v1.KeyValue/Set",
            "prism.keyvalue.v1.KeyValue/Get"
        ],
        "the case's calls, in order, in its trace"
    );
    // Both calls share the harness's parent span (the case), and each backend call is a child of
    // its call's span.
    assert_eq!(servers[0].parent_span_id, servers[1].parent_span_id);
    assert_eq!(servers[0].parent_span_id.len(), 8);
    for server in &servers {
        assert!(
            ours.iter().any(|s| s.parent_span_id == server.span_id),
            "no backend span under {}: {ours:?}",
            server.name
        );
    }
    // Nothing else reached this trace: no other case shares its id.
    let others = collector
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|s| hex(&s.trace_id) != trace && s.name.starts_with("prism.keyvalue"))
        .count();
    assert_eq!(others, 0);
}
