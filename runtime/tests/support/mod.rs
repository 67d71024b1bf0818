//! What the runtime's integration tests share: a proxy served in-process from config text.
// Each test crate compiles this module and uses a part of it.
#![allow(dead_code)]

use prism_runtime::config::ProxyConfig;
use prism_runtime::server::Proxy;
use prism_runtime::server::counters::TransportCounters;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::oneshot;

/// A proxy serving on an ephemeral loopback port until `stop` is sent (or dropped).
pub struct Served {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Starts the drain.
    pub stop: oneshot::Sender<()>,
    /// The server task; it ends when the drain does.
    pub task: tokio::task::JoinHandle<()>,
    /// The transport's counters.
    pub counters: Arc<TransportCounters>,
    /// Where the admin HTTP listener listens, when the config has `admin_listen`.
    pub admin: Option<SocketAddr>,
}

/// Parses `yaml` (its `listen` should be `127.0.0.1:0`) and serves it.
pub async fn serve(yaml: &str) -> Served {
    let config = ProxyConfig::parse(yaml, Path::new("test.yaml")).unwrap();
    start(Proxy::open(&config).await.unwrap(), &config).await
}

/// Serves the config in `file`, which SIGHUP-free reloads (Admin `ReloadConfig`) read again.
pub async fn serve_file(file: &Path) -> Served {
    let config = ProxyConfig::load(file).unwrap();
    let proxy = Proxy::open(&config)
        .await
        .unwrap()
        .with_config_file(file.to_path_buf());
    start(proxy, &config).await
}

async fn start(mut proxy: Proxy, config: &ProxyConfig) -> Served {
    let counters = proxy.counters();
    let admin = proxy.bind_admin().await.unwrap();
    let (listener, addr) = Proxy::bind(config.listen).await.unwrap();
    let (stop, rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        proxy
            .serve(listener, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    Served {
        addr,
        stop,
        task,
        counters,
        admin,
    }
}

/// An HTTP/1.1 answer: status, content type and body.
pub struct HttpAnswer {
    /// The status code.
    pub status: u16,
    /// The `content-type` header.
    pub content_type: String,
    /// The body.
    pub body: String,
}

/// `METHOD path` on `addr` over a fresh HTTP/1.1 connection, with an `Accept` header when given.
pub async fn http(addr: SocketAddr, method: &str, path: &str, accept: Option<&str>) -> HttpAnswer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    HttpAnswer {
        status,
        content_type,
        body: body.to_string(),
    }
}
