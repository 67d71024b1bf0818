//! The Rust client: connect once, then talk to a namespace through its pattern API.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use prism_proto::client::PrismClient;
//! use prism_proto::keyvalue::v1::{GetRequest, SetRequest};
//! let prism = PrismClient::connect("http://127.0.0.1:8980").await?;
//! let mut kv = prism.namespace("cache").keyvalue();
//! kv.set(SetRequest { key: "greeting".into(), value: "hi".into(), ..Default::default() }).await?;
//! let got = kv.get(GetRequest { key: "greeting".into() }).await?.into_inner();
//! assert!(got.found);
//! # Ok(()) }
//! ```

use crate::admin::v1::admin_client::AdminClient;
use crate::keyvalue::v1::key_value_client::KeyValueClient;
use crate::mailbox::v1::mailbox_client::MailboxClient;
use crate::pubsub::v1::pub_sub_client::PubSubClient;
use crate::queue::v1::queue_client::QueueClient;
use crate::registry::v1::multicast_registry_client::MulticastRegistryClient;
use crate::{DEFAULT_MAX_MESSAGE_BYTES, NAMESPACE_HEADER};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// Errors from building a client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The endpoint URL could not be parsed or the connection failed.
    #[error("cannot connect to the Prism proxy: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// A namespace or token is not valid as gRPC metadata (ASCII, no control characters).
    #[error("invalid gRPC metadata: {0}")]
    InvalidMetadata(String),
}

/// The HTTP/2 receive window of each stream a [`PrismClient`] opens.
pub const STREAM_WINDOW: u32 = 1 << 20;
/// The HTTP/2 receive window of a [`PrismClient`]'s connection (half of it bounds the small DATA
/// frames held unread, about 38,000 one-message frames).
pub const CONNECTION_WINDOW: u32 = 16 << 20;

/// A connection to a Prism proxy, cheap to clone; one HTTP/2 connection is shared by every handle.
#[derive(Clone, Debug)]
pub struct PrismClient {
    channel: Channel,
    token: Option<MetadataValue<Ascii>>,
    traceparent: Option<MetadataValue<Ascii>>,
}

impl PrismClient {
    /// Connects to `url` (e.g. `http://127.0.0.1:8980`).
    ///
    /// The HTTP/2 windows are fixed and large (1 MiB per stream, [`CONNECTION_WINDOW`] per
    /// connection): h2 bounds how many small DATA frames a connection may hold unread by half the
    /// connection window, and with the 64 KiB default a multicast reaching a few hundred listeners on
    /// one connection at once exceeded it and the client closed the connection
    /// (`GOAWAY ENHANCE_YOUR_CALM too_many_data_frames`), ending every stream on it.
    pub async fn connect(url: impl Into<String>) -> Result<Self, ClientError> {
        let endpoint = Endpoint::from_shared(url.into())?
            .tcp_nodelay(true)
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW);
        Ok(Self::from_channel(endpoint.connect().await?))
    }

    /// Wraps an existing channel (for custom TLS, timeouts or load balancing).
    pub fn from_channel(channel: Channel) -> Self {
        Self {
            channel,
            token: None,
            traceparent: None,
        }
    }

    /// Sends `authorization: Bearer <token>` with every call.
    pub fn with_token(mut self, token: &str) -> Result<Self, ClientError> {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| ClientError::InvalidMetadata("token is not printable ASCII".into()))?;
        self.token = Some(value);
        Ok(self)
    }

    /// Sends a W3C `traceparent` (`00-<trace id>-<parent id>-<flags>`) with every call, so a
    /// proxy with tracing on records the calls as children of the caller's span.
    pub fn with_traceparent(mut self, traceparent: &str) -> Result<Self, ClientError> {
        let well_formed = {
            let parts: Vec<&str> = traceparent.split('-').collect();
            let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
            parts.len() == 4
                && hex(parts[0], 2)
                && hex(parts[1], 32)
                && hex(parts[2], 16)
                && hex(parts[3], 2)
        };
        if !well_formed {
            return Err(ClientError::InvalidMetadata(format!(
                "traceparent {traceparent:?} is not 00-<32 hex>-<16 hex>-<2 hex>"
            )));
        }
        self.traceparent = Some(traceparent.parse().map_err(|_| {
            ClientError::InvalidMetadata("traceparent is not printable ASCII".into())
        })?);
        Ok(self)
    }

    /// A handle on one namespace.
    ///
    /// # Panics
    /// Never for names that are valid gRPC metadata; use [`PrismClient::try_namespace`] for untrusted input.
    pub fn namespace(&self, name: &str) -> NamespaceClient {
        self.try_namespace(name)
            .expect("namespace is printable ASCII")
    }

    /// A handle on one namespace, refusing names that cannot travel as gRPC metadata.
    pub fn try_namespace(&self, name: &str) -> Result<NamespaceClient, ClientError> {
        let namespace = name.parse().map_err(|_| {
            ClientError::InvalidMetadata(format!("namespace {name:?} is not printable ASCII"))
        })?;
        Ok(NamespaceClient {
            channel: self.channel.clone(),
            metadata: CallMetadata {
                namespace: Some(namespace),
                token: self.token.clone(),
                traceparent: self.traceparent.clone(),
                deadline: None,
            },
        })
    }

    /// The Admin API (capabilities, namespaces).
    pub fn admin(&self) -> Admin {
        let metadata = CallMetadata {
            namespace: None,
            token: self.token.clone(),
            traceparent: self.traceparent.clone(),
            deadline: None,
        };
        AdminClient::with_interceptor(self.channel.clone(), metadata)
            .max_decoding_message_size(DEFAULT_MAX_MESSAGE_BYTES)
    }
}

/// A handle on one namespace; hands out pattern clients that carry the namespace on every call.
#[derive(Clone, Debug)]
pub struct NamespaceClient {
    channel: Channel,
    metadata: CallMetadata,
}

/// The Admin client type a [`PrismClient`] hands out.
pub type Admin = AdminClient<InterceptedService<Channel, CallMetadata>>;

/// The KeyValue client type a [`NamespaceClient`] hands out.
pub type KeyValue = KeyValueClient<InterceptedService<Channel, CallMetadata>>;

/// The PubSub client type a [`NamespaceClient`] hands out.
pub type PubSub = PubSubClient<InterceptedService<Channel, CallMetadata>>;

/// The Queue client type a [`NamespaceClient`] hands out.
pub type Queue = QueueClient<InterceptedService<Channel, CallMetadata>>;

/// The Multicast Registry client type a [`NamespaceClient`] hands out.
pub type Registry = MulticastRegistryClient<InterceptedService<Channel, CallMetadata>>;

/// The Mailbox client type a [`NamespaceClient`] hands out.
pub type Mailbox = MailboxClient<InterceptedService<Channel, CallMetadata>>;

impl NamespaceClient {
    /// Every call made through this client carries `deadline` (`grpc-timeout`): the proxy and
    /// the client give up on it then, with `DEADLINE_EXCEEDED`.
    pub fn with_deadline(mut self, deadline: std::time::Duration) -> Self {
        self.metadata.deadline = Some(deadline);
        self
    }

    /// The KeyValue pattern API for this namespace.
    pub fn keyvalue(&self) -> KeyValue {
        KeyValueClient::with_interceptor(self.channel.clone(), self.metadata.clone())
            .max_decoding_message_size(DEFAULT_MAX_MESSAGE_BYTES)
            .max_encoding_message_size(DEFAULT_MAX_MESSAGE_BYTES)
    }

    /// The PubSub pattern API for this namespace.
    pub fn pubsub(&self) -> PubSub {
        PubSubClient::with_interceptor(self.channel.clone(), self.metadata.clone())
            .max_decoding_message_size(DEFAULT_MAX_MESSAGE_BYTES)
            .max_encoding_message_size(DEFAULT_MAX_MESSAGE_BYTES)
    }

    /// The Queue pattern API for this namespace.
    pub fn queue(&self) -> Queue {
        QueueClient::with_interceptor(self.channel.clone(), self.metadata.clone())
            .max_decoding_message_size(DEFAULT_MAX_MESSAGE_BYTES)
            .max_encoding_message_size(DEFAULT_MAX_MESSAGE_BYTES)
    }

    /// The Multicast Registry pattern API for this namespace.
    pub fn registry(&self) -> Registry {
        MulticastRegistryClient::with_interceptor(self.channel.clone(), self.metadata.clone())
            .max_decoding_message_size(DEFAULT_MAX_MESSAGE_BYTES)
            .max_encoding_message_size(DEFAULT_MAX_MESSAGE_BYTES)
    }

    /// The Mailbox pattern API for this namespace.
    pub fn mailbox(&self) -> Mailbox {
        MailboxClient::with_interceptor(self.channel.clone(), self.metadata.clone())
            .max_decoding_message_size(DEFAULT_MAX_MESSAGE_BYTES)
            .max_encoding_message_size(DEFAULT_MAX_MESSAGE_BYTES)
    }
}

/// Interceptor adding the namespace and bearer token metadata to each call.
#[derive(Clone, Debug)]
pub struct CallMetadata {
    namespace: Option<MetadataValue<Ascii>>,
    token: Option<MetadataValue<Ascii>>,
    traceparent: Option<MetadataValue<Ascii>>,
    deadline: Option<std::time::Duration>,
}

impl Interceptor for CallMetadata {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(ns) = &self.namespace {
            request.metadata_mut().insert(NAMESPACE_HEADER, ns.clone());
        }
        if let Some(token) = &self.token {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        if let Some(tp) = &self.traceparent {
            request.metadata_mut().insert("traceparent", tp.clone());
        }
        if let Some(deadline) = self.deadline {
            request.set_timeout(deadline);
        }
        Ok(request)
    }
}
