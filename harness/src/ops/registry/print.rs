//! Printing the registry steps back to YAML (the inverse of `parse.rs`).

use super::model::*;
use crate::ops::filter;
use crate::ops::messaging::print::caller;
use serde_json::{Map, Value, json};
use std::time::Duration;

fn expect(e: &RegExpect, m: &mut Map<String, Value>) {
    let mut x = Map::new();
    if let Some(c) = e.error {
        x.insert("error".into(), json!(c.to_string()));
    }
    if let Some(s) = &e.message_contains {
        x.insert("message_contains".into(), json!(s));
    }
    if let Some(b) = e.replaced {
        x.insert("replaced".into(), json!(b));
    }
    if let Some(b) = e.existed {
        x.insert("existed".into(), json!(b));
    }
    for (key, list) in [
        ("identities", &e.identities),
        ("delivered_to", &e.delivered_to),
        ("failed_to", &e.failed_to),
    ] {
        if let Some(l) = list {
            x.insert(key.into(), json!(l));
        }
    }
    if let Some(p) = e.pages {
        x.insert("pages".into(), json!(p));
    }
    if !x.is_empty() {
        m.insert("expect".into(), Value::Object(x));
    }
}

fn ms(d: Duration) -> Value {
    json!(format!("{}ms", d.as_millis()))
}

/// Adds the step's keys to its YAML mapping.
pub fn step(step: &RegStep, m: &mut Map<String, Value>) {
    let mut args = Map::new();
    match step {
        RegStep::Register {
            identity,
            metadata,
            ttl_ms,
            replace,
            ..
        } => {
            args.insert("identity".into(), json!(identity));
            if !metadata.is_empty() {
                args.insert("metadata".into(), json!(metadata));
            }
            if *ttl_ms > 0 {
                args.insert("ttl_ms".into(), json!(ttl_ms));
            }
            if *replace {
                args.insert("replace".into(), json!(true));
            }
        }
        RegStep::Heartbeat {
            identity, ttl_ms, ..
        } => {
            args.insert("identity".into(), json!(identity));
            args.insert("ttl_ms".into(), json!(ttl_ms));
        }
        RegStep::Unregister { identity, .. } => {
            args.insert("identity".into(), json!(identity));
        }
        RegStep::Enumerate {
            filter: f, limit, ..
        } => {
            if f.clause.is_some() {
                args.insert("filter".into(), filter::print(f));
            }
            if *limit > 0 {
                args.insert("limit".into(), json!(limit));
            }
        }
        RegStep::Multicast {
            filter: f, payload, ..
        } => {
            if f.clause.is_some() {
                args.insert("filter".into(), filter::print(f));
            }
            args.insert("payload".into(), json!(payload));
        }
        RegStep::Listen { identity, name, .. } => {
            args.insert("identity".into(), json!(identity));
            args.insert("as".into(), json!(name));
        }
        RegStep::Watch {
            filter: f, name, ..
        } => {
            if f.clause.is_some() {
                args.insert("filter".into(), filter::print(f));
            }
            args.insert("as".into(), json!(name));
        }
        RegStep::Hear {
            from,
            payloads,
            within,
        } => {
            args.insert("from".into(), json!(from));
            args.insert("payloads".into(), json!(payloads));
            args.insert("within".into(), ms(*within));
        }
        RegStep::Events {
            from,
            events,
            within,
        } => {
            args.insert("from".into(), json!(from));
            let list: Vec<String> = events
                .iter()
                .map(|e| match &e.identity {
                    Some(i) => format!("{} {i}", e.kind),
                    None => e.kind.clone(),
                })
                .collect();
            args.insert("expect".into(), json!(list));
            args.insert("within".into(), ms(*within));
        }
        RegStep::Close { handle } => {
            m.insert("close".into(), json!(handle));
            return;
        }
    }
    m.insert(step.name().into(), Value::Object(args));
    if let Some(c) = step.caller() {
        caller(c, m);
    }
    match step {
        RegStep::Register { expect: e, .. }
        | RegStep::Heartbeat { expect: e, .. }
        | RegStep::Unregister { expect: e, .. }
        | RegStep::Enumerate { expect: e, .. }
        | RegStep::Multicast { expect: e, .. }
        | RegStep::Listen { expect: e, .. }
        | RegStep::Watch { expect: e, .. } => expect(e, m),
        RegStep::Hear { .. } | RegStep::Events { .. } | RegStep::Close { .. } => {}
    }
}
