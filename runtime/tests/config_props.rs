//! Property test for the config loader: arbitrary YAML-like text never panics, and every error either
//! carries a `line:column` (syntax and shape errors) or names what is inconsistent.

use prism_runtime::config::{ConfigError, ProxyConfig};
use proptest::prelude::*;
use std::path::Path;

fn yamlish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("listen: 127.0.0.1:0\n".to_string()),
        Just("auth: { mode: none }\n".to_string()),
        Just("auth:\n  hs256: { secret_env: X }\n".to_string()),
        Just("backends:\n".to_string()),
        Just("  m: { type: memstore }\n".to_string()),
        Just("  r: { type: redis, url: 'redis://h' }\n".to_string()),
        Just("namespaces:\n".to_string()),
        Just("  a: { pattern: keyvalue, backend: m }\n".to_string()),
        Just("limits: { max_key_bytes: -1 }\n".to_string()),
        Just("- ".to_string()),
        Just(": ".to_string()),
        Just("{".to_string()),
        Just("&a ".to_string()),
        Just("*a".to_string()),
        Just("${".to_string()),
        "[ -~]{0,12}",
        "\\PC{0,6}",
    ];
    prop::collection::vec(token, 0..16).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_config_text_never_panics_and_errors_explain(text in yamlish()) {
        match ProxyConfig::parse(&text, Path::new("p.yaml")) {
            Ok(config) => prop_assert!(!config.namespaces.is_empty()),
            Err(ConfigError::Syntax { message, .. }) => prop_assert!(!message.is_empty()),
            Err(ConfigError::Invalid { problems, .. }) => prop_assert!(!problems.is_empty()),
            Err(other) => prop_assert!(false, "unexpected error kind: {other}"),
        }
    }
}
