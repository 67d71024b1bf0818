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
use std::future::Future;
use std::sync::Arc;
use tokio::sync::watch;
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
    /// Set once a config reload removed or replaced the route: why its streams end.
    retired: watch::Sender<Option<String>>,
}

impl NamespaceRoute {
    /// Ends the route's streams (and its mailbox source) with `reason`: a reload removed or
    /// replaced it.
    pub fn retire(&self, reason: String) {
        self.retired.send_replace(Some(reason));
    }

    /// Resolves with the reason once the route is retired.
    pub fn retired(&self) -> impl Future<Output = String> + Send + 'static {
        let mut rx = self.retired.subscribe();
        async move {
            let reason = match rx.wait_for(Option::is_some).await {
                Ok(reason) => reason.clone(),
                Err(_) => None,
            };
            match reason {
                Some(reason) => reason,
                None => std::future::pending().await,
            }
        }
    }

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

/// What a rebuild of the router changed, by name, and what the old router leaves behind.
#[derive(Debug, Default)]
pub struct Changes {
    /// Namespaces the new config adds.
    pub added: Vec<String>,
    /// Namespaces it removes.
    pub removed: Vec<String>,
    /// Namespaces whose config (or a backend they use) it changes.
    pub changed: Vec<String>,
    /// Backends opened for it.
    pub opened: Vec<String>,
    /// Backends no namespace uses any more (or replaced by a changed definition).
    pub closed: Vec<String>,
    /// The old routes of removed and changed namespaces, to retire.
    pub retired: Vec<Arc<NamespaceRoute>>,
    /// The old backends behind `closed`, to close once calls in flight on them are done.
    pub unused: Vec<Backend>,
}

impl Changes {
    /// Whether the rebuild changed nothing.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && self.opened.is_empty()
            && self.closed.is_empty()
    }
}

/// The namespaces `next` adds, removes and changes against `running` (by their config alone; a
/// namespace whose backend's definition changes is changed too).
pub fn diff(running: &ProxyConfig, next: &ProxyConfig) -> (Vec<String>, Vec<String>, Vec<String>) {
    let backend_same = |name: &str| {
        running.backends.get(name) == next.backends.get(name)
            && running.backend_calls == next.backend_calls
    };
    let mut added = Vec::new();
    let mut changed = Vec::new();
    for (name, ns) in &next.namespaces {
        match running.namespaces.get(name) {
            None => added.push(name.clone()),
            Some(old) => {
                let same = old == ns
                    && running.limits_for(old) == next.limits_for(ns)
                    && ns.slot_backends().iter().all(|(_, b)| backend_same(b));
                if !same {
                    changed.push(name.clone());
                }
            }
        }
    }
    let removed = running
        .namespaces
        .keys()
        .filter(|n| !next.namespaces.contains_key(*n))
        .cloned()
        .collect();
    (added, removed, changed)
}

impl Router {
    /// Opens every backend named by the config and builds the routes.
    pub async fn from_config(config: &ProxyConfig) -> Result<Self, OpenError> {
        Ok(Self::build(config, None).await?.0)
    }

    /// Builds the router of `config`. With the `previous` router and its config, backends whose
    /// definition is unchanged are kept (only new or changed ones are opened) and so are the routes
    /// of unchanged namespaces (their streams go on); a changed namespace keeps its metrics.
    pub async fn build(
        config: &ProxyConfig,
        previous: Option<(&Router, &ProxyConfig)>,
    ) -> Result<(Self, Changes), OpenError> {
        let mut changes = Changes::default();
        let mut opened: BTreeMap<String, Backend> = BTreeMap::new();
        for (name, backend) in &config.backends {
            let kept = previous.and_then(|(router, running)| {
                let same = running.backends.get(name) == Some(backend)
                    && running.backend_calls == config.backend_calls;
                same.then(|| router.backends.get(name).cloned()).flatten()
            });
            let backend = match kept {
                Some(kept) => kept,
                None => match backends::open(name, backend, config.backend_calls).await {
                    Ok(b) => {
                        changes.opened.push(name.clone());
                        b
                    }
                    Err(e) => {
                        // What this attempt opened is no one's: close it before giving up.
                        for name in &changes.opened {
                            if let Some(b) = opened.get(name) {
                                b.close().await;
                            }
                        }
                        return Err(e);
                    }
                },
            };
            opened.insert(name.clone(), backend);
        }
        let (added, removed, changed) = match previous {
            Some((_, running)) => diff(running, config),
            None => (config.namespaces.keys().cloned().collect(), vec![], vec![]),
        };
        let mut routes = BTreeMap::new();
        for (name, ns) in &config.namespaces {
            let old = previous.and_then(|(router, _)| router.routes.get(name));
            if let Some(old) = old.filter(|_| !changed.contains(name)) {
                routes.insert(name.clone(), old.clone());
                continue;
            }
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
            let metrics = old.filter(|o| o.pattern == ns.pattern).map_or_else(
                || Arc::new(NamespaceMetrics::new(name, ns.pattern.name())),
                |o| o.metrics.clone(),
            );
            let route = NamespaceRoute {
                name: name.clone(),
                pattern: ns.pattern,
                slots,
                capabilities,
                limits: config.limits_for(ns),
                streams: StreamCount::default(),
                source: ns.source.clone(),
                metrics,
                retired: watch::Sender::new(None),
            };
            routes.insert(name.clone(), Arc::new(route));
        }
        if let Some((router, _)) = previous {
            for (name, old) in &router.routes {
                if removed.contains(name) || changed.contains(name) {
                    changes.retired.push(old.clone());
                }
            }
            for (name, backend) in &router.backends {
                let still = opened
                    .get(name)
                    .is_some_and(|b| Arc::ptr_eq(&b.health, &backend.health));
                if !still {
                    changes.closed.push(name.clone());
                    changes.unused.push(backend.clone());
                }
            }
        }
        changes.added = added;
        changes.removed = removed;
        changes.changed = changed;
        Ok((
            Self {
                routes,
                backends: opened,
            },
            changes,
        ))
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

/// The router a running proxy serves from: one handle that a config reload swaps whole, so a call
/// sees either the old namespaces or the new, never a mix.
#[derive(Debug)]
pub struct LiveRouter(arc_swap::ArcSwap<Router>);

impl LiveRouter {
    /// A handle serving `router`.
    pub fn new(router: Router) -> Self {
        Self(arc_swap::ArcSwap::from_pointee(router))
    }

    /// The router now (cheap: no lock, usually no reference count).
    pub fn load(&self) -> arc_swap::Guard<Arc<Router>> {
        self.0.load()
    }

    /// The router now, as an owned handle (for work that outlives a call).
    pub fn current(&self) -> Arc<Router> {
        self.0.load_full()
    }

    /// Serves `router` from now on; returns the one it replaces.
    pub fn swap(&self, router: Router) -> Arc<Router> {
        self.0.swap(Arc::new(router))
    }
}

/// Interceptor that resolves `x-prism-namespace` and checks the namespace serves `pattern`.
#[derive(Clone, Debug)]
pub struct NamespaceResolver {
    router: Arc<LiveRouter>,
    pattern: Pattern,
}

impl NamespaceResolver {
    /// A resolver for services of `pattern`.
    pub fn new(router: Arc<LiveRouter>, pattern: Pattern) -> Self {
        Self { router, pattern }
    }
}

impl Interceptor for NamespaceResolver {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let route = self.router.load().resolve(request.metadata())?;
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
