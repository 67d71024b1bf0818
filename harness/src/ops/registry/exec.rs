//! Executing the registry steps. Each scenario run works in its own corner of the namespace: the
//! harness prefixes every identity with the run's `${prefix}` and tags every registration with the
//! metadata `conform-run: PREFIX`, which every filter it sends also requires — so scenarios running
//! at once on the same namespace never see each other, and scenarios name identities plainly.
//! `listen` and `watch` open named handles whose streams a background task reads into a buffer;
//! `hear`, `events` and `close` work on those.

use super::model::*;
use crate::ops::messaging::model::Caller;
use crate::runner::Failure;
use crate::runner::compare::{self, mismatch};
use crate::runner::exec::{Session, Vars};
use crate::runner::values::expand;
use crate::scenario::code::StatusCode;
use prism_proto::client::Registry;
use prism_proto::filter::v1 as fpb;
use prism_proto::registry::v1 as pb;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::Status;

/// The metadata key that scopes a scenario run's registrations.
pub const RUN_KEY: &str = "conform-run";

/// What a handle's stream yields: a payload heard, or a Watch event (`kind identity`), or the
/// status that ended it.
type Item = Result<String, Status>;

/// One open listener or watcher.
struct Handle {
    items: mpsc::UnboundedReceiver<Item>,
    task: JoinHandle<()>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The registry steps' open handles in one scenario run (closed when the run's session ends).
#[derive(Default)]
pub struct Handles(Mutex<HashMap<String, Handle>>);

impl Handles {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Handle>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn prefix(vars: &Vars) -> String {
    vars.get("prefix").cloned().unwrap_or_default()
}

/// The identity the proxy sees for scenario identity `t` (an empty one stays empty, so a
/// scenario can send it).
fn scoped(t: &str, vars: &Vars) -> Result<String, Failure> {
    let name = expand(t, vars)?;
    if name.is_empty() {
        return Ok(name);
    }
    Ok(format!("{}{name}", prefix(vars)))
}

/// The scenario's name for an identity the proxy returned.
fn unscoped(identity: &str, vars: &Vars) -> String {
    let p = prefix(vars);
    identity.strip_prefix(&p).unwrap_or(identity).to_string()
}

/// `filter` narrowed to this run's registrations.
fn run_filter(filter: &fpb::Filter, vars: &Vars) -> Result<fpb::Filter, Failure> {
    let mine = fpb::Filter {
        clause: Some(fpb::filter::Clause::Compare(fpb::Compare {
            key: RUN_KEY.into(),
            op: fpb::compare::Op::Eq as i32,
            value: prefix(vars),
        })),
    };
    if filter.clause.is_none() {
        return Ok(mine);
    }
    Ok(fpb::Filter {
        clause: Some(fpb::filter::Clause::All(fpb::Filters {
            filters: vec![mine, crate::ops::filter::expand(filter, vars)?],
        })),
    })
}

fn client(session: &Session, caller: &Caller) -> Result<Registry, Failure> {
    Ok(session.caller_client(caller)?.registry())
}

/// Judges a call's outcome against `expect`'s error part; `Ok(Some(value))` when it succeeded as
/// expected and the rest is to be checked.
fn outcome<T>(result: Result<T, Status>, expect: &RegExpect) -> Result<Option<T>, Failure> {
    compare::outcome(result, expect.error, expect.message_contains.as_deref())
}

fn same_list(what: &str, expected: &[String], actual: &[String]) -> Result<(), Failure> {
    if expected == actual {
        Ok(())
    } else {
        Err(mismatch(
            what,
            format!("{expected:?}"),
            format!("{actual:?}"),
        ))
    }
}

fn names(list: &[String], vars: &Vars) -> Result<Vec<String>, Failure> {
    list.iter().map(|t| expand(t, vars)).collect()
}

/// Runs one registry step.
pub async fn run(session: &Session, step: &RegStep, vars: &mut Vars) -> Result<(), Failure> {
    match step {
        RegStep::Register {
            identity,
            metadata,
            ttl_ms,
            replace,
            caller,
            expect,
        } => {
            let mut meta: HashMap<String, String> = metadata
                .iter()
                .map(|(k, v)| Ok((k.clone(), expand(v, vars)?)))
                .collect::<Result<_, Failure>>()?;
            meta.insert(RUN_KEY.into(), prefix(vars));
            let request = pb::RegisterRequest {
                identity: scoped(identity, vars)?,
                metadata: meta,
                ttl_ms: *ttl_ms,
                replace: *replace,
            };
            let got = client(session, caller)?.register(request).await;
            if let Some(r) = outcome(got.map(|r| r.into_inner()), expect)? {
                if let Some(want) = expect.replaced {
                    if r.replaced != want {
                        return Err(mismatch(
                            "replaced",
                            want.to_string(),
                            r.replaced.to_string(),
                        ));
                    }
                }
            }
            Ok(())
        }
        RegStep::Heartbeat {
            identity,
            ttl_ms,
            caller,
            expect,
        } => {
            let request = pb::HeartbeatRequest {
                identity: scoped(identity, vars)?,
                ttl_ms: *ttl_ms,
            };
            outcome(client(session, caller)?.heartbeat(request).await, expect)?;
            Ok(())
        }
        RegStep::Unregister {
            identity,
            caller,
            expect,
        } => {
            let request = pb::UnregisterRequest {
                identity: scoped(identity, vars)?,
            };
            let got = client(session, caller)?.unregister(request).await;
            if let Some(r) = outcome(got.map(|r| r.into_inner()), expect)? {
                if let Some(want) = expect.existed {
                    if r.existed != want {
                        return Err(mismatch("existed", want.to_string(), r.existed.to_string()));
                    }
                }
            }
            Ok(())
        }
        RegStep::Enumerate {
            filter,
            limit,
            caller,
            expect,
        } => {
            let mut registry = client(session, caller)?;
            let mut cursor = String::new();
            let mut found = Vec::new();
            let mut pages = 0u64;
            loop {
                let request = pb::EnumerateRequest {
                    filter: Some(run_filter(filter, vars)?),
                    cursor: cursor.clone(),
                    limit: u32::try_from(*limit).unwrap_or(u32::MAX),
                };
                let got = registry.enumerate(request).await.map(|r| r.into_inner());
                let Some(page) = outcome(got, expect)? else {
                    return Ok(());
                };
                pages += 1;
                found.extend(
                    page.registrations
                        .iter()
                        .map(|r| unscoped(&r.identity, vars)),
                );
                if page.next_cursor.is_empty() {
                    break;
                }
                if pages > 10_000 {
                    return Err(Failure::message(
                        "Enumerate kept returning cursors after 10,000 pages",
                    ));
                }
                cursor = page.next_cursor;
            }
            if let Some(want) = &expect.identities {
                same_list("identities", &names(want, vars)?, &found)?;
            }
            if let Some(want) = expect.pages {
                if pages != want {
                    return Err(mismatch("pages", want.to_string(), pages.to_string()));
                }
            }
            Ok(())
        }
        RegStep::Multicast {
            filter,
            payload,
            caller,
            expect,
        } => {
            let request = pb::MulticastRequest {
                filter: Some(run_filter(filter, vars)?),
                payload: expand(payload, vars)?.into_bytes().into(),
                headers: HashMap::new(),
            };
            let got = client(session, caller)?.multicast(request).await;
            let Some(r) = outcome(got.map(|r| r.into_inner()), expect)? else {
                return Ok(());
            };
            let (delivered, failed): (Vec<_>, Vec<_>) =
                r.outcomes.iter().partition(|o| o.delivered);
            let delivered: Vec<String> = delivered
                .iter()
                .map(|o| unscoped(&o.identity, vars))
                .collect();
            let failed: Vec<String> = failed.iter().map(|o| unscoped(&o.identity, vars)).collect();
            let counts = (r.targets as usize, r.delivered as usize, r.failed as usize);
            if counts
                != (
                    delivered.len() + failed.len(),
                    delivered.len(),
                    failed.len(),
                )
            {
                return Err(mismatch(
                    "targets / delivered / failed counts",
                    format!(
                        "{} / {} / {} (from the outcomes)",
                        delivered.len() + failed.len(),
                        delivered.len(),
                        failed.len()
                    ),
                    format!("{} / {} / {}", counts.0, counts.1, counts.2),
                ));
            }
            if let Some(want) = &expect.delivered_to {
                same_list("delivered_to", &names(want, vars)?, &delivered)?;
            }
            if let Some(want) = &expect.failed_to {
                same_list("failed_to", &names(want, vars)?, &failed)?;
            }
            Ok(())
        }
        RegStep::Listen {
            identity,
            name,
            caller,
            expect,
        } => {
            let request = pb::ListenRequest {
                identity: scoped(identity, vars)?,
            };
            let got = client(session, caller)?.listen(request).await;
            let Some(response) = outcome(got, expect)? else {
                return Ok(());
            };
            let mut stream = response.into_inner();
            match stream.message().await {
                Ok(Some(pb::ListenResponse {
                    event: Some(pb::listen_response::Event::Listening(_)),
                })) => {}
                other => {
                    return Err(Failure::message(format!(
                        "the first Listen message must be `listening`, got {other:?}"
                    )));
                }
            }
            let (tx, rx) = mpsc::unbounded_channel();
            let task = tokio::spawn(async move {
                loop {
                    let item = match stream.message().await {
                        Ok(Some(pb::ListenResponse {
                            event: Some(pb::listen_response::Event::Message(m)),
                        })) => Ok(String::from_utf8_lossy(&m.payload).into_owned()),
                        Ok(Some(_)) => continue,
                        Ok(None) => Err(Status::cancelled("the stream ended without a status")),
                        Err(s) => Err(s),
                    };
                    let end = item.is_err();
                    if tx.send(item).is_err() || end {
                        return;
                    }
                }
            });
            session
                .family::<Handles>()
                .lock()
                .insert(name.clone(), Handle { items: rx, task });
            Ok(())
        }
        RegStep::Watch {
            filter,
            name,
            caller,
            expect,
        } => {
            let request = pb::WatchRequest {
                filter: Some(run_filter(filter, vars)?),
            };
            let got = client(session, caller)?.watch(request).await;
            let Some(response) = outcome(got, expect)? else {
                return Ok(());
            };
            let mut stream = response.into_inner();
            let vars = vars.clone();
            let (tx, rx) = mpsc::unbounded_channel();
            let task = tokio::spawn(async move {
                loop {
                    let item = match stream.message().await {
                        Ok(Some(e)) => {
                            let kind = pb::watch_response::Kind::try_from(e.kind)
                                .map(|k| k.as_str_name().to_ascii_lowercase())
                                .unwrap_or_else(|_| format!("kind {}", e.kind));
                            Ok(match e.registration {
                                Some(r) if kind != "synced" => {
                                    format!("{kind} {}", unscoped(&r.identity, &vars))
                                }
                                _ => kind,
                            })
                        }
                        Ok(None) => Err(Status::cancelled("the stream ended without a status")),
                        Err(s) => Err(s),
                    };
                    let end = item.is_err();
                    if tx.send(item).is_err() || end {
                        return;
                    }
                }
            });
            session
                .family::<Handles>()
                .lock()
                .insert(name.clone(), Handle { items: rx, task });
            Ok(())
        }
        RegStep::Hear {
            from,
            payloads,
            within,
        } => {
            let want = names(payloads, vars)?;
            let got = take(session, from, want.len(), *within).await?;
            same_list(&format!("payloads heard by '{from}'"), &want, &got)
        }
        RegStep::Events {
            from,
            events,
            within,
        } => {
            let want: Vec<String> = events
                .iter()
                .map(|e| match &e.identity {
                    Some(i) => Ok(format!("{} {}", e.kind, expand(i, vars)?)),
                    None => Ok(e.kind.clone()),
                })
                .collect::<Result<_, Failure>>()?;
            let got = take(session, from, want.len(), *within).await?;
            same_list(&format!("events seen by '{from}'"), &want, &got)
        }
        RegStep::Close { handle } => {
            session.family::<Handles>().lock().remove(handle);
            Ok(())
        }
    }
}

/// The next `count` items of handle `from`, waiting at most `within` for all of them.
async fn take(
    session: &Session,
    from: &str,
    count: usize,
    within: Duration,
) -> Result<Vec<String>, Failure> {
    let handles = session.family::<Handles>();
    let Some(mut handle) = handles.lock().remove(from) else {
        return Err(Failure::message(format!(
            "handle '{from}' is not open (it failed to open, or was closed)"
        )));
    };
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    let mut ended: Option<Status> = None;
    while got.len() < count {
        match tokio::time::timeout_at(deadline, handle.items.recv()).await {
            Ok(Some(Ok(item))) => got.push(item),
            Ok(Some(Err(status))) => {
                ended = Some(status);
                break;
            }
            Ok(None) | Err(_) => break,
        }
    }
    handles.lock().insert(from.to_string(), handle);
    if got.len() < count {
        let why = match ended {
            Some(s) => format!(
                "the stream ended with {}: {}",
                StatusCode::from(s.code()),
                s.message()
            ),
            None => format!("nothing more arrived within {} ms", within.as_millis()),
        };
        return Err(Failure {
            message: format!("'{from}' gave {} of {count} items; {why}", got.len()),
            actual: Some(format!("{got:?}")),
            ..Failure::default()
        });
    }
    Ok(got)
}
