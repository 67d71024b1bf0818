//! The admin HTTP listener (`admin_listen`), apart from the gRPC port: `GET /metrics` (Prometheus
//! text, or OpenMetrics when the scraper asks for it), `GET /livez` (the process serves) and
//! `GET /readyz` (every namespace's backends answer; 503 naming those that do not, or while the
//! proxy drains). HTTP/1.1, as Prometheus and Kubernetes probes speak it.

use super::Sources;
use super::exposition::OPENMETRICS_TEXT;
use bytes::Bytes;
use http::{Method, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connections the admin listener serves at once; more wait in the accept queue.
const MAX_CONNECTIONS: usize = 64;

/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves the admin endpoints on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, sources: Arc<Sources>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "admin listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let sources = sources.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let answer = answer(&sources, &request);
                async move { Ok::<_, std::convert::Infallible>(answer) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(permit);
        });
    }
}

type Answer = Response<Full<Bytes>>;

fn text(status: StatusCode, content_type: &str, body: String) -> Answer {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

/// The answer to one request.
pub fn answer(sources: &Sources, request: &http::Request<Incoming>) -> Answer {
    answer_to(
        sources,
        request.method(),
        request.uri().path(),
        request.headers(),
    )
}

fn answer_to(sources: &Sources, method: &Method, path: &str, headers: &http::HeaderMap) -> Answer {
    const PLAIN: &str = "text/plain; charset=utf-8";
    if method != Method::GET && method != Method::HEAD {
        let mut answer = text(
            StatusCode::METHOD_NOT_ALLOWED,
            PLAIN,
            "only GET and HEAD\n".into(),
        );
        answer
            .headers_mut()
            .insert(header::ALLOW, http::HeaderValue::from_static("GET, HEAD"));
        return answer;
    }
    match path {
        "/metrics" => {
            let open_metrics = headers
                .get_all(header::ACCEPT)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| v.contains(OPENMETRICS_TEXT.split(';').next().unwrap_or_default()));
            let (body, content_type) = super::render(sources, open_metrics);
            text(StatusCode::OK, content_type, body)
        }
        "/livez" => text(StatusCode::OK, PLAIN, "ok\n".into()),
        "/readyz" => {
            let (ready, body) = readiness(sources);
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            text(status, PLAIN, body)
        }
        _ => text(
            StatusCode::NOT_FOUND,
            PLAIN,
            "not found: the admin listener serves /metrics, /livez and /readyz\n".into(),
        ),
    }
}

/// Whether the proxy is ready for calls, and a body saying why not.
fn readiness(sources: &Sources) -> (bool, String) {
    if sources.proxy.draining.load(Ordering::Relaxed) {
        return (false, "not ready: draining\n".into());
    }
    let mut body = String::new();
    for route in sources.router.load().routes() {
        for slot in &route.slots {
            if slot.backend.health.is_down() {
                let _ = writeln!(
                    body,
                    "namespace '{}': backend '{}' ({}) is down",
                    route.name, slot.backend_name, slot.backend.kind
                );
            }
        }
    }
    if body.is_empty() {
        (true, "ready\n".into())
    } else {
        (false, format!("not ready:\n{body}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProxyConfig;
    use crate::router::{LiveRouter, Router};

    async fn sources() -> Sources {
        let yaml = "auth: { mode: none }\nbackends: { m: { type: memstore } }\nnamespaces:\n  a: { pattern: keyvalue, backend: m }\n";
        let config = ProxyConfig::parse(yaml, std::path::Path::new("t.yaml")).unwrap();
        Sources {
            router: Arc::new(LiveRouter::new(Router::from_config(&config).await.unwrap())),
            proxy: Arc::default(),
            transport: Arc::default(),
            guard: Arc::new(crate::auth::layer::Guard::new(
                crate::auth::config::AuthMode::None,
                None,
                64,
                16 * 1024,
            )),
            deliveries: Arc::default(),
            tracer: None,
        }
    }

    fn get(sources: &Sources, path: &str) -> (StatusCode, String) {
        let answer = answer_to(sources, &Method::GET, path, &http::HeaderMap::new());
        let status = answer.status();
        let body = futures_util::FutureExt::now_or_never(http_body_util::BodyExt::collect(
            answer.into_body(),
        ))
        .unwrap()
        .unwrap()
        .to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn readyz_names_a_down_backend_and_says_when_draining() {
        let sources = sources().await;
        assert_eq!(get(&sources, "/readyz"), (StatusCode::OK, "ready\n".into()));
        let router = sources.router.current();
        let (_, backend) = router.backends().next().unwrap();
        backend.health.mark_down("connection refused".into());
        assert_eq!(
            get(&sources, "/readyz"),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready:\nnamespace 'a': backend 'm' (memstore) is down\n".into()
            )
        );
        assert_eq!(
            get(&sources, "/livez").0,
            StatusCode::OK,
            "alive all the same"
        );
        sources.proxy.draining.store(true, Ordering::Relaxed);
        assert_eq!(
            get(&sources, "/readyz"),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: draining\n".into()
            )
        );
    }
}
