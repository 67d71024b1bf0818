//! Config loading: the shipped example loads, and mistakes are reported with file:line:column.

use prism_runtime::backends::BackendConfig;
use prism_runtime::config::{ConfigError, ProxyConfig};
use prism_runtime::patterns::capability::Capability;
use rstest::rstest;
use std::path::Path;

#[test]
fn example_config_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/prism.yaml");
    let config = ProxyConfig::load(&path).expect("example config is valid");
    assert_eq!(config.listen.to_string(), "127.0.0.1:8980");
    assert_eq!(
        config.backends["mem"],
        BackendConfig::Memstore(Default::default())
    );
    assert!(
        matches!(&config.backends["lite"], BackendConfig::Sqlite(c) if c.path == "./data/prism.db")
    );
    assert_eq!(config.namespaces.len(), 5);
    assert_eq!(
        config.admin_listen.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:9464")
    );
    let sessions = &config.namespaces["sessions"];
    assert_eq!(sessions.disable, vec![Capability::KvScan]);
    assert_eq!(config.limits_for(sessions).max_value_bytes, 65536);
    assert_eq!(
        config
            .limits_for(&config.namespaces["cache"])
            .max_value_bytes,
        4 * 1024 * 1024
    );
}

#[test]
fn networked_example_config_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/networked.yaml");
    let config = ProxyConfig::load(&path).expect("networked example config is valid");
    assert_eq!(config.backends["cache"].kind(), "redis");
    assert_eq!(config.backends["db"].kind(), "postgres");
    assert_eq!(config.backends["bus"].kind(), "nats");
    assert_eq!(config.namespaces.len(), 5);
    assert_eq!(
        config.server,
        prism_runtime::config::ServerLimits::default(),
        "the example's server block shows the defaults"
    );
    assert_eq!(
        config.backend_calls,
        prism_runtime::backends::health::BackendCallConfig::default(),
        "the example's backend_calls block shows the defaults"
    );
}

#[test]
fn listen_defaults_to_8980() {
    let config = ProxyConfig::parse(
        "auth: { mode: none }\nbackends: { m: { type: memstore } }\nnamespaces: { a: { pattern: keyvalue, backend: m } }\n",
        Path::new("t.yaml"),
    )
    .unwrap();
    assert_eq!(config.listen.to_string(), "0.0.0.0:8980");
}

#[rstest]
#[case::unknown_top_level_key(
    "listen: 127.0.0.1:1\nbackendz: {}\n",
    "t.yaml:2:1: unknown field `backendz`"
)]
#[case::unknown_server_key(
    "server:\n  drain_timeout: 5\n",
    "t.yaml:2:3: unknown field `drain_timeout`"
)]
#[case::unknown_backend_calls_key(
    "backend_calls: { timeout: 5 }\n",
    "t.yaml:1:18: unknown field `timeout`"
)]
#[case::unknown_namespace_key(
    "backends: { m: { type: memstore } }\nnamespaces:\n  a: { pattern: keyvalue, backend: m, color: red }\n",
    "t.yaml:3:"
)]
#[case::unknown_pattern(
    "backends: { m: { type: memstore } }\nnamespaces:\n  a: { pattern: inbox, backend: m }\n",
    "unknown variant `inbox`"
)]
#[case::unknown_backend_type(
    "backends:\n  m: { type: oracle }\nnamespaces: { a: { pattern: keyvalue, backend: m } }\n",
    "unknown variant `oracle`"
)]
#[case::bad_listen(
    "listen: nowhere\nbackends: { m: { type: memstore } }\nnamespaces: { a: { pattern: keyvalue, backend: m } }\n",
    "t.yaml:1:9:"
)]
fn syntax_errors_are_located(#[case] yaml: &str, #[case] expected: &str) {
    let err = ProxyConfig::parse(yaml, Path::new("t.yaml")).unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(expected),
        "{text:?} should contain {expected:?}"
    );
}

#[test]
fn missing_backend_is_named_with_the_defined_ones() {
    let err = ProxyConfig::parse(
        "auth: { mode: none }\nbackends: { m: { type: memstore } }\nnamespaces: { a: { pattern: keyvalue, backend: nope } }\n",
        Path::new("t.yaml"),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "t.yaml:3:48: namespace 'a' uses backend 'nope', which is not defined (defined: m)"
    );
}

#[test]
fn pubsub_behind_a_transaction_pooler_needs_a_listen_url() {
    let with = |extra: &str| {
        format!(
            "auth: {{ mode: none }}\nbackends:\n  db: {{ type: postgres, url: postgres://u@h/d, pooler: transaction{extra} }}\nnamespaces:\n  kv: {{ pattern: keyvalue, backend: db }}\n  jobs: {{ pattern: queue, backend: db }}\n  events: {{ pattern: pubsub, backend: db }}\n"
        )
    };
    let err = ProxyConfig::parse(&with(""), Path::new("t.yaml")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "t.yaml:7:22: namespace 'events' serves the pubsub pattern, which backend 'db' (type postgres) does not offer (it offers: keyvalue, queue): behind a transaction pooler (`pooler: transaction`) it cannot LISTEN; set `listen_url` to a session connection (PostgreSQL itself or a session-pooling PgBouncer)"
    );
    let config = ProxyConfig::parse(
        &with(", listen_url: postgres://u@direct/d"),
        Path::new("t.yaml"),
    )
    .expect("a listen_url gives PubSub a session connection");
    assert!(config.namespaces.contains_key("events"));
}

#[rstest]
#[case::every_slot_filled(
    "{ pattern: multicast_registry, slots: { registry: s, messaging: m } }",
    None
)]
#[case::one_backend_for_every_slot("{ pattern: multicast_registry, backend: m }", None)]
#[case::slot_without_the_pattern_it_needs(
    "{ pattern: multicast_registry, slots: { registry: s, messaging: s } }",
    Some(
        "t.yaml:3:82: namespace 'r' needs the pubsub pattern for its `messaging` slot, which backend 's' (type sqlite) does not offer (it offers: keyvalue, queue)"
    )
)]
#[case::missing_slot(
    "{ pattern: multicast_registry, slots: { registry: s } }",
    Some(
        "namespace 'r' names no backend for slot `messaging` (add `slots: { registry: NAME, messaging: NAME }` or `backend: NAME` for every slot)"
    )
)]
#[case::slot_the_pattern_lacks(
    "{ pattern: keyvalue, slots: { registry: s } }",
    Some(
        "namespace 'r' names a backend for slot `registry`, which the keyvalue pattern does not have (its slots: backend)"
    )
)]
#[case::undefined_slot_backend(
    "{ pattern: multicast_registry, slots: { registry: s, messaging: bus } }",
    Some(
        "namespace 'r' slot `messaging` uses backend 'bus', which is not defined (defined: m, s)"
    )
)]
fn composite_slots_are_checked_and_located(#[case] ns: &str, #[case] expected: Option<&str>) {
    let text = format!(
        "auth: {{ mode: none }}\nbackends: {{ m: {{ type: memstore }}, s: {{ type: sqlite, path: \":memory:\" }} }}\nnamespaces: {{ r: {ns} }}\n"
    );
    match (ProxyConfig::parse(&text, Path::new("t.yaml")), expected) {
        (Ok(config), None) => {
            let slots = config.namespaces["r"].slot_backends();
            assert_eq!(slots.len(), 2, "{slots:?}");
        }
        (Err(e), Some(want)) => {
            let text = e.to_string();
            assert!(text.contains(want), "{text:?} should contain {want:?}");
        }
        (got, want) => panic!("expected {want:?}, got {got:?}"),
    }
}

#[rstest]
#[case::storage_only("{ pattern: mailbox, backend: s }", None)]
#[case::a_topic_source(
    "{ pattern: mailbox, slots: { storage: s, messaging: m }, source: { namespace: events, topic: orders } }",
    None
)]
#[case::source_without_messaging(
    "{ pattern: mailbox, backend: s, source: { namespace: events, topic: orders } }",
    Some("namespace 'box' has `source:` but no messaging slot to read it from")
)]
#[case::messaging_without_source(
    "{ pattern: mailbox, slots: { storage: s, messaging: m } }",
    Some("which a mailbox uses only for `source: { namespace, topic }`")
)]
#[case::source_on_another_pattern(
    "{ pattern: keyvalue, backend: m, source: { namespace: events, topic: orders } }",
    Some("namespace 'box' has `source:`, which only the mailbox pattern has (it serves keyvalue)")
)]
#[case::source_namespace_not_pubsub(
    "{ pattern: mailbox, slots: { storage: s, messaging: m }, source: { namespace: box, topic: orders } }",
    Some("reads `source.namespace` 'box', which is not a pubsub namespace of this config")
)]
#[case::source_on_another_backend(
    "{ pattern: mailbox, slots: { storage: s, messaging: m2 }, source: { namespace: events, topic: orders } }",
    Some("reads `source.namespace` 'events', whose backend is not 'm2', its messaging slot's")
)]
#[case::bad_topic(
    "{ pattern: mailbox, slots: { storage: s, messaging: m }, source: { namespace: events, topic: \"a b\" } }",
    Some("source.topic")
)]
fn a_mailbox_source_is_checked_and_located(#[case] ns: &str, #[case] expected: Option<&str>) {
    let text = format!(
        "auth: {{ mode: none }}\nbackends: {{ m: {{ type: memstore }}, m2: {{ type: memstore }}, s: {{ type: sqlite, path: \":memory:\" }} }}\nnamespaces:\n  events: {{ pattern: pubsub, backend: m }}\n  box: {ns}\n"
    );
    match (ProxyConfig::parse(&text, Path::new("t.yaml")), expected) {
        (Ok(config), None) => {
            let b = &config.namespaces["box"];
            assert_eq!(b.slot_backends().len(), 1 + usize::from(b.source.is_some()));
        }
        (Err(e), Some(want)) => {
            let text = e.to_string();
            assert!(text.contains(want), "{text:?} should contain {want:?}");
            assert!(
                text.contains("t.yaml:5:"),
                "{text:?} is located on box's line"
            );
        }
        (got, want) => panic!("expected {want:?}, got {got:?}"),
    }
}

#[test]
fn unreadable_file_names_the_path() {
    let err = ProxyConfig::load(Path::new("/nonexistent/prism.yaml")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/nonexistent/prism.yaml: cannot read config")
    );
}

#[test]
fn networked_backends_parse_with_env_urls_and_never_show_passwords() {
    // SAFETY of intent: a variable name unique to this test, set before the parse that reads it.
    unsafe { std::env::set_var("PRISM_TEST_PG_URL", "postgres://app:s3cret@db:5432/prism") };
    let config = ProxyConfig::parse(
        "auth: { mode: none }\nbackends:\n  cache: { type: redis, url: 'redis://:hunter2@cache:6379/0' }\n  db: { type: postgres, url: '${PRISM_TEST_PG_URL}', pool: { max: 4 } }\nnamespaces:\n  a: { pattern: keyvalue, backend: cache }\n  b: { pattern: keyvalue, backend: db }\n",
        Path::new("t.yaml"),
    )
    .unwrap();
    let BackendConfig::Redis(redis) = &config.backends["cache"] else {
        panic!()
    };
    assert_eq!(redis.url.expose(), "redis://:hunter2@cache:6379/0");
    assert_eq!(redis.key_prefix, "prism");
    let BackendConfig::Postgres(pg) = &config.backends["db"] else {
        panic!()
    };
    assert_eq!(pg.url.expose(), "postgres://app:s3cret@db:5432/prism");
    assert_eq!((pg.pool.max, pg.pool.acquire_timeout_ms), (4, 5000));
    let shown = format!("{config:?}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("s3cret"),
        "{shown}"
    );
}

#[test]
fn a_missing_env_variable_is_named_with_its_location() {
    let err = ProxyConfig::parse(
        "backends:\n  db: { type: postgres, url: '${PRISM_TEST_SURELY_UNSET}' }\nnamespaces: { a: { pattern: keyvalue, backend: db } }\n",
        Path::new("t.yaml"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("t.yaml:2:"), "{err}");
    assert!(err.contains("PRISM_TEST_SURELY_UNSET is not set"), "{err}");
}

#[rstest]
#[case::namespace_with_colon("a:b", "namespace name \"a:b\"")]
#[case::namespace_with_space("a b", "namespace name \"a b\"")]
fn unsafe_names_are_rejected(#[case] ns: &str, #[case] expected: &str) {
    let yaml = format!(
        "backends: {{ m: {{ type: memstore }} }}\nnamespaces: {{ '{ns}': {{ pattern: keyvalue, backend: m }} }}\n"
    );
    let err = ProxyConfig::parse(&yaml, Path::new("t.yaml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains(expected), "{err}");
}

#[rstest]
#[case::jwt_without_keys(
    "auth: { mode: jwt }\n",
    "auth.mode is jwt (the default) but no key is configured"
)]
#[case::default_without_keys("", "auth.mode is jwt (the default) but no key is configured")]
#[case::hs256_needs_one_source(
    "auth: { hs256: {} }\n",
    "auth.hs256 needs exactly one of secret_file or secret_env"
)]
#[case::rule_needs_a_subject(
    "auth: { hs256: { secret_env: X }, rules: [ { namespaces: { a: [read] } } ] }\n",
    "auth.rules[0] needs `sub` or `group`"
)]
fn auth_mistakes_are_named(#[case] auth: &str, #[case] expected: &str) {
    let yaml = format!(
        "{auth}backends: {{ m: {{ type: memstore }} }}\nnamespaces: {{ a: {{ pattern: keyvalue, backend: m }} }}\n"
    );
    let err = ProxyConfig::parse(&yaml, Path::new("t.yaml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains(expected), "{err}");
}

#[test]
fn unknown_permission_is_located() {
    let yaml = "auth:\n  hs256: { secret_env: X }\n  rules: [ { sub: a, namespaces: { n: [delete] } } ]\nbackends: { m: { type: memstore } }\nnamespaces: { a: { pattern: keyvalue, backend: m } }\n";
    let err = ProxyConfig::parse(yaml, Path::new("t.yaml"))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("t.yaml:3:"), "{err}");
    assert!(err.contains("unknown variant `delete`"), "{err}");
}

#[test]
fn worker_threads_default_to_one_per_core_and_can_be_set() {
    let base = "auth: { mode: none }\nbackends: { m: { type: memstore } }\nnamespaces: { n: { pattern: keyvalue, backend: m } }\n";
    let config = ProxyConfig::parse(base, Path::new("t.yaml")).unwrap();
    assert_eq!(config.server.worker_threads, 0);
    let text = format!("server: {{ worker_threads: 1 }}\n{base}");
    let config = ProxyConfig::parse(&text, Path::new("t.yaml")).unwrap();
    assert_eq!(config.server.worker_threads, 1);
    let text = format!("server: {{ worker_thread: 1 }}\n{base}");
    let err = ProxyConfig::parse(&text, Path::new("t.yaml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("t.yaml:1:") && err.contains("worker_thread"),
        "{err}"
    );
}

/// A config written out (`serde_saphyr::to_string`, as the load tool writes its proxy's) loads
/// back to the same config: the shipped examples and one that sets every kind of section —
/// a password in a URL, grants, limits, composite slots, a mailbox source.
#[test]
fn configs_written_out_load_back_the_same() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut configs: Vec<ProxyConfig> = ["prism.yaml", "networked.yaml"]
        .iter()
        .map(|f| ProxyConfig::load(&dir.join(f)).expect("example loads"))
        .collect();
    configs.push(
        ProxyConfig::parse(
            r#"
listen: 127.0.0.1:9999
admin_listen: 127.0.0.1:9998
log_format: json
access_log: true
tracing: { otlp_endpoint: 'http://127.0.0.1:4317', sample_ratio: 0.25, service_name: edge }
auth:
  hs256: { secret_env: PRISM_SECRET }
  issuer: me
  rules: [{ group: ops, namespaces: { "team-*": [read, write] } }]
server: { worker_threads: 3, max_connections: 10 }
limits: { max_value_bytes: 1024 }
backend_calls: { timeout_ms: 700 }
backends:
  cache: { type: redis, url: "redis://:hunter2@127.0.0.1:6379/2", key_prefix: p-1 }
  db: { type: postgres, url: "postgres://u:pw@h/db", pool: { max: 3 } }
  bus: { type: nats, url: "nats://127.0.0.1:4222", ack_wait_secs: 9 }
  lite: { type: sqlite, path: ":memory:" }
  mem: { type: memstore }
namespaces:
  reg: { pattern: multicast_registry, slots: { registry: cache, messaging: bus }, limits: { max_fanout: 5 } }
  feed: { pattern: pubsub, backend: bus }
  inbox:
    pattern: mailbox
    slots: { storage: lite, messaging: bus }
    source: { namespace: feed, topic: t }
  kv: { pattern: keyvalue, backend: mem, disable: [keyvalue.scan] }
"#,
            Path::new("t.yaml"),
        )
        .expect("the full config loads"),
    );
    for config in configs {
        let text = serde_saphyr::to_string(&config).expect("a config serializes");
        let again = ProxyConfig::parse(&text, Path::new("written.yaml"))
            .unwrap_or_else(|e| panic!("written config does not load: {e}\n{text}"));
        assert_eq!(again, config, "{text}");
    }
}
