//! The `prism.mailbox.v1.Mailbox` gRPC service: Deliver, Query (newest first, by filter and time
//! range, a page at a time), Get and Delete, over the storage slot's KeyValue store.

use super::record;
use crate::backends::error::StoreError;
use crate::patterns::Slot;
use crate::patterns::call::{Call, routed, unimplemented};
use crate::patterns::capability::Capability;
use crate::patterns::filter;
use crate::patterns::keyvalue::store::{Condition, KvStore};
use crate::patterns::keyvalue::{validate, walk};
use crate::patterns::names::{check_message, new_id, now_ms};
use crate::patterns::stream::StreamGuard;
use pb::mailbox_server::Mailbox;
use prism_proto::mailbox::v1 as pb;
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};

/// Keys read per scan call while a Query looks for matching messages.
const PAGE: usize = 256;

/// The Mailbox service.
#[derive(Clone, Debug, Default)]
pub struct MailboxService;

/// The storage slot's KeyValue adapter.
fn storage(call: &Call) -> Result<Arc<dyn KvStore>, Status> {
    call.route
        .slot(Slot::Storage)
        .backend
        .keyvalue
        .clone()
        .ok_or_else(|| unimplemented(&call.route, Capability::MailboxBasic))
}

/// Runs a call on the storage slot's backend.
async fn on_storage<T>(
    call: &Call,
    work: impl Future<Output = crate::backends::error::StoreResult<T>>,
) -> Result<T, Status> {
    call.on(call.route.slot(Slot::Storage), work).await
}

/// Stores `message`, stamped at `stamp_us`, in `mailbox`: its id is reserved in the index first (ALREADY_EXISTS when the
/// mailbox holds it), then the message is written; both expire with the namespace's retention.
pub async fn store(
    call: &Call,
    mailbox: &str,
    stamp_us: i64,
    message: &pb::MailMessage,
) -> Result<(), Status> {
    let kv = storage(call)?;
    let cas = kv
        .cas()
        .ok_or_else(|| unimplemented(&call.route, Capability::MailboxBasic))?;
    let ns = call.route.name.as_str();
    let retention = Some(Duration::from_millis(call.route.limits.retention_ms));
    let key = record::message_key(mailbox, stamp_us, &message.message_id);
    let index = record::index_key(mailbox, &message.message_id);
    let reserved = on_storage(call, async {
        match cas
            .set_if(
                ns,
                &index,
                key.clone().into_bytes().into(),
                retention,
                Condition::IfAbsent,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(StoreError::AlreadyExists { .. } | StoreError::VersionMismatch { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    })
    .await?;
    if !reserved {
        return Err(Status::already_exists(format!(
            "message_id '{}' is already in mailbox '{mailbox}'",
            message.message_id
        )));
    }
    if let Err(status) =
        on_storage(call, kv.set(ns, &key, record::encode(message), retention)).await
    {
        // Free the id again so a retry can store it; if that fails too, the id stays taken and
        // Get reports the message as not found.
        let _ = on_storage(call, kv.delete(ns, &index)).await;
        return Err(status);
    }
    call.route.metrics.messaging.sent(1);
    Ok(())
}

/// The key of message `id` of `mailbox`, if the index holds it.
async fn located(
    call: &Call,
    kv: &dyn KvStore,
    mailbox: &str,
    id: &str,
) -> Result<Option<String>, Status> {
    let entry = on_storage(
        call,
        kv.get(&call.route.name, &record::index_key(mailbox, id)),
    )
    .await?;
    Ok(entry.and_then(|e| String::from_utf8(e.value.to_vec()).ok()))
}

fn check_range(since_ms: i64, until_ms: i64) -> Result<(), Status> {
    if since_ms < 0 || until_ms < 0 {
        return Err(Status::invalid_argument(
            "since_ms and until_ms are milliseconds since the Unix epoch (0: unbounded); they cannot be negative",
        ));
    }
    if until_ms > 0 && since_ms >= until_ms {
        return Err(Status::invalid_argument(format!(
            "since_ms ({since_ms}) must be before until_ms ({until_ms})"
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl Mailbox for MailboxService {
    async fn deliver(
        &self,
        request: Request<pb::DeliverRequest>,
    ) -> Result<Response<pb::DeliverResponse>, Status> {
        let principal = StreamGuard::caller(&request)
            .map(|p| p.subject.clone())
            .unwrap_or_default();
        let (call, r) = routed(request, Capability::MailboxBasic)?;
        let limits = &call.route.limits;
        record::check_mailbox(&r.mailbox, limits)?;
        record::check_headers(&r.headers)?;
        check_message(&r.payload, &r.headers, limits)?;
        let message_id = if r.message_id.is_empty() {
            new_id()
        } else {
            record::check_id("message_id", &r.message_id, limits)?;
            r.message_id
        };
        let stamp_us = record::stamp_us();
        let timestamp_ms = stamp_us / 1000;
        let mut headers = r.headers;
        headers.insert("message_id".into(), message_id.clone());
        headers.insert("timestamp".into(), timestamp_ms.to_string());
        headers.insert("principal".into(), principal);
        let message = pb::MailMessage {
            headers,
            payload: r.payload,
            message_id,
            timestamp_ms,
        };
        store(&call, &r.mailbox, stamp_us, &message).await?;
        Ok(Response::new(pb::DeliverResponse {
            message_id: message.message_id,
            timestamp_ms,
        }))
    }

    async fn query(
        &self,
        request: Request<pb::QueryRequest>,
    ) -> Result<Response<pb::QueryResponse>, Status> {
        let (call, r) = routed(request, Capability::MailboxQuery)?;
        let limits = &call.route.limits;
        record::check_mailbox(&r.mailbox, limits)?;
        filter::check("filter", r.filter.as_ref(), limits)?;
        if let Some(key) = filter::keys(r.filter.as_ref())
            .into_iter()
            .find(|k| !record::is_indexed(k))
        {
            return Err(Status::invalid_argument(format!(
                "filter names header '{key}', which is not indexed: use message_id, timestamp, principal, topic, content_type, schema_id, correlation_id or an 'x-' header"
            )));
        }
        check_range(r.since_ms, r.until_ms)?;
        let limit = validate::scan_limit(r.limit, limits)?;
        let prefix = record::messages_prefix(&r.mailbox);
        let mut after = match validate::decode_cursor(&r.cursor, &prefix) {
            Ok(Some(key)) => Some(key),
            Ok(None) if r.until_ms > 0 => Some(record::before_key(&r.mailbox, r.until_ms)),
            Ok(None) => None,
            Err(_) => {
                return Err(Status::invalid_argument(
                    "cursor is not a cursor returned by Query for this mailbox",
                ));
            }
        };
        let kv = storage(&call)?;
        let records = walk::Records {
            slot: Slot::Storage,
            capability: Capability::MailboxQuery,
            kv: kv.as_ref(),
        };
        let mut messages = Vec::new();
        let mut last_key = String::new();
        let mut more = false;
        'pages: loop {
            let (items, next) = records
                .page(&call, &prefix, after.as_deref(), PAGE, false)
                .await?;
            let now = now_ms();
            for item in &items {
                let Some(mut m) = item
                    .value
                    .as_deref()
                    .and_then(|v| record::decode(v, now, limits.retention_ms))
                else {
                    continue;
                };
                if m.timestamp_ms < r.since_ms {
                    break 'pages;
                }
                if !filter::matches(r.filter.as_ref(), &m.headers) {
                    continue;
                }
                if messages.len() == limit {
                    more = true;
                    break 'pages;
                }
                if r.headers_only {
                    m.payload = Default::default();
                }
                last_key.clone_from(&item.key);
                messages.push(m);
            }
            match (next, items.last()) {
                (true, Some(last)) => after = Some(last.key.clone()),
                _ => break,
            }
        }
        Ok(Response::new(pb::QueryResponse {
            messages,
            next_cursor: if more {
                validate::encode_cursor(&last_key)
            } else {
                String::new()
            },
        }))
    }

    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let (call, r) = routed(request, Capability::MailboxBasic)?;
        let limits = &call.route.limits;
        record::check_mailbox(&r.mailbox, limits)?;
        record::check_id("message_id", &r.message_id, limits)?;
        let kv = storage(&call)?;
        let not_found = || {
            Status::not_found(format!(
                "mailbox '{}' holds no message '{}' (or retention purged it)",
                r.mailbox, r.message_id
            ))
        };
        let key = located(&call, kv.as_ref(), &r.mailbox, &r.message_id)
            .await?
            .ok_or_else(not_found)?;
        let entry = on_storage(&call, kv.get(&call.route.name, &key)).await?;
        let message = entry
            .and_then(|e| record::decode(&e.value, now_ms(), limits.retention_ms))
            .ok_or_else(not_found)?;
        Ok(Response::new(pb::GetResponse {
            message: Some(message),
        }))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let (call, r) = routed(request, Capability::MailboxBasic)?;
        let limits = &call.route.limits;
        record::check_mailbox(&r.mailbox, limits)?;
        validate::batch_len("message_ids", r.message_ids.len(), limits)?;
        for (i, id) in r.message_ids.iter().enumerate() {
            record::check_id(&format!("message_ids[{i}]"), id, limits)?;
        }
        let kv = storage(&call)?;
        let ns = call.route.name.as_str();
        let mut deleted = 0u32;
        for id in &r.message_ids {
            let Some(key) = located(&call, kv.as_ref(), &r.mailbox, id).await? else {
                continue;
            };
            let existed = on_storage(&call, kv.delete(ns, &key)).await?;
            on_storage(&call, kv.delete(ns, &record::index_key(&r.mailbox, id))).await?;
            deleted += u32::from(existed);
        }
        Ok(Response::new(pb::DeleteResponse { deleted }))
    }
}
