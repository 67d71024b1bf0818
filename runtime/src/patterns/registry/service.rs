//! The `prism.registry.v1.MulticastRegistry` gRPC service: Register, Heartbeat, Unregister,
//! Enumerate and Multicast here; the Listen and Watch streams in `listen.rs` and `watch.rs`.

use super::index;
use super::record::{self, REGISTRATIONS};
use super::store::{self, listening, on_messaging, on_registry, publish_event};
use crate::backends::error::StoreError;
use crate::budget::Budget;
use crate::patterns::call::{Call, routed, unimplemented};
use crate::patterns::capability::Capability;
use crate::patterns::filter;
use crate::patterns::keyvalue::store::Condition;
use crate::patterns::keyvalue::validate;
use crate::patterns::names::{check_message, new_id, now_ms};
use crate::patterns::pubsub::adapter::Published;
use crate::patterns::stream::{Drain, Outgoing};
use futures_util::StreamExt;
use pb::multicast_registry_server::MulticastRegistry;
use pb::watch_response::Kind;
use prism_proto::registry::v1 as pb;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Publishes of one Multicast in flight at once.
const FANOUT_CONCURRENCY: usize = 64;
/// Conditional rewrites a Heartbeat tries before giving up on a registration that keeps changing.
const HEARTBEAT_TRIES: usize = 3;

/// The Multicast Registry service.
#[derive(Clone, Debug)]
pub struct RegistryService {
    pub(super) drain: Drain,
    pub(super) buffered: Arc<Budget>,
}

impl RegistryService {
    /// A service whose streams end when `drain` starts, and whose listeners' buffers share the
    /// process-wide `buffered` bytes with PubSub's subscribers.
    pub fn new(drain: Drain, buffered: Arc<Budget>) -> Self {
        Self { drain, buffered }
    }
}

fn not_registered(identity: &str) -> Status {
    Status::not_found(format!(
        "identity '{identity}' is not registered (or its time to live ran out)"
    ))
}

/// A registration's current stored value, if live.
pub(super) async fn stored(
    call: &Call,
    identity: &str,
) -> Result<Option<(pb::Registration, u64)>, Status> {
    let kv = store::keyvalue(call)?;
    let entry = on_registry(
        call,
        kv.get(&call.route.name, &record::registration_key(identity)),
    )
    .await?;
    Ok(entry.and_then(|e| record::decode(&e.value, now_ms()).map(|r| (r, e.version))))
}

#[tonic::async_trait]
impl MulticastRegistry for RegistryService {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let (call, r) = routed(request, Capability::RegistryBasic)?;
        let limits = &call.route.limits;
        record::check_identity(&r.identity, limits)?;
        record::check_metadata(&r.metadata, limits)?;
        let ttl = validate::ttl("ttl_ms", r.ttl_ms)?;
        let kv = store::keyvalue(&call)?;
        let cas = kv
            .cas()
            .ok_or_else(|| unimplemented(&call.route, Capability::RegistryBasic))?;
        let now = now_ms();
        let registration = pb::Registration {
            identity: r.identity.clone(),
            metadata: r.metadata,
            expires_at_ms: record::expires_at(now, ttl),
            registered_at_ms: now,
            revision: new_id(),
        };
        let key = record::registration_key(&r.identity);
        let bytes = record::encode(&registration);
        let ns = call.route.name.as_str();
        let created = on_registry(&call, async {
            match cas
                .set_if(ns, &key, bytes.clone(), ttl, Condition::IfAbsent)
                .await
            {
                Ok(_) => Ok(true),
                Err(StoreError::AlreadyExists { .. } | StoreError::VersionMismatch { .. }) => {
                    Ok(false)
                }
                Err(e) => Err(e),
            }
        })
        .await?;
        if !created {
            if !r.replace {
                return Err(Status::already_exists(format!(
                    "identity '{}' is already registered (set replace to overwrite it)",
                    r.identity
                )));
            }
            if let Some((old, _)) = stored(&call, &r.identity).await? {
                index::forget(&call, kv.as_ref(), &old, Some(&registration)).await?;
            }
            on_registry(&call, kv.set(ns, &key, bytes, ttl)).await?;
        }
        index::write(&call, kv.as_ref(), &registration, ttl).await?;
        let kind = if created {
            Kind::Registered
        } else {
            Kind::Updated
        };
        publish_event(&call, kind, registration.clone()).await;
        Ok(Response::new(pb::RegisterResponse {
            registration: Some(registration),
            replaced: !created,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let (call, r) = routed(request, Capability::RegistryBasic)?;
        record::check_identity(&r.identity, &call.route.limits)?;
        let ttl = validate::ttl("ttl_ms", r.ttl_ms)?;
        let kv = store::keyvalue(&call)?;
        let cas = kv
            .cas()
            .ok_or_else(|| unimplemented(&call.route, Capability::RegistryBasic))?;
        let key = record::registration_key(&r.identity);
        for _ in 0..HEARTBEAT_TRIES {
            let Some((mut current, version)) = stored(&call, &r.identity).await? else {
                return Err(not_registered(&r.identity));
            };
            current.expires_at_ms = record::expires_at(now_ms(), ttl);
            let bytes = record::encode(&current);
            let written = on_registry(&call, async {
                match cas
                    .set_if(
                        &call.route.name,
                        &key,
                        bytes,
                        ttl,
                        Condition::IfVersion(version),
                    )
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(StoreError::VersionMismatch { .. } | StoreError::AlreadyExists { .. }) => {
                        Ok(false)
                    }
                    Err(e) => Err(e),
                }
            })
            .await?;
            if written {
                index::write(&call, kv.as_ref(), &current, ttl).await?;
                return Ok(Response::new(pb::HeartbeatResponse {
                    expires_at_ms: current.expires_at_ms,
                }));
            }
        }
        Err(Status::aborted(format!(
            "identity '{}' changed {HEARTBEAT_TRIES} times while its heartbeat was written; retry",
            r.identity
        )))
    }

    async fn unregister(
        &self,
        request: Request<pb::UnregisterRequest>,
    ) -> Result<Response<pb::UnregisterResponse>, Status> {
        let (call, r) = routed(request, Capability::RegistryBasic)?;
        record::check_identity(&r.identity, &call.route.limits)?;
        let kv = store::keyvalue(&call)?;
        if let Some((old, _)) = stored(&call, &r.identity).await? {
            index::forget(&call, kv.as_ref(), &old, None).await?;
        }
        let existed = on_registry(
            &call,
            kv.delete(&call.route.name, &record::registration_key(&r.identity)),
        )
        .await?;
        if existed {
            let gone = pb::Registration {
                identity: r.identity,
                ..pb::Registration::default()
            };
            publish_event(&call, Kind::Unregistered, gone).await;
        }
        Ok(Response::new(pb::UnregisterResponse { existed }))
    }

    async fn enumerate(
        &self,
        request: Request<pb::EnumerateRequest>,
    ) -> Result<Response<pb::EnumerateResponse>, Status> {
        let (call, r) = routed(request, Capability::RegistryBasic)?;
        let limits = &call.route.limits;
        filter::check("filter", r.filter.as_ref(), limits)?;
        let limit = validate::scan_limit(r.limit, limits)?;
        let after = validate::decode_cursor(&r.cursor, REGISTRATIONS).map_err(|_| {
            Status::invalid_argument("cursor is not a cursor returned by Enumerate")
        })?;
        let kv = store::keyvalue(&call)?;
        let mut page = Vec::new();
        let mut more = false;
        let mut last_key = String::new();
        index::each_match(
            &call,
            kv.as_ref(),
            r.filter.as_ref(),
            after,
            limit + 1,
            |reg, key| {
                if page.len() == limit {
                    more = true;
                    return Ok(false);
                }
                last_key = key.to_string();
                page.push(reg);
                Ok(true)
            },
        )
        .await?;
        Ok(Response::new(pb::EnumerateResponse {
            registrations: page,
            next_cursor: if more {
                validate::encode_cursor(&last_key)
            } else {
                String::new()
            },
        }))
    }

    async fn multicast(
        &self,
        request: Request<pb::MulticastRequest>,
    ) -> Result<Response<pb::MulticastResponse>, Status> {
        let (call, r) = routed(request, Capability::RegistryMulticast)?;
        let limits = call.route.limits;
        filter::check("filter", r.filter.as_ref(), &limits)?;
        check_message(&r.payload, &r.headers, &limits)?;
        let kv = store::keyvalue(&call)?;
        let bus = store::messaging(&call)?;
        let mut targets: Vec<String> = Vec::new();
        // The targets and the live listeners are read at once: two walks, one wait.
        let matching = index::each_of_all(&call, kv.as_ref(), r.filter.as_ref(), |reg, _| {
            if targets.len() == limits.max_fanout {
                return Err(Status::resource_exhausted(format!(
                    "the filter matches more than {} identities, the limit max_fanout; narrow it",
                    limits.max_fanout
                )));
            }
            targets.push(reg.identity);
            Ok(true)
        });
        let (matched, live) = tokio::join!(matching, listening(&call, kv.as_ref()));
        matched?;
        let live = live?;
        let message_id = new_id();
        let sent_at = now_ms();
        let ns = call.route.name.as_str();
        let outcomes: Vec<pb::TargetOutcome> = futures_util::stream::iter(targets)
            .map(|identity| {
                let call = &call;
                let bus = &bus;
                let live = &live;
                let message = Published {
                    topic: record::listen_topic(&identity),
                    payload: r.payload.clone(),
                    headers: r.headers.clone(),
                    message_id: message_id.clone(),
                    published_at_ms: sent_at,
                };
                async move {
                    if !live.contains(&identity) {
                        return pb::TargetOutcome {
                            identity,
                            delivered: false,
                            reason: "no live listener".into(),
                        };
                    }
                    match on_messaging(call, bus.publish(ns, message)).await {
                        Ok(()) => pb::TargetOutcome {
                            identity,
                            delivered: true,
                            reason: String::new(),
                        },
                        Err(status) => pb::TargetOutcome {
                            identity,
                            delivered: false,
                            reason: format!("{}: {}", status.code(), status.message()),
                        },
                    }
                }
            })
            .buffered(FANOUT_CONCURRENCY)
            .collect()
            .await;
        let delivered = outcomes.iter().filter(|o| o.delivered).count();
        call.route.metrics.messaging.sent(delivered as u64);
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Ok(Response::new(pb::MulticastResponse {
            message_id,
            targets: count(outcomes.len()),
            delivered: count(delivered),
            failed: count(outcomes.len() - delivered),
            outcomes,
        }))
    }

    type ListenStream = Outgoing<pb::ListenResponse>;

    async fn listen(
        &self,
        request: Request<pb::ListenRequest>,
    ) -> Result<Response<Self::ListenStream>, Status> {
        super::listen::listen(self, request).await
    }

    type WatchStream = Outgoing<pb::WatchResponse>;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        super::watch::watch(self, request).await
    }
}
