//! What every pattern service does around an adapter call: find the call's route, check the
//! capability it needs, run it under the backend's health gate with the caller's deadline, and map
//! adapter errors to gRPC statuses.

use crate::backends::error::{StoreError, StoreResult};
use crate::backends::health::CallError;
use crate::patterns::capability::Capability;
use crate::patterns::{Pattern, Slot};
use crate::router::{NamespaceRoute, RouteSlot, route_of};
use crate::server::protocol::CallDeadline;
use crate::telemetry::calls::CallMethod;
use crate::telemetry::methods::{MethodId, methods};
use crate::telemetry::trace::{Traced, attr};
use crate::telemetry::{Family, Operation};
use std::future::Future;
use std::sync::Arc;
use tokio::time::Instant;
use tonic::{Request, Status};

/// The gRPC status of an adapter error from the route's first (for plain patterns: only) slot.
pub fn status(route: &NamespaceRoute, e: StoreError) -> Status {
    slot_status(route, route.primary(), e)
}

/// The gRPC status of an adapter error from `slot`'s backend, naming that backend.
pub fn slot_status(route: &NamespaceRoute, slot: &RouteSlot, e: StoreError) -> Status {
    match e {
        StoreError::AlreadyExists { .. } => Status::already_exists(e.to_string()),
        StoreError::TooLarge { .. } | StoreError::OverBackendLimit(_) => {
            Status::resource_exhausted(e.to_string())
        }
        StoreError::VersionMismatch { .. } => Status::aborted(e.to_string()),
        StoreError::Unavailable(_) => {
            tracing::warn!(namespace = %route.name, backend = %slot.backend_name, slot = slot.slot.name(), error = %e, "backend unavailable");
            Status::unavailable(format!(
                "backend '{}' is unavailable: {e}",
                slot.backend_name
            ))
        }
        StoreError::Internal(_) => {
            tracing::error!(namespace = %route.name, backend = %slot.backend_name, slot = slot.slot.name(), error = %e, "backend error");
            Status::internal(format!("backend '{}' failed: {e}", slot.backend_name))
        }
    }
}

/// The status that ends a stream on a backend error. An outage also marks the backend down, so
/// its health check reconnects it before the next call instead of that call finding the broken
/// connection.
pub fn stream_status(route: &NamespaceRoute, e: StoreError) -> Status {
    slot_stream_status(route, route.primary(), e)
}

/// [`stream_status`] for an error from `slot`'s backend.
pub fn slot_stream_status(route: &NamespaceRoute, slot: &RouteSlot, e: StoreError) -> Status {
    if let StoreError::Unavailable(cause) = &e {
        slot.backend.health.mark_down(cause.to_string());
    }
    slot_status(route, slot, e)
}

/// UNIMPLEMENTED naming `capability` (for an adapter accessor that returned `None`).
pub fn unimplemented(route: &NamespaceRoute, capability: Capability) -> Status {
    route.require(capability).err().unwrap_or_else(|| {
        Status::unimplemented(format!("capability {capability} has no adapter support"))
    })
}

/// One call's route and its caller's deadline; backend calls go through [`Call::backend`].
#[derive(Clone, Debug)]
pub struct Call {
    /// The namespace's route.
    pub route: Arc<NamespaceRoute>,
    /// The caller's gRPC deadline, if it sent one.
    pub deadline: Option<Instant>,
    /// The gRPC method, for the backend calls' operation label.
    pub method: MethodId,
    /// The call's span, when it is traced (its backend calls become child spans).
    pub traced: Option<Traced>,
}

impl Call {
    /// Runs a backend call on the route's first (for plain patterns: only) slot; see [`Call::on`].
    pub async fn backend<T>(
        &self,
        call: impl Future<Output = StoreResult<T>>,
    ) -> Result<T, Status> {
        self.on(self.route.primary(), call).await
    }

    /// Runs a backend call under `slot`'s backend's [`Health`](crate::backends::health::Health):
    /// its deadline, fail-fast while down, and the status mapping naming that backend.
    pub async fn on<T>(
        &self,
        slot: &RouteSlot,
        call: impl Future<Output = StoreResult<T>>,
    ) -> Result<T, Status> {
        let route = &self.route;
        let backend = &slot.backend_name;
        let family = match (slot.slot, route.pattern) {
            (Slot::Messaging, _) | (Slot::Backend, Pattern::Pubsub | Pattern::Queue) => {
                Family::Messaging
            }
            _ => Family::Db,
        };
        let op = Operation {
            method: self.method,
            family,
        };
        let started = self.traced.as_ref().map(|_| std::time::SystemTime::now());
        let answer = slot
            .backend
            .health
            .call(op, self.deadline, call)
            .await
            .map_err(|e| match e {
                CallError::Store(e) => slot_status(route, slot, e),
                CallError::Down { for_ms, reason } => Status::unavailable(format!(
                    "backend '{backend}' is unavailable (down for {for_ms} ms: {reason}); the proxy retries it in the background"
                )),
                CallError::TimedOut(after) => {
                    tracing::warn!(namespace = %route.name, backend = %backend, slot = slot.slot.name(), timeout_ms = after.as_millis() as u64, "backend call timed out");
                    Status::unavailable(format!(
                        "backend '{backend}' did not answer within {} ms (backend_calls.timeout_ms); the operation may or may not have been applied",
                        after.as_millis()
                    ))
                }
                CallError::CallerDeadline => Status::deadline_exceeded(format!(
                    "the call's deadline passed while waiting for backend '{backend}'"
                )),
            });
        if let (Some(traced), Some(started)) = (&self.traced, started) {
            self.backend_span(traced, slot, family, started, answer.as_ref().err());
        }
        answer
    }

    /// The child span of one backend call: the conventions' database or messaging attributes,
    /// and an error only for the backend's own failures (not a conflict or a caller's deadline).
    fn backend_span(
        &self,
        traced: &Traced,
        slot: &RouteSlot,
        family: Family,
        started: std::time::SystemTime,
        failed: Option<&Status>,
    ) {
        let operation = methods().short(self.method);
        let (system, op_key) = match family {
            Family::Db => ("db.system.name", "db.operation.name"),
            Family::Messaging => ("messaging.system", "messaging.operation.name"),
        };
        let attributes = vec![
            attr(system, slot.backend.kind),
            attr(op_key, operation),
            attr("prism.backend", slot.backend_name.clone()),
            attr("prism.slot", slot.slot.name()),
            attr("prism.namespace", self.route.name.clone()),
            attr("prism.pattern", self.route.pattern.name()),
        ];
        let error = failed
            .filter(|s| {
                matches!(
                    s.code(),
                    tonic::Code::Unavailable | tonic::Code::Internal | tonic::Code::Unknown
                )
            })
            .map(|s| crate::telemetry::CODE_NAMES[s.code() as usize]);
        traced.backend_span(
            format!("{operation} {}", slot.backend_name),
            started,
            attributes,
            error,
        );
    }

    /// The same route without the caller's deadline: for backend calls a long-lived stream makes
    /// after its opening call (each gets the backend call timeout; none is traced, so a stream
    /// does not grow a span per delivery).
    pub fn detached(&self) -> Call {
        Call {
            route: self.route.clone(),
            deadline: None,
            method: self.method,
            traced: None,
        }
    }
}

/// A request's route (checked to offer `capability`), its deadline, and its message.
pub fn routed<T>(request: Request<T>, capability: Capability) -> Result<(Call, T), Status> {
    let route = route_of(&request)?;
    route.require(capability)?;
    let deadline = request.extensions().get::<CallDeadline>().map(|d| d.0);
    let method = request
        .extensions()
        .get::<CallMethod>()
        .map_or_else(|| methods().other(), |m| m.0);
    let traced = request.extensions().get::<Traced>().cloned();
    Ok((
        Call {
            route,
            deadline,
            method,
            traced,
        },
        request.into_inner(),
    ))
}
