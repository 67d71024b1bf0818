//! The slow-body memory probe behind `ci/slow-body-rss.sh`: many HTTP/2 streams each declare a large
//! gRPC message and send all of it but the last bytes, never ending; the probe samples the proxy's RSS
//! while they stall and 3 s and 15 s after the connections close, and counts how the proxy answered.
//!
//! `cargo run --example slow_body -- ADDR PID [CONNECTIONS] [STREAMS] [DECLARED_BYTES] [HOLD_SECS]`

mod probe;

use bytes::Bytes;
use probe::rss_mib;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Opens `streams` stalled calls on one connection; returns the send halves (kept open) and the
/// tasks that wait for each answer's grpc-status.
async fn attack(
    addr: &str,
    streams: usize,
    declared: u32,
) -> (
    Vec<h2::SendStream<Bytes>>,
    Vec<tokio::task::JoinHandle<String>>,
) {
    let (mut send, _conn) = probe::connect(addr, 1 << 20).await.expect("connect");
    let mut bodies = Vec::new();
    let mut answers = Vec::new();
    let mut head = vec![0u8];
    head.extend_from_slice(&declared.to_be_bytes());
    let payload = Bytes::from(vec![7u8; declared as usize - 100]);
    for _ in 0..streams {
        let request = probe::request(addr, "/prism.keyvalue.v1.KeyValue/Get", "m");
        send = send.ready().await.expect("stream slot");
        let Ok((response, mut body)) = send.send_request(request, false) else {
            break;
        };
        let _ = body.send_data(Bytes::from(head.clone()), false);
        let _ = body.send_data(payload.clone(), false);
        bodies.push(body);
        answers.push(tokio::spawn(async move {
            match response.await {
                Ok(r) => r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .map_or_else(|| "trailers".into(), |c| format!("grpc-status {c}")),
                Err(e) => format!("reset: {e}"),
            }
        }));
    }
    (bodies, answers)
}

#[tokio::main]
async fn main() {
    let addr: String = probe::arg(0, "127.0.0.1:8980", "ADDR");
    let pid: u32 = probe::arg(1, "0", "PID");
    let connections: usize = probe::arg(2, "3", "CONNECTIONS");
    let streams: usize = probe::arg(3, "256", "STREAMS");
    let declared: u32 = probe::arg(4, "5242880", "DECLARED_BYTES");
    let hold = Duration::from_secs(probe::arg(5, "10", "HOLD_SECS"));

    let baseline = rss_mib(pid);
    let mut held = Vec::new();
    let mut answers = Vec::new();
    for _ in 0..connections {
        let (b, a) = attack(&addr, streams, declared).await;
        held.push(b);
        answers.extend(a);
    }
    let started = Instant::now();
    let mut peak = baseline;
    while started.elapsed() < hold {
        peak = peak.max(rss_mib(pid));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for a in answers {
        let outcome = if a.is_finished() {
            a.await.unwrap_or_else(|e| e.to_string())
        } else {
            a.abort();
            "no answer yet".into()
        };
        *outcomes.entry(outcome).or_default() += 1;
    }
    drop(held);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_mib(pid);
    tokio::time::sleep(Duration::from_secs(12)).await;
    let later = rss_mib(pid);
    println!(
        "slow-body: {connections} connections x {streams} streams, {declared} bytes declared, {} sent each",
        declared - 100
    );
    println!(
        "slow-body: RSS baseline {baseline:.1} MiB, peak {peak:.1} MiB, 3 s after close {after:.1} MiB, 15 s after close {later:.1} MiB"
    );
    for (outcome, n) in outcomes {
        println!("slow-body: {n} streams: {outcome}");
    }
}
