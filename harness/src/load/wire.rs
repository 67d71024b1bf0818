//! The load generator's gRPC client: unary calls written straight onto one HTTP/2 connection (the
//! `h2` crate, no channel buffer task, no tower stack), with the request's header map built once
//! per connection (each call takes a copy). A call is one HEADERS and one DATA frame out, the
//! response's frames in, and nothing else, so what the load command measures is the proxy, not its
//! own client.

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use prost::Message;
use std::time::Duration;
use tokio::net::TcpStream;

/// One HTTP/2 connection to the proxy, for one namespace and token; cheap to clone (each clone
/// is a handle on the same connection, as each user holds one).
#[derive(Clone)]
pub struct Wire {
    send: h2::client::SendRequest<Bytes>,
    authority: http::uri::Authority,
    headers: HeaderMap,
}

/// A call that did not answer OK: the gRPC status code name (`UNAVAILABLE`, …).
pub type Failure = String;

impl Wire {
    /// Connects to `url` (`http://host:port`) and spawns the connection's I/O task on the current
    /// runtime; every call carries `x-prism-namespace: namespace` and the bearer `token`.
    pub async fn connect(url: &str, namespace: &str, token: &str) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("{url}: no host:port"))?;
        let tcp = tokio::time::timeout(
            Duration::from_secs(10),
            TcpStream::connect(authority.as_str()),
        )
        .await
        .map_err(|_| format!("{url}: connect timed out"))?
        .map_err(|e| format!("{url}: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(8 << 20)
            .initial_connection_window_size(32 << 20)
            .max_frame_size(256 << 10)
            .handshake::<_, Bytes>(tcp)
            .await
            .map_err(|e| format!("{url}: HTTP/2 handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut headers = HeaderMap::new();
        let value = |s: &str| HeaderValue::from_str(s).map_err(|e| format!("{s:?}: {e}"));
        headers.insert("content-type", value("application/grpc")?);
        headers.insert("te", value("trailers")?);
        headers.insert("x-prism-namespace", value(namespace)?);
        if !token.is_empty() {
            headers.insert("authorization", value(&format!("Bearer {token}"))?);
        }
        Ok(Self {
            send,
            authority,
            headers,
        })
    }

    /// One unary call of `path` (`/package.Service/Method`): the decoded answer, or the status name.
    pub async fn unary<Req: Message, Resp: Message + Default>(
        &mut self,
        path: &'static str,
        request: &Req,
    ) -> Result<Resp, Failure> {
        let len = request.encoded_len();
        let mut body = BytesMut::with_capacity(5 + len);
        body.put_u8(0);
        body.put_u32(u32::try_from(len).map_err(|_| "RESOURCE_EXHAUSTED".to_string())?);
        request
            .encode(&mut body)
            .map_err(|_| "INTERNAL".to_string())?;
        let uri = Uri::builder()
            .scheme("http")
            .authority(self.authority.clone())
            .path_and_query(http::uri::PathAndQuery::from_static(path))
            .build()
            .map_err(|_| "INTERNAL".to_string())?;
        let mut head = Request::new(());
        *head.method_mut() = Method::POST;
        *head.uri_mut() = uri;
        *head.headers_mut() = self.headers.clone();
        std::future::poll_fn(|cx| self.send.poll_ready(cx))
            .await
            .map_err(transport)?;
        let (response, mut stream) = self.send.send_request(head, false).map_err(transport)?;
        stream.send_data(body.freeze(), true).map_err(transport)?;
        let response = response.await.map_err(transport)?;
        if response.status() != http::StatusCode::OK {
            return Err(from_http(response.status()).into());
        }
        if let Some(status) = status_of(response.headers()) {
            // A trailers-only answer: the status is in the headers.
            return status.and(Err("INTERNAL".into()));
        }
        let mut body = response.into_body();
        // The answer usually arrives in one DATA frame: kept as it came, copied only when split.
        let mut message = Bytes::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(transport)?;
            let _ = body.flow_control().release_capacity(chunk.len());
            message = if message.is_empty() {
                chunk
            } else {
                let mut joined = BytesMut::from(&message[..]);
                joined.extend_from_slice(&chunk);
                joined.freeze()
            };
        }
        let trailers = body.trailers().await.map_err(transport)?;
        // Trailers without a grpc-status (or none at all) are a broken answer.
        trailers
            .as_ref()
            .and_then(status_of)
            .unwrap_or_else(|| Err("INTERNAL".into()))?;
        // One uncompressed message whose length prefix matches what arrived.
        match message.first() {
            Some(0) if message.len() >= 5 => {}
            _ => return Err("INTERNAL".into()),
        }
        let len = u32::from_be_bytes([message[1], message[2], message[3], message[4]]) as usize;
        if len != message.len() - 5 {
            return Err("INTERNAL".into());
        }
        Resp::decode(message.slice(5..)).map_err(|_| "INTERNAL".to_string())
    }
}

/// The `grpc-status` in `headers`: `Ok(())` for OK, the status name otherwise, `None` when absent.
fn status_of(headers: &HeaderMap) -> Option<Result<(), Failure>> {
    let raw = headers.get("grpc-status")?;
    let code = raw.to_str().ok().and_then(|s| s.parse::<i32>().ok());
    Some(match code {
        Some(0) => Ok(()),
        Some(n) => Err(
            crate::scenario::code::StatusCode::from(tonic::Code::from(n))
                .name()
                .to_string(),
        ),
        None => Err("INTERNAL".into()),
    })
}

/// The gRPC status a client reports for an HTTP status other than 200 (gRPC's HTTP mapping).
fn from_http(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "INTERNAL",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "UNIMPLEMENTED",
        429 | 502 | 503 | 504 => "UNAVAILABLE",
        _ => "UNKNOWN",
    }
}

/// A stream or connection failure, as the status a gRPC client reports for it.
fn transport(e: h2::Error) -> Failure {
    match e.reason() {
        Some(h2::Reason::CANCEL) => "CANCELLED",
        Some(h2::Reason::ENHANCE_YOUR_CALM) => "RESOURCE_EXHAUSTED",
        Some(h2::Reason::INTERNAL_ERROR) => "INTERNAL",
        _ => "UNAVAILABLE",
    }
    .into()
}
