//! The proxy server: builds the router from config and serves the pattern services, Admin, health and
//! reflection on one listener, until a shutdown future resolves; then it drains.
//!
//! Request path: `tonic transport → server layers (the place for auth, limits, metrics: see
//! [`Proxy::serve`]) → NamespaceResolver interceptor → pattern service → adapter`.

use crate::admin::AdminService;
use crate::auth::config::AuthMode;
use crate::auth::keys::{KeyError, KeyStore};
use crate::auth::layer::{AuthLayer, Guard};
use crate::auth::verify::Verifier;
use crate::backends::OpenError;
use crate::config::ServerLimits;
use crate::config::{Pattern, ProxyConfig};
use crate::keyvalue::KeyValueService;
use crate::router::{NamespaceResolver, Router};
use prism_proto::admin::v1::admin_server::AdminServer;
use prism_proto::keyvalue::v1::key_value_server::KeyValueServer;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::interceptor::InterceptedService;

/// Accepted connections with Nagle's algorithm off: `Server::tcp_nodelay` only applies to listeners
/// tonic binds itself, and without it small responses wait for the peer's delayed ACK (~40 ms).
fn incoming(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    TcpListenerStream::new(listener).map(|accepted| {
        let stream = accepted?;
        stream.set_nodelay(true)?;
        Ok(stream)
    })
}

/// Largest HTTP/2 DATA frame a client may send: 256 KiB instead of HTTP/2's 16 KiB, so a large value
/// arrives in a few frames rather than dozens.
pub const MAX_FRAME_BYTES: u32 = 256 * 1024;

/// The connection's flow-control window, in stream windows: several large calls can be in flight on
/// one connection without waiting for WINDOW_UPDATEs.
pub const CONNECTION_WINDOWS: u32 = 4;

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
    /// The gRPC server failed.
    #[error("gRPC server error: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Authentication keys could not be loaded.
    #[error("auth: {0}")]
    Auth(#[from] KeyError),
    /// Reflection descriptors could not be loaded.
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// A proxy whose backends are open, ready to serve.
#[derive(Debug)]
pub struct Proxy {
    router: Arc<Router>,
    guard: Arc<Guard>,
    limits: ServerLimits,
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
        ));
        Ok(Self {
            router: Arc::new(Router::from_config(config).await?),
            guard,
            limits: config.server,
        })
    }

    /// The router (namespaces, capabilities).
    pub fn router(&self) -> &Arc<Router> {
        &self.router
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

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight calls finish and closes
    /// the backends.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        let max_message = self.router.max_value_bytes() + crate::limits::MESSAGE_OVERHEAD;
        let kv = InterceptedService::new(
            KeyValueServer::new(KeyValueService)
                .max_decoding_message_size(max_message)
                .max_encoding_message_size(max_message),
            NamespaceResolver::new(self.router.clone(), Pattern::Keyvalue),
        );
        let admin = AdminServer::new(AdminService::new(self.router.clone(), self.guard.mode()));

        let (health_reporter, health) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<KeyValueServer<KeyValueService>>()
            .await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(prism_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;

        // Cross-cutting layers wrap every service here, so pattern services never see an unchecked
        // call: the guard bounds metadata, authenticates and authorizes; metrics go here next.
        let window = flow_window(max_message);
        let result = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .initial_stream_window_size(window)
            .initial_connection_window_size(window.saturating_mul(CONNECTION_WINDOWS))
            .max_frame_size(MAX_FRAME_BYTES)
            .http2_max_header_list_size(self.limits.max_header_bytes)
            .max_concurrent_streams(self.limits.max_streams_per_connection)
            .concurrency_limit_per_connection(self.limits.max_in_flight_per_connection)
            .layer(AuthLayer::new(self.guard.clone()))
            .add_service(health)
            .add_service(reflection)
            .add_service(admin)
            .add_service(kv)
            .serve_with_incoming_shutdown(incoming(listener), shutdown)
            .await;
        self.router.close().await;
        tracing::info!("proxy stopped");
        Ok(result?)
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
