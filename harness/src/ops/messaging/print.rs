//! Printing the messaging steps back to YAML (the inverse of `parse.rs`).

use super::model::*;
use crate::scenario::model::NamespaceRef;
use crate::scenario::print::{ms, num, value};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

fn call_expect(e: &CallExpect) -> Option<Value> {
    let mut m = Map::new();
    if let Some(c) = e.error {
        m.insert("error".into(), json!(c.name()));
    }
    if let Some(s) = &e.message_contains {
        m.insert("message_contains".into(), json!(s));
    }
    (!m.is_empty()).then_some(Value::Object(m))
}

/// Adds a call step's `namespace` and `token` keys (when not the defaults).
pub(crate) fn caller(c: &Caller, m: &mut Map<String, Value>) {
    if c.namespace == NamespaceRef::Other {
        m.insert("namespace".into(), json!("other"));
    }
    if let Some(t) = &c.token {
        m.insert("token".into(), json!(t));
    }
    if c.via == Via::B {
        m.insert("via".into(), json!("b"));
    }
}

fn headers(h: &BTreeMap<String, String>, args: &mut Map<String, Value>) {
    if !h.is_empty() {
        args.insert("headers".into(), json!(h));
    }
}

fn which(w: &Which) -> Value {
    match w {
        Which::All => json!("all"),
        Which::Unknown => json!("unknown"),
        Which::Position(p) => json!({ "position": p }),
        Which::Payload(v) => json!({ "payload": value(v) }),
    }
}

fn from(names: &[String]) -> Value {
    match names {
        [one] => json!(one),
        many => json!(many),
    }
}

/// Adds `step`'s keys to the step mapping `m`.
pub fn step(step: &MsgStep, m: &mut Map<String, Value>) {
    let mut args = Map::new();
    let mut expect = None;
    match step {
        MsgStep::Subscribe {
            topic,
            name,
            caller: c,
            expect: e,
        } => {
            args.insert("topic".into(), json!(topic));
            args.insert("as".into(), json!(name));
            caller(c, m);
            expect = call_expect(e);
        }
        MsgStep::Publish {
            topic,
            payload,
            headers: h,
            caller: c,
            expect: e,
        } => {
            args.insert("topic".into(), json!(topic));
            args.insert("payload".into(), value(payload));
            headers(h, &mut args);
            caller(c, m);
            expect = call_expect(e);
        }
        MsgStep::Consume {
            queue,
            group,
            max_in_flight,
            visibility_timeout_ms,
            auto_ack,
            name,
            caller: c,
            expect: e,
        } => {
            args.insert("queue".into(), json!(queue));
            if let Some(g) = group {
                args.insert("group".into(), json!(g));
            }
            args.insert("max_in_flight".into(), json!(max_in_flight));
            if *visibility_timeout_ms > 0 {
                args.insert("visibility_timeout_ms".into(), json!(visibility_timeout_ms));
            }
            if *auto_ack {
                args.insert("auto_ack".into(), json!(true));
            }
            args.insert("as".into(), json!(name));
            caller(c, m);
            expect = call_expect(e);
        }
        MsgStep::Enqueue {
            queue,
            payload,
            headers: h,
            delay_ms,
            caller: c,
            expect: e,
        } => {
            args.insert("queue".into(), json!(queue));
            args.insert("payload".into(), value(payload));
            headers(h, &mut args);
            if *delay_ms > 0 {
                args.insert("delay_ms".into(), json!(delay_ms));
            }
            caller(c, m);
            expect = call_expect(e);
        }
        MsgStep::Receive {
            from: f,
            count,
            within,
            order,
            expect: e,
        } => {
            args.insert("from".into(), from(f));
            args.insert("count".into(), json!(count));
            args.insert("within".into(), ms(*within));
            if *order == Order::Strict {
                args.insert("order".into(), json!("strict"));
            }
            let mut em = Map::new();
            if let Some(p) = &e.payloads {
                em.insert(
                    "payloads".into(),
                    Value::Array(p.iter().map(value).collect()),
                );
            }
            if !e.headers.is_empty() {
                em.insert("headers".into(), json!(e.headers));
            }
            if let Some(a) = &e.attempt {
                em.insert("attempt".into(), num(a));
            }
            if let Some(d) = &e.dropped {
                em.insert("dropped".into(), num(d));
            }
            if let Some(c) = e.error {
                em.insert("error".into(), json!(c.name()));
            }
            if let Some(s) = &e.message_contains {
                em.insert("message_contains".into(), json!(s));
            }
            expect = (!em.is_empty()).then_some(Value::Object(em));
        }
        MsgStep::ExpectSilence { from: f, duration } => {
            args.insert("from".into(), from(f));
            args.insert("for".into(), ms(*duration));
        }
        MsgStep::Ack {
            from: f,
            which: w,
            expect: e,
        } => {
            args.insert("from".into(), json!(f));
            args.insert("which".into(), which(w));
            expect = call_expect(e);
        }
        MsgStep::Nack {
            from: f,
            which: w,
            requeue_delay_ms,
            expect: e,
        } => {
            args.insert("from".into(), json!(f));
            args.insert("which".into(), which(w));
            if *requeue_delay_ms > 0 {
                args.insert("requeue_delay_ms".into(), json!(requeue_delay_ms));
            }
            expect = call_expect(e);
        }
        MsgStep::Disconnect { from: f } => {
            args.insert("from".into(), json!(f));
        }
    }
    m.insert(step.name().into(), Value::Object(args));
    if let Some(e) = expect {
        m.insert("expect".into(), e);
    }
}
