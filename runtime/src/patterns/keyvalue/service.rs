//! The `prism.keyvalue.v1.KeyValue` gRPC service: validates requests, checks capabilities, and calls the
//! namespace's adapter. Namespace resolution happens before this, in the router's interceptor.

use super::store::{BatchItem, Condition, Entry};
use super::validate;
use crate::patterns::call::{routed, unimplemented};
use crate::patterns::capability::Capability;
use crate::router::NamespaceRoute;
use pb::key_value_server::KeyValue;
use prism_proto::keyvalue::v1 as pb;
use prost::Message;
use tonic::{Request, Response, Status};

/// The KeyValue service; stateless, all state is in the routes.
#[derive(Clone, Debug, Default)]
pub struct KeyValueService;

fn get_response(entry: Option<Entry>) -> pb::GetResponse {
    match entry {
        Some(e) => pb::GetResponse {
            found: true,
            value: e.value,
            version: e.version,
            ttl_ms: validate::ttl_ms(e.ttl),
        },
        None => pb::GetResponse::default(),
    }
}

fn require_ttl(route: &NamespaceRoute, ttl_ms: u64) -> Result<(), Status> {
    if ttl_ms > 0 {
        route.require(Capability::KvTtl)?;
    }
    Ok(())
}

#[tonic::async_trait]
impl KeyValue for KeyValueService {
    async fn set(
        &self,
        request: Request<pb::SetRequest>,
    ) -> Result<Response<pb::SetResponse>, Status> {
        let (call, r) = routed(request, Capability::KvBasic)?;
        let route = &call.route;
        // Capabilities first: a namespace without them refuses the call whatever its arguments.
        require_ttl(route, r.ttl_ms)?;
        if r.if_absent || r.if_version.is_some() {
            route.require(Capability::KvCas)?;
        }
        validate::key("key", &r.key, &route.limits)?;
        validate::value("value", &r.value, &route.limits)?;
        let ttl = validate::ttl("ttl_ms", r.ttl_ms)?;
        let condition = match (r.if_absent, r.if_version) {
            (true, Some(_)) => {
                return Err(Status::invalid_argument(
                    "if_absent and if_version are mutually exclusive; set at most one",
                ));
            }
            (true, None) => Some(Condition::IfAbsent),
            (false, Some(v)) => Some(Condition::IfVersion(v)),
            (false, None) => None,
        };
        let store = route.keyvalue()?;
        let version = match condition {
            Some(condition) => {
                let cas = store
                    .cas()
                    .ok_or_else(|| unimplemented(route, Capability::KvCas))?;
                call.backend(cas.set_if(&route.name, &r.key, r.value, ttl, condition))
                    .await?
            }
            None => {
                call.backend(store.set(&route.name, &r.key, r.value, ttl))
                    .await?
            }
        };
        Ok(Response::new(pb::SetResponse { version }))
    }

    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let (call, r) = routed(request, Capability::KvBasic)?;
        let route = &call.route;
        validate::key("key", &r.key, &route.limits)?;
        let entry = call
            .backend(route.keyvalue()?.get(&route.name, &r.key))
            .await?;
        Ok(Response::new(get_response(entry)))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let (call, r) = routed(request, Capability::KvBasic)?;
        let route = &call.route;
        validate::key("key", &r.key, &route.limits)?;
        let deleted = call
            .backend(route.keyvalue()?.delete(&route.name, &r.key))
            .await?;
        Ok(Response::new(pb::DeleteResponse { deleted }))
    }

    async fn exists(
        &self,
        request: Request<pb::ExistsRequest>,
    ) -> Result<Response<pb::ExistsResponse>, Status> {
        let (call, r) = routed(request, Capability::KvBasic)?;
        let route = &call.route;
        validate::key("key", &r.key, &route.limits)?;
        let exists = call
            .backend(route.keyvalue()?.exists(&route.name, &r.key))
            .await?;
        Ok(Response::new(pb::ExistsResponse { exists }))
    }

    async fn scan(
        &self,
        request: Request<pb::ScanRequest>,
    ) -> Result<Response<pb::ScanResponse>, Status> {
        let (call, r) = routed(request, Capability::KvScan)?;
        let route = &call.route;
        let scan = route
            .keyvalue()?
            .scan()
            .ok_or_else(|| unimplemented(route, Capability::KvScan))?;
        if r.prefix.len() > route.limits.max_key_bytes {
            return Err(Status::invalid_argument(format!(
                "prefix is {} bytes, over the limit max_key_bytes = {}",
                r.prefix.len(),
                route.limits.max_key_bytes
            )));
        }
        let limit = validate::scan_limit(r.limit, &route.limits)?;
        let after = validate::decode_cursor(&r.cursor, &r.prefix)?;
        let mut items = call
            .backend(scan.scan(
                &route.name,
                &r.prefix,
                after.as_deref(),
                limit + 1,
                route.limits.max_message_bytes(),
                r.keys_only,
            ))
            .await?;
        // A page ends at `limit` items, or earlier when the next item would push the response over
        // the message size limit (but it always holds at least one item, which fits by construction).
        let more = items.len() > limit;
        items.truncate(limit);
        let budget = route.limits.max_message_bytes();
        let mut size = 0usize;
        let available = items.len();
        let mut page = Vec::with_capacity(available);
        for item in items {
            let entry = pb::ScanItem {
                key: item.key,
                value: item.value.unwrap_or_default(),
            };
            size += entry.encoded_len() + 8;
            if size > budget && !page.is_empty() {
                break;
            }
            page.push(entry);
        }
        let next_cursor = if more || page.len() < available {
            page.last()
                .map(|i| validate::encode_cursor(&i.key))
                .unwrap_or_default()
        } else {
            String::new()
        };
        let items = page;
        Ok(Response::new(pb::ScanResponse { items, next_cursor }))
    }

    async fn batch_set(
        &self,
        request: Request<pb::BatchSetRequest>,
    ) -> Result<Response<pb::BatchSetResponse>, Status> {
        let (call, r) = routed(request, Capability::KvBatch)?;
        let route = &call.route;
        let batch = route
            .keyvalue()?
            .batch()
            .ok_or_else(|| unimplemented(route, Capability::KvBatch))?;
        if r.entries.iter().any(|e| e.ttl_ms > 0) {
            route.require(Capability::KvTtl)?;
        }
        validate::batch_len("entries", r.entries.len(), &route.limits)?;
        let mut items = Vec::with_capacity(r.entries.len());
        for (i, e) in r.entries.into_iter().enumerate() {
            validate::key(&format!("entries[{i}].key"), &e.key, &route.limits)?;
            validate::value(&format!("entries[{i}].value"), &e.value, &route.limits)?;
            items.push(BatchItem {
                key: e.key,
                value: e.value,
                ttl: validate::ttl(&format!("entries[{i}].ttl_ms"), e.ttl_ms)?,
            });
        }
        let versions = call.backend(batch.batch_set(&route.name, items)).await?;
        Ok(Response::new(pb::BatchSetResponse { versions }))
    }

    async fn batch_get(
        &self,
        request: Request<pb::BatchGetRequest>,
    ) -> Result<Response<pb::BatchGetResponse>, Status> {
        let (call, r) = routed(request, Capability::KvBatch)?;
        let route = &call.route;
        let batch = route
            .keyvalue()?
            .batch()
            .ok_or_else(|| unimplemented(route, Capability::KvBatch))?;
        validate::batch_len("keys", r.keys.len(), &route.limits)?;
        for (i, k) in r.keys.iter().enumerate() {
            validate::key(&format!("keys[{i}]"), k, &route.limits)?;
        }
        let entries = call
            .backend(batch.batch_get(&route.name, &r.keys, route.limits.max_message_bytes()))
            .await?;
        let response = pb::BatchGetResponse {
            results: entries.into_iter().map(get_response).collect(),
        };
        let size = response.encoded_len();
        if size > route.limits.max_message_bytes() {
            return Err(Status::resource_exhausted(format!(
                "the values of these keys add up to {size} bytes, over the response limit of {} (max_value_bytes + 1 MiB); ask for fewer keys",
                route.limits.max_message_bytes()
            )));
        }
        Ok(Response::new(response))
    }

    async fn batch_delete(
        &self,
        request: Request<pb::BatchDeleteRequest>,
    ) -> Result<Response<pb::BatchDeleteResponse>, Status> {
        let (call, r) = routed(request, Capability::KvBatch)?;
        let route = &call.route;
        let batch = route
            .keyvalue()?
            .batch()
            .ok_or_else(|| unimplemented(route, Capability::KvBatch))?;
        validate::batch_len("keys", r.keys.len(), &route.limits)?;
        for (i, k) in r.keys.iter().enumerate() {
            validate::key(&format!("keys[{i}]"), k, &route.limits)?;
        }
        let deleted = call
            .backend(batch.batch_delete(&route.name, &r.keys))
            .await?;
        Ok(Response::new(pb::BatchDeleteResponse { deleted }))
    }

    async fn expire(
        &self,
        request: Request<pb::ExpireRequest>,
    ) -> Result<Response<pb::ExpireResponse>, Status> {
        let (call, r) = routed(request, Capability::KvTtl)?;
        let route = &call.route;
        let ttl = route
            .keyvalue()?
            .ttl()
            .ok_or_else(|| unimplemented(route, Capability::KvTtl))?;
        validate::key("key", &r.key, &route.limits)?;
        let updated = call
            .backend(ttl.expire(&route.name, &r.key, validate::ttl("ttl_ms", r.ttl_ms)?))
            .await?;
        Ok(Response::new(pb::ExpireResponse { updated }))
    }
}
