//! Printing the KeyValue steps back to YAML (the inverse of `parse.rs`).

use super::model::*;
use crate::scenario::model::{NamespaceRef, Via};
use crate::scenario::print::{num, value};
use serde_json::{Map, Value, json};

/// Adds an op step's keys to the step mapping `m`.
pub fn step(o: &OpStep, m: &mut Map<String, Value>) {
    let (name, args) = op(&o.op);
    m.insert(name.into(), args);
    if o.namespace == NamespaceRef::Other {
        m.insert("namespace".into(), json!("other"));
    }
    if let Some(t) = &o.token {
        m.insert("token".into(), json!(t));
    }
    if o.via == Via::B {
        m.insert("via".into(), json!("b"));
    }
    if let Some(ms) = o.deadline_ms {
        m.insert("deadline_ms".into(), json!(ms));
    }
    if let Some(e) = &o.expect {
        m.insert("expect".into(), expect(e));
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
