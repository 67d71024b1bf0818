//! The tower layer that measures every call: the outermost layer, so calls refused by the protocol
//! checks or the guard are counted too. It labels a call with the namespace route its header
//! resolves to (never the raw header), its method's number and, when the response ends, its gRPC
//! status; it counts request and response bytes, writes the access log line, and opens the call's
//! server span when the tracer samples it.

use super::methods::{MethodId, methods};
use super::trace::{Traced, Tracer};
use super::{CODE_NAMES, NamespaceMetrics, ProxyMetrics};
use crate::router::LiveRouter;
use crate::server::ConnectionTrust;
use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use prism_proto::NAMESPACE_HEADER;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;
use tower::{Layer, Service};

/// In a call's request extensions: the number of its method, for the backend calls it makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallMethod(pub MethodId);

/// What the layer does with each call.
#[derive(Debug, Clone)]
pub struct CallsLayer {
    router: Arc<LiveRouter>,
    proxy: Arc<ProxyMetrics>,
    access_log: bool,
    tracer: Option<Arc<Tracer>>,
}

impl CallsLayer {
    /// Records every call's metrics in the route's cells (or `proxy.unrouted`), writes an access
    /// log line per call when `access_log` is set, and traces the calls `tracer` samples.
    pub fn new(
        router: Arc<LiveRouter>,
        proxy: Arc<ProxyMetrics>,
        access_log: bool,
        tracer: Option<Arc<Tracer>>,
    ) -> Self {
        Self {
            router,
            proxy,
            access_log,
            tracer,
        }
    }
}

impl<S> Layer<S> for CallsLayer {
    type Service = CallsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallsService {
            inner,
            settings: self.clone(),
        }
    }
}

/// The service [`CallsLayer`] wraps.
#[derive(Debug, Clone)]
pub struct CallsService<S> {
    inner: S,
    settings: CallsLayer,
}

impl<S, B> Service<http::Request<B>> for CallsService<S>
where
    S: Service<http::Request<CountedBody<B>>, Response = http::Response<tonic::body::Body>>,
    S::Future: Unpin,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Measured<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let start = Instant::now();
        let method = methods().of_path(request.uri().path());
        let namespace = request
            .headers()
            .get(&NAMESPACE)
            .and_then(|v| v.to_str().ok())
            .and_then(|name| {
                self.settings
                    .router
                    .load()
                    .get(name)
                    .map(|route| route.metrics.clone())
            })
            .unwrap_or_else(|| self.settings.proxy.unrouted.clone());
        let peer = request
            .extensions()
            .get::<ConnectionTrust>()
            .and_then(ConnectionTrust::peer);
        namespace.started(method);
        let mut request = request.map(|inner| CountedBody {
            inner,
            bytes: 0,
            method,
            metrics: namespace.clone(),
        });
        request.extensions_mut().insert(CallMethod(method));
        let traced = self.settings.tracer.as_ref().and_then(|tracer| {
            tracer.sample(request.headers().get(&TRACEPARENT).map(|v| v.as_bytes()))
        });
        if let Some(traced) = &traced {
            request.extensions_mut().insert(traced.clone());
        }
        let record = Record {
            namespace,
            method,
            start,
            response_bytes: 0,
            header_code: None,
            peer: peer.filter(|_| self.settings.access_log),
            access_log: self.settings.access_log,
            traced,
        };
        Measured {
            call: self.inner.call(request),
            record: Some(record),
        }
    }
}

/// The future of a measured call: the inner call's, then its response's body wrapped to end the
/// record.
pub struct Measured<F> {
    call: F,
    record: Option<Record>,
}

impl<F, E> Future for Measured<F>
where
    F: Future<Output = Result<http::Response<tonic::body::Body>, E>> + Unpin,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let answer = ready!(Pin::new(&mut self.call).poll(cx));
        let Some(mut record) = self.record.take() else {
            return Poll::Ready(answer);
        };
        Poll::Ready(match answer {
            Ok(response) => {
                record.header_code = grpc_status(response.headers());
                Ok(response.map(|inner| {
                    tonic::body::Body::new(MeteredBody {
                        inner,
                        record: Some(record),
                    })
                }))
            }
            Err(e) => {
                record.finish(2);
                Err(e)
            }
        })
    }
}

impl<F> Drop for Measured<F> {
    fn drop(&mut self) {
        // Dropped before its answer: the caller went away (or the deadline cut it).
        if let Some(record) = self.record.take() {
            record.finish(1);
        }
    }
}

// Header names built once: looking a header up by `&str` parses the name on every call.
static NAMESPACE: http::HeaderName = http::HeaderName::from_static(NAMESPACE_HEADER);
static TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
static GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

/// The `grpc-status` of a header map, as an index into [`CODE_NAMES`].
fn grpc_status(headers: &http::HeaderMap) -> Option<usize> {
    let value = headers.get(&GRPC_STATUS)?.to_str().ok()?;
    let code: usize = value.parse().ok()?;
    Some(if code < CODE_NAMES.len() { code } else { 2 })
}

/// A request body that counts its bytes into the call's namespace.
#[derive(Debug)]
pub struct CountedBody<B> {
    inner: B,
    bytes: u64,
    method: MethodId,
    metrics: Arc<NamespaceMetrics>,
}

impl<B> Body for CountedBody<B>
where
    B: Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
            self.bytes += data.map_or(0, |d| d.remaining() as u64);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for CountedBody<B> {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.metrics.request_bytes(self.method, self.bytes);
        }
    }
}

/// One call being measured, until its response ends.
#[derive(Debug)]
struct Record {
    namespace: Arc<NamespaceMetrics>,
    method: MethodId,
    start: Instant,
    response_bytes: u64,
    header_code: Option<usize>,
    peer: Option<SocketAddr>,
    access_log: bool,
    traced: Option<Traced>,
}

impl Record {
    fn finish(self, code: usize) {
        let elapsed = self.start.elapsed();
        self.namespace
            .finished(self.method, code, elapsed, self.response_bytes);
        if let Some(traced) = &self.traced {
            traced.finish_server(
                methods().label(self.method),
                code,
                &self.namespace.name,
                self.namespace.pattern,
            );
        }
        if self.access_log {
            tracing::info!(
                target: "prism::access",
                namespace = self.namespace.name.as_str(),
                method = methods().label(self.method),
                code = CODE_NAMES[code],
                duration_us = elapsed.as_micros() as u64,
                peer = self.peer.map(|p| p.to_string()).unwrap_or_default(),
                "call"
            );
        }
    }
}

/// A response body that ends its call's record: at its trailers, at its end, or when dropped
/// unfinished (the caller went away: CANCELLED).
struct MeteredBody {
    inner: tonic::body::Body,
    record: Option<Record>,
}

impl Body for MeteredBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        let ended = match &frame {
            Some(Ok(frame)) => match frame.trailers_ref() {
                Some(trailers) => Some(grpc_status(trailers).unwrap_or(2)),
                None => {
                    if let (Some(data), Some(record)) = (frame.data_ref(), self.record.as_mut()) {
                        record.response_bytes += data.len() as u64;
                    }
                    None
                }
            },
            Some(Err(status)) => Some(status.code() as usize),
            None => Some(
                self.record
                    .as_ref()
                    .and_then(|r| r.header_code)
                    .unwrap_or(2),
            ),
        };
        // Only an ending frame takes the record (a tuple pattern would take it on every frame).
        if let Some(code) = ended
            && let Some(record) = self.record.take()
        {
            record.finish(code.min(CODE_NAMES.len() - 1));
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for MeteredBody {
    fn drop(&mut self) {
        if let Some(record) = self.record.take() {
            // A trailers-only answer whose body was never polled still has its status.
            let code = match record.header_code {
                Some(code) if self.inner.is_end_stream() => code,
                _ => 1,
            };
            record.finish(code);
        }
    }
}
