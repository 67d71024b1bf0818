//! The proxy server: builds the router from config and serves the pattern services, Admin, health and
//! reflection on one listener, until a shutdown future resolves; then it drains within a bound.
//!
//! Request path: `accept loop (listener.rs) → connection (connection.rs: HTTP/2, handshake and idle
//! timeouts, drain) → protocol checks (protocol.rs: content-type, request bodies, deadlines) → guard
//! (auth: metadata bounds, authentication, authorization) → tonic routes → NamespaceResolver
//! interceptor → pattern service → adapter`.

mod body;
mod connection;
mod cork;
pub mod counters;
mod descriptors;
mod listener;
pub mod protocol;
mod slots;

pub use connection::ConnectionTrust;

use crate::admin::AdminService;
use crate::auth::config::AuthMode;
use crate::auth::keys::{KeyError, KeyStore};
use crate::auth::layer::{AuthLayer, Guard};
use crate::auth::verify::Verifier;
use crate::backends::OpenError;
use crate::budget::Budget;
use crate::config::ProxyConfig;
use crate::config::ServerLimits;
use crate::patterns::Pattern;
use crate::patterns::keyvalue::KeyValueService;
use crate::patterns::mailbox::MailboxService;
use crate::patterns::pubsub::PubSubService;
use crate::patterns::queue::QueueService;
use crate::patterns::queue::deliveries::Deliveries;
use crate::patterns::registry::RegistryService;
use crate::patterns::stream::Drain;
use crate::reload::Reloader;
use crate::router::{LiveRouter, NamespaceResolver, Router};
use crate::telemetry::calls::CallsLayer;
use crate::telemetry::trace::Tracer;
use crate::telemetry::{ProxyMetrics, Sources};
use connection::ConnectionSettings;
use counters::TransportCounters;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prism_proto::admin::v1::admin_server::AdminServer;
use prism_proto::keyvalue::v1::key_value_server::KeyValueServer;
use prism_proto::mailbox::v1::mailbox_server::MailboxServer;
use prism_proto::pubsub::v1::pub_sub_server::PubSubServer;
use prism_proto::queue::v1::queue_server::QueueServer;
use prism_proto::registry::v1::multicast_registry_server::MulticastRegistryServer;
use protocol::ProtocolLayer;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;
use tower::ServiceBuilder;

/// How long the span exporter may take to send what is queued at exit.
const EXPORT_BOUND: Duration = Duration::from_secs(2);

/// How long closing the backends may take after the drain.
const BACKEND_CLOSE_BOUND: Duration = Duration::from_secs(5);

/// The HTTP/2 header list size the transport accepts, far above `server.max_header_bytes`: a call
/// over the configured limit but under this one is answered per stream with RESOURCE_EXHAUSTED by
/// the guard, and the connection's other calls go on. Above it hyper answers 431 (one frame) or
/// closes the connection (a header block spread over many frames). Decoded headers are held only
/// until the guard refuses them, so the price is transient.
fn transport_header_bytes(max_header_bytes: u32) -> u32 {
    max_header_bytes.saturating_mul(4).max(2 * 1024 * 1024)
}

/// Largest request message of the services anyone may call without a token (health, reflection).
const OPEN_MESSAGE_BYTES: usize = 64 * 1024;

/// Largest HTTP/2 DATA frame a client may send: 256 KiB instead of HTTP/2's 16 KiB, so a large value
/// arrives in a few frames rather than dozens.
pub const MAX_FRAME_BYTES: u32 = 256 * 1024;

/// The connection's flow-control window, in stream windows: one largest message. What a connection
/// has received but its calls have not yet read is bounded by it, beside the request-body budget
/// that bounds what they have read: with four windows per connection, a slow-body attack on 24
/// connections took 1,038 MiB against the 128 MiB budget (README, "Memory under hostile clients").
pub const CONNECTION_WINDOWS: u32 = 1;

/// The per-stream flow-control window: one whole message of the largest size the proxy accepts, so
/// a client can send a maximal value without waiting for a WINDOW_UPDATE (hyper's default is 1 MiB,
/// for the stream and for the whole connection).
fn flow_window(max_message: usize) -> u32 {
    u32::try_from(max_message)
        .unwrap_or(u32::MAX)
        .clamp(1024 * 1024, i32::MAX as u32 / CONNECTION_WINDOWS)
}

/// Why the proxy could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A backend failed to open.
    #[error(transparent)]
    Backend(#[from] OpenError),
    /// Binding the listen address failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Authentication keys could not be loaded.
    #[error("auth: {0}")]
    Auth(#[from] KeyError),
    /// The tracing exporter could not be set up.
    #[error("{0}")]
    Tracing(String),
    /// Reflection descriptors could not be loaded.
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// A proxy whose backends are open, ready to serve.
#[derive(Debug)]
pub struct Proxy {
    router: Arc<LiveRouter>,
    config: ProxyConfig,
    config_file: Option<PathBuf>,
    guard: Arc<Guard>,
    limits: ServerLimits,
    counters: Arc<TransportCounters>,
    metrics: Arc<ProxyMetrics>,
    admin_listen: Option<SocketAddr>,
    admin: Option<TcpListener>,
    access_log: bool,
}

impl Proxy {
    /// Loads the authentication keys and opens every backend in `config`.
    pub async fn open(config: &ProxyConfig) -> Result<Self, ServeError> {
        let verifier = match config.auth.mode {
            AuthMode::Jwt => Some(Verifier::new(
                &config.auth,
                KeyStore::load(&config.auth).await?,
            )),
            AuthMode::None => {
                tracing::warn!(
                    "AUTHENTICATION IS OFF (auth.mode: none): every caller may read and write every namespace"
                );
                None
            }
        };
        let guard = Arc::new(Guard::new(
            config.auth.mode,
            verifier,
            config.server.max_headers,
            config.server.max_header_bytes,
        ));
        let router = Router::from_config(config).await?;
        if config.admin_listen.is_some() {
            for (_, backend) in router.backends() {
                backend.health.metrics().enable();
            }
        }
        Ok(Self {
            router: Arc::new(LiveRouter::new(router)),
            config: config.clone(),
            config_file: None,
            guard,
            limits: config.server,
            counters: Arc::new(TransportCounters::default()),
            metrics: Arc::new(ProxyMetrics::default()),
            admin_listen: config.admin_listen,
            admin: None,
            access_log: config.access_log,
        })
    }

    /// Binds the config's `admin_listen` address (metrics and probes), if it has one, and returns
    /// the bound address; [`Proxy::serve`] serves it. Without this call, `serve` binds it itself.
    pub async fn bind_admin(&mut self) -> Result<Option<SocketAddr>, ServeError> {
        let Some(addr) = self.admin_listen else {
            return Ok(None);
        };
        if let Some(bound) = &self.admin {
            return Ok(bound.local_addr().ok());
        }
        let (listener, local) = Self::bind(addr).await?;
        self.admin = Some(listener);
        Ok(Some(local))
    }

    /// The transport's counters (limits that bit), shared with the running server.
    pub fn counters(&self) -> Arc<TransportCounters> {
        self.counters.clone()
    }

    /// The router now (namespaces, capabilities).
    pub fn router(&self) -> Arc<Router> {
        self.router.current()
    }

    /// Serves metrics and probes on `addr` instead of the config's `admin_listen` (which a reload
    /// still compares against the file).
    pub fn with_admin_listen(mut self, addr: SocketAddr) -> Self {
        self.admin_listen = Some(addr);
        for (_, backend) in self.router.current().backends() {
            backend.health.metrics().enable();
        }
        self
    }

    /// Names the file the config was read from: SIGHUP and Admin `ReloadConfig` read it again.
    pub fn with_config_file(mut self, path: PathBuf) -> Self {
        self.config_file = Some(path);
        self
    }

    /// Binds `addr` (use port 0 for an ephemeral port) and returns the listener and its real address.
    pub async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), ServeError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| ServeError::Bind { addr, source })?;
        Ok((listener, local))
    }

    /// Serves until `shutdown` resolves, then drains: closes the listener, sends GOAWAY, lets
    /// in-flight calls finish within `server.drain_timeout_ms`, cuts what is left, and closes the
    /// backends.
    pub async fn serve(
        mut self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        descriptors::check(self.limits.max_connections);
        self.bind_admin().await?;
        let router = self.router.current();
        let max_value_bytes = router.max_value_bytes();
        let max_message = max_value_bytes + crate::limits::MESSAGE_OVERHEAD;
        let resolver = |pattern| NamespaceResolver::new(self.router.clone(), pattern);
        let (drain_control, drain) = Drain::new();
        let deliveries = Arc::new(Deliveries::default());
        let kv = InterceptedService::new(
            KeyValueServer::new(KeyValueService)
                .max_decoding_message_size(max_message)
                .max_encoding_message_size(max_message),
            resolver(Pattern::Keyvalue),
        );
        // Subscribers and registry listeners share one process-wide bound on buffered bytes.
        let buffered = Arc::new(Budget::new(self.limits.max_subscriber_buffer_bytes));
        let pubsub = InterceptedService::new(
            PubSubServer::new(PubSubService::new(drain.clone(), buffered.clone()))
                .max_decoding_message_size(max_message)
                .max_encoding_message_size(max_message),
            resolver(Pattern::Pubsub),
        );
        let queue = InterceptedService::new(
            QueueServer::new(QueueService::new(drain.clone(), deliveries.clone()))
                .max_decoding_message_size(max_message)
                .max_encoding_message_size(max_message),
            resolver(Pattern::Queue),
        );
        let registry = InterceptedService::new(
            MulticastRegistryServer::new(RegistryService::new(drain.clone(), buffered))
                .max_decoding_message_size(max_message)
                .max_encoding_message_size(max_message),
            resolver(Pattern::MulticastRegistry),
        );
        let mailbox = InterceptedService::new(
            MailboxServer::new(MailboxService)
                .max_decoding_message_size(max_message)
                .max_encoding_message_size(max_message),
            resolver(Pattern::Mailbox),
        );
        for route in router.routes() {
            crate::patterns::mailbox::source::spawn(route.clone(), drain.clone());
        }
        drop(router);
        let reloader = Arc::new(Reloader::new(
            self.config_file.clone(),
            self.config.clone(),
            self.router.clone(),
            self.guard.clone(),
            max_value_bytes,
            drain.clone(),
            self.metrics.clone(),
            self.admin_listen.is_some(),
        ));
        drop(drain);
        let on_sighup = self
            .config_file
            .is_some()
            .then(|| reload_on_sighup(reloader.clone()))
            .flatten();
        let admin = AdminServer::new(AdminService::new(
            self.router.clone(),
            self.guard.clone(),
            reloader,
            self.metrics.clone(),
        ));

        // Health per pattern service (by its registry name) and for the whole server ("").
        let (health_reporter, health) = tonic_health::server::health_reporter();
        for spec in &crate::patterns::REGISTRY {
            health_reporter
                .set_service_status(spec.service, tonic_health::ServingStatus::Serving)
                .await;
        }
        // Reflection in both versions: grpcurl and current clients speak v1; grpcio-reflection,
        // Postman, evans and older grpcurl speak v1alpha.
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(prism_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        // Their requests are names of a few bytes; anyone may call them, so their messages are
        // held to a small size rather than the pattern services' largest value.
        let reflection_v1 = reflection()
            .build_v1()?
            .max_decoding_message_size(OPEN_MESSAGE_BYTES);
        let reflection_v1alpha = reflection()
            .build_v1alpha()?
            .max_decoding_message_size(OPEN_MESSAGE_BYTES);
        let health = health.max_decoding_message_size(OPEN_MESSAGE_BYTES);

        let routes = Routes::new(health)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(admin)
            .add_service(kv)
            .add_service(pubsub)
            .add_service(queue)
            .add_service(registry)
            .add_service(mailbox)
            .prepare();
        // Cross-cutting layers wrap every service here, so pattern services never see an unchecked
        // call: the protocol checks bound request bodies and carry the caller's deadline, the guard
        // bounds metadata, authenticates and authorizes. The calls layer, outermost so refusals
        // count too, is there only when metrics, the access log or traces are on.
        let limits = self.limits;
        let (tracer, exporter) = match &self.config.tracing {
            Some(config) => {
                let (tracer, exporter) = Tracer::start(config).map_err(ServeError::Tracing)?;
                tracing::info!(endpoint = %config.otlp_endpoint, sample_ratio = config.sample_ratio, "tracing to an OTLP collector");
                (Some(tracer), Some(exporter))
            }
            None => (None, None),
        };
        let admin_http = self.admin.take().map(|listener| {
            let sources = Arc::new(Sources {
                router: self.router.clone(),
                proxy: self.metrics.clone(),
                transport: self.counters.clone(),
                guard: self.guard.clone(),
                deliveries,
                tracer: tracer.clone(),
            });
            AbortOnDrop(tokio::spawn(crate::telemetry::http::serve(
                listener, sources,
            )))
        });
        let measured = (admin_http.is_some() || self.access_log || tracer.is_some()).then(|| {
            CallsLayer::new(
                self.router.clone(),
                self.metrics.clone(),
                self.access_log,
                tracer.clone(),
            )
        });
        drop(tracer);
        let service = ServiceBuilder::new()
            .option_layer(measured)
            .layer(ProtocolLayer::new(
                Arc::new(Budget::new(limits.max_buffered_request_bytes)),
                Duration::from_millis(limits.request_body_timeout_ms),
                max_message,
                self.counters.clone(),
            ))
            .layer(AuthLayer::new(self.guard.clone()))
            .service(routes);
        let window = flow_window(max_message);
        let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .initial_stream_window_size(window)
            .initial_connection_window_size(window.saturating_mul(CONNECTION_WINDOWS))
            .max_frame_size(MAX_FRAME_BYTES)
            .max_header_list_size(transport_header_bytes(limits.max_header_bytes))
            // Unary calls and long-lived streams each have their budget: a connection full of
            // subscriptions still has max_streams_per_connection for its unary calls.
            .max_concurrent_streams(
                limits
                    .max_streams_per_connection
                    .saturating_add(limits.max_stream_calls_per_connection),
            );
        if limits.keepalive_interval_ms > 0 {
            http2
                .keep_alive_interval(Duration::from_millis(limits.keepalive_interval_ms))
                .keep_alive_timeout(Duration::from_millis(limits.keepalive_timeout_ms.max(1)));
        }
        let settings = Arc::new(ConnectionSettings {
            http2,
            handshake_timeout: Duration::from_millis(limits.handshake_timeout_ms.max(1)),
            idle_timeout: (limits.idle_timeout_ms > 0)
                .then(|| Duration::from_millis(limits.idle_timeout_ms)),
            max_in_flight: limits.max_in_flight_per_connection,
            max_stream_calls: (limits.max_stream_calls_per_connection as usize).max(1),
            max_unauthenticated: limits.max_unauthenticated_calls_per_connection.max(1),
            unauthenticated: Arc::new(Budget::new(limits.max_unauthenticated_calls.max(1))),
            counters: self.counters.clone(),
        });
        let drain_bound = Duration::from_millis(limits.drain_timeout_ms);
        // The drain reaches streams first: each ends with UNAVAILABLE and returns what it holds,
        // so connections with live streams can close within the bound like any other.
        let metrics = self.metrics.clone();
        let streams_told = async {
            shutdown.await;
            metrics
                .draining
                .store(true, std::sync::atomic::Ordering::Relaxed);
            drain_control.start();
        };
        listener::run(
            listener,
            service,
            settings,
            limits.max_connections.max(1),
            drain_bound,
            streams_told,
        )
        .await;
        // The SIGHUP task holds the reloader, which holds a drain handle.
        drop(on_sighup);
        // Stream tasks still returning deliveries finish before the backends close.
        if tokio::time::timeout(BACKEND_CLOSE_BOUND, drain_control.finished())
            .await
            .is_err()
        {
            tracing::warn!(
                bound_ms = BACKEND_CLOSE_BOUND.as_millis() as u64,
                "stream tasks did not finish in time; closing the backends anyway"
            );
        }
        // A pool waits for connections still checked out, which a frozen backend may never
        // return: the close is bounded like the drain.
        if tokio::time::timeout(BACKEND_CLOSE_BOUND, self.router.current().close())
            .await
            .is_err()
        {
            tracing::warn!(
                bound_ms = BACKEND_CLOSE_BOUND.as_millis() as u64,
                "backends did not close in time; exiting anyway"
            );
        }
        drop(admin_http);
        // The exporter sends what is queued once the last tracer handle (the calls layer's) is
        // gone.
        if let Some(exporter) = exporter {
            if tokio::time::timeout(EXPORT_BOUND, exporter).await.is_err() {
                tracing::warn!("spans still queued when the exporter's time ran out were dropped");
            }
        }
        tracing::info!("proxy stopped");
        Ok(())
    }
}

/// Reloads the config on each SIGHUP (the outcome is logged and counted by the reloader). The
/// handler is installed before the task starts, so a SIGHUP that arrives once the proxy serves can
/// never take the default action (ending the process).
fn reload_on_sighup(reloader: Arc<Reloader>) -> Option<AbortOnDrop> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reload with Admin ReloadConfig");
            return None;
        }
    };
    Some(AbortOnDrop(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the config");
            let _ = reloader.reload(None).await;
        }
    })))
}

/// Ends a task (the admin listener, the SIGHUP listener) with the proxy.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_window_holds_one_largest_message_within_bounds() {
        let default_max = 4 * 1024 * 1024 + crate::limits::MESSAGE_OVERHEAD;
        assert_eq!(flow_window(default_max), default_max as u32);
        assert_eq!(flow_window(10), 1024 * 1024, "never below hyper's 1 MiB");
        let top = flow_window(usize::MAX);
        assert_eq!(top, i32::MAX as u32 / CONNECTION_WINDOWS);
        assert!(
            top.checked_mul(CONNECTION_WINDOWS)
                .is_some_and(|c| c <= i32::MAX as u32),
            "the connection window stays a valid HTTP/2 window"
        );
    }
}
