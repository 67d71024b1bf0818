//! Config loading: the shipped example loads, and mistakes are reported with file:line:column.

use prism_runtime::backends::BackendConfig;
use prism_runtime::capability::Capability;
use prism_runtime::config::{ConfigError, ProxyConfig};
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
    assert_eq!(config.namespaces.len(), 3);
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
fn listen_defaults_to_8980() {
    let config = ProxyConfig::parse(
        "backends: { m: { type: memstore } }\nnamespaces: { a: { pattern: keyvalue, backend: m } }\n",
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
#[case::unknown_namespace_key(
    "backends: { m: { type: memstore } }\nnamespaces:\n  a: { pattern: keyvalue, backend: m, color: red }\n",
    "t.yaml:3:"
)]
#[case::unknown_pattern(
    "backends: { m: { type: memstore } }\nnamespaces:\n  a: { pattern: pubsub, backend: m }\n",
    "unknown variant `pubsub`"
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
        "backends: { m: { type: memstore } }\nnamespaces: { a: { pattern: keyvalue, backend: nope } }\n",
        Path::new("t.yaml"),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "t.yaml: namespace 'a' uses backend 'nope', which is not defined (defined: m)"
    );
}

#[test]
fn unreadable_file_names_the_path() {
    let err = ProxyConfig::load(Path::new("/nonexistent/prism.yaml")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/nonexistent/prism.yaml: cannot read config")
    );
}
