//! Redis and PostgreSQL for real, where a scenario cannot say it: what the proxy writes is in the
//! server (read back with the native client), a schema dropped behind the proxy's back comes back,
//! and a frozen or dead backend meets a proxy of its own with a 1 s call timeout and callers with
//! deadlines (scenarios run on the harness's proxy, whose settings they cannot change). Outages
//! and recovery as such are scenarios: `scenarios/faults/`.

use prism_conform::provision::{Environment, Mode, ServerHandle, start_environment};
use prism_proto::client::PrismClient;
use prism_proto::keyvalue::v1::{DeleteRequest, GetRequest, SetRequest};
use std::time::{Duration, Instant};
use tonic::Code;

fn required(backend: &str) -> bool {
    std::env::var("PRISM_REQUIRE_BACKENDS")
        .unwrap_or_default()
        .split(',')
        .any(|b| b.trim() == backend || b.trim() == "all")
}

async fn environment(backend: &str) -> Option<Environment> {
    match start_environment(&[backend.to_string()], Mode::Process, &Default::default()).await {
        Ok(env) => Some(env),
        Err(e) if !required(backend) => {
            eprintln!(
                "SKIPPED: {backend} cannot be started here ({e}); set PRISM_REQUIRE_BACKENDS={backend} to make this fatal"
            );
            None
        }
        Err(e) => panic!("{backend} is required but cannot be started: {e}"),
    }
}

fn server_url(env: &Environment) -> String {
    match &env.backends[0].config {
        prism_runtime::backends::BackendConfig::Redis(c) => c.url.expose().to_string(),
        prism_runtime::backends::BackendConfig::Postgres(c) => c.url.expose().to_string(),
        other => panic!("not a networked backend: {other:?}"),
    }
}

fn with_server(env: &Environment, f: impl FnOnce(&mut ServerHandle) -> Result<(), String>) {
    let server = env.backends[0]
        .server
        .clone()
        .expect("the harness owns this server");
    let mut guard = server.lock().unwrap();
    f(&mut guard).unwrap();
}

/// A client on `ns` carrying the run's default token (read, write, admin on the run's namespaces).
async fn kv(env: &Environment, ns: &str) -> prism_proto::client::KeyValue {
    let token = env.targets[0].token.clone().expect("runs authenticate");
    PrismClient::connect(env.proxy.url.clone())
        .await
        .unwrap()
        .with_token(&token)
        .unwrap()
        .namespace(ns)
        .keyvalue()
}

fn set(key: &str, value: &[u8], ttl_ms: u64) -> SetRequest {
    SetRequest {
        key: key.into(),
        value: value.to_vec().into(),
        ttl_ms,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_holds_what_the_proxy_wrote() {
    let Some(env) = environment("redis").await else {
        return;
    };
    let mut a = kv(&env, "conform-redis").await;
    let mut b = kv(&env, "conform-redis-other").await;
    let version = a
        .set(set("native/k", b"\x00bytes\xff", 60_000))
        .await
        .unwrap()
        .into_inner()
        .version;
    b.set(set("native/k", b"other", 0)).await.unwrap();

    let client = redis::Client::open(server_url(&env)).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let (value, stored_version): (Vec<u8>, u64) = redis::cmd("HMGET")
        .arg("prism-conform:conform-redis:d:native/k")
        .arg("v")
        .arg("n")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(value, b"\x00bytes\xff");
    assert_eq!(stored_version, version);
    let pttl: i64 = redis::cmd("PTTL")
        .arg("prism-conform:conform-redis:d:native/k")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(pttl > 0 && pttl <= 60_000, "{pttl}");
    let other: Vec<u8> = redis::cmd("HGET")
        .arg("prism-conform:conform-redis-other:d:native/k")
        .arg("v")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(other, b"other");

    a.delete(DeleteRequest {
        key: "native/k".into(),
    })
    .await
    .unwrap();
    let exists: i64 = redis::cmd("EXISTS")
        .arg("prism-conform:conform-redis:d:native/k")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 0);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_holds_what_the_proxy_wrote() {
    use sqlx::Row;
    let Some(env) = environment("postgres").await else {
        return;
    };
    let mut a = kv(&env, "conform-postgres").await;
    let version = a
        .set(set("native/k", b"\x00bytes\xff", 60_000))
        .await
        .unwrap()
        .into_inner()
        .version;

    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&server_url(&env))
        .await
        .unwrap();
    let row = sqlx::query("SELECT value, version, expires_at > now() AS live FROM prism_kv WHERE ns = $1 AND key = $2")
        .bind("conform-postgres")
        .bind("native/k")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(row.get::<Vec<u8>, _>("value"), b"\x00bytes\xff");
    assert_eq!(row.get::<i64, _>("version") as u64, version);
    assert!(row.get::<bool, _>("live"));
    let others: i64 =
        sqlx::query_scalar("SELECT count(*) FROM prism_kv WHERE ns <> $1 AND key = $2")
            .bind("conform-postgres")
            .bind("native/k")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(others, 0);
    pool.close().await;
    env.stop().await;
}

/// Polls `get` until it succeeds (the backend is back), within `limit`.
async fn recovers(
    kv: &mut prism_proto::client::KeyValue,
    key: &str,
    limit: Duration,
) -> prism_proto::keyvalue::v1::GetResponse {
    let started = Instant::now();
    loop {
        match kv.get(GetRequest { key: key.into() }).await {
            Ok(r) => return r.into_inner(),
            Err(s) if started.elapsed() < limit => {
                assert_eq!(s.code(), Code::Unavailable, "while recovering: {s:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(s) => panic!("no recovery within {limit:?}: {s:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_index_sweep_drops_expired_keys() {
    use prism_runtime::backends::redis::{RedisConfig, RedisStore};
    use prism_runtime::patterns::keyvalue::store::KvBasic;
    let Some(env) = environment("redis").await else {
        return;
    };
    let config = RedisConfig {
        url: prism_runtime::secret::SecretUrl::new(server_url(&env)),
        key_prefix: "sweep-test".into(),
        connect_timeout_ms: 2000,
        response_timeout_ms: 5000,
        retention_hours: 1,
        claim_idle_secs: 600,
    };
    let store = RedisStore::open(&config).await.unwrap();
    store
        .set("ns", "short", "v".into(), Some(Duration::from_millis(20)))
        .await
        .unwrap();
    store.set("ns", "long", "v".into(), None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(store.sweep_index("ns").await.unwrap(), 1);
    let client = redis::Client::open(server_url(&env)).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg("sweep-test:ns:i")
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(members, ["long"]);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_recreates_a_lost_schema() {
    use prism_runtime::backends::postgres::{PoolConfig, PostgresConfig, PostgresStore};
    use prism_runtime::patterns::keyvalue::store::{KvBasic, StoreError};
    let Some(env) = environment("postgres").await else {
        return;
    };
    let config = PostgresConfig {
        url: prism_runtime::secret::SecretUrl::new(server_url(&env)),
        pool: PoolConfig::default(),
        purge_interval_secs: 1,
        claim_idle_secs: None,
        pooler: Default::default(),
        listen_url: None,
    };
    let store = PostgresStore::open(&config, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    store.spawn_purger();
    store.set("ns", "k", "v".into(), None).await.unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&server_url(&env))
        .await
        .unwrap();
    sqlx::query("DROP TABLE prism_kv")
        .execute(&pool)
        .await
        .unwrap();
    let err = store.get("ns", "k").await.unwrap_err();
    assert!(
        matches!(err, StoreError::Unavailable(_)),
        "a lost schema is UNAVAILABLE, not INTERNAL: {err}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.set("ns", "k", "again".into(), None).await {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the schema was not recreated: {e}"),
        }
    }
    assert_eq!(
        &store.get("ns", "k").await.unwrap().unwrap().value[..],
        b"again"
    );
    store.close().await;
    pool.close().await;
    env.stop().await;
}

/// A proxy of its own on `url` (PostgreSQL or Redis) with a 1 s backend call timeout, auth off.
async fn proxy_on(
    kind: &str,
    url: &str,
) -> (prism_proto::client::KeyValue, tokio::task::JoinHandle<()>) {
    use prism_runtime::config::ProxyConfig;
    use prism_runtime::server::Proxy;
    let yaml = format!(
        "listen: 127.0.0.1:0\nauth: {{ mode: none }}\nbackend_calls: {{ timeout_ms: 1000, retry_interval_ms: 100 }}\nbackends:\n  db: {{ type: {kind}, url: \"{url}\" }}\nnamespaces:\n  stall: {{ pattern: keyvalue, backend: db }}\n"
    );
    let config = ProxyConfig::parse(&yaml, std::path::Path::new("stall.yaml")).unwrap();
    let proxy = Proxy::open(&config).await.unwrap();
    let (listener, addr) = Proxy::bind(config.listen).await.unwrap();
    let task = tokio::spawn(async move {
        proxy.serve(listener, std::future::pending()).await.unwrap();
    });
    let kv = PrismClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
        .namespace("stall")
        .keyvalue();
    (kv, task)
}

fn get_within(key: &str, deadline: Option<Duration>) -> tonic::Request<GetRequest> {
    let mut request = tonic::Request::new(GetRequest { key: key.into() });
    if let Some(d) = deadline {
        request.set_timeout(d);
    }
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_or_dead_postgres_is_unavailable_within_the_call_timeout_and_fails_fast() {
    let Some(env) = environment("postgres").await else {
        return;
    };
    let (mut kv, proxy) = proxy_on("postgres", &server_url(&env)).await;
    kv.set(set("stall/k", b"v", 0)).await.unwrap();

    // Frozen: the in-flight call is cut at the 1 s call timeout instead of hanging.
    with_server(&env, ServerHandle::pause);
    let started = Instant::now();
    let err = kv.get(get_within("stall/k", None)).await.unwrap_err();
    let frozen_ms = started.elapsed().as_millis();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains("did not answer within 1000 ms"),
        "{}",
        err.message()
    );
    // Known down: a caller with a 300 ms deadline gets UNAVAILABLE, not DEADLINE_EXCEEDED.
    let err = kv
        .get(get_within("stall/k", Some(Duration::from_millis(300))))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    with_server(&env, ServerHandle::resume);
    let started = Instant::now();
    assert_eq!(
        &recovers(&mut kv, "stall/k", Duration::from_secs(20))
            .await
            .value[..],
        b"v"
    );
    let thawed_ms = started.elapsed().as_millis();

    // Dead: calls with deadlines shorter than the pool's 5 s acquire timeout soon see UNAVAILABLE.
    with_server(&env, ServerHandle::kill);
    let started = Instant::now();
    let first_unavailable = loop {
        let err = kv
            .get(get_within("stall/k", Some(Duration::from_millis(500))))
            .await
            .unwrap_err();
        match err.code() {
            Code::Unavailable => break started.elapsed().as_millis(),
            // The client's own timer may fire before the proxy's DEADLINE_EXCEEDED arrives.
            Code::DeadlineExceeded | Code::Cancelled
                if started.elapsed() < Duration::from_secs(20) => {}
            _ => panic!("a dead backend must become UNAVAILABLE: {err:?}"),
        }
    };
    with_server(&env, ServerHandle::start);
    let started = Instant::now();
    assert_eq!(
        &recovers(&mut kv, "stall/k", Duration::from_secs(30))
            .await
            .value[..],
        b"v"
    );
    eprintln!(
        "postgres: frozen → UNAVAILABLE after {frozen_ms} ms; thawed → served after {thawed_ms} ms; killed → UNAVAILABLE after {first_unavailable} ms; restarted → served after {} ms",
        started.elapsed().as_millis()
    );
    proxy.abort();
    env.stop().await;
}

/// The first call after the server restarted while the proxy was idle succeeds, for a proxy of
/// its own with one KeyValue namespace (nothing else of the proxy's uses the connection meanwhile):
/// after a restart, and after an outage longer than the connection's own reconnect attempts.
async fn first_call_after_a_quiet_restart_succeeds(backend: &str) {
    let Some(env) = environment(backend).await else {
        return;
    };
    let (mut kv, proxy) = proxy_on(backend, &server_url(&env)).await;
    kv.set(set("quiet/k", b"v", 0)).await.unwrap();
    for outage in [Duration::ZERO, Duration::from_secs(4)] {
        with_server(&env, ServerHandle::kill);
        tokio::time::sleep(outage).await;
        with_server(&env, ServerHandle::start);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let first = kv.get(GetRequest {
            key: "quiet/k".into(),
        });
        // Found or not (a killed Redis without an append-only file forgets), but answered.
        first.await.unwrap_or_else(|s| {
            panic!("{backend}: the first call after a {outage:?} outage, 0.5 s after the start, failed: {s:?}")
        });
        kv.set(set("quiet/k", b"v", 0)).await.unwrap();
    }
    proxy.abort();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_the_first_call_after_a_quiet_restart_succeeds() {
    first_call_after_a_quiet_restart_succeeds("redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_first_call_after_a_quiet_restart_succeeds() {
    first_call_after_a_quiet_restart_succeeds("postgres").await;
}

fn redis_config(url: String) -> prism_runtime::backends::config::RedisConfig {
    prism_runtime::backends::config::RedisConfig {
        url: prism_runtime::secret::SecretUrl::new(url),
        key_prefix: "native-test".into(),
        connect_timeout_ms: 2000,
        response_timeout_ms: 5000,
        retention_hours: 1,
        claim_idle_secs: 600,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_declares_durability_only_when_its_persistence_gives_it() {
    use prism_conform::provision::process::ServerProcess;
    use prism_runtime::backends::redis::RedisStore;
    use prism_runtime::patterns::capability::Capability;
    use prism_runtime::patterns::keyvalue::store::KvStore;
    // The harness's conformance Redis: appendonly yes, appendfsync always.
    let Some(env) = environment("redis").await else {
        return;
    };
    for t in &env.targets {
        let durable = match t.pattern.name() {
            "keyvalue" => Capability::KvDurable,
            "queue" => Capability::QueueDurable,
            _ => continue,
        };
        assert!(
            t.capabilities.contains(&durable),
            "{}: {:?}",
            t.pattern,
            t.capabilities
        );
    }
    env.stop().await;
    // A Redis without persistence: nothing is declared durable.
    let server = tokio::task::spawn_blocking(|| ServerProcess::start_redis(false))
        .await
        .unwrap()
        .expect("redis-server starts");
    let store = RedisStore::open(&redis_config(server.url())).await.unwrap();
    assert!(!store.durable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_node_is_refused_at_start_naming_why() {
    use prism_runtime::backends::redis::RedisStore;
    let Some(bin) = prism_conform::provision::process::redis_bin_dir() else {
        assert!(!required("redis"), "redis-server is required but missing");
        eprintln!("SKIPPED: no redis-server here");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut node = std::process::Command::new(bin.join("redis-server"))
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args([
            "--cluster-enabled",
            "yes",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--cluster-config-file")
        .arg(dir.path().join("nodes.conf"))
        .arg("--dir")
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the node did not listen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused = RedisStore::open(&redis_config(format!("redis://127.0.0.1:{port}"))).await;
    let _ = node.kill();
    let _ = node.wait();
    let error = refused.expect_err("a cluster node is refused").to_string();
    assert!(error.contains("Redis Cluster"), "{error}");
}
