//! [`Scenario`] → YAML text that parses back to the same scenario (used by round-trip tests and by
//! `prism-conform check --print`).

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

pub(crate) fn ms(d: std::time::Duration) -> Value {
    json!(format!("{}ms", d.as_millis()))
}

fn step(s: &Step) -> Value {
    let mut m = Map::new();
    match &s.kind {
        StepKind::Call(step) => step.print(&mut m),
        StepKind::Sleep(d) => {
            m.insert("sleep".into(), ms(*d));
        }
        StepKind::RestartProxy(via) => {
            m.insert("restart_proxy".into(), json!(via.name()));
        }
        StepKind::KillProxy(via) => {
            m.insert("kill_proxy".into(), json!(via.name()));
        }
        StepKind::Fault(action) => {
            m.insert("fault".into(), json!({ "backend": action.name() }));
        }
        StepKind::Network(fault) => {
            let mut f = Map::new();
            f.insert("network".into(), json!(fault.name()));
            match fault {
                NetworkFault::Latency { ms, jitter_ms } => {
                    f.insert("ms".into(), json!(ms));
                    f.insert("jitter_ms".into(), json!(jitter_ms));
                }
                NetworkFault::Bandwidth { kbps } => {
                    f.insert("kbps".into(), json!(kbps));
                }
                NetworkFault::Blackhole | NetworkFault::Reset | NetworkFault::Restore => {}
            }
            m.insert("fault".into(), Value::Object(f));
        }
        StepKind::Metrics(step) => {
            m.insert("metrics".into(), metrics(step));
        }
        StepKind::Reload(step) => {
            let change = match step.change.name() {
                ("invalid", _) => json!({ "invalid": {} }),
                (verb, ns) => json!({ verb: ns }),
            };
            m.insert("reload".into(), change);
            if let Some(t) = &step.token {
                m.insert("token".into(), json!(t));
            }
            if let Some(code) = step.error {
                m.insert("expect".into(), json!({ "error": code.name() }));
            }
        }
        StepKind::Within {
            within,
            steps: body,
        } => {
            m.insert("within".into(), ms(*within));
            m.insert("steps".into(), steps(body));
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

fn metrics(step: &MetricsStep) -> Value {
    let mut m = Map::new();
    if let Some(mark) = &step.mark {
        m.insert("mark".into(), json!(mark));
    }
    if !step.expect.is_empty() {
        let list: Vec<Value> = step
            .expect
            .iter()
            .map(|e| {
                let mut x = Map::new();
                x.insert("series".into(), json!(e.series));
                if !e.labels.is_empty() {
                    x.insert("labels".into(), json!(e.labels));
                }
                if let Some(s) = &e.since {
                    x.insert("since".into(), json!(s));
                }
                if let Some(n) = &e.moved {
                    x.insert("moved".into(), num(n));
                }
                if let Some(n) = &e.value {
                    x.insert("value".into(), num(n));
                }
                Value::Object(x)
            })
            .collect();
        m.insert("expect".into(), Value::Array(list));
    }
    Value::Object(m)
}

pub(crate) fn value(v: &ValueSpec) -> Value {
    match v {
        ValueSpec::Text(t) => json!(t),
        ValueSpec::Bytes(b) => json!({ "base64": STANDARD.encode(b) }),
        ValueSpec::Blob { bytes, seed } => json!({ "bytes": bytes, "seed": seed }),
    }
}

pub(crate) fn num(n: &NumExpect) -> Value {
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
