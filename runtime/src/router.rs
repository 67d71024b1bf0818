//! The router: namespace name → pattern, the backend of each slot, capabilities and limits. The
//! [`NamespaceResolver`] interceptor runs in front of every pattern service and attaches the resolved
//! [`NamespaceRoute`] to the request, so services never parse metadata themselves.

use crate::backends::{self, Backend, OpenError};
use crate::config::ProxyConfig;
use crate::limits::Limits;
use crate::patterns::capability::Capability;
use crate::patterns::keyvalue::store::KvStore;
use crate::patterns::stream::StreamCount;
use crate::patterns::{Pattern, Slot};
use crate::telemetry::NamespaceMetrics;
use prism_proto::NAMESPACE_HEADER;
use std::collections::BTreeMap;
use std::sync::Arc;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The backend that fills one slot of a namespace.
#[derive(Debug)]
pub struct RouteSlot {
    /// The slot.
    pub slot: Slot,
    /// The backend's name in the config.
    pub backend_name: String,
    /// The running backend (its health gate guards every call made through this slot).
    pub backend: Backend,
}

/// Everything the proxy knows about one namespace.
#[derive(Debug)]
pub struct NamespaceRoute {
    /// The namespace name.
    pub name: String,
    /// The pattern it serves.
    pub pattern: Pattern,
    /// The backend of every slot, in the pattern's slot order (never empty).
    pub slots: Vec<RouteSlot>,
    /// Capabilities offered: what the adapter declares, less what the namespace disables.
    pub capabilities: Vec<Capability>,
    /// Resolved limits.
    pub limits: Limits,
    /// Live Subscribe and Consume streams, against `limits.max_streams`.
    pub streams: StreamCount,
    /// A Mailbox's topic source.
    pub source: Option<crate::config::SourceConfig>,
    /// Its calls' and messages' metrics.
    pub metrics: Arc<NamespaceMetrics>,
}

impl NamespaceRoute {
    /// The first slot: a plain pattern's one backend.
    pub fn primary(&self) -> &RouteSlot {
        &self.slots[0]
    }

    /// The backend of `slot` (the router builds every slot the namespace uses; an optional slot it
    /// does not use answers with the first).
    pub fn slot(&self, slot: Slot) -> &RouteSlot {
        self.slots
            .iter()
            .find(|s| s.slot == slot)
            .unwrap_or_else(|| self.primary())
    }

    /// The backends, as `backend 'NAME', kind KIND` or `registry 'NAME' (KIND), …`.
    pub fn describe_backends(&self) -> String {
        match self.slots.as_slice() {
            [one] => format!("backend '{}', kind {}", one.backend_name, one.backend.kind),
            many => many
                .iter()
                .map(|s| {
                    format!(
                        "{} '{}' ({})",
                        s.slot.name(),
                        s.backend_name,
                        s.backend.kind
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    /// `Ok` when the namespace offers `capability`, else UNIMPLEMENTED naming it.
    pub fn require(&self, capability: Capability) -> Result<(), Status> {
        if self.capabilities.contains(&capability) {
            Ok(())
        } else {
            Err(Status::unimplemented(format!(
                "capability {capability} is not offered by namespace '{}' ({}); offered: {}",
                self.name,
                self.describe_backends(),
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
        let primary = self.primary();
        primary.backend.keyvalue.as_deref().ok_or_else(|| {
            Status::unimplemented(format!(
                "backend '{}' (kind {}) offers no KeyValue",
                primary.backend_name, primary.backend.kind
            ))
        })
    }
}

/// All namespaces of a running proxy.
#[derive(Debug, Default)]
pub struct Router {
    routes: BTreeMap<String, Arc<NamespaceRoute>>,
    backends: BTreeMap<String, Backend>,
}

impl Router {
    /// Opens every backend named by the config and builds the routes.
    pub async fn from_config(config: &ProxyConfig) -> Result<Self, OpenError> {
        let mut opened: BTreeMap<String, Backend> = BTreeMap::new();
        for (name, backend) in &config.backends {
            opened.insert(
                name.clone(),
                backends::open(name, backend, config.backend_calls).await?,
            );
        }
        let mut routes = BTreeMap::new();
        for (name, ns) in &config.namespaces {
            // ProxyConfig::parse has already rejected slots without a (defined) backend.
            let named = ns.slot_backends();
            let count = named.len();
            let slots: Vec<RouteSlot> = named
                .into_iter()
                .filter_map(|(slot, backend)| {
                    Some(RouteSlot {
                        slot,
                        backend_name: backend.to_string(),
                        backend: opened.get(backend)?.clone(),
                    })
                })
                .collect();
            if slots.len() != count {
                continue;
            }
            let capabilities = capabilities(ns.pattern, &slots)
                .into_iter()
                .filter(|c| !ns.disable.contains(c))
                .collect();
            let route = NamespaceRoute {
                name: name.clone(),
                pattern: ns.pattern,
                slots,
                capabilities,
                limits: config.limits_for(ns),
                streams: StreamCount::default(),
                source: ns.source.clone(),
                metrics: Arc::new(NamespaceMetrics::new(name, ns.pattern.name())),
            };
            routes.insert(name.clone(), Arc::new(route));
        }
        Ok(Self {
            routes,
            backends: opened,
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

    /// Every open backend, by its name in the config.
    pub fn backends(&self) -> impl Iterator<Item = (&str, &Backend)> {
        self.backends.iter().map(|(name, b)| (name.as_str(), b))
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
        for backend in self.backends.values() {
            backend.close().await;
        }
    }
}

/// The capabilities a namespace of `pattern` offers over `slots`: a plain pattern's are what its
/// backend's adapter declares; a composite's follow from what each slot's backend declares.
fn capabilities(pattern: Pattern, slots: &[RouteSlot]) -> Vec<Capability> {
    match pattern {
        Pattern::Keyvalue | Pattern::Pubsub | Pattern::Queue => slots
            .first()
            .map(|s| s.backend.capabilities(pattern))
            .unwrap_or_default(),
        Pattern::MulticastRegistry => crate::patterns::registry::capabilities(slots),
        Pattern::Mailbox => crate::patterns::mailbox::capabilities(slots),
    }
}

/// Whether `slot` of a `pattern` namespace is filled by a backend that declares every capability
/// the slot needs of the pattern it offers.
pub fn slot_ready(pattern: Pattern, slots: &[RouteSlot], slot: Slot) -> bool {
    let (Some(filled), Some(needs)) = (
        slots.iter().find(|s| s.slot == slot),
        pattern.spec().slot(slot),
    ) else {
        return false;
    };
    let declared = filled.backend.capabilities(needs.offers);
    needs.needs.iter().all(|c| declared.contains(c))
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
