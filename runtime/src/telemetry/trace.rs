//! Traces over OTLP/gRPC (`tracing:` in the config; off by default): a server span per call that
//! continues the caller's W3C `traceparent`, and a child span per backend call. Whether a call is
//! traced is decided before anything is built — a sampled parent is followed, an unsampled one is
//! too, and a call without a parent is traced with `sample_ratio` — so tracing off, or a call
//! sampled out, costs a header lookup at most. Finished spans go through a bounded queue to one
//! exporter task that sends them in batches; a full queue drops spans (counted) rather than slow a
//! call.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// `tracing:` in the proxy config.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// The OTLP/gRPC collector, e.g. `http://127.0.0.1:4317`.
    pub otlp_endpoint: String,
    /// The share of calls without a parent that are traced, 0.0 to 1.0 (default 0.01). A call
    /// whose `traceparent` says sampled is traced; one that says not sampled is not.
    #[serde(default = "default_ratio")]
    pub sample_ratio: f64,
    /// The `service.name` of the proxy's spans (default `prism-proxy`).
    #[serde(default = "default_service")]
    pub service_name: String,
}

fn default_ratio() -> f64 {
    0.01
}

fn default_service() -> String {
    "prism-proxy".into()
}

impl TracingConfig {
    /// What is wrong with it, if anything.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            problems.push(format!(
                "tracing.sample_ratio is {}; it is a share of calls, from 0.0 to 1.0",
                self.sample_ratio
            ));
        }
        if !(self.otlp_endpoint.starts_with("http://")
            || self.otlp_endpoint.starts_with("https://"))
            || self.otlp_endpoint.parse::<http::Uri>().is_err()
        {
            problems.push(format!(
                "tracing.otlp_endpoint {:?} is not an http:// or https:// URL (an OTLP/gRPC collector, e.g. http://127.0.0.1:4317)",
                self.otlp_endpoint
            ));
        }
        problems
    }
}

/// Spans waiting for the exporter; more are dropped (and counted).
const QUEUE: usize = 4096;
/// Most spans in one export.
const BATCH: usize = 512;
/// How long spans wait for a batch to fill.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// A 128-bit trace id and 64-bit span id, as W3C Trace Context writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanContext {
    /// The trace.
    pub trace_id: [u8; 16],
    /// The span.
    pub span_id: [u8; 8],
}

/// A `traceparent` header's context and whether it was sampled; `None` when it does not parse
/// (the call then starts a trace of its own).
pub fn parse_traceparent(value: &str) -> Option<(SpanContext, bool)> {
    let mut parts = value.trim().split('-');
    let version = parts.next()?;
    let (trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?);
    // Version ff is invalid; later versions may add fields, which are ignored.
    if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
        return None;
    }
    let _ = u8::from_str_radix(version, 16).ok()?;
    let trace_id: [u8; 16] = hex(trace)?;
    let span_id: [u8; 8] = hex(span)?;
    let flags: [u8; 1] = hex(flags)?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some((SpanContext { trace_id, span_id }, flags[0] & 1 == 1))
}

fn hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N
        || !text
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Lowercase hex of `bytes` (a trace id as logs and UIs show it).
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() | 1
}

/// A fast per-thread pseudo-random number (xorshift64*): ids and sampling, not secrets.
fn random() -> u64 {
    RNG.with(|rng| {
        let mut x = rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        rng.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

fn nonzero_id<const N: usize>() -> [u8; N] {
    loop {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            chunk.copy_from_slice(&random().to_le_bytes()[..chunk.len()]);
        }
        if out != [0; N] {
            return out;
        }
    }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A string attribute.
pub fn attr(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.into(),
        key_strindex: 0,
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
    }
}

/// An integer attribute.
pub fn int_attr(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        key_strindex: 0,
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
    }
}

/// The proxy's tracer: the sampling decision and the queue to the exporter.
#[derive(Debug)]
pub struct Tracer {
    threshold: u64,
    queue: mpsc::Sender<Span>,
    dropped: AtomicU64,
}

/// A call that is traced: its span's context, for its backend calls' child spans.
#[derive(Debug, Clone)]
pub struct Traced {
    /// The tracer.
    pub tracer: Arc<Tracer>,
    /// The call's span.
    pub context: SpanContext,
    /// The caller's span, when it sent a `traceparent`.
    pub parent: Option<[u8; 8]>,
    /// When the call began.
    pub start: SystemTime,
}

impl Tracer {
    /// A tracer for `config` and the task that exports its spans until every tracer handle is gone.
    pub fn start(
        config: &TracingConfig,
    ) -> Result<(Arc<Self>, tokio::task::JoinHandle<()>), String> {
        let endpoint = tonic::transport::Endpoint::from_shared(config.otlp_endpoint.clone())
            .map_err(|e| format!("tracing.otlp_endpoint: {e}"))?
            .timeout(Duration::from_secs(10));
        let (queue, spans) = mpsc::channel(QUEUE);
        let threshold = if config.sample_ratio >= 1.0 {
            u64::MAX
        } else {
            (config.sample_ratio.max(0.0) * u64::MAX as f64) as u64
        };
        let tracer = Arc::new(Self {
            threshold,
            queue,
            dropped: AtomicU64::new(0),
        });
        let resource = Resource {
            attributes: vec![
                attr("service.name", config.service_name.clone()),
                attr("service.version", env!("CARGO_PKG_VERSION")),
            ],
            ..Default::default()
        };
        let export = export(endpoint.connect_lazy(), spans, resource);
        Ok((tracer, tokio::spawn(export)))
    }

    /// Spans dropped because the exporter's queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Decides whether a call with this `traceparent` value is traced; `Some` when it is.
    pub fn sample(self: &Arc<Self>, traceparent: Option<&[u8]>) -> Option<Traced> {
        let parent = traceparent
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(parse_traceparent);
        let (trace_id, parent) = match parent {
            Some((_, false)) => return None,
            Some((ctx, true)) => (ctx.trace_id, Some(ctx.span_id)),
            None if self.threshold == 0 => return None,
            None if self.threshold != u64::MAX && random() >= self.threshold => return None,
            None => (nonzero_id(), None),
        };
        Some(Traced {
            tracer: self.clone(),
            context: SpanContext {
                trace_id,
                span_id: nonzero_id(),
            },
            parent,
            start: SystemTime::now(),
        })
    }

    fn send(&self, span: Span) {
        if self.queue.try_send(span).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Whether a gRPC code is the server's fault, which the conventions record as a span error
/// (a client's mistake, such as NOT_FOUND or INVALID_ARGUMENT, is not).
fn server_error(code: usize) -> bool {
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

impl Traced {
    /// Ends the call's server span: `method` is `pkg.Service/Method`, `code` its gRPC code.
    pub fn finish_server(&self, method: &str, code: usize, namespace: &str, pattern: &str) {
        let (service, name) = method.rsplit_once('/').unwrap_or((method, ""));
        let mut attributes = vec![
            attr("rpc.system", "grpc"),
            attr("rpc.service", service),
            attr("rpc.method", name),
            int_attr("rpc.grpc.status_code", code as i64),
        ];
        if !namespace.is_empty() {
            attributes.push(attr("prism.namespace", namespace));
            attributes.push(attr("prism.pattern", pattern));
        }
        let status = server_error(code).then(|| Status {
            code: status::StatusCode::Error as i32,
            message: crate::telemetry::CODE_NAMES[code.min(16)].into(),
        });
        self.tracer.send(Span {
            trace_id: self.context.trace_id.to_vec(),
            span_id: self.context.span_id.to_vec(),
            parent_span_id: self.parent.map(|p| p.to_vec()).unwrap_or_default(),
            // Sampled, and whether the parent came from another process (W3C flags, then OTLP's
            // HAS_IS_REMOTE and IS_REMOTE bits).
            flags: 0x101 | u32::from(self.parent.is_some()) << 9,
            name: method.into(),
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: unix_nanos(self.start),
            end_time_unix_nano: unix_nanos(SystemTime::now()),
            attributes,
            status,
            ..Default::default()
        });
    }

    /// Records a child span for one backend call that began at `start`; `error` names its
    /// failure.
    pub fn backend_span(
        &self,
        name: String,
        start: SystemTime,
        attributes: Vec<KeyValue>,
        error: Option<&str>,
    ) {
        self.tracer.send(Span {
            trace_id: self.context.trace_id.to_vec(),
            span_id: nonzero_id::<8>().to_vec(),
            parent_span_id: self.context.span_id.to_vec(),
            flags: 0x101,
            name,
            kind: span::SpanKind::Client as i32,
            start_time_unix_nano: unix_nanos(start),
            end_time_unix_nano: unix_nanos(SystemTime::now()),
            attributes,
            status: error.map(|e| Status {
                code: status::StatusCode::Error as i32,
                message: e.into(),
            }),
            ..Default::default()
        });
    }
}

/// Sends spans in batches (up to [`BATCH`], at least every [`FLUSH_EVERY`]) until the queue
/// closes, then what is left. A collector that is down loses the batch; the proxy goes on.
async fn export(
    channel: tonic::transport::Channel,
    mut spans: mpsc::Receiver<Span>,
    resource: Resource,
) {
    let mut client = TraceServiceClient::new(channel);
    let mut last_warned: Option<tokio::time::Instant> = None;
    loop {
        let mut batch = Vec::new();
        let Some(first) = spans.recv().await else {
            return;
        };
        batch.push(first);
        let deadline = tokio::time::Instant::now() + FLUSH_EVERY;
        let mut open = true;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, spans.recv()).await {
                Ok(Some(span)) => batch.push(span),
                Ok(None) => {
                    open = false;
                    break;
                }
                Err(_) => break,
            }
        }
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "prism-proxy".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    spans: batch,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        if let Err(e) = client.export(request).await {
            let quiet = last_warned.is_some_and(|t| t.elapsed() < Duration::from_secs(10));
            if !quiet {
                tracing::warn!(code = ?e.code(), error = %e.message(), "could not export spans to the OTLP collector; dropping the batch");
                last_warned = Some(tokio::time::Instant::now());
            }
        }
        if !open {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_parses_as_w3c_says() {
        let (ctx, sampled) =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert!(sampled);
        assert_eq!(to_hex(&ctx.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(to_hex(&ctx.span_id), "00f067aa0ba902b7");
        let (_, sampled) =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!sampled);
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "garbage",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
        assert!(
            parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future")
                .is_some(),
            "a later version's extra fields are ignored"
        );
    }

    #[tokio::test]
    async fn sampling_follows_the_parent_then_the_ratio() {
        let config = |ratio| TracingConfig {
            otlp_endpoint: "http://127.0.0.1:1".into(),
            sample_ratio: ratio,
            service_name: "t".into(),
        };
        let sampled = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let unsampled = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let (never, _) = Tracer::start(&config(0.0)).unwrap();
        assert!(never.sample(None).is_none());
        let traced = never
            .sample(Some(sampled))
            .expect("a sampled parent is followed");
        assert_eq!(
            to_hex(&traced.context.trace_id),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(
            traced.parent.map(|p| to_hex(&p)).as_deref(),
            Some("00f067aa0ba902b7")
        );
        let (always, _) = Tracer::start(&config(1.0)).unwrap();
        assert!(
            always.sample(Some(unsampled)).is_none(),
            "so is an unsampled one"
        );
        assert!(always.sample(None).is_some());
        let (some, _) = Tracer::start(&config(0.25)).unwrap();
        let n = (0..10_000).filter(|_| some.sample(None).is_some()).count();
        assert!((2_000..3_000).contains(&n), "about a quarter: {n}");
    }
}
