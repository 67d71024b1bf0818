//! What the memory probes under `runtime/examples/` share: the proxy's resident memory, raw HTTP/2
//! connections (the `h2` client, so a probe can send what gRPC libraries would not, or read nothing),
//! and gRPC requests and their status.
// Each probe compiles this module and uses a part of it.
#![allow(dead_code)]

use bytes::Bytes;
use tokio::net::TcpStream;

/// Resident memory of `pid` in MiB (`VmRSS` from /proc).
pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// An HTTP/2 connection to `addr` whose streams start with a receive window of `window` bytes; the
/// returned task ends when the connection does.
pub async fn connect(
    addr: &str,
    window: u32,
) -> Option<(h2::client::SendRequest<Bytes>, tokio::task::JoinHandle<()>)> {
    let tcp = TcpStream::connect(addr).await.ok()?;
    let (send, conn) = h2::client::Builder::new()
        .initial_window_size(window)
        .handshake(tcp)
        .await
        .ok()?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    Some((send.ready().await.ok()?, task))
}

/// A gRPC request for `/service/method` on namespace `ns` (no token).
pub fn request(addr: &str, path: &str, ns: &str) -> http::Request<()> {
    http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("x-prism-namespace", ns)
        .body(())
        .expect("request")
}

/// One gRPC length-prefixed message.
pub fn framed(message: &[u8]) -> Bytes {
    let mut out = vec![0];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out.into()
}

/// The grpc-status a response opened with: `Some` when it was a refusal (trailers-only), `None`
/// when the stream opened.
pub fn refusal(response: &http::Response<h2::RecvStream>) -> Option<String> {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The `i`th command-line argument parsed as `T`, or `default`; exits naming `what` when it does
/// not parse.
pub fn arg<T: std::str::FromStr>(i: usize, default: &str, what: &str) -> T {
    let text = std::env::args()
        .nth(i + 1)
        .unwrap_or_else(|| default.into());
    text.parse().unwrap_or_else(|_| {
        eprintln!("{what}: cannot read {text:?}");
        std::process::exit(2)
    })
}
