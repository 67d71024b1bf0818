//! The gRPC protocol checks in front of every service: a non-gRPC `content-type` is answered 415 /
//! UNIMPLEMENTED (gRPC over HTTP/2, "Content-Type"); request bodies are admitted through
//! [`AdmittedBody`]; and the caller's `grpc-timeout` becomes a [`CallDeadline`] that backend calls
//! honour, answered DEADLINE_EXCEEDED when it passes.

use super::ConnectionTrust;
use super::body::AdmittedBody;
use super::counters::TransportCounters;
use crate::budget::Budget;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tonic::Status;
use tower::{Layer, Service};

/// When the caller stops waiting (from its `grpc-timeout`), in request extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallDeadline(pub Instant);

/// Parses a `grpc-timeout` value (`1..=8` digits and a unit: H, M, S, m, u, n).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Whether a method takes exactly one request message: every method but server reflection's
/// bidirectional stream.
fn single_request_message(path: &str) -> bool {
    !path.starts_with("/grpc.reflection.")
}

fn is_grpc(content_type: Option<&http::HeaderValue>) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    let Some(value) = content_type.map(http::HeaderValue::as_bytes) else {
        return false;
    };
    value.len() >= GRPC.len()
        && value[..GRPC.len()].eq_ignore_ascii_case(GRPC)
        && matches!(value.get(GRPC.len()), None | Some(b'+' | b';'))
}

/// Settings the protocol layer applies to each call.
#[derive(Debug, Clone)]
pub struct ProtocolLayer {
    budget: Arc<Budget>,
    body_timeout: Duration,
    max_message: usize,
    counters: Arc<TransportCounters>,
}

impl ProtocolLayer {
    /// A layer drawing request bodies from `budget`, each complete within `body_timeout`, of
    /// messages the services decode up to `max_message` bytes.
    pub fn new(
        budget: Arc<Budget>,
        body_timeout: Duration,
        max_message: usize,
        counters: Arc<TransportCounters>,
    ) -> Self {
        Self {
            budget,
            body_timeout,
            max_message,
            counters,
        }
    }
}

impl<S> Layer<S> for ProtocolLayer {
    type Service = ProtocolService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ProtocolService {
            inner,
            settings: self.clone(),
        }
    }
}

/// The service [`ProtocolLayer`] wraps.
#[derive(Debug, Clone)]
pub struct ProtocolService<S> {
    inner: S,
    settings: ProtocolLayer,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> Service<http::Request<B>> for ProtocolService<S>
where
    S: Service<http::Request<AdmittedBody<B>>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if !is_grpc(request.headers().get(http::header::CONTENT_TYPE)) {
            let shown = request
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map_or_else(|| "none".to_string(), |v| format!("{v:?}"));
            let mut response = Status::unimplemented(format!(
                "this is a gRPC server: content-type must be application/grpc (got {shown})"
            ))
            .into_http::<tonic::body::Body>();
            *response.status_mut() = http::StatusCode::UNSUPPORTED_MEDIA_TYPE;
            return Box::pin(std::future::ready(Ok(response)));
        }
        let deadline = request
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout)
            .and_then(|d| Instant::now().checked_add(d));
        let settings = &self.settings;
        let single = single_request_message(request.uri().path());
        let connection = request.extensions().get::<ConnectionTrust>().cloned();
        let mut request = request.map(|body| {
            if single {
                AdmittedBody::single_message(
                    body,
                    connection,
                    settings.budget.clone(),
                    settings.body_timeout,
                    settings.max_message,
                    settings.counters.clone(),
                )
            } else {
                AdmittedBody::streaming(body, settings.counters.clone())
            }
        });
        let Some(deadline) = deadline else {
            return Box::pin(self.inner.call(request));
        };
        request.extensions_mut().insert(CallDeadline(deadline));
        let call = self.inner.call(request);
        Box::pin(async move {
            match tokio::time::timeout_at(deadline, call).await {
                Ok(response) => response,
                Err(_) => Ok(Status::deadline_exceeded(
                    "the call's deadline (grpc-timeout) passed before it completed",
                )
                .into_http()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("application/grpc", true)]
    #[case("application/grpc+proto", true)]
    #[case("application/GRPC; charset=utf-8", true)]
    #[case("application/grpc-web", false)]
    #[case("application/json", false)]
    #[case("text/html", false)]
    fn content_types(#[case] value: &str, #[case] grpc: bool) {
        assert_eq!(
            is_grpc(Some(&http::HeaderValue::from_str(value).unwrap())),
            grpc
        );
    }

    #[rstest]
    #[case("1S", Some(Duration::from_secs(1)))]
    #[case("250m", Some(Duration::from_millis(250)))]
    #[case("2H", Some(Duration::from_secs(7200)))]
    #[case("99999999u", Some(Duration::from_micros(99_999_999)))]
    #[case("123456789S", None)]
    #[case("S", None)]
    #[case("10x", None)]
    #[case("+5S", None)]
    fn grpc_timeouts(#[case] value: &str, #[case] expected: Option<Duration>) {
        assert_eq!(parse_grpc_timeout(value), expected);
    }
}
