//! Property tests for the scenario parser: arbitrary input never panics and every error is located;
//! generated scenarios survive print → parse → print unchanged.

use prism_conform::scenario::model::*;
use prism_conform::scenario::parse_scenario;
use prism_conform::scenario::print::print_scenario;
use prism_runtime::patterns::capability::Capability;
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn yamlish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("name: n\n".to_string()),
        Just("steps:\n".to_string()),
        Just("  - get: { key: \"${prefix}a\" }\n".to_string()),
        Just("    expect: { found: true }\n".to_string()),
        Just("pattern: keyvalue\n".to_string()),
        Just("requires: [keyvalue.basic]\n".to_string()),
        Just("- ".to_string()),
        Just(": ".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just("[".to_string()),
        Just("&a ".to_string()),
        Just("*a".to_string()),
        Just("\"".to_string()),
        Just("\t".to_string()),
        "[ -~]{0,12}",
        "\\PC{0,6}",
    ];
    prop::collection::vec(token, 0..24).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_input_never_panics_and_errors_are_located(text in yamlish()) {
        if let Err(errors) = parse_scenario(&text, Path::new("p.yaml")) {
            prop_assert!(!errors.is_empty());
            for e in errors {
                prop_assert!(!e.message.is_empty());
                prop_assert!(e.loc.line >= 1, "unlocated error {e} for {text:?}");
            }
        }
    }
}

fn key() -> impl Strategy<Value = String> {
    "[a-z0-9/ é_-]{0,12}".prop_map(|s| format!("${{prefix}}{s}"))
}

fn value() -> impl Strategy<Value = ValueSpec> {
    prop_oneof![
        // Text values are templates; a literal "${" is not valid text, so it is not generated.
        "[ -~é]{0,16}"
            .prop_filter("holds no '${'", |s| !s.contains("${"))
            .prop_map(ValueSpec::Text),
        prop::collection::vec(any::<u8>(), 0..16).prop_map(ValueSpec::Bytes),
        (0u64..4096, 0u64..100).prop_map(|(bytes, seed)| ValueSpec::Blob {
            bytes,
            seed: seed.to_string()
        }),
    ]
}

fn code() -> impl Strategy<Value = prism_conform::scenario::code::StatusCode> {
    prop::sample::select(vec![
        "INVALID_ARGUMENT",
        "NOT_FOUND",
        "ABORTED",
        "UNAVAILABLE",
    ])
    .prop_map(|n| prism_conform::scenario::code::StatusCode::from_name(n).unwrap())
}

fn num() -> impl Strategy<Value = NumExpect> {
    (
        prop::sample::select(Rel::ALL.to_vec()),
        0u64..100,
        prop::option::of("[a-z]{1,4}"),
    )
        .prop_map(|((rel, _), n, save)| NumExpect {
            rels: vec![(rel, Operand::Lit(n))],
            save,
        })
}

fn op_step() -> impl Strategy<Value = OpStep> {
    let op = prop_oneof![
        (key(), value(), 0u64..2, any::<bool>()).prop_map(|(key, value, ttl_ms, if_absent)| {
            Op::Set {
                key,
                value,
                ttl_ms: ttl_ms * 1000,
                if_absent,
                if_version: None,
            }
        }),
        key().prop_map(|key| Op::Get { key }),
        key().prop_map(|key| Op::Delete { key }),
        key().prop_map(|key| Op::Exists { key }),
        (key(), 0u64..5000).prop_map(|(key, ttl_ms)| Op::Expire { key, ttl_ms }),
        (key(), 0u64..50, any::<bool>()).prop_map(|(prefix, limit, keys_only)| Op::ScanAll {
            prefix,
            limit,
            keys_only
        }),
        prop::collection::vec(key(), 0..4).prop_map(|keys| Op::BatchGet { keys }),
    ];
    (
        op,
        any::<bool>(),
        prop::option::of(code()),
        prop::option::of(num()),
    )
        .prop_map(|(op, other, error, n)| {
            let expect = match (error, &op) {
                (Some(code), _) => Some(Expect {
                    error: Some(code),
                    ..Expect::default()
                }),
                (None, Op::Set { .. }) => n.map(|n| Expect {
                    version: Some(n),
                    ..Expect::default()
                }),
                (None, Op::ScanAll { .. }) => n.map(|n| Expect {
                    count: Some(n),
                    ..Expect::default()
                }),
                _ => None,
            };
            OpStep {
                op,
                namespace: if other {
                    NamespaceRef::Other
                } else {
                    NamespaceRef::Main
                },
                token: (!other).then(|| "read_only".to_string()),
                via: if other { Via::A } else { Via::B },
                deadline_ms: other.then_some(250),
                expect,
            }
        })
}

fn at(kind: StepKind) -> Step {
    Step {
        loc: Location::default(),
        kind,
    }
}

fn step() -> impl Strategy<Value = Step> {
    let leaf = prop_oneof![
        op_step().prop_map(|o| at(StepKind::from(o))),
        (0u64..500).prop_map(|ms| at(StepKind::Sleep(Duration::from_millis(ms)))),
        prop::sample::select(FaultAction::ALL.to_vec())
            .prop_map(|(action, _)| at(StepKind::Fault(action))),
        prop::sample::select(vec![Via::A, Via::B]).prop_map(|via| at(StepKind::KillProxy(via))),
        prop::sample::select(vec![Via::A, Via::B]).prop_map(|via| at(StepKind::RestartProxy(via))),
    ];
    leaf.prop_recursive(2, 12, 3, |inner| {
        let body = prop::collection::vec(inner, 1..3);
        prop_oneof![
            (1u64..5, body.clone())
                .prop_map(|(times, steps)| at(StepKind::Repeat { times, steps })),
            (1u64..3000, 1u64..100, body.clone()).prop_map(|(w, e, steps)| at(
                StepKind::Eventually {
                    within: Duration::from_millis(w),
                    every: Duration::from_millis(e),
                    steps,
                }
            )),
            (1u64..3000, body.clone()).prop_map(|(w, steps)| at(StepKind::Within {
                within: Duration::from_millis(w),
                steps,
            })),
            (1u64..4, body).prop_map(|(workers, steps)| at(StepKind::Parallel {
                branches: vec![Branch { workers, steps }],
                tally: None,
            })),
        ]
    })
}

fn used(steps: &[Step], out: &mut Vec<Capability>) {
    for s in steps {
        match &s.kind {
            StepKind::Eventually { steps, .. }
            | StepKind::Repeat { steps, .. }
            | StepKind::Within { steps, .. } => used(steps, out),
            StepKind::Parallel { branches, .. } => {
                branches.iter().for_each(|b| used(&b.steps, out))
            }
            single => {
                for c in single.needs() {
                    if !out.contains(&c) {
                        out.push(c);
                    }
                }
            }
        }
    }
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        "[A-Za-z][A-Za-z0-9 ]{0,20}",
        "[ -~]{1,40}",
        prop::collection::vec("[a-z]{1,6}", 0..3),
        prop::collection::vec(step(), 1..5),
    )
        .prop_filter_map(
            "needs at least one op",
            |(name, description, tags, steps)| {
                let mut requires = Vec::new();
                used(&steps, &mut requires);
                (!requires.is_empty()).then(|| Scenario {
                    file: PathBuf::from("gen.yaml"),
                    name,
                    description,
                    pattern: prism_runtime::patterns::Pattern::Keyvalue,
                    requires,
                    tags,
                    steps,
                })
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn print_parse_print_is_stable(s in scenario()) {
        let printed = print_scenario(&s);
        let parsed = parse_scenario(&printed, Path::new("gen.yaml"));
        prop_assert!(parsed.is_ok(), "{:?}\n{printed}", parsed.err());
        let parsed = parsed.unwrap();
        prop_assert_eq!(print_scenario(&parsed), printed);
        prop_assert_eq!(&parsed.name, &s.name);
        prop_assert_eq!(&parsed.requires, &s.requires);
    }
}
