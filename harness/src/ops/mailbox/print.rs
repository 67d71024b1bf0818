//! Printing the mailbox steps back to YAML (the inverse of `parse.rs`).

use super::model::*;
use crate::ops::filter;
use crate::ops::messaging::print::caller;
use serde_json::{Map, Value, json};

fn expect(e: &MailExpect, m: &mut Map<String, Value>) {
    let mut x = Map::new();
    if let Some(c) = e.error {
        x.insert("error".into(), json!(c.to_string()));
    }
    if let Some(s) = &e.message_contains {
        x.insert("message_contains".into(), json!(s));
    }
    if let Some(p) = &e.payloads {
        x.insert("payloads".into(), json!(p));
    }
    if let Some(p) = e.pages {
        x.insert("pages".into(), json!(p));
    }
    if let Some(h) = &e.headers {
        x.insert("headers".into(), json!(h));
    }
    if let Some(d) = e.deleted {
        x.insert("deleted".into(), json!(d));
    }
    if !x.is_empty() {
        m.insert("expect".into(), Value::Object(x));
    }
}

/// Adds the step's keys to its YAML mapping.
pub fn step(step: &MailStep, m: &mut Map<String, Value>) {
    let mut args = Map::new();
    match step {
        MailStep::Deliver {
            mailbox,
            payload,
            headers,
            message_id,
            save,
            ..
        } => {
            args.insert("mailbox".into(), json!(mailbox));
            args.insert("payload".into(), json!(payload));
            if !headers.is_empty() {
                args.insert("headers".into(), json!(headers));
            }
            if let Some(id) = message_id {
                args.insert("message_id".into(), json!(id));
            }
            if let Some(s) = save {
                args.insert("as".into(), json!(s));
            }
        }
        MailStep::Query {
            mailbox,
            filter: f,
            since_ms,
            until_ms,
            limit,
            headers_only,
            ..
        } => {
            args.insert("mailbox".into(), json!(mailbox));
            if f.clause.is_some() {
                args.insert("filter".into(), filter::print(f));
            }
            if let Some(s) = since_ms {
                args.insert("since_ms".into(), json!(s));
            }
            if let Some(u) = until_ms {
                args.insert("until_ms".into(), json!(u));
            }
            if *limit > 0 {
                args.insert("limit".into(), json!(limit));
            }
            if *headers_only {
                args.insert("headers_only".into(), json!(true));
            }
        }
        MailStep::Get {
            mailbox,
            message_id,
            ..
        } => {
            args.insert("mailbox".into(), json!(mailbox));
            args.insert("message_id".into(), json!(message_id));
        }
        MailStep::SourcePublish {
            mailbox,
            payload,
            headers,
            ..
        } => {
            args.insert("mailbox".into(), json!(mailbox));
            args.insert("payload".into(), json!(payload));
            if !headers.is_empty() {
                args.insert("headers".into(), json!(headers));
            }
        }
        MailStep::Delete {
            mailbox,
            message_ids,
            ..
        } => {
            args.insert("mailbox".into(), json!(mailbox));
            args.insert("message_ids".into(), json!(message_ids));
        }
    }
    m.insert(step.name().into(), Value::Object(args));
    let (c, e) = step.call();
    caller(c, m);
    expect(e, m);
}
