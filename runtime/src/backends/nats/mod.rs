//! `nats`: PubSub on core NATS and Queue on JetStream. Every subject starts with `subject_prefix`
//! and names the namespace and the topic or queue hex-encoded, each as one token — so no name,
//! whatever it holds, can reach another namespace's subjects or form a wildcard. One JetStream stream
//! per namespace (file storage) holds its queues; one durable pull consumer per queue and group.

mod leases;
mod pubsub;
mod queue;

pub use pubsub::NatsPubSub;
pub use queue::NatsQueue;

pub use super::config::NatsConfig;
use super::error::{StoreError, StoreResult};
use super::health::{Health, Ping};
use super::{Backend, Closer};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// A token for `name` in a subject: its bytes in hex (never `.`, `*`, `>` or whitespace).
pub(crate) use crate::patterns::names::hex_token as token;

pub(crate) use crate::patterns::names::digest;

/// A NATS error that means the server could not be reached or did not answer (JetStream's refusals
/// are mapped apart, in `queue.rs`).
pub(crate) fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string().into())
}

/// A round trip through the server: returns once the server has processed everything this
/// connection sent before. A flush only writes to the socket, so a publish another proxy makes
/// after this one returned could reach the server first. The probe is a request on a subject no
/// Prism name can form, which the server answers itself with "no responders".
pub(crate) async fn round_trip(nats: &Nats) -> StoreResult<()> {
    use async_nats::client::RequestErrorKind;
    let probe = format!("{}._rtt", nats.prefix);
    match nats.client.request(probe, bytes::Bytes::new()).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == RequestErrorKind::NoResponders => Ok(()),
        Err(e) => Err(unavailable(e)),
    }
}

/// `Err` when a message of `payload` bytes with `headers` would exceed the server's `max_payload`
/// (the server would close the connection instead of refusing the one message).
pub(crate) fn check_size(
    client: &async_nats::Client,
    payload: usize,
    headers: &std::collections::HashMap<String, String>,
) -> StoreResult<()> {
    let max = client.server_info().max_payload;
    // Header block: `NATS/1.0\r\n`, `name: value\r\n` per header, a blank line; plus Prism's two.
    let header_bytes: usize = 12
        + 64
        + headers
            .iter()
            .map(|(k, v)| k.len() + v.len() + 4)
            .sum::<usize>();
    let size = payload + header_bytes;
    if max > 0 && size > max {
        return Err(StoreError::OverBackendLimit(format!(
            "the message is {size} bytes with its headers, over the NATS server's max_payload of {max} bytes"
        )));
    }
    Ok(())
}

/// Header carrying the proxy's message id.
const ID: &str = "Prism-Message-Id";
/// Header carrying when the proxy accepted the message (ms since the Unix epoch).
const AT: &str = "Prism-At";

/// The NATS headers of a message: the application's, then the proxy's id and timestamp.
pub(crate) fn headers_out(
    headers: &std::collections::HashMap<String, String>,
    id: &str,
    at_ms: i64,
) -> async_nats::HeaderMap {
    let mut out = async_nats::HeaderMap::new();
    for (k, v) in headers {
        out.insert(k.as_str(), v.as_str());
    }
    out.insert(ID, id);
    out.insert(AT, at_ms.to_string().as_str());
    out
}

/// A message's application headers, id and timestamp, back from NATS headers.
pub(crate) fn headers_in(
    h: Option<&async_nats::HeaderMap>,
) -> StoreResult<(std::collections::HashMap<String, String>, String, i64)> {
    let mut headers = std::collections::HashMap::new();
    let (mut id, mut at) = (None, 0);
    for (name, values) in h.into_iter().flat_map(|h| h.iter()) {
        let value = values
            .first()
            .map(|v| v.as_str().to_string())
            .unwrap_or_default();
        match name.as_ref() {
            ID => id = Some(value),
            AT => at = value.parse().unwrap_or(0),
            other => {
                headers.insert(other.to_string(), value);
            }
        }
    }
    let id = id.ok_or_else(|| {
        StoreError::Internal("a message on a Prism subject without its id header".into())
    })?;
    Ok((headers, id, at))
}

/// `Err(Unavailable)` unless the client is connected: a message published while it reconnects
/// would wait in the client's buffer and go out later, after the caller was told it failed.
pub(crate) fn connected(client: &async_nats::Client) -> StoreResult<()> {
    if client.connection_state() == async_nats::connection::State::Connected {
        Ok(())
    } else {
        Err(unavailable("not connected to the NATS server"))
    }
}

/// The NATS connection and what both adapters share.
#[derive(Debug)]
pub(crate) struct Nats {
    client: async_nats::Client,
    prefix: String,
    /// Counts the times the connection was lost: a subscription ends when it changes, since the
    /// client's resubscription after a reconnect would hide the messages missed meanwhile.
    disconnects: tokio::sync::watch::Sender<u64>,
}

#[async_trait]
impl Ping for Nats {
    async fn ping(&self) -> StoreResult<()> {
        connected(&self.client)?;
        self.client.flush().await.map_err(unavailable)
    }
}

/// Connects and builds the bundle.
pub(super) async fn open(
    kind: &'static str,
    cfg: &NatsConfig,
    health: impl FnOnce(Arc<dyn Ping>) -> Arc<Health>,
) -> Result<Backend, async_nats::ConnectError> {
    let (disconnects, _) = tokio::sync::watch::channel(0u64);
    let lost = disconnects.clone();
    let client = async_nats::ConnectOptions::new()
        .event_callback(move |event| {
            if matches!(event, async_nats::Event::Disconnected) {
                lost.send_modify(|n| *n += 1);
            }
            std::future::ready(())
        })
        .connection_timeout(Duration::from_millis(cfg.connect_timeout_ms.max(1)))
        .retry_on_initial_connect()
        .connect(cfg.url.expose())
        .await?;
    // A first round trip, so a wrong address is an error at start rather than at the first call.
    if tokio::time::timeout(
        Duration::from_millis(cfg.connect_timeout_ms.max(1)),
        client.flush(),
    )
    .await
    .is_err()
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no answer from the NATS server within connect_timeout_ms",
        )
        .into());
    }
    let nats = Arc::new(Nats {
        client: client.clone(),
        prefix: cfg.subject_prefix.clone(),
        disconnects,
    });
    let mut backend = Backend::new(kind, health(nats.clone()), Closer::Nothing);
    backend.pubsub = Some(Arc::new(NatsPubSub::new(nats.clone())));
    backend.queue = Some(Arc::new(NatsQueue::new(
        nats,
        Duration::from_secs(cfg.retention_hours.max(1) * 3600),
        Duration::from_secs(cfg.ack_wait_secs.max(1)),
    )));
    Ok(backend)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_never_hold_separators_or_wildcards_and_keep_names_apart() {
        for name in ["a.b", "a.*", ">", "x y", "ns.ps.t"] {
            let t = token(name);
            assert!(t.chars().all(|c| c.is_ascii_hexdigit()), "{name:?} -> {t}");
        }
        assert_ne!(
            format!("{}.{}", token("x.ps.y"), token("t")),
            format!("{}.{}", token("x"), token("y.ps.t"))
        );
        assert_ne!(digest(&["ab", "c"]), digest(&["a", "bc"]));
    }
}
