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
}

/// Parses `yaml` (its `listen` should be `127.0.0.1:0`) and serves it.
pub async fn serve(yaml: &str) -> Served {
    let config = ProxyConfig::parse(yaml, Path::new("test.yaml")).unwrap();
    let proxy = Proxy::open(&config).await.unwrap();
    let counters = proxy.counters();
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
    }
}
