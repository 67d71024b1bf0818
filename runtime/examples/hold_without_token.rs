//! The probe of connections and streams held without a token, behind `ci/hostile-probes.sh`: it
//! opens CONNECTIONS HTTP/2 connections and on each up to STREAMS health `Watch` streams (calls
//! anyone may make), holds them, and reports how many streams the proxy let open, its RSS, whether a
//! client that makes an authenticated call still gets in, and how many of the held connections are
//! still open after HOLD_SECS (the config's idle timeout should be shorter).
//!
//! `cargo run --example hold_without_token -- ADDR PID [CONNECTIONS] [STREAMS] [HOLD_SECS]`

mod probe;

use probe::rss_mib;
use std::time::Duration;

#[tokio::main]
async fn main() {
    let addr: String = probe::arg(0, "127.0.0.1:8980", "ADDR");
    let pid: u32 = probe::arg(1, "0", "PID");
    let connections: usize = probe::arg(2, "200", "CONNECTIONS");
    let streams: usize = probe::arg(3, "100", "STREAMS");
    let hold = Duration::from_secs(probe::arg(4, "10", "HOLD_SECS"));

    let baseline = rss_mib(pid);
    let (mut opened, mut refused, mut not_connected) = (0usize, 0usize, 0usize);
    let mut held = Vec::new();
    for _ in 0..connections {
        let Some((mut send, task)) = probe::connect(&addr, 65_535).await else {
            not_connected += 1;
            continue;
        };
        let mut bodies = Vec::new();
        for _ in 0..streams {
            send = match send.clone().ready().await {
                Ok(ready) => ready,
                Err(e) => {
                    eprintln!("hold-without-token: connection failed: {e}");
                    break;
                }
            };
            let request = probe::request(&addr, "/grpc.health.v1.Health/Watch", "");
            let (response, mut body) = match send.send_request(request, false) {
                Ok(sent) => sent,
                Err(e) => {
                    eprintln!("hold-without-token: stream refused: {e}");
                    break;
                }
            };
            let _ = body.send_data(probe::framed(&[]), true);
            match tokio::time::timeout(Duration::from_secs(5), response).await {
                Ok(Ok(r)) if probe::refusal(&r).is_none() => {
                    opened += 1;
                    bodies.push(r.into_body());
                }
                Ok(Ok(_)) => refused += 1,
                Ok(Err(e)) => {
                    eprintln!("hold-without-token: stream failed: {e}");
                    break;
                }
                Err(_) => {
                    eprintln!("hold-without-token: no answer in 5 s");
                    break;
                }
            }
        }
        held.push((task, send, bodies));
    }
    let peak = rss_mib(pid);
    let newcomer = match probe::connect(&addr, 65_535).await {
        None => "could not connect".to_string(),
        Some((send, _task)) => {
            let call = async {
                let mut send = send.ready().await.ok()?;
                let request = probe::request(&addr, "/prism.keyvalue.v1.KeyValue/Get", "m");
                let (response, mut body) = send.send_request(request, false).ok()?;
                body.send_data(probe::framed(b"\x0a\x01k"), true).ok()?;
                let response = response.await.ok()?;
                Some(
                    probe::refusal(&response)
                        .map_or("answered".to_string(), |c| format!("grpc-status {c}")),
                )
            };
            match tokio::time::timeout(Duration::from_secs(5), call).await {
                Ok(Some(outcome)) => outcome,
                Ok(None) => "connection closed".into(),
                Err(_) => "no answer in 5 s".into(),
            }
        }
    };
    tokio::time::sleep(hold).await;
    let still_open = held
        .iter()
        .filter(|(task, _, _)| !task.is_finished())
        .count();
    println!(
        "hold-without-token: {connections} connections x {streams} Watch streams: {opened} opened, {refused} refused, {not_connected} connections not accepted"
    );
    println!(
        "hold-without-token: RSS baseline {baseline:.1} MiB, with the streams held {peak:.1} MiB"
    );
    println!("hold-without-token: a newcomer's Get while they are held: {newcomer}");
    println!(
        "hold-without-token: {still_open} of {} held connections still open after {} s",
        held.len(),
        hold.as_secs()
    );
}
