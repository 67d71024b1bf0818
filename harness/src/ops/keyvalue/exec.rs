//! Executing one op through the Rust client: the request is built from the step (variables expanded)
//! and the response becomes an [`OpOutput`], which the judge compares with the expectation.

use super::judge::judge;
use crate::runner::Failure;
use crate::runner::exec::{Counts, Session, Vars};
use crate::runner::values::{expand, resolve_value};
use crate::scenario::code::StatusCode;
use crate::scenario::model::OpStep;
use crate::scenario::model::{Caller, Op};
use crate::scenario::template;
use bytes::Bytes;
use prism_proto::client::KeyValue;
use prism_proto::keyvalue::v1 as pb;
use std::collections::HashMap;
use std::time::Duration;

/// Longest a single call may take before the step fails.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Most pages `scan_all` follows before failing (a cursor loop guard).
const MAX_PAGES: usize = 100_000;

/// What an op returned.
#[derive(Clone, Debug)]
pub enum OpOutput {
    /// `Set` succeeded.
    Set {
        /// New version.
        version: u64,
    },
    /// `Get` (or one BatchGet result).
    Get(pb::GetResponse),
    /// `Delete`.
    Delete {
        /// Whether the key existed.
        deleted: bool,
    },
    /// `Exists`.
    Exists {
        /// Whether the key exists.
        exists: bool,
    },
    /// `Expire`.
    Expire {
        /// Whether the key existed.
        updated: bool,
    },
    /// `Scan` page or whole `scan_all`.
    Scan {
        /// Keys in returned order.
        keys: Vec<String>,
        /// Values aligned with keys.
        values: Vec<Bytes>,
        /// `next_cursor` of the (last) page.
        next_cursor: String,
    },
    /// `BatchSet`.
    BatchSet {
        /// Versions.
        versions: Vec<u64>,
    },
    /// `BatchGet`.
    BatchGet {
        /// Results in key order.
        results: Vec<pb::GetResponse>,
    },
    /// `BatchDelete`.
    BatchDelete {
        /// How many existed.
        deleted: u32,
    },
    /// The call failed with a gRPC status.
    Error {
        /// The code.
        code: StatusCode,
        /// The message.
        message: String,
    },
}

/// tonic reports a call its own timer cut at the deadline as `CANCELLED: Timeout expired`; the
/// gRPC spec (and the other languages' clients) call that `DEADLINE_EXCEEDED`, which is what the
/// scenario expects whichever side gave up first.
fn deadline_as_specified(out: OpOutput) -> OpOutput {
    match out {
        OpOutput::Error { code, message }
            if code == StatusCode::from(tonic::Code::Cancelled) && message == "Timeout expired" =>
        {
            OpOutput::Error {
                code: tonic::Code::DeadlineExceeded.into(),
                message: "the call's deadline passed (the client's own timer)".into(),
            }
        }
        other => other,
    }
}

fn status(s: tonic::Status) -> OpOutput {
    OpOutput::Error {
        code: s.code().into(),
        message: s.message().to_string(),
    }
}

async fn call<T>(
    fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<Result<T, OpOutput>, Failure> {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(Ok(r)) => Ok(Ok(r.into_inner())),
        Ok(Err(s)) => Ok(Err(status(s))),
        Err(_) => Err(Failure::message(format!(
            "the call did not answer within {}s",
            CALL_TIMEOUT.as_secs()
        ))),
    }
}

/// A short rendering of an op with its expanded key, for reports.
pub fn describe(op: &Op, vars: &HashMap<String, String>) -> String {
    let show = |t: &str| {
        let s = template::expand(t, vars).unwrap_or_else(|_| t.to_string());
        if s.chars().count() > 60 {
            format!("{:?}…", s.chars().take(60).collect::<String>())
        } else {
            format!("{s:?}")
        }
    };
    match op {
        Op::Set { key, .. }
        | Op::Get { key }
        | Op::Delete { key }
        | Op::Exists { key }
        | Op::Expire { key, .. } => format!("{} {}", op.name(), show(key)),
        Op::Scan { prefix, .. } | Op::ScanAll { prefix, .. } => {
            format!("{} prefix {}", op.name(), show(prefix))
        }
        Op::BatchSet { entries } => format!("batch_set ({} entries)", entries.len()),
        Op::BatchGet { keys } | Op::BatchDelete { keys } => {
            format!("{} ({} keys)", op.name(), keys.len())
        }
    }
}

/// Runs `op` against `kv`.
pub async fn execute(
    kv: &mut KeyValue,
    op: &Op,
    vars: &HashMap<String, String>,
) -> Result<OpOutput, Failure> {
    let out = match op {
        Op::Set {
            key,
            value,
            ttl_ms,
            if_absent,
            if_version,
        } => {
            let if_version = match if_version {
                Some(t) => {
                    let text = expand(t, vars)?;
                    Some(text.parse::<u64>().map_err(|_| {
                        Failure::message(format!("if_version {text:?} is not a number"))
                    })?)
                }
                None => None,
            };
            let req = pb::SetRequest {
                key: expand(key, vars)?,
                value: resolve_value(value, vars)?.into(),
                ttl_ms: *ttl_ms,
                if_absent: *if_absent,
                if_version,
            };
            call(kv.set(req))
                .await?
                .map(|r| OpOutput::Set { version: r.version })
        }
        Op::Get { key } => call(kv.get(pb::GetRequest {
            key: expand(key, vars)?,
        }))
        .await?
        .map(OpOutput::Get),
        Op::Delete { key } => call(kv.delete(pb::DeleteRequest {
            key: expand(key, vars)?,
        }))
        .await?
        .map(|r| OpOutput::Delete { deleted: r.deleted }),
        Op::Exists { key } => call(kv.exists(pb::ExistsRequest {
            key: expand(key, vars)?,
        }))
        .await?
        .map(|r| OpOutput::Exists { exists: r.exists }),
        Op::Expire { key, ttl_ms } => call(kv.expire(pb::ExpireRequest {
            key: expand(key, vars)?,
            ttl_ms: *ttl_ms,
        }))
        .await?
        .map(|r| OpOutput::Expire { updated: r.updated }),
        Op::Scan {
            prefix,
            cursor,
            limit,
            keys_only,
        } => {
            let req = pb::ScanRequest {
                prefix: expand(prefix, vars)?,
                cursor: match cursor {
                    Some(c) => expand(c, vars)?,
                    None => String::new(),
                },
                limit: u32::try_from(*limit).unwrap_or(u32::MAX),
                keys_only: *keys_only,
            };
            call(kv.scan(req)).await?.map(|r| OpOutput::Scan {
                keys: r.items.iter().map(|i| i.key.clone()).collect(),
                values: r.items.into_iter().map(|i| i.value).collect(),
                next_cursor: r.next_cursor,
            })
        }
        Op::ScanAll {
            prefix,
            limit,
            keys_only,
        } => return scan_all(kv, &expand(prefix, vars)?, *limit, *keys_only).await,
        Op::BatchSet { entries } => {
            let mut list = Vec::with_capacity(entries.len());
            for e in entries {
                list.push(pb::BatchSetEntry {
                    key: expand(&e.key, vars)?,
                    value: resolve_value(&e.value, vars)?.into(),
                    ttl_ms: e.ttl_ms,
                });
            }
            call(kv.batch_set(pb::BatchSetRequest { entries: list }))
                .await?
                .map(|r| OpOutput::BatchSet {
                    versions: r.versions,
                })
        }
        Op::BatchGet { keys } => {
            let keys = keys
                .iter()
                .map(|k| expand(k, vars))
                .collect::<Result<_, _>>()?;
            call(kv.batch_get(pb::BatchGetRequest { keys }))
                .await?
                .map(|r| OpOutput::BatchGet { results: r.results })
        }
        Op::BatchDelete { keys } => {
            let keys = keys
                .iter()
                .map(|k| expand(k, vars))
                .collect::<Result<_, _>>()?;
            call(kv.batch_delete(pb::BatchDeleteRequest { keys }))
                .await?
                .map(|r| OpOutput::BatchDelete { deleted: r.deleted })
        }
    };
    Ok(out.unwrap_or_else(|e| e))
}

/// Follows cursors to the end, failing on keys out of byte order or repeated across pages.
async fn scan_all(
    kv: &mut KeyValue,
    prefix: &str,
    limit: u64,
    keys_only: bool,
) -> Result<OpOutput, Failure> {
    let mut keys: Vec<String> = Vec::new();
    let mut values = Vec::new();
    let mut cursor = String::new();
    for _ in 0..MAX_PAGES {
        let req = pb::ScanRequest {
            prefix: prefix.to_string(),
            cursor: cursor.clone(),
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
            keys_only,
        };
        let page = match call(kv.scan(req)).await? {
            Ok(page) => page,
            Err(e) => return Ok(e),
        };
        for item in page.items {
            if let Some(last) = keys.last() {
                if item.key.as_bytes() <= last.as_bytes() {
                    return Err(Failure::message(format!(
                        "scan_all: key {:?} came after {:?}: keys must be unique and in byte order across pages",
                        item.key, last
                    )));
                }
            }
            keys.push(item.key);
            values.push(item.value);
        }
        if page.next_cursor.is_empty() {
            return Ok(OpOutput::Scan {
                keys,
                values,
                next_cursor: String::new(),
            });
        }
        cursor = page.next_cursor;
    }
    Err(Failure::message(format!(
        "scan_all: no end after {MAX_PAGES} pages"
    )))
}

/// Runs one op step through the client and judges it (or counts it, in a tallied `parallel`).
pub(crate) async fn run_op(
    session: &Session,
    op: &OpStep,
    vars: &mut Vars,
    tally: Option<&Counts>,
) -> Result<(), Failure> {
    let caller = Caller {
        namespace: op.namespace,
        token: op.token.clone(),
        via: op.via,
    };
    let mut client = session.caller_client(&caller)?;
    if let Some(ms) = op.deadline_ms {
        client = client.with_deadline(Duration::from_millis(ms));
    }
    let mut kv = client.keyvalue();
    let mut out = execute(&mut kv, &op.op, vars).await?;
    if op.deadline_ms.is_some() {
        out = deadline_as_specified(out);
    }
    if let (Some(counts), None) = (tally, &op.expect) {
        let code = match &out {
            OpOutput::Error { code, .. } => *code,
            _ => StatusCode(0),
        };
        *counts.lock().expect("tally lock").entry(code).or_default() += 1;
        return Ok(());
    }
    judge(&out, op.expect.as_ref(), vars)
}
