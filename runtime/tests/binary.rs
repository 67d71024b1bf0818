//! The `prism-proxy` binary: serves its config, exits 0 on SIGTERM after draining, and rejects a bad
//! config with exit 2 and a located message.

use prism_proto::client::PrismClient;
use prism_proto::keyvalue::v1::{GetRequest, SetRequest};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn serves_then_exits_zero_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("prism.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\nauth: {{ mode: none }}\nbackends:\n  lite: {{ type: sqlite, path: {} }}\nnamespaces:\n  orders: {{ pattern: keyvalue, backend: lite }}\n",
            dir.path().join("data/prism.db").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_prism-proxy"))
        .arg("--config")
        .arg(&config)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let client = loop {
        match PrismClient::connect(url.clone()).await {
            Ok(c) => break c,
            Err(e) if started.elapsed() > Duration::from_secs(30) => {
                let _ = child.kill();
                panic!("prism-proxy did not start listening: {e}");
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let mut kv = client.namespace("orders").keyvalue();
    kv.set(SetRequest {
        key: "k".into(),
        value: "v".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let got = kv
        .get(GetRequest { key: "k".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(&got.value[..], b"v");
    drop(kv);
    drop(client);

    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("prism-proxy did not exit within 15 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(exit.code(), Some(0));
    assert!(
        dir.path().join("data/prism.db").exists(),
        "the sqlite file is created with its directory"
    );
}

#[test]
fn bad_config_exits_2_with_location() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.yaml");
    std::fs::write(
        &config,
        "auth: { mode: none }\nbackends:\n  m: { type: memstore, size: 3 }\nnamespaces: {}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_prism-proxy"))
        .arg("--config")
        .arg(&config)
        .arg("--check")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "{}:3:3: unknown field `size` (this section takes no settings)",
        config.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
}
