//! The transport against hostile and careless clients, through the real server over real sockets:
//! a drain that ends whatever clients do, the listener closed at drain start, handshake and idle
//! timeouts, the connection cap and the shedding of connections no authenticated call has used, the
//! budget of calls that need no token, the request buffer budget (a refusal pauses the connection's
//! reads) and body timeout, oversize headers
//! answered per stream, one message per unary call, and non-gRPC content types.

use bytes::Bytes;
use http::Request;
use prism_proto::keyvalue::v1::{GetRequest, SetRequest};
use prism_runtime::server::counters::TransportCounters;
use prost::Message;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// Generous bound for anything the tests wait on: far above every configured timeout, so only a
/// proxy that never does the thing fails.
const PATIENCE: Duration = Duration::from_secs(20);

mod support;

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    counters: Arc<TransportCounters>,
}

async fn start(server: &str) -> Running {
    let served = support::serve(&format!(
        "listen: 127.0.0.1:0\nauth: {{ mode: none }}\nserver: {{ {server} }}\nbackends:\n  mem: {{ type: memstore }}\nnamespaces:\n  m: {{ pattern: keyvalue, backend: mem }}\n"
    ))
    .await;
    Running {
        addr: served.addr,
        stop: Some(served.stop),
        task: served.task,
        counters: served.counters,
    }
}

impl Running {
    /// Starts the drain and waits (within [`PATIENCE`]) for the server to return.
    async fn drain(mut self) -> Arc<TransportCounters> {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the drain did not end")
            .unwrap();
        self.counters
    }

    /// An HTTP/2 connection (the `h2` client, so tests can send what gRPC libraries would not).
    async fn h2(&self) -> (h2::client::SendRequest<Bytes>, tokio::task::JoinHandle<()>) {
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        let (send, conn) = h2::client::handshake(tcp).await.unwrap();
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        (send.ready().await.unwrap(), conn)
    }

    /// One well-formed Get on `send`; returns its grpc-status.
    async fn get(&self, send: &mut h2::client::SendRequest<Bytes>) -> String {
        let (response, mut body) = send
            .send_request(self.request("Get").body(()).unwrap(), false)
            .unwrap();
        body.send_data(framed(&GetRequest { key: "k".into() }).into(), true)
            .unwrap();
        grpc_status(response).await.1
    }

    /// Opens a health Watch stream (no token needed): its open response body, or the refusal's
    /// grpc-status and message.
    async fn watch(
        &self,
        send: &mut h2::client::SendRequest<Bytes>,
    ) -> Result<h2::RecvStream, (String, String)> {
        self.health(send, "Watch").await
    }

    /// Calls health `method` (no token needed): its open response body, or the refusal's
    /// grpc-status and message.
    async fn health(
        &self,
        send: &mut h2::client::SendRequest<Bytes>,
        method: &str,
    ) -> Result<h2::RecvStream, (String, String)> {
        let request = Request::builder()
            .method("POST")
            .uri(format!(
                "http://{}/grpc.health.v1.Health/{method}",
                self.addr
            ))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        *send = send.clone().ready().await.unwrap();
        let (response, mut body) = send.send_request(request, false).unwrap();
        body.send_data(vec![0u8; 5].into(), true).unwrap();
        let response = tokio::time::timeout(PATIENCE, response)
            .await
            .expect("no response")
            .unwrap();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
        };
        match header("grpc-status") {
            Some(code) => Err((
                code,
                percent_decode(&header("grpc-message").unwrap_or_default()),
            )),
            None => Ok(response.into_body()),
        }
    }

    fn request(&self, method: &str) -> http::request::Builder {
        Request::builder()
            .method("POST")
            .uri(format!(
                "http://{}/prism.keyvalue.v1.KeyValue/{method}",
                self.addr
            ))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("x-prism-namespace", "m")
    }
}

/// One gRPC length-prefixed message.
fn framed(message: &impl Message) -> Vec<u8> {
    let body = message.encode_to_vec();
    let mut out = vec![0];
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// The grpc-status and grpc-message of a response (trailers-only or in trailers).
async fn grpc_status(response: h2::client::ResponseFuture) -> (http::StatusCode, String, String) {
    let response = tokio::time::timeout(PATIENCE, response)
        .await
        .expect("no response")
        .unwrap();
    let http_status = response.status();
    let mut headers = response.headers().clone();
    if !headers.contains_key("grpc-status") {
        let mut body = response.into_body();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        if let Some(trailers) = body.trailers().await.unwrap() {
            headers = trailers;
        }
    }
    let get = |name: &str| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    (
        http_status,
        get("grpc-status"),
        percent_decode(&get("grpc-message")),
    )
}

/// Undoes the percent-encoding of `grpc-message`.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn read_to_close(mut tcp: TcpStream) {
    let mut buf = [0u8; 256];
    tokio::time::timeout(PATIENCE, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the proxy kept the connection open");
}

#[tokio::test]
async fn a_drain_ends_with_idle_connections_and_unfinished_handshakes_open() {
    let proxy = start("drain_timeout_ms: 2000").await;
    let mut raw = Vec::new();
    for _ in 0..5 {
        raw.push(TcpStream::connect(proxy.addr).await.unwrap());
    }
    let mut partial = TcpStream::connect(proxy.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut partial, b"PRI * HTTP/2.0\r\n")
        .await
        .unwrap();
    let (_send, h2_conn) = proxy.h2().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let counters = proxy.drain().await;
    assert_eq!(
        counters.snapshot().drain_cut,
        0,
        "idle connections close at drain start, not at the bound"
    );
    tokio::time::timeout(PATIENCE, h2_conn)
        .await
        .expect("the idle HTTP/2 connection got GOAWAY and closed")
        .unwrap();
    for tcp in raw {
        read_to_close(tcp).await;
    }
    drop(partial);
}

#[tokio::test]
async fn the_listener_closes_at_drain_start_and_laggards_are_cut_at_the_bound() {
    let proxy = start("drain_timeout_ms: 1500, request_body_timeout_ms: 60000").await;
    let addr = proxy.addr;
    let (mut send, _conn) = proxy.h2().await;
    // A call whose body never completes keeps the drain waiting until the bound.
    let (response, mut body) = send
        .send_request(proxy.request("Set").body(()).unwrap(), false)
        .unwrap();
    body.send_data(Bytes::from_static(&[0, 0, 0, 0, 10, 1, 2]), false)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let drained = tokio::spawn(proxy.drain());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = TcpStream::connect(addr).await;
    assert!(
        matches!(&refused, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
        "a new connection during the drain is refused at once, got {refused:?}"
    );
    let counters = drained.await.unwrap();
    assert_eq!(counters.snapshot().drain_cut, 1, "the laggard was cut");
    drop(response);
}

#[tokio::test]
async fn connections_without_a_preface_are_closed_after_the_handshake_timeout() {
    let proxy = start("handshake_timeout_ms: 200").await;
    read_to_close(TcpStream::connect(proxy.addr).await.unwrap()).await;
    assert_eq!(proxy.counters.snapshot().handshake_timeouts, 1);
    proxy.drain().await;
}

#[tokio::test]
async fn idle_connections_get_goaway_after_the_idle_timeout() {
    let proxy = start("idle_timeout_ms: 300").await;
    let (mut send, conn) = proxy.h2().await;
    assert_eq!(
        proxy.get(&mut send).await,
        "0",
        "the call before going idle succeeds"
    );
    tokio::time::timeout(PATIENCE, conn)
        .await
        .expect("the idle connection was closed")
        .unwrap();
    assert_eq!(proxy.counters.snapshot().idle_closed, 1);
    proxy.drain().await;
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_accept_until_one_closes() {
    let proxy = start("max_connections: 2, handshake_timeout_ms: 60000").await;
    // Both slots hold connections an authenticated call has used (auth is off: every pattern
    // call passes), so neither may be shed.
    let (mut first, first_conn) = proxy.h2().await;
    let (mut second, _second_conn) = proxy.h2().await;
    assert_eq!(proxy.get(&mut first).await, "0");
    assert_eq!(proxy.get(&mut second).await, "0");
    read_to_close(TcpStream::connect(proxy.addr).await.unwrap()).await;
    assert_eq!(proxy.counters.snapshot().connections_refused, 1);
    assert_eq!(proxy.counters.snapshot().connections_shed, 0);
    drop(first);
    first_conn.abort();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (mut send, _conn) = proxy.h2().await;
    assert_eq!(proxy.get(&mut send).await, "0", "a slot freed up");
    proxy.drain().await;
}

#[tokio::test]
async fn at_the_cap_a_connection_no_authenticated_call_has_used_makes_room() {
    let proxy = start("max_connections: 2, handshake_timeout_ms: 60000").await;
    // The oldest holds a health Watch stream (no token needed), the other sent nothing at all.
    let (mut watcher, watcher_conn) = proxy.h2().await;
    let _watch = proxy
        .watch(&mut watcher)
        .await
        .expect("a Watch stream opens");
    let silent = TcpStream::connect(proxy.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (mut send, _conn) = proxy.h2().await;
    assert_eq!(proxy.get(&mut send).await, "0", "the new client got in");
    tokio::time::timeout(PATIENCE, watcher_conn)
        .await
        .expect("the oldest unauthenticated connection was shed")
        .unwrap();
    let (mut late, _late_conn) = proxy.h2().await;
    assert_eq!(
        proxy.get(&mut late).await,
        "0",
        "and again: the silent one goes"
    );
    read_to_close(silent).await;
    let snapshot = proxy.counters.snapshot();
    assert_eq!(
        (snapshot.connections_shed, snapshot.connections_refused),
        (2, 0)
    );
    proxy.drain().await;
}

/// Asserts that a Watch was refused with RESOURCE_EXHAUSTED naming `setting`.
fn over_budget(watch: Result<h2::RecvStream, (String, String)>, setting: &str) {
    let (code, message) = watch.expect_err("over the budget");
    assert_eq!(code, "8", "{message}");
    assert!(message.contains(setting), "{message}");
}

#[tokio::test]
async fn calls_without_a_token_have_a_budget_per_connection_and_per_process() {
    let proxy =
        start("max_unauthenticated_calls_per_connection: 2, max_unauthenticated_calls: 3").await;
    let (mut a, _a_conn) = proxy.h2().await;
    let first = proxy.watch(&mut a).await.expect("within budget");
    let _second = proxy.watch(&mut a).await.expect("within budget");
    over_budget(
        proxy.watch(&mut a).await,
        "server.max_unauthenticated_calls_per_connection",
    );
    let (mut b, _b_conn) = proxy.h2().await;
    let _third = proxy
        .watch(&mut b)
        .await
        .expect("within the process's budget");
    over_budget(
        proxy.watch(&mut b).await,
        "server.max_unauthenticated_calls;",
    );
    // Authenticated calls are not in that budget, nor is a health Check in the process's.
    assert_eq!(proxy.get(&mut b).await, "0");
    let check = proxy.health(&mut b, "Check").await;
    assert!(check.is_ok(), "a Check is answered: {check:?}");
    // A closed stream gives its place back.
    drop(first);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match proxy.watch(&mut b).await {
            Ok(_) => break,
            Err(refused) => assert!(
                tokio::time::Instant::now() < deadline,
                "the place never came back: {refused:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(proxy.counters.snapshot().unauthenticated_refused >= 2);
    proxy.drain().await;
}

#[tokio::test]
async fn a_connection_carrying_only_calls_without_a_token_is_idle() {
    let proxy = start("idle_timeout_ms: 300").await;
    let (mut send, conn) = proxy.h2().await;
    let _watch = proxy.watch(&mut send).await.expect("a Watch stream opens");
    tokio::time::timeout(PATIENCE, conn)
        .await
        .expect("the connection was closed though its Watch stream was open")
        .unwrap();
    assert_eq!(proxy.counters.snapshot().idle_closed, 1);
    proxy.drain().await;
}

#[tokio::test]
async fn stalled_bodies_are_bounded_by_the_buffer_budget_and_the_body_timeout() {
    let proxy = start("max_buffered_request_bytes: 4194304, request_body_timeout_ms: 1500").await;
    let (mut send, _conn) = proxy.h2().await;
    let mut calls = Vec::new();
    for _ in 0..8 {
        let (response, mut body) = send
            .send_request(proxy.request("Set").body(()).unwrap(), false)
            .unwrap();
        // A message that declares 2 MiB and sends 1 MiB of it, then stalls.
        let mut head = vec![0u8];
        head.extend_from_slice(&(2u32 * 1024 * 1024).to_be_bytes());
        head.extend(std::iter::repeat_n(7u8, 1024 * 1024));
        body.reserve_capacity(head.len());
        body.send_data(head.into(), false).unwrap();
        calls.push((response, body));
    }
    let mut codes = Vec::new();
    for (response, body) in calls {
        let (_, code, message) = grpc_status(response).await;
        if code == "8" {
            assert!(
                message.contains("max_buffered_request_bytes"),
                "names the limit: {message}"
            );
        }
        if code == "4" {
            assert!(message.contains("request_body_timeout_ms"), "{message}");
        }
        codes.push(code);
        drop(body);
    }
    assert!(
        codes.iter().any(|c| c == "8"),
        "some calls hit the budget: {codes:?}"
    );
    assert!(
        codes.iter().any(|c| c == "4"),
        "the ones holding the budget timed out: {codes:?}"
    );
    assert!(
        codes.iter().all(|c| c == "8" || c == "4"),
        "nothing else: {codes:?}"
    );
    let snapshot = proxy.counters.snapshot();
    assert!(snapshot.buffer_refusals >= 1 && snapshot.body_timeouts >= 1);
    assert_eq!(
        snapshot.reads_paused, snapshot.buffer_refusals,
        "each refusal paused the connection's reads"
    );
    // The budget is whole again: a 1 MiB value goes through.
    let (response, mut body) = send
        .send_request(proxy.request("Set").body(()).unwrap(), false)
        .unwrap();
    let set = SetRequest {
        key: "big".into(),
        value: vec![1u8; 1024 * 1024].into(),
        ..Default::default()
    };
    body.send_data(framed(&set).into(), true).unwrap();
    assert_eq!(grpc_status(response).await.1, "0");
    proxy.drain().await;
}

#[tokio::test]
async fn oversize_metadata_fails_its_own_call_and_the_connection_goes_on() {
    let proxy = start("").await;
    let (mut send, conn) = proxy.h2().await;
    for size in [100 * 1000, 1024 * 1024] {
        let big = "x".repeat(size);
        let (oversize, mut body) = send
            .send_request(
                proxy
                    .request("Get")
                    .header("x-big", big.as_str())
                    .body(())
                    .unwrap(),
                false,
            )
            .unwrap();
        body.send_data(framed(&GetRequest { key: "k".into() }).into(), true)
            .unwrap();
        let (status, code, message) = grpc_status(oversize).await;
        assert_eq!(
            (status, code.as_str()),
            (http::StatusCode::OK, "8"),
            "{size}: {message}"
        );
        assert!(message.contains("max_header_bytes"), "{message}");
        assert_eq!(
            proxy.get(&mut send).await,
            "0",
            "the connection still serves after a {size}-byte header"
        );
    }
    assert!(!conn.is_finished(), "the connection was not closed");
    proxy.drain().await;
}

#[tokio::test]
async fn a_second_message_in_a_unary_call_is_invalid_argument() {
    let proxy = start("").await;
    let (mut send, _conn) = proxy.h2().await;
    let (response, mut body) = send
        .send_request(proxy.request("Get").body(()).unwrap(), false)
        .unwrap();
    let mut two = framed(&GetRequest { key: "a".into() });
    two.extend(framed(&GetRequest { key: "b".into() }));
    body.send_data(two.into(), true).unwrap();
    let (_, code, message) = grpc_status(response).await;
    assert_eq!(code, "3", "{message}");
    assert!(message.contains("exactly one request message"), "{message}");
    proxy.drain().await;
}

#[tokio::test]
async fn a_non_grpc_content_type_is_415_unimplemented() {
    let proxy = start("").await;
    let (mut send, _conn) = proxy.h2().await;
    for content_type in ["application/json", "text/html"] {
        let request = Request::builder()
            .method("POST")
            .uri(format!(
                "http://{}/prism.keyvalue.v1.KeyValue/Get",
                proxy.addr
            ))
            .header("content-type", content_type)
            .header("x-prism-namespace", "m")
            .body(())
            .unwrap();
        let (response, mut body) = send.send_request(request, false).unwrap();
        body.send_data(Bytes::from_static(b"{\"key\":\"k\"}"), true)
            .unwrap();
        let (status, code, message) = grpc_status(response).await;
        assert_eq!(status, http::StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(code, "12", "{message}");
        assert!(message.contains(content_type), "{message}");
    }
    proxy.drain().await;
}

#[tokio::test]
async fn a_method_the_permission_map_does_not_know_is_refused() {
    let proxy = start("").await;
    let (mut send, _conn) = proxy.h2().await;
    for path in [
        "/prism.keyvalue.v1.KeyValue/Truncate",
        "/prism.admin.v1.Admin/DropEverything",
        "/acme.Secret/Read",
    ] {
        let request = proxy
            .request("Get")
            .uri(format!("http://{}{path}", proxy.addr))
            .body(())
            .unwrap();
        let (response, mut body) = send.send_request(request, false).unwrap();
        body.send_data(framed(&GetRequest { key: "k".into() }).into(), true)
            .unwrap();
        let (_, code, message) = grpc_status(response).await;
        assert_eq!(code, "7", "{path}: PERMISSION_DENIED, got {code} {message}");
        assert!(message.contains(path), "{message}");
    }
    proxy.drain().await;
}
