//! The `prism.admin.v1.Admin` service: namespaces and their capabilities, for clients to negotiate;
//! and the config reload, for operators.

use crate::auth::layer::Guard;
use crate::auth::{Permission, Principal, layer::denied};
use crate::reload::Reloader;
use crate::router::{LiveRouter, NamespaceRoute};
use crate::telemetry::ProxyMetrics;
use pb::admin_server::Admin;
use prism_proto::admin::v1 as pb;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tonic::{Request, Response, Status};

/// The Admin service over the proxy's router.
#[derive(Clone, Debug)]
pub struct AdminService {
    router: Arc<LiveRouter>,
    guard: Arc<Guard>,
    reloader: Arc<Reloader>,
    metrics: Arc<ProxyMetrics>,
}

impl AdminService {
    /// An Admin service answering from `router`, reloading through `reloader`.
    pub fn new(
        router: Arc<LiveRouter>,
        guard: Arc<Guard>,
        reloader: Arc<Reloader>,
        metrics: Arc<ProxyMetrics>,
    ) -> Self {
        Self {
            router,
            guard,
            reloader,
            metrics,
        }
    }
}

fn principal<T>(request: &Request<T>) -> Result<Arc<Principal>, Status> {
    request
        .extensions()
        .get::<Arc<Principal>>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("the call was not authenticated"))
}

fn info(route: &NamespaceRoute) -> pb::NamespaceInfo {
    pb::NamespaceInfo {
        name: route.name.clone(),
        pattern: route.pattern.name().into(),
        backend: route.primary().backend_name.clone(),
        backend_kind: route.primary().backend.kind.into(),
        slots: slots(route),
    }
}

fn slots(route: &NamespaceRoute) -> Vec<pb::SlotInfo> {
    route
        .slots
        .iter()
        .map(|s| pb::SlotInfo {
            slot: s.slot.name().into(),
            backend: s.backend_name.clone(),
            backend_kind: s.backend.kind.into(),
        })
        .collect()
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn get_capabilities(
        &self,
        request: Request<pb::GetCapabilitiesRequest>,
    ) -> Result<Response<pb::GetCapabilitiesResponse>, Status> {
        let caller = principal(&request)?;
        let name = request.into_inner().namespace;
        if name.is_empty() {
            return Err(Status::invalid_argument("namespace must not be empty"));
        }
        if !caller.allows(&name, Permission::Admin) {
            self.guard.counters().denied(Permission::Admin);
            return Err(denied(&caller, &name, Permission::Admin));
        }
        let router = self.router.load();
        let route = router.get(&name).ok_or_else(|| {
            Status::not_found(format!(
                "namespace '{name}' is not configured on this proxy"
            ))
        })?;
        let limits = route.limits;
        Ok(Response::new(pb::GetCapabilitiesResponse {
            namespace: route.name.clone(),
            pattern: route.pattern.name().into(),
            backend: route.primary().backend_name.clone(),
            backend_kind: route.primary().backend.kind.into(),
            slots: slots(route),
            capabilities: route
                .capabilities
                .iter()
                .map(|c| c.name().to_string())
                .collect(),
            limits: Some(pb::Limits {
                max_key_bytes: limits.max_key_bytes as u64,
                max_value_bytes: limits.max_value_bytes as u64,
                max_batch_size: to_u32(limits.max_batch_size),
                max_scan_page: to_u32(limits.max_scan_page),
            }),
            auth_mode: self.guard.mode().name().into(),
        }))
    }

    async fn list_namespaces(
        &self,
        request: Request<pb::ListNamespacesRequest>,
    ) -> Result<Response<pb::ListNamespacesResponse>, Status> {
        let caller = principal(&request)?;
        let router = self.router.load();
        let namespaces: Vec<_> = router
            .routes()
            .filter(|r| caller.allows(&r.name, Permission::Admin))
            .map(|r| info(r))
            .collect();
        if namespaces.is_empty() && router.routes().next().is_some() {
            self.guard.counters().denied(Permission::Admin);
            return Err(Status::permission_denied(
                "the token has the admin permission on no namespace",
            ));
        }
        Ok(Response::new(pb::ListNamespacesResponse {
            namespaces,
            config_generation: self.metrics.generation.load(Ordering::Relaxed),
        }))
    }

    async fn reload_config(
        &self,
        request: Request<pb::ReloadConfigRequest>,
    ) -> Result<Response<pb::ReloadConfigResponse>, Status> {
        let caller = principal(&request)?;
        let done = self
            .reloader
            .reload(Some(&caller))
            .await
            .map_err(|e| e.status())?;
        Ok(Response::new(pb::ReloadConfigResponse {
            config_generation: done.generation,
            namespaces_added: done.added,
            namespaces_removed: done.removed,
            namespaces_changed: done.changed,
            backends_opened: done.opened,
            backends_closed: done.closed,
        }))
    }
}
