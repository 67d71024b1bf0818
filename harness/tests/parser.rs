//! The scenario parser: valid files, every mistake located exactly, and parse → print → parse.

use prism_conform::scenario::model::{NamespaceRef, Op, OpStep, Rel, StepKind, ValueSpec};
use prism_conform::scenario::parse_scenario;
use prism_conform::scenario::print::print_scenario;
use prism_runtime::patterns::capability::Capability;
use rstest::rstest;
use std::path::Path;
use std::time::Duration;

const VALID: &str = r#"
name: cas round
description: if_version succeeds on the current version.
pattern: keyvalue
requires: [keyvalue.basic, keyvalue.cas, keyvalue.ttl]
tags: [cas]
steps:
  - set: { key: "${prefix}k", value: one, ttl_ms: 5000 }
    expect: { version: { save: v1 } }
  - set: { key: "${prefix}k", value: { base64: "AAH/" }, if_version: "${v1}" }
    expect: { version: { gt: v1, ne: 0 } }
  - sleep: 10ms
  - eventually: { within: 2s }
    steps:
      - get: { key: "${prefix}k" }
        namespace: other
        expect: { found: false }
  - parallel: { workers: 4 }
    steps:
      - set: { key: "${prefix}w${worker}", value: { bytes: 16, seed: "${worker}" }, if_absent: true }
    expect: { ok: 4 }
"#;

#[test]
fn a_scenario_size_multiplies_repeats_and_workers_out() {
    let s = parse_scenario(VALID, Path::new("v.yaml")).unwrap();
    // set, set, sleep, eventually and its get, parallel and 4 workers × one set
    assert_eq!(s.size(), 10);
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios/queue/ten-thousand-four-by-four.yaml");
    let big = parse_scenario(&std::fs::read_to_string(&file).unwrap(), &file).unwrap();
    // 4 consumes, parallel and 4 workers × (repeat and 2,500 enqueues), receive, expect_silence
    assert_eq!(big.size(), 4 + 1 + 4 * (1 + 2500) + 2);
}

#[test]
fn a_valid_scenario_parses_into_the_model() {
    let s = parse_scenario(VALID, Path::new("v.yaml")).unwrap();
    assert_eq!(s.name, "cas round");
    assert_eq!(
        s.requires,
        [Capability::KvBasic, Capability::KvCas, Capability::KvTtl]
    );
    assert_eq!(s.steps.len(), 5);
    assert_eq!((s.steps[0].loc.line, s.steps[0].loc.column), (8, 5));
    let op: &OpStep = s.steps[1].kind.call_as().expect("a KeyValue op expected");
    let Op::Set {
        value, if_version, ..
    } = &op.op
    else {
        panic!("set expected")
    };
    assert_eq!(value, &ValueSpec::Bytes(vec![0, 1, 255]));
    assert_eq!(if_version.as_deref(), Some("${v1}"));
    let version = op.expect.as_ref().unwrap().version.as_ref().unwrap();
    assert_eq!(version.rels.len(), 2);
    assert_eq!(version.rels[0].0, Rel::Gt);
    assert!(matches!(s.steps[2].kind, StepKind::Sleep(d) if d == Duration::from_millis(10)));
    let StepKind::Eventually {
        within,
        every,
        steps,
    } = &s.steps[3].kind
    else {
        panic!()
    };
    assert_eq!(
        (*within, *every),
        (Duration::from_secs(2), Duration::from_millis(50))
    );
    let inner: &OpStep = steps[0].kind.call_as().expect("a KeyValue op expected");
    assert_eq!(inner.namespace, NamespaceRef::Other);
    let StepKind::Parallel { branches, tally } = &s.steps[4].kind else {
        panic!()
    };
    assert_eq!(branches[0].workers, 4);
    assert_eq!(tally.as_ref().unwrap().ok, Some(4));
}

fn errors(yaml: &str) -> Vec<String> {
    parse_scenario(yaml, Path::new("s.yaml"))
        .unwrap_err()
        .into_iter()
        .map(|e| e.to_string())
        .collect()
}

const HEAD: &str =
    "name: n\ndescription: d\npattern: keyvalue\nrequires: [keyvalue.basic]\nsteps:\n";

#[rstest]
#[case::unknown_step(
    "  - expire_in: { key: \"${prefix}a\" }\n",
    "s.yaml:6:5: unknown step 'expire_in' (expected one of: set, get, delete, exists, expire, scan, scan_all, batch_set, batch_get, batch_delete, subscribe, publish, consume, enqueue, receive, expect_silence, ack, nack, disconnect, register, heartbeat, unregister, enumerate, multicast, listen, watch, hear, events, close, deliver, query, get_message, delete_messages, source_publish, sleep, eventually, repeat, parallel, restart_proxy, kill_proxy, fault, within, metrics, reload)"
)]
#[case::unknown_arg(
    "  - get: { key: \"${prefix}a\", keyy: 1 }\n",
    "s.yaml:6:31: unknown key 'keyy' in get (expected one of: key)"
)]
#[case::missing_key("  - get: {}\n", "s.yaml:6:10: get is missing required key 'key'")]
#[case::unprefixed_key(
    "  - get: { key: plain }\n",
    "s.yaml:6:17: key \"plain\" must start with ${prefix} so runs never collide (only a step that expects an error may use another key)"
)]
#[case::wrong_type(
    "  - get: { key: \"${prefix}a\" }\n    expect: { found: yes please }\n",
    "s.yaml:7:22: found must be true or false, found \"yes please\""
)]
#[case::expect_field_for_other_op(
    "  - delete: { key: \"${prefix}a\" }\n    expect: { found: true }\n",
    "s.yaml:7:15: unknown key 'found' in expect (for delete) (expected one of: error, message_contains, deleted)"
)]
#[case::unknown_code(
    "  - get: { key: \"${prefix}a\" }\n    expect: { error: NOPE }\n",
    "s.yaml:7:22: unknown status code 'NOPE'"
)]
#[case::undefined_variable(
    "  - get: { key: \"${prefix}${nope}\" }\n",
    "s.yaml:6:17: undefined variable '${nope}' (defined here: prefix)"
)]
#[case::bad_duration(
    "  - sleep: soon\n  - get: { key: \"${prefix}a\" }\n",
    "s.yaml:6:12: sleep must be a duration such as 250ms, 2s or 1m, found \"soon\""
)]
#[case::capability_not_required(
    "  - scan: { prefix: \"${prefix}\" }\n  - get: { key: \"${prefix}a\" }\n",
    "s.yaml:6:5: this step uses keyvalue.scan, which is not in `requires` (add it)"
)]
#[case::unknown_fault(
    "  - fault: { backend: explode }\n  - get: { key: \"${prefix}a\" }\n",
    "s.yaml:6:23: fault.backend must be one of: kill, stop, start, restart, pause, resume (found \"explode\")"
)]
#[case::within_needs_steps(
    "  - within: 5s\n  - get: { key: \"${prefix}a\" }\n",
    "s.yaml:6:5: within is missing required key 'steps'"
)]
#[case::metrics_since_an_unknown_mark(
    "  - metrics: { expect: [ { series: up, moved: 1, since: nope } ] }\n",
    "s.yaml:6:57: no earlier metrics step marks 'nope'"
)]
#[case::metrics_labels_in_the_series_name(
    "  - metrics: { expect: [ { series: \"up{a=1}\", value: 1 } ] }\n",
    "s.yaml:6:26: series 'up{a=1}' is not a metric name"
)]
#[case::metrics_with_nothing_to_do("  - metrics: {}\n", "s.yaml:6:14: metrics needs `expect`")]
#[case::reload_of_the_main_namespace(
    "  - reload: { remove: main }\n",
    "s.yaml:6:23: remove names the namespace it changes: `other`"
)]
#[case::reload_with_two_changes(
    "  - reload: { remove: other, add: other }\n",
    "s.yaml:6:13: reload takes exactly one change"
)]
#[case::invalid_yaml(
    "  - get: { key: \"${prefix}a\"\n",
    "s.yaml:6:10: invalid YAML: unclosed bracket '{'"
)]
fn mistakes_are_located(#[case] steps: &str, #[case] expected: &str) {
    let all = errors(&format!("{HEAD}{steps}"));
    assert!(
        all.iter().any(|e| e.starts_with(expected)),
        "no error starts with {expected:?}; got {all:#?}"
    );
}

#[test]
fn every_error_in_a_file_is_reported_at_once() {
    let all = errors(
        "name: n\ndescription: d\npattern: kv\nrequires: [keyvalue.basic, keyvalue.scan]\nsteps:\n  - get: { key: \"${prefix}a\", x: 1 }\n  - bogus: 1\n",
    );
    assert_eq!(
        all,
        [
            "s.yaml:3:10: unknown pattern 'kv' (expected one of: keyvalue, pubsub, queue, multicast_registry, mailbox)",
            "s.yaml:4:28: `requires` lists keyvalue.scan, but no step uses it (remove it)",
            "s.yaml:6:31: unknown key 'x' in get (expected one of: key)",
            "s.yaml:7:5: unknown step 'bogus' (expected one of: set, get, delete, exists, expire, scan, scan_all, batch_set, batch_get, batch_delete, subscribe, publish, consume, enqueue, receive, expect_silence, ack, nack, disconnect, register, heartbeat, unregister, enumerate, multicast, listen, watch, hear, events, close, deliver, query, get_message, delete_messages, source_publish, sleep, eventually, repeat, parallel, restart_proxy, kill_proxy, fault, within, metrics, reload)",
        ]
    );
}

/// Durability may be required only where a step makes it observable: a restart or a fault.
#[rstest]
#[case::nothing_observes_it("  - set: { key: \"${prefix}a\", value: v }\n", false)]
#[case::a_kill_does(
    "  - set: { key: \"${prefix}a\", value: v }\n  - fault: { backend: kill }\n",
    true
)]
#[case::a_proxy_restart_does(
    "  - set: { key: \"${prefix}a\", value: v }\n  - restart_proxy: {}\n",
    true
)]
#[case::a_pause_does_not(
    "  - set: { key: \"${prefix}a\", value: v }\n  - fault: { backend: pause }\n",
    false
)]
fn durability_is_required_only_where_a_step_observes_it(#[case] steps: &str, #[case] ok: bool) {
    let yaml = format!(
        "name: n\ndescription: d\npattern: keyvalue\nrequires: [keyvalue.basic, keyvalue.durable]\nsteps:\n{steps}"
    );
    let parsed = parse_scenario(&yaml, Path::new("s.yaml"));
    assert_eq!(parsed.is_ok(), ok, "{parsed:?}");
    if let Ok(s) = parsed {
        assert!(s.runs_alone(), "a restart or a fault runs alone");
    }
}

#[test]
fn print_then_parse_is_stable_for_the_valid_example() {
    let s = parse_scenario(VALID, Path::new("v.yaml")).unwrap();
    let printed = print_scenario(&s);
    let again = parse_scenario(&printed, Path::new("v.yaml"))
        .unwrap_or_else(|e| panic!("{e:?}\n{printed}"));
    assert_eq!(print_scenario(&again), printed);
}

#[test]
fn the_whole_corpus_parses_and_round_trips() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let files = prism_conform::scenario::load::find_files(&root).unwrap();
    let corpus = prism_conform::scenario::load::load_corpus(&files).unwrap_or_else(|e| {
        panic!(
            "{}",
            e.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    let keyvalue = corpus
        .iter()
        .filter(|s| s.pattern == prism_runtime::patterns::Pattern::Keyvalue)
        .count();
    assert!(
        keyvalue >= 40,
        "the KeyValue corpus has {keyvalue} scenarios, fewer than 40"
    );
    for s in &corpus {
        let printed = print_scenario(s);
        let again = parse_scenario(&printed, &s.file)
            .unwrap_or_else(|e| panic!("{}: {e:?}\n{printed}", s.file.display()));
        assert_eq!(print_scenario(&again), printed, "{}", s.file.display());
    }
}

const QUEUE_HEAD: &str = "name: n\ndescription: d\npattern: queue\nrequires: [queue.basic]\nsteps:\n  - consume: { queue: \"${prefix}q\", as: c }\n";

#[rstest]
#[case::unknown_handle(
    "  - receive: { from: d, count: 1, within: 1s }\n",
    "s.yaml:7:22: unknown handle 'd' (open it first with `subscribe` or `consume` and `as: d`; known: c)"
)]
#[case::payload_count_mismatch(
    "  - receive: { from: c, count: 2, within: 1s }\n    expect: { payloads: [a] }\n",
    "s.yaml:8:25: payloads lists 1 values but count is 2"
)]
#[case::unknown_order(
    "  - receive: { from: c, count: 1, within: 1s, order: sorted }\n",
    "s.yaml:7:54: unknown order 'sorted' (expected one of: strict, any)"
)]
#[case::ack_of_an_unknown_handle("  - ack: { from: nope }\n", "s.yaml:7:18: unknown handle 'nope'")]
#[case::undeclared_property(
    "  - receive: { from: c, count: 1, within: 1s, order: strict }\n",
    "s.yaml:7:5: this step uses queue.ordered, which is not in `requires` (add it)"
)]
#[case::restart_proxy_takes_no_settings(
    "  - restart_proxy: { now: true }\n",
    "s.yaml:7:22: unknown key 'now' in restart_proxy (restart_proxy takes no settings: write `restart_proxy: {}`)"
)]
#[case::unprefixed_queue(
    "  - enqueue: { queue: jobs, payload: x }\n",
    "s.yaml:7:23: queue \"jobs\" must start with ${prefix}"
)]
fn messaging_mistakes_are_located(#[case] steps: &str, #[case] expected: &str) {
    let all = errors(&format!("{QUEUE_HEAD}{steps}"));
    assert!(
        all.iter().any(|e| e.starts_with(expected)),
        "no error starts with {expected:?}; got {all:#?}"
    );
}

#[test]
fn a_step_of_another_pattern_is_located() {
    let all = errors(&format!(
        "{QUEUE_HEAD}  - publish: {{ topic: \"${{prefix}}t\" }}\n  - get: {{ key: \"${{prefix}}k\" }}\n"
    ));
    assert!(
        all.contains(
            &"s.yaml:7:5: publish is a pubsub step; this scenario's pattern is queue".to_string()
        ),
        "{all:#?}"
    );
    assert!(
        all.contains(
            &"s.yaml:8:5: get is a keyvalue step; this scenario's pattern is queue".to_string()
        ),
        "{all:#?}"
    );
}
