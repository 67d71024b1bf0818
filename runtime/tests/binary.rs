//! The `prism-proxy` binary: serves its config, exits 0 on SIGTERM after draining (within the bound,
//! whatever idle clients do), survives running out of file descriptors, and rejects a bad config with
//! exit 2 and a located message.

use prism_proto::client::PrismClient;
use prism_proto::keyvalue::v1::{GetRequest, SetRequest};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `prism-proxy` process on a free port, its stderr in a file.
struct ProxyProcess {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl ProxyProcess {
    /// Starts the binary on `config` (`{port}` and `{dir}` are filled in), through `sh -c
    /// "<prefix> exec proxy …"` when `prefix` is given (e.g. `ulimit -n 64;`).
    fn start(config: &str, prefix: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let path = dir.path().join("prism.yaml");
        let text = config
            .replace("{port}", &port.to_string())
            .replace("{dir}", &dir.path().display().to_string());
        std::fs::write(&path, text).unwrap();
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let bin = env!("CARGO_BIN_EXE_prism-proxy");
        let mut command = match prefix {
            Some(prefix) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("{prefix} exec \"$0\" --config \"$1\""))
                    .arg(bin)
                    .arg(&path);
                c
            }
            None => {
                let mut c = Command::new(bin);
                c.arg("--config").arg(&path);
                c
            }
        };
        let child = command
            .env("PRISM_LOG", "info")
            .stderr(Stdio::from(stderr))
            .spawn()
            .unwrap();
        Self { child, port, dir }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// A client, once the proxy listens (within 30 s).
    async fn client(&mut self) -> PrismClient {
        let started = Instant::now();
        loop {
            match PrismClient::connect(self.url()).await {
                Ok(c) => return c,
                Err(e) if started.elapsed() > Duration::from_secs(30) => {
                    let _ = self.child.kill();
                    panic!(
                        "prism-proxy did not start listening: {e}\n{}",
                        self.stderr()
                    );
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// CPU seconds the process has used (user + system, from /proc at 100 ticks a second).
    fn cpu_secs(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let rest = &stat[stat.rfind(')').unwrap() + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        ticks as f64 / 100.0
    }

    /// Sends SIGTERM and returns the exit code (panics after `limit`).
    async fn terminate(&mut self, limit: Duration) -> Option<i32> {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + limit;
        loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                return exit.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "prism-proxy did not exit within {limit:?} of SIGTERM\n{}",
                    self.stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn serves_then_exits_zero_on_sigterm() {
    let mut proxy = ProxyProcess::start(
        "listen: 127.0.0.1:{port}\nauth: { mode: none }\nbackends:\n  lite: { type: sqlite, path: {dir}/data/prism.db }\nnamespaces:\n  orders: { pattern: keyvalue, backend: lite }\n",
        None,
    );
    let client = proxy.client().await;
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
    assert_eq!(proxy.terminate(Duration::from_secs(15)).await, Some(0));
    assert!(
        proxy.dir.path().join("data/prism.db").exists(),
        "the sqlite file is created with its directory"
    );
}

const MEMSTORE: &str = "listen: 127.0.0.1:{port}\nauth: { mode: none }\nserver: { SERVER }\nbackends:\n  m: { type: memstore }\nnamespaces:\n  m: { pattern: keyvalue, backend: m }\n";

#[tokio::test]
async fn sigterm_exits_within_the_drain_bound_while_clients_hold_idle_connections() {
    let mut proxy =
        ProxyProcess::start(&MEMSTORE.replace("SERVER", "drain_timeout_ms: 2000"), None);
    let client = proxy.client().await;
    let _idle_http2 = client.namespace("m").keyvalue();
    let raw: Vec<_> = (0..5)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", proxy.port)).unwrap())
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(proxy.terminate(Duration::from_secs(20)).await, Some(0));
    drop(raw);
}

#[tokio::test]
async fn out_of_descriptors_the_proxy_backs_off_logs_and_recovers() {
    let mut proxy = ProxyProcess::start(
        &MEMSTORE.replace("SERVER", "handshake_timeout_ms: 60000"),
        Some("ulimit -n 64;"),
    );
    let client = proxy.client().await;
    drop(client);
    let held: Vec<_> = (0..120)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", proxy.port)).unwrap())
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = proxy.cpu_secs();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = proxy.cpu_secs() - before;
    assert!(
        used < 1.0,
        "the accept loop spins while descriptors are exhausted: {used:.2} CPU-s in 2 s"
    );
    assert!(
        proxy.stderr().contains("out of file descriptors"),
        "the exhaustion is logged:\n{}",
        proxy.stderr()
    );
    drop(held);
    let started = Instant::now();
    loop {
        let served = async {
            let client = PrismClient::connect(proxy.url()).await.ok()?;
            let mut kv = client.namespace("m").keyvalue();
            kv.get(GetRequest { key: "k".into() }).await.ok()
        };
        if tokio::time::timeout(Duration::from_secs(2), served)
            .await
            .ok()
            .flatten()
            .is_some()
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the proxy did not recover once descriptors were free\n{}",
            proxy.stderr()
        );
    }
    assert_eq!(proxy.terminate(Duration::from_secs(20)).await, Some(0));
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

/// Reads a stream to its end; the status it ended with (`None`: it ended without one).
async fn ending<T>(mut s: tonic::Streaming<T>) -> Option<tonic::Status> {
    loop {
        match s.message().await {
            Ok(Some(_)) => {}
            Ok(None) => return None,
            Err(e) => return Some(e),
        }
    }
}

#[tokio::test]
async fn sigterm_with_live_streams_ends_them_unavailable_and_exits_within_the_bound() {
    use prism_proto::pubsub::v1 as ps;
    use prism_proto::queue::v1 as q;
    let config = "listen: 127.0.0.1:{port}\nauth: { mode: none }\nserver: { drain_timeout_ms: 5000 }\nbackends:\n  m: { type: memstore }\nnamespaces:\n  events: { pattern: pubsub, backend: m }\n  jobs: { pattern: queue, backend: m }\n";
    let mut proxy = ProxyProcess::start(config, None);
    let client = proxy.client().await;
    let mut streams = Vec::new();
    let mut pubsub = client.namespace("events").pubsub();
    for i in 0..50 {
        let mut s = pubsub
            .subscribe(ps::SubscribeRequest {
                topic: format!("t{i}"),
            })
            .await
            .unwrap()
            .into_inner();
        s.message().await.unwrap().expect("confirmation");
        streams.push(tokio::spawn(ending(s)));
    }
    let mut queue = client.namespace("jobs").queue();
    for i in 0..10 {
        queue
            .enqueue(q::EnqueueRequest {
                queue: "work".into(),
                payload: format!("m{i}").into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    for _ in 0..10 {
        let mut s = queue
            .consume(q::ConsumeRequest {
                queue: "work".into(),
                max_in_flight: 1,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        s.message().await.unwrap().expect("registration");
        s.message().await.unwrap().expect("a delivery held unacked");
        streams.push(tokio::spawn(ending(s)));
    }
    let started = Instant::now();
    assert_eq!(proxy.terminate(Duration::from_secs(15)).await, Some(0));
    let took = started.elapsed();
    for s in streams {
        let e = s.await.unwrap().expect("each stream ends with a status");
        assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
        assert!(e.message().contains("draining"), "{}", e.message());
    }
    assert!(
        took < Duration::from_secs(5),
        "drained within the bound: {took:?}"
    );
    println!(
        "drain with 60 live streams (50 subscriptions, 10 consumers holding deliveries): {} ms",
        took.as_millis()
    );
}

#[tokio::test]
async fn json_log_and_access_log_one_object_per_line_without_payloads() {
    let mut proxy = ProxyProcess::start(
        "listen: 127.0.0.1:{port}\nlog_format: json\naccess_log: true\nauth: { mode: none }\nbackends:\n  m: { type: memstore }\nnamespaces:\n  orders: { pattern: keyvalue, backend: m }\n",
        None,
    );
    let client = proxy.client().await;
    let mut kv = client.namespace("orders").keyvalue();
    kv.set(SetRequest {
        key: "secret-key-name".into(),
        value: "secret-payload".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    drop(kv);
    drop(client);
    assert_eq!(proxy.terminate(Duration::from_secs(15)).await, Some(0));
    let log = proxy.stderr();
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["message"] == "prism-proxy listening"),
        "{log}"
    );
    let access: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["target"] == "prism::access")
        .collect();
    assert_eq!(access.len(), 1, "one line per call: {log}");
    let line = access[0];
    assert_eq!(line["namespace"], "orders");
    assert_eq!(line["method"], "prism.keyvalue.v1.KeyValue/Set");
    assert_eq!(line["code"], "OK");
    assert!(line["duration_us"].as_u64().is_some(), "{line}");
    assert!(
        line["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{line}"
    );
    assert!(
        !log.contains("secret-payload") && !log.contains("secret-key-name"),
        "keys and payloads are never logged"
    );
}

#[tokio::test]
async fn sighup_reloads_the_config_file_and_a_bad_one_is_refused() {
    let config = "listen: 127.0.0.1:{port}\nauth: { mode: none }\nbackends:\n  m: { type: memstore }\nnamespaces:\n  orders: { pattern: keyvalue, backend: m }\n";
    let mut proxy = ProxyProcess::start(config, None);
    let client = proxy.client().await;
    let path = proxy.dir.path().join("prism.yaml");
    let hup = |pid: u32| {
        let sent = Command::new("kill")
            .arg("-HUP")
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(sent.success());
    };
    // A bad file first: refused, logged with its location, and the process goes on serving.
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("namespaces:", "namespacez:")).unwrap();
    hup(proxy.child.id());
    let started = Instant::now();
    while !proxy.stderr().contains("config reload refused") {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{}",
            proxy.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(proxy.stderr().contains("prism.yaml:"), "{}", proxy.stderr());
    let mut orders = client.namespace("orders").keyvalue();
    orders.get(GetRequest { key: "k".into() }).await.unwrap();
    // Then a good one: the new namespace serves without a restart.
    std::fs::write(
        &path,
        format!("{text}  invoices: {{ pattern: keyvalue, backend: m }}\n"),
    )
    .unwrap();
    hup(proxy.child.id());
    let mut invoices = client.namespace("invoices").keyvalue();
    let started = Instant::now();
    while invoices.get(GetRequest { key: "k".into() }).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{}",
            proxy.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        proxy.stderr().contains("config reloaded"),
        "{}",
        proxy.stderr()
    );
    orders.get(GetRequest { key: "k".into() }).await.unwrap();
    drop((orders, invoices, client));
    assert_eq!(proxy.terminate(Duration::from_secs(15)).await, Some(0));
}
