//! Hostile requests through the real proxy (proptest): arbitrary keys, values, TTLs, versions, scan
//! limits and cursors, and batches. The proxy never panics or fails internally: every answer is OK or
//! a client-error status, and every INVALID_ARGUMENT / RESOURCE_EXHAUSTED names the offending field.

use prism_proto::client::{KeyValue, PrismClient};
use prism_proto::keyvalue::v1::*;
use prism_runtime::config::ProxyConfig;
use prism_runtime::server::Proxy;
use proptest::prelude::*;
use std::path::Path;
use std::sync::OnceLock;
use tonic::Code;

struct Env {
    runtime: tokio::runtime::Runtime,
    clients: Vec<KeyValue>,
    _dir: tempfile::TempDir,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let yaml = format!(
            "listen: 127.0.0.1:0\nauth: {{ mode: none }}\nbackends:\n  m: {{ type: memstore }}\n  s: {{ type: sqlite, path: {} }}\nnamespaces:\n  mem: {{ pattern: keyvalue, backend: m }}\n  lite: {{ pattern: keyvalue, backend: s }}\n",
            dir.path().join("h.db").display()
        );
        let clients = runtime.block_on(async {
            let config = ProxyConfig::parse(&yaml, Path::new("hostile.yaml")).unwrap();
            let proxy = Proxy::open(&config).await.unwrap();
            let (listener, addr) = Proxy::bind(config.listen).await.unwrap();
            tokio::spawn(async move { proxy.serve(listener, std::future::pending()).await.unwrap() });
            let client = PrismClient::connect(format!("http://{addr}")).await.unwrap();
            vec![client.namespace("mem").keyvalue(), client.namespace("lite").keyvalue()]
        });
        Env { runtime, clients, _dir: dir }
    })
}

const FIELDS: [&str; 9] = [
    "key",
    "value",
    "ttl_ms",
    "prefix",
    "cursor",
    "limit",
    "keys",
    "entries",
    "if_absent",
];

fn judge<T: std::fmt::Debug>(
    what: &str,
    result: Result<tonic::Response<T>, tonic::Status>,
) -> Result<(), TestCaseError> {
    let Err(status) = result else { return Ok(()) };
    let allowed = [
        Code::InvalidArgument,
        Code::ResourceExhausted,
        Code::AlreadyExists,
        Code::Aborted,
    ];
    prop_assert!(
        allowed.contains(&status.code()),
        "{what}: unexpected {:?}: {}",
        status.code(),
        status.message()
    );
    if matches!(
        status.code(),
        Code::InvalidArgument | Code::ResourceExhausted
    ) {
        prop_assert!(
            FIELDS.iter().any(|f| status.message().contains(f)),
            "{what}: the error names no field: {}",
            status.message()
        );
    }
    Ok(())
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "\\PC{0,40}",
        "[\\x00-\\x7f]{0,20}",
        (0usize..1200).prop_map(|n| "k".repeat(n)),
        Just("../..".to_string()),
        Just("a\0b".to_string()),
    ]
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        prop::sample::select(vec![
            4 * 1024 * 1024usize,
            4 * 1024 * 1024 + 1,
            5 * 1024 * 1024
        ])
        .prop_map(|n| vec![7u8; n]),
    ]
}

fn ttl() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        1u64..100_000,
        Just(u64::MAX),
        Just(u64::MAX / 2),
        any::<u64>()
    ]
}

#[derive(Clone)]
enum Call {
    Set(SetRequest),
    Get(String),
    Expire(String, u64),
    Scan(ScanRequest),
    BatchSet(Vec<BatchSetEntry>),
    BatchGet(Vec<String>),
    BatchDelete(Vec<String>),
}

fn short(s: &str) -> String {
    if s.len() > 40 {
        format!(
            "{:?}…({} bytes)",
            s.chars().take(20).collect::<String>(),
            s.len()
        )
    } else {
        format!("{s:?}")
    }
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Call::Set(r) => write!(
                f,
                "Set(key {}, value {} bytes, ttl_ms {}, if_absent {}, if_version {:?})",
                short(&r.key),
                r.value.len(),
                r.ttl_ms,
                r.if_absent,
                r.if_version
            ),
            Call::Get(k) => write!(f, "Get({})", short(k)),
            Call::Expire(k, t) => write!(f, "Expire({}, {t})", short(k)),
            Call::Scan(r) => write!(
                f,
                "Scan(prefix {}, cursor {}, limit {}, keys_only {})",
                short(&r.prefix),
                short(&r.cursor),
                r.limit,
                r.keys_only
            ),
            Call::BatchSet(e) => write!(
                f,
                "BatchSet({} entries: {:?})",
                e.len(),
                e.iter()
                    .map(|e| (short(&e.key), e.value.len(), e.ttl_ms))
                    .collect::<Vec<_>>()
            ),
            Call::BatchGet(k) => write!(
                f,
                "BatchGet({:?})",
                k.iter().take(5).map(|k| short(k)).collect::<Vec<_>>()
            ),
            Call::BatchDelete(k) => write!(
                f,
                "BatchDelete({} keys: {:?})",
                k.len(),
                k.iter().take(5).map(|k| short(k)).collect::<Vec<_>>()
            ),
        }
    }
}

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        (
            key(),
            value(),
            ttl(),
            any::<bool>(),
            prop::option::of(any::<u64>())
        )
            .prop_map(|(key, value, ttl_ms, if_absent, if_version)| {
                Call::Set(SetRequest {
                    key,
                    value: value.into(),
                    ttl_ms,
                    if_absent,
                    if_version,
                })
            }),
        key().prop_map(Call::Get),
        (key(), ttl()).prop_map(|(k, t)| Call::Expire(k, t)),
        (key(), "\\PC{0,30}", any::<u32>(), any::<bool>()).prop_map(
            |(prefix, cursor, limit, keys_only)| {
                Call::Scan(ScanRequest {
                    prefix,
                    cursor,
                    limit,
                    keys_only,
                })
            }
        ),
        prop::collection::vec(
            (key(), prop::collection::vec(any::<u8>(), 0..8), ttl()),
            0..5
        )
        .prop_map(|e| {
            Call::BatchSet(
                e.into_iter()
                    .map(|(key, v, ttl_ms)| BatchSetEntry {
                        key,
                        value: v.into(),
                        ttl_ms,
                    })
                    .collect(),
            )
        }),
        prop::collection::vec(key(), 0..5).prop_map(Call::BatchGet),
        prop_oneof![
            prop::collection::vec(key(), 0..5),
            Just(vec!["x".to_string(); 1001])
        ]
        .prop_map(Call::BatchDelete),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn hostile_requests_get_client_errors_naming_the_field(calls in prop::collection::vec(call(), 1..6)) {
        let env = env();
        env.runtime.block_on(async {
            for mut kv in env.clients.clone() {
                for c in &calls {
                    let what = format!("{c:?}").chars().take(120).collect::<String>();
                    match c.clone() {
                        Call::Set(r) => judge(&what, kv.set(r).await)?,
                        Call::Get(key) => judge(&what, kv.get(GetRequest { key }).await)?,
                        Call::Expire(key, ttl_ms) => judge(&what, kv.expire(ExpireRequest { key, ttl_ms }).await)?,
                        Call::Scan(r) => judge(&what, kv.scan(r).await)?,
                        Call::BatchSet(entries) => judge(&what, kv.batch_set(BatchSetRequest { entries }).await)?,
                        Call::BatchGet(keys) => judge(&what, kv.batch_get(BatchGetRequest { keys }).await)?,
                        Call::BatchDelete(keys) => judge(&what, kv.batch_delete(BatchDeleteRequest { keys }).await)?,
                    }
                }
            }
            Ok::<(), TestCaseError>(())
        })?;
    }
}
