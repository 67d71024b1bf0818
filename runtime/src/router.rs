//! The router: namespace name → pattern, backend adapter, capabilities and limits. The
//! [`NamespaceResolver`] interceptor runs in front of every pattern service and attaches the resolved
//! [`NamespaceRoute`] to the request, so services never parse metadata themselves.

use crate::backends::{self, Backend, OpenError};
use crate::config::ProxyConfig;
use crate::limits::Limits;
use crate::patterns::Pattern;
use crate::patterns::capability::Capability;
use crate::patterns::keyvalue::store::KvStore;
use crate::patterns::stream::StreamCount;
use prism_proto::NAMESPACE_HEADER;
use std::collections::BTreeMap;
use std::sync::Arc;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Everything the proxy knows about one namespace.
#[derive(Debug)]
pub struct NamespaceRoute {
    /// The namespace name.
    pub name: String,
    /// The pattern it serves.
    pub pattern: Pattern,
    /// The backend's name in the config.
    pub backend_name: String,
    /// The running backend.
    pub backend: Backend,
    /// Capabilities offered: what the adapter declares, less what the namespace disables.
    pub capabilities: Vec<Capability>,
    /// Resolved limits.
    pub limits: Limits,
    /// Live Subscribe and Consume streams, against `limits.max_streams`.
    pub streams: StreamCount,
}

impl NamespaceRoute {
    /// `Ok` when the namespace offers `capability`, else UNIMPLEMENTED naming it.
    pub fn require(&self, capability: Capability) -> Result<(), Status> {
        if self.capabilities.contains(&capability) {
            Ok(())
        } else {
            Err(Status::unimplemented(format!(
                "capability {capability} is not offered by namespace '{}' (backend '{}', kind {}); offered: {}",
                self.name,
                self.backend_name,
                self.backend.kind,
                self.capabilities
                    .iter()
                    .map(|c| c.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    }
}

impl NamespaceRoute {
    /// The KeyValue adapter (every KeyValue namespace has one: the config checks its backend).
    pub fn keyvalue(&self) -> Result<&dyn KvStore, Status> {
        self.backend.keyvalue.as_deref().ok_or_else(|| {
            Status::unimplemented(format!(
                "backend '{}' (kind {}) offers no KeyValue",
                self.backend_name, self.backend.kind
            ))
        })
    }
}

/// All namespaces of a running proxy.
#[derive(Debug, Default)]
pub struct Router {
    routes: BTreeMap<String, Arc<NamespaceRoute>>,
    backends: Vec<Backend>,
}

impl Router {
    /// Opens every backend named by the config and builds the routes.
    pub async fn from_config(config: &ProxyConfig) -> Result<Self, OpenError> {
        let mut opened: BTreeMap<&str, Backend> = BTreeMap::new();
        for (name, backend) in &config.backends {
            opened.insert(
                name,
                backends::open(name, backend, config.backend_calls).await?,
            );
        }
        let mut routes = BTreeMap::new();
        for (name, ns) in &config.namespaces {
            let Some(backend) = opened.get(ns.backend.as_str()) else {
                continue; // ProxyConfig::validate has already rejected unknown backends.
            };
            let capabilities = backend
                .capabilities(ns.pattern)
                .into_iter()
                .filter(|c| !ns.disable.contains(c))
                .collect();
            let route = NamespaceRoute {
                name: name.clone(),
                pattern: ns.pattern,
                backend_name: ns.backend.clone(),
                backend: backend.clone(),
                capabilities,
                limits: config.limits_for(ns),
                streams: StreamCount::default(),
            };
            routes.insert(name.clone(), Arc::new(route));
        }
        Ok(Self {
            routes,
            backends: opened.into_values().collect(),
        })
    }

    /// The route of a namespace by name.
    pub fn get(&self, name: &str) -> Option<&Arc<NamespaceRoute>> {
        self.routes.get(name)
    }

    /// Every route, ordered by namespace name.
    pub fn routes(&self) -> impl Iterator<Item = &Arc<NamespaceRoute>> {
        self.routes.values()
    }

    /// The largest value any namespace accepts, for sizing the gRPC message limit.
    pub fn max_value_bytes(&self) -> usize {
        self.routes
            .values()
            .map(|r| r.limits.max_value_bytes)
            .max()
            .unwrap_or(0)
    }

    /// Resolves the namespace named in a request's metadata.
    pub fn resolve(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<Arc<NamespaceRoute>, Status> {
        let Some(raw) = metadata.get(NAMESPACE_HEADER) else {
            return Err(Status::invalid_argument(format!(
                "missing namespace: set the '{NAMESPACE_HEADER}' request metadata"
            )));
        };
        let name = raw.to_str().map_err(|_| {
            Status::invalid_argument(format!(
                "'{NAMESPACE_HEADER}' metadata is not printable ASCII"
            ))
        })?;
        // The answer names only what the caller asked for: listing the configured namespaces would
        // tell any caller with a matching grant which other tenants this proxy serves.
        self.routes.get(name).cloned().ok_or_else(|| {
            Status::not_found(format!(
                "namespace '{name}' is not configured on this proxy"
            ))
        })
    }

    /// Closes every backend.
    pub async fn close(&self) {
        for backend in &self.backends {
            backend.close().await;
        }
    }
}

/// Interceptor that resolves `x-prism-namespace` and checks the namespace serves `pattern`.
#[derive(Clone, Debug)]
pub struct NamespaceResolver {
    router: Arc<Router>,
    pattern: Pattern,
}

impl NamespaceResolver {
    /// A resolver for services of `pattern`.
    pub fn new(router: Arc<Router>, pattern: Pattern) -> Self {
        Self { router, pattern }
    }
}

impl Interceptor for NamespaceResolver {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let route = self.router.resolve(request.metadata())?;
        if route.pattern != self.pattern {
            return Err(Status::failed_precondition(format!(
                "namespace '{}' serves the {} pattern, not {}",
                route.name,
                route.pattern.name(),
                self.pattern.name()
            )));
        }
        request.extensions_mut().insert(route);
        Ok(request)
    }
}

/// The route the [`NamespaceResolver`] attached to a request.
pub fn route_of<T>(request: &Request<T>) -> Result<Arc<NamespaceRoute>, Status> {
    request
        .extensions()
        .get::<Arc<NamespaceRoute>>()
        .cloned()
        .ok_or_else(|| {
            Status::internal("namespace was not resolved (service wired without NamespaceResolver)")
        })
}
