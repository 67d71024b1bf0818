//! [`Scenario`] → YAML text that parses back to the same scenario (used by round-trip tests and by
//! `prism-conform check --print`).

mod messaging;

use super::model::*;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

/// Prints a scenario as YAML.
pub fn print_scenario(s: &Scenario) -> String {
    let mut root = Map::new();
    root.insert("name".into(), json!(s.name));
    root.insert("description".into(), json!(s.description));
    root.insert("pattern".into(), json!(s.pattern));
    root.insert(
        "requires".into(),
        json!(s.requires.iter().map(|c| c.name()).collect::<Vec<_>>()),
    );
    if !s.tags.is_empty() {
        root.insert("tags".into(), json!(s.tags));
    }
    root.insert("steps".into(), steps(&s.steps));
    serde_saphyr::to_string(&Value::Object(root))
        .unwrap_or_else(|e| format!("# cannot print: {e}\n"))
}

fn steps(list: &[Step]) -> Value {
    Value::Array(list.iter().map(step).collect())
}

fn ms(d: std::time::Duration) -> Value {
    json!(format!("{}ms", d.as_millis()))
}

fn step(s: &Step) -> Value {
    let mut m = Map::new();
    match &s.kind {
        StepKind::Op(o) => {
            let (name, args) = op(&o.op);
            m.insert(name.into(), args);
            if o.namespace == NamespaceRef::Other {
                m.insert("namespace".into(), json!("other"));
            }
            if let Some(t) = &o.token {
                m.insert("token".into(), json!(t));
            }
            if let Some(e) = &o.expect {
                m.insert("expect".into(), expect(e));
            }
        }
        StepKind::Msg(step) => messaging::step(step, &mut m),
        StepKind::Sleep(d) => {
            m.insert("sleep".into(), ms(*d));
        }
        StepKind::RestartProxy => {
            m.insert("restart_proxy".into(), json!({}));
        }
        StepKind::Eventually {
            within,
            every,
            steps: body,
        } => {
            m.insert(
                "eventually".into(),
                json!({ "within": ms(*within), "every": ms(*every) }),
            );
            m.insert("steps".into(), steps(body));
        }
        StepKind::Repeat { times, steps: body } => {
            m.insert("repeat".into(), json!({ "times": times }));
            m.insert("steps".into(), steps(body));
        }
        StepKind::Parallel { branches, tally } => {
            let list: Vec<Value> = branches
                .iter()
                .map(|b| json!({ "workers": b.workers, "steps": steps(&b.steps) }))
                .collect();
            m.insert("parallel".into(), json!({ "branches": list }));
            if let Some(t) = tally {
                let mut tm = Map::new();
                if let Some(ok) = t.ok {
                    tm.insert("ok".into(), json!(ok));
                }
                if !t.errors.is_empty() {
                    let errors: Map<String, Value> = t
                        .errors
                        .iter()
                        .map(|(c, n)| (c.name().to_string(), json!(n)))
                        .collect();
                    tm.insert("errors".into(), Value::Object(errors));
                }
                m.insert("expect".into(), Value::Object(tm));
            }
        }
    }
    Value::Object(m)
}

fn value(v: &ValueSpec) -> Value {
    match v {
        ValueSpec::Text(t) => json!(t),
        ValueSpec::Bytes(b) => json!({ "base64": STANDARD.encode(b) }),
        ValueSpec::Blob { bytes, seed } => json!({ "bytes": bytes, "seed": seed }),
    }
}

fn op(o: &Op) -> (&'static str, Value) {
    let args = match o {
        Op::Set {
            key,
            value: v,
            ttl_ms,
            if_absent,
            if_version,
        } => {
            let mut m = Map::new();
            m.insert("key".into(), json!(key));
            m.insert("value".into(), value(v));
            if *ttl_ms > 0 {
                m.insert("ttl_ms".into(), json!(ttl_ms));
            }
            if *if_absent {
                m.insert("if_absent".into(), json!(true));
            }
            if let Some(v) = if_version {
                m.insert("if_version".into(), json!(v));
            }
            Value::Object(m)
        }
        Op::Get { key } | Op::Delete { key } | Op::Exists { key } => json!({ "key": key }),
        Op::Expire { key, ttl_ms } => json!({ "key": key, "ttl_ms": ttl_ms }),
        Op::Scan {
            prefix,
            cursor,
            limit,
            keys_only,
        } => {
            let mut m = Map::new();
            m.insert("prefix".into(), json!(prefix));
            if let Some(c) = cursor {
                m.insert("cursor".into(), json!(c));
            }
            m.insert("limit".into(), json!(limit));
            m.insert("keys_only".into(), json!(keys_only));
            Value::Object(m)
        }
        Op::ScanAll {
            prefix,
            limit,
            keys_only,
        } => json!({ "prefix": prefix, "limit": limit, "keys_only": keys_only }),
        Op::BatchSet { entries } => json!({
            "entries": entries.iter().map(|e| json!({ "key": e.key, "value": value(&e.value), "ttl_ms": e.ttl_ms })).collect::<Vec<_>>()
        }),
        Op::BatchGet { keys } | Op::BatchDelete { keys } => json!({ "keys": keys }),
    };
    (o.name(), args)
}

fn num(n: &NumExpect) -> Value {
    let mut m = Map::new();
    for (rel, operand) in &n.rels {
        let v = match operand {
            Operand::Lit(x) => json!(x),
            Operand::Var(name) => json!(name),
        };
        m.insert(rel.name().into(), v);
    }
    if let Some(s) = &n.save {
        m.insert("save".into(), json!(s));
    }
    Value::Object(m)
}

fn expect(e: &Expect) -> Value {
    let mut m = Map::new();
    if let Some(c) = e.error {
        m.insert("error".into(), json!(c.name()));
    }
    if let Some(s) = &e.message_contains {
        m.insert("message_contains".into(), json!(s));
    }
    let bools = [
        ("found", e.found),
        ("deleted", e.deleted),
        ("exists", e.exists),
        ("updated", e.updated),
        ("done", e.done),
    ];
    for (name, b) in bools {
        if let Some(b) = b {
            m.insert(name.into(), json!(b));
        }
    }
    if let Some(v) = &e.value {
        m.insert("value".into(), value(v));
    }
    if !e.value_in.is_empty() {
        m.insert(
            "value_in".into(),
            Value::Array(e.value_in.iter().map(value).collect()),
        );
    }
    let nums = [
        ("version", &e.version),
        ("ttl_ms", &e.ttl_ms),
        ("deleted", &e.deleted_count),
        ("count", &e.count),
    ];
    for (name, n) in nums {
        if let Some(n) = n {
            m.insert(name.into(), num(n));
        }
    }
    if let Some(keys) = &e.keys {
        m.insert("keys".into(), json!(keys));
    }
    if let Some(values) = &e.values {
        m.insert(
            "values".into(),
            Value::Array(values.iter().map(value).collect()),
        );
    }
    if let Some(c) = &e.save_cursor {
        m.insert("save_cursor".into(), json!(c));
    }
    if let Some(results) = &e.results {
        m.insert(
            "results".into(),
            Value::Array(results.iter().map(expect).collect()),
        );
    }
    Value::Object(m)
}
