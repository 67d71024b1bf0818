//! A minimal OTLP/gRPC trace collector for `ci/telemetry-cost.sh`: accepts every export, counts the
//! spans, and prints the count each time it grows by 1,000 or more (and on SIGTERM), so a
//! benchmark of the proxy with tracing on has a real collector to send to.
//!
//! `cargo run --release --example otlp_sink -- [ADDR]` (default 127.0.0.1:4317)

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Clone, Default)]
struct Sink(Arc<AtomicU64>);

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans: usize = request
            .into_inner()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        let before = self.0.fetch_add(spans as u64, Ordering::Relaxed);
        if (before + spans as u64) / 1000 > before / 1000 {
            println!("spans: {}", before + spans as u64);
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4317".into());
    let sink = Sink::default();
    let count = sink.0.clone();
    let stop = async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        term.recv().await;
        println!("spans: {}", count.load(Ordering::Relaxed));
    };
    tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(sink))
        .serve_with_shutdown(addr.parse().expect("ADDR is host:port"), stop)
        .await
        .expect("serve");
}
