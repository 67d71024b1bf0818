//! The request guard: a tower layer in front of every service. It bounds the metadata a call may
//! carry, authenticates the bearer token, and checks the caller's permission on the namespace a
//! pattern call addresses. Health and reflection stay open; Admin calls need a valid token here and
//! their `admin` permission is checked by the Admin service (the namespace is in the request body).

use super::config::AuthMode;
use super::verify::{AuthError, Verifier};
use super::{Permission, Principal};
use crate::server::ConnectionTrust;
use prism_proto::NAMESPACE_HEADER;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use tonic::Status;
use tower::{Layer, Service};

/// Default most metadata entries (headers) one call may carry.
pub const DEFAULT_MAX_HEADERS: usize = 64;

/// What a call needs before it reaches its service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Nothing (health, reflection).
    Open,
    /// A valid token.
    Authenticated,
    /// A valid token with this permission on the namespace in `x-prism-namespace`.
    Namespace(Permission),
    /// Nothing allows it: a method the proxy's permission map does not know (fail-closed).
    Refused,
}

/// The Admin service and its methods (each needs a valid token; the service checks `admin`).
pub const ADMIN_SERVICE: &str = "prism.admin.v1.Admin";
/// The Admin methods the proxy serves.
pub const ADMIN_METHODS: [&str; 3] = ["GetCapabilities", "ListNamespaces", "ReloadConfig"];

/// The requirement of a gRPC path `/package.Service/Method`.
pub fn requirement(path: &str) -> Requirement {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (service, method) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if service == "grpc.health.v1.Health" || service.starts_with("grpc.reflection.") {
        return Requirement::Open;
    }
    if let Some((_, m)) = crate::patterns::method_of(path) {
        return Requirement::Namespace(m.permission);
    }
    if service == ADMIN_SERVICE && ADMIN_METHODS.contains(&method) {
        return Requirement::Authenticated;
    }
    Requirement::Refused
}

/// How often each authentication check failed and each permission was missing.
#[derive(Debug, Default)]
pub struct AuthCounters {
    failures: [AtomicU64; AuthError::CHECKS.len()],
    denials: [AtomicU64; 3],
}

impl AuthCounters {
    /// Failures by check label.
    pub fn failures(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        AuthError::CHECKS
            .iter()
            .zip(&self.failures)
            .map(|(check, n)| (*check, n.load(Ordering::Relaxed)))
    }

    /// Denials by permission label.
    pub fn denials(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        ["read", "write", "admin"]
            .into_iter()
            .zip(&self.denials)
            .map(|(permission, n)| (permission, n.load(Ordering::Relaxed)))
    }

    fn failed(&self, e: &AuthError) {
        self.failures[e.check()].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one call refused for want of `permission`.
    pub fn denied(&self, permission: Permission) {
        let i = match permission {
            Permission::Read => 0,
            Permission::Write => 1,
            Permission::Admin => 2,
        };
        self.denials[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// How callers are authenticated now: a config reload replaces it whole (new keys, new rules).
#[derive(Debug)]
struct Authentication {
    mode: AuthMode,
    verifier: Option<Verifier>,
}

/// The checks, shared by every connection.
#[derive(Debug)]
pub struct Guard {
    auth: arc_swap::ArcSwap<Authentication>,
    anonymous: Arc<Principal>,
    max_headers: usize,
    max_header_bytes: usize,
    counters: AuthCounters,
}

impl Guard {
    /// A guard for `mode`; `verifier` is required with `AuthMode::Jwt`. A call may carry at most
    /// `max_headers` metadata entries of at most `max_header_bytes` in all (HTTP/2's measure).
    pub fn new(
        mode: AuthMode,
        verifier: Option<Verifier>,
        max_headers: usize,
        max_header_bytes: u32,
    ) -> Self {
        Self {
            auth: arc_swap::ArcSwap::from_pointee(Authentication { mode, verifier }),
            anonymous: Arc::new(Principal::unauthenticated()),
            max_headers,
            max_header_bytes: max_header_bytes as usize,
            counters: AuthCounters::default(),
        }
    }

    /// Its failure and denial counters.
    pub fn counters(&self) -> &AuthCounters {
        &self.counters
    }

    /// The authentication mode.
    pub fn mode(&self) -> AuthMode {
        self.auth.load().mode
    }

    /// Authenticates with `mode` and `verifier` from now on (a config reload: new keys, rules,
    /// issuer or audience).
    pub fn replace(&self, mode: AuthMode, verifier: Option<Verifier>) {
        self.auth.store(Arc::new(Authentication { mode, verifier }));
    }

    /// Checks one request; `Ok(None)` for open paths.
    pub fn check<B>(&self, request: &http::Request<B>) -> Result<Option<Arc<Principal>>, Status> {
        let headers = request.headers().len();
        if headers > self.max_headers {
            return Err(Status::resource_exhausted(format!(
                "the call carries {headers} metadata entries, over the limit max_headers = {}",
                self.max_headers
            )));
        }
        let bytes = header_list_bytes(request);
        if bytes > self.max_header_bytes {
            return Err(Status::resource_exhausted(format!(
                "the call's metadata is {bytes} bytes, over the limit server.max_header_bytes = {}",
                self.max_header_bytes
            )));
        }
        let needs = requirement(request.uri().path());
        match needs {
            Requirement::Open => return Ok(None),
            Requirement::Refused => {
                return Err(Status::permission_denied(format!(
                    "{} is not a method this proxy authorizes",
                    request.uri().path()
                )));
            }
            Requirement::Authenticated | Requirement::Namespace(_) => {}
        }
        let auth = self.auth.load();
        let principal = match (&auth.mode, &auth.verifier) {
            (AuthMode::None, _) => self.anonymous.clone(),
            (AuthMode::Jwt, Some(verifier)) => {
                let token = bearer(request).map_err(|e| {
                    self.counters.failed(&e);
                    Status::unauthenticated(e.to_string())
                })?;
                verifier.verify(token).map_err(|e| {
                    self.counters.failed(&e);
                    Status::unauthenticated(format!("authentication failed: {e}"))
                })?
            }
            (AuthMode::Jwt, None) => {
                return Err(Status::internal(
                    "authentication is on but no verifier is configured",
                ));
            }
        };
        if let Requirement::Namespace(permission) = needs {
            if let Some(ns) = request
                .headers()
                .get(NAMESPACE_HEADER)
                .and_then(|v| v.to_str().ok())
            {
                if !principal.allows(ns, permission) {
                    self.counters.denied(permission);
                    return Err(denied(&principal, ns, permission));
                }
            }
        }
        Ok(Some(principal))
    }
}

/// A request's header list size as HTTP/2 counts it (RFC 9113 §6.5.2: name, value and 32 bytes per
/// field), pseudo-headers included.
fn header_list_bytes<B>(request: &http::Request<B>) -> usize {
    let uri = request.uri();
    let pseudo = [
        (":method", request.method().as_str().len()),
        (
            ":path",
            uri.path_and_query().map_or(0, |p| p.as_str().len()),
        ),
        (":scheme", uri.scheme_str().map_or(0, str::len)),
        (
            ":authority",
            uri.authority().map_or(0, |a| a.as_str().len()),
        ),
    ];
    let pseudo: usize = pseudo.iter().map(|(n, v)| n.len() + v + 32).sum();
    request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum::<usize>()
        + pseudo
}

/// PERMISSION_DENIED naming the namespace and the missing permission.
pub fn denied(principal: &Principal, namespace: &str, permission: Permission) -> Status {
    let who = if principal.subject.is_empty() {
        "the token"
    } else {
        principal.subject.as_str()
    };
    Status::permission_denied(format!(
        "{who} lacks the {permission} permission on namespace '{namespace}'"
    ))
}

fn bearer<B>(request: &http::Request<B>) -> Result<&str, AuthError> {
    let value = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?
        .to_str()
        .map_err(|_| AuthError::Malformed("the authorization metadata is not ASCII".into()))?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::Missing);
    }
    Ok(token.trim())
}

/// tonic refuses a request message over the decoding limit with OUT_OF_RANGE; Prism answers every
/// size limit with RESOURCE_EXHAUSTED, so the transport's answer is translated here.
fn oversize_is_resource_exhausted<B: Default>(response: http::Response<B>) -> http::Response<B> {
    match Status::from_header_map(response.headers()) {
        Some(s) if s.code() == tonic::Code::OutOfRange && s.message().contains("message length too large") => {
            Status::resource_exhausted(format!(
                "the request message is over the proxy's message size limit (max_value_bytes + 1 MiB): {}",
                s.message()
            ))
            .into_http()
        }
        _ => response,
    }
}

/// Tower layer applying the [`Guard`].
#[derive(Clone, Debug)]
pub struct AuthLayer {
    guard: Arc<Guard>,
}

impl AuthLayer {
    /// A layer enforcing `guard`.
    pub fn new(guard: Arc<Guard>) -> Self {
        Self { guard }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            guard: self.guard.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps around each route.
#[derive(Clone, Debug)]
pub struct AuthService<S> {
    inner: S,
    guard: Arc<Guard>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for AuthService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Send,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        match self.guard.check(&request) {
            Ok(principal) => {
                if let Some(p) = principal {
                    if let Some(trust) = request.extensions().get::<ConnectionTrust>() {
                        trust.authenticated();
                    }
                    request.extensions_mut().insert(p);
                }
                let call = self.inner.call(request);
                Box::pin(async move { call.await.map(oversize_is_resource_exhausted) })
            }
            Err(status) => {
                tracing::debug!(path = request.uri().path(), code = ?status.code(), reason = status.message(), "call refused");
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_requirements() {
        assert_eq!(
            requirement("/grpc.health.v1.Health/Check"),
            Requirement::Open
        );
        assert_eq!(
            requirement("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            Requirement::Open
        );
        assert_eq!(
            requirement("/prism.keyvalue.v1.KeyValue/Get"),
            Requirement::Namespace(Permission::Read)
        );
        assert_eq!(
            requirement("/prism.keyvalue.v1.KeyValue/BatchDelete"),
            Requirement::Namespace(Permission::Write)
        );
        assert_eq!(
            requirement("/prism.pubsub.v1.PubSub/Subscribe"),
            Requirement::Namespace(Permission::Read)
        );
        assert_eq!(
            requirement("/prism.queue.v1.Queue/Nack"),
            Requirement::Namespace(Permission::Write)
        );
        assert_eq!(
            requirement("/prism.queue.v1.Queue/Purge"),
            Requirement::Refused
        );
        assert_eq!(
            requirement("/prism.admin.v1.Admin/ListNamespaces"),
            Requirement::Authenticated
        );
        assert_eq!(requirement("/nope/Nope"), Requirement::Refused);
        assert_eq!(
            requirement("/prism.keyvalue.v1.KeyValue/Truncate"),
            Requirement::Refused
        );
        assert_eq!(
            requirement("/prism.admin.v1.Admin/DropEverything"),
            Requirement::Refused
        );
    }
}
