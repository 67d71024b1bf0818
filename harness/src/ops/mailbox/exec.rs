//! Executing the mailbox steps. Each scenario run works in its own mailboxes: the harness prefixes
//! every mailbox name with the run's `${prefix}`, so scenarios running at once on the same
//! namespace never see each other's messages, and scenarios name mailboxes plainly.

use super::model::*;
use crate::ops::filter;
use crate::ops::messaging::model::Caller;
use crate::provision::SOURCE_TOPIC;
use crate::runner::Failure;
use crate::runner::compare::{self, mismatch};
use crate::runner::exec::{Session, Vars};
use crate::runner::values::expand;
use prism_proto::client::Mailbox;
use prism_proto::mailbox::v1 as pb;
use std::collections::{BTreeMap, HashMap};

/// Pages a query walks before the harness calls the cursor chain endless.
const MAX_PAGES: u64 = 10_000;

/// The mailbox the proxy sees for scenario mailbox `t` (an empty one stays empty, so a scenario
/// can send it).
fn scoped(t: &str, vars: &Vars) -> Result<String, Failure> {
    let name = expand(t, vars)?;
    if name.is_empty() {
        return Ok(name);
    }
    Ok(format!(
        "{}{name}",
        vars.get("prefix").map_or("", String::as_str)
    ))
}

/// A time bound in ms (0 when not given).
fn millis(t: Option<&String>, what: &str, vars: &Vars) -> Result<i64, Failure> {
    let Some(t) = t else { return Ok(0) };
    let text = expand(t, vars)?;
    text.trim()
        .parse()
        .map_err(|_| Failure::message(format!("{what} {text:?} is not a number of milliseconds")))
}

fn client(session: &Session, caller: &Caller) -> Result<Mailbox, Failure> {
    Ok(session.caller_client(caller)?.mailbox())
}

fn outcome<T>(result: Result<T, tonic::Status>, expect: &MailExpect) -> Result<Option<T>, Failure> {
    compare::outcome(result, expect.error, expect.message_contains.as_deref())
}

fn text(payload: &[u8]) -> String {
    String::from_utf8_lossy(payload).into_owned()
}

/// Checks that `headers` holds every expected header with its value.
fn has_headers(
    want: &BTreeMap<String, String>,
    headers: &HashMap<String, String>,
    vars: &Vars,
) -> Result<(), Failure> {
    for (k, v) in want {
        let v = expand(v, vars)?;
        if headers.get(k) != Some(&v) {
            let mut got: Vec<_> = headers.iter().collect();
            got.sort();
            return Err(mismatch(
                &format!("header {k}"),
                format!("{k}: {v:?}"),
                format!("{got:?}"),
            ));
        }
    }
    Ok(())
}

fn payloads(want: &[String], got: &[String], vars: &Vars) -> Result<(), Failure> {
    let want: Vec<String> = want
        .iter()
        .map(|p| expand(p, vars))
        .collect::<Result<_, _>>()?;
    if want != got {
        return Err(mismatch(
            "payloads (newest first)",
            format!("{want:?}"),
            format!("{got:?}"),
        ));
    }
    Ok(())
}

/// Runs one mailbox step.
pub async fn run(session: &Session, step: &MailStep, vars: &mut Vars) -> Result<(), Failure> {
    match step {
        MailStep::Deliver {
            mailbox,
            payload,
            headers,
            message_id,
            save,
            caller,
            expect,
        } => {
            let request = pb::DeliverRequest {
                mailbox: scoped(mailbox, vars)?,
                payload: expand(payload, vars)?.into_bytes().into(),
                headers: headers
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), expand(v, vars)?)))
                    .collect::<Result<_, Failure>>()?,
                message_id: message_id
                    .as_ref()
                    .map(|m| expand(m, vars))
                    .transpose()?
                    .unwrap_or_default(),
            };
            let got = client(session, caller)?.deliver(request).await;
            if let (Some(r), Some(name)) = (outcome(got.map(|r| r.into_inner()), expect)?, save) {
                vars.insert(name.clone(), r.message_id);
                vars.insert(format!("{name}_at"), r.timestamp_ms.to_string());
            }
            Ok(())
        }
        MailStep::Query {
            mailbox,
            filter,
            since_ms,
            until_ms,
            limit,
            headers_only,
            caller,
            expect,
        } => {
            let mut mail = client(session, caller)?;
            let mut request = pb::QueryRequest {
                mailbox: scoped(mailbox, vars)?,
                filter: Some(filter::expand(filter, vars)?),
                since_ms: millis(since_ms.as_ref(), "since_ms", vars)?,
                until_ms: millis(until_ms.as_ref(), "until_ms", vars)?,
                cursor: String::new(),
                limit: u32::try_from(*limit).unwrap_or(u32::MAX),
                headers_only: *headers_only,
            };
            let mut found = Vec::new();
            let mut ids = std::collections::HashSet::new();
            let mut pages = 0u64;
            loop {
                let got = mail.query(request.clone()).await.map(|r| r.into_inner());
                let Some(page) = outcome(got, expect)? else {
                    return Ok(());
                };
                pages += 1;
                for m in &page.messages {
                    if !ids.insert(m.message_id.clone()) {
                        return Err(Failure::message(format!(
                            "query returned message {} twice (page {pages})",
                            m.message_id
                        )));
                    }
                    if let Some(want) = &expect.headers {
                        has_headers(want, &m.headers, vars)?;
                    }
                    found.push(text(&m.payload));
                }
                if page.next_cursor.is_empty() {
                    break;
                }
                if pages >= MAX_PAGES {
                    return Err(Failure::message(format!(
                        "query still returned a cursor after {MAX_PAGES} pages"
                    )));
                }
                request.cursor = page.next_cursor;
            }
            if let Some(want) = &expect.payloads {
                payloads(want, &found, vars)?;
            }
            if let Some(want) = expect.pages {
                if pages != want {
                    return Err(mismatch("pages", want.to_string(), pages.to_string()));
                }
            }
            Ok(())
        }
        MailStep::Get {
            mailbox,
            message_id,
            caller,
            expect,
        } => {
            let id = expand(message_id, vars)?;
            let request = pb::GetRequest {
                mailbox: scoped(mailbox, vars)?,
                message_id: id.clone(),
            };
            let got = client(session, caller)?.get(request).await;
            let Some(r) = outcome(got.map(|r| r.into_inner()), expect)? else {
                return Ok(());
            };
            let m = r
                .message
                .ok_or_else(|| Failure::message("Get returned no message"))?;
            let header = m.headers.get("message_id").cloned().unwrap_or_default();
            if m.message_id != id || header != id {
                return Err(mismatch(
                    "message_id and its header",
                    format!("{id} / {id}"),
                    format!("{} / {header}", m.message_id),
                ));
            }
            if let Some(want) = &expect.payloads {
                payloads(want, &[text(&m.payload)], vars)?;
            }
            if let Some(want) = &expect.headers {
                has_headers(want, &m.headers, vars)?;
            }
            Ok(())
        }
        MailStep::SourcePublish {
            mailbox,
            payload,
            headers,
            caller,
            expect,
        } => {
            let mut headers: HashMap<String, String> = headers
                .iter()
                .map(|(k, v)| Ok((k.clone(), expand(v, vars)?)))
                .collect::<Result<_, Failure>>()?;
            headers.insert("x-mailbox".into(), scoped(mailbox, vars)?);
            let request = prism_proto::pubsub::v1::PublishRequest {
                topic: SOURCE_TOPIC.into(),
                payload: expand(payload, vars)?.into_bytes().into(),
                headers,
            };
            let source = format!("{}-source", session.namespace);
            let got = session
                .named_client(&source, caller.token.as_deref())?
                .pubsub()
                .publish(request)
                .await;
            outcome(got, expect)?;
            Ok(())
        }
        MailStep::Delete {
            mailbox,
            message_ids,
            caller,
            expect,
        } => {
            let request = pb::DeleteRequest {
                mailbox: scoped(mailbox, vars)?,
                message_ids: message_ids
                    .iter()
                    .map(|m| expand(m, vars))
                    .collect::<Result<_, _>>()?,
            };
            let got = client(session, caller)?.delete(request).await;
            if let Some(r) = outcome(got.map(|r| r.into_inner()), expect)? {
                if let Some(want) = expect.deleted {
                    if u64::from(r.deleted) != want {
                        return Err(mismatch("deleted", want.to_string(), r.deleted.to_string()));
                    }
                }
            }
            Ok(())
        }
    }
}
