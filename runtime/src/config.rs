//! The proxy's YAML config: listen address, backends, namespaces. Unknown keys are rejected and every
//! error names `file:line:column`.

use crate::auth::config::AuthConfig;
use crate::backends::BackendConfig;
use crate::backends::health::BackendCallConfig;
use crate::limits::{Limits, LimitsConfig};
use crate::patterns::capability::Capability;
use crate::patterns::{Pattern, Slot};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Default listen address of `prism-proxy`.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8980";

/// The proxy config as loaded from YAML.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Address the gRPC server binds.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Authentication and authorization (JWT by default; `mode: none` must be written out).
    #[serde(default)]
    pub auth: AuthConfig,
    /// Per-connection limits of the gRPC server.
    #[serde(default)]
    pub server: ServerLimits,
    /// Default limits for every namespace.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Deadlines and outage handling of every backend call.
    #[serde(default)]
    pub backend_calls: BackendCallConfig,
    /// Named backend instances.
    pub backends: BTreeMap<String, BackendConfig>,
    /// Named namespaces, each a pattern served by one backend.
    pub namespaces: BTreeMap<String, NamespaceConfig>,
    /// Address of the admin HTTP listener (`/metrics`, `/livez`, `/readyz`), apart from the gRPC
    /// port; metrics are recorded only when it is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_listen: Option<SocketAddr>,
    /// The log's format: `text` (default) or `json` (one JSON object per line).
    #[serde(default)]
    pub log_format: LogFormat,
    /// One log line per call (target `prism::access`: namespace, method, code, duration, peer).
    #[serde(default)]
    pub access_log: bool,
    /// Traces to an OTLP/gRPC collector; off when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<crate::telemetry::trace::TracingConfig>,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per event and line, its fields first.
    Json,
}

fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN
        .parse()
        .expect("default listen address parses")
}

/// Per-connection limits of the gRPC server (over a limit: RESOURCE_EXHAUSTED, or the HTTP/2 stream is
/// refused).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServerLimits {
    /// Most metadata entries (headers) on one call (default 64).
    #[serde(default = "default_max_headers")]
    pub max_headers: usize,
    /// Largest HTTP/2 header list, in bytes (default 16 KiB).
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: u32,
    /// Most concurrent unary calls one connection may open as HTTP/2 streams (default 256).
    #[serde(default = "default_max_streams")]
    pub max_streams_per_connection: u32,
    /// Most Subscribe and Consume streams open at once on one connection (default 256); they have
    /// this budget beside `max_streams_per_connection`, so streams never starve unary calls. One
    /// more is refused with RESOURCE_EXHAUSTED.
    #[serde(default = "default_max_streams")]
    pub max_stream_calls_per_connection: u32,
    /// Most calls served at once per connection; more wait their turn (default 256).
    #[serde(default = "default_max_streams_usize")]
    pub max_in_flight_per_connection: usize,
    /// Threads serving calls: 0 (default) is one thread on a host with at most two cores and one
    /// per core above; 1 runs everything on one thread, which spends no CPU waking idle workers and
    /// gathers each answer into one write (see the README's Performance section for the measured
    /// difference).
    #[serde(default)]
    pub worker_threads: usize,
    /// Most client connections open at once; a connection over it is closed at accept, with a log
    /// line and a count (default 4096; keep it under the process's file-descriptor limit).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A connection that has not sent the HTTP/2 preface within this many milliseconds is closed
    /// (default 10,000).
    #[serde(default = "default_handshake_ms")]
    pub handshake_timeout_ms: u64,
    /// A connection with no call in progress for this many milliseconds is closed with GOAWAY
    /// (default 300,000; 0 keeps idle connections open).
    #[serde(default = "default_idle_ms")]
    pub idle_timeout_ms: u64,
    /// HTTP/2 PING interval on each connection, in milliseconds (default 60,000; 0 turns it off).
    #[serde(default = "default_keepalive_ms")]
    pub keepalive_interval_ms: u64,
    /// A PING not answered within this many milliseconds closes the connection (default 20,000).
    #[serde(default = "default_keepalive_timeout_ms")]
    pub keepalive_timeout_ms: u64,
    /// The bound on a drain (SIGTERM), in milliseconds: connections still open then are cut and the
    /// proxy exits (default 10,000).
    #[serde(default = "default_drain_ms")]
    pub drain_timeout_ms: u64,
    /// Most bytes that request bodies still arriving may hold across the whole process; a call that
    /// would exceed it is refused with RESOURCE_EXHAUSTED (default 128 MiB).
    #[serde(default = "default_buffered_bytes")]
    pub max_buffered_request_bytes: usize,
    /// A request body not complete within this many milliseconds is refused with DEADLINE_EXCEEDED
    /// (default 30,000).
    #[serde(default = "default_body_ms")]
    pub request_body_timeout_ms: u64,
    /// Most calls that need no token (health, reflection) open at once on one connection (default
    /// 4); one more is refused with RESOURCE_EXHAUSTED. They never count as activity for
    /// `idle_timeout_ms`.
    #[serde(default = "default_unauthenticated_per_connection")]
    pub max_unauthenticated_calls_per_connection: usize,
    /// Most streams that need no token (health Watch, reflection) open at once across the process
    /// (default 256); health Check counts only against the per-connection budget.
    #[serde(default = "default_unauthenticated")]
    pub max_unauthenticated_calls: usize,
    /// Most bytes of messages waiting in subscribers' buffers across the process (default 256 MiB);
    /// a message that would exceed it is dropped and counted like one over `subscriber_buffer`.
    #[serde(default = "default_subscriber_bytes")]
    pub max_subscriber_buffer_bytes: usize,
}

fn default_max_headers() -> usize {
    crate::auth::layer::DEFAULT_MAX_HEADERS
}
fn default_max_header_bytes() -> u32 {
    16 * 1024
}
fn default_max_streams() -> u32 {
    256
}
fn default_max_streams_usize() -> usize {
    256
}
fn default_max_connections() -> usize {
    4096
}
fn default_handshake_ms() -> u64 {
    10_000
}
fn default_idle_ms() -> u64 {
    300_000
}
fn default_keepalive_ms() -> u64 {
    60_000
}
fn default_keepalive_timeout_ms() -> u64 {
    20_000
}
fn default_drain_ms() -> u64 {
    10_000
}
fn default_buffered_bytes() -> usize {
    128 * 1024 * 1024
}
fn default_body_ms() -> u64 {
    30_000
}
fn default_unauthenticated_per_connection() -> usize {
    4
}
fn default_unauthenticated() -> usize {
    256
}
fn default_subscriber_bytes() -> usize {
    256 * 1024 * 1024
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_headers: default_max_headers(),
            max_header_bytes: default_max_header_bytes(),
            max_streams_per_connection: default_max_streams(),
            max_stream_calls_per_connection: default_max_streams(),
            max_in_flight_per_connection: default_max_streams_usize(),
            worker_threads: 0,
            max_connections: default_max_connections(),
            handshake_timeout_ms: default_handshake_ms(),
            idle_timeout_ms: default_idle_ms(),
            keepalive_interval_ms: default_keepalive_ms(),
            keepalive_timeout_ms: default_keepalive_timeout_ms(),
            drain_timeout_ms: default_drain_ms(),
            max_buffered_request_bytes: default_buffered_bytes(),
            request_body_timeout_ms: default_body_ms(),
            max_unauthenticated_calls_per_connection: default_unauthenticated_per_connection(),
            max_unauthenticated_calls: default_unauthenticated(),
            max_subscriber_buffer_bytes: default_subscriber_bytes(),
        }
    }
}

/// One namespace: a pattern served by a named backend per slot.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NamespaceConfig {
    /// The pattern API this namespace serves.
    pub pattern: Pattern,
    /// Name of an entry under `backends`: the one backend of a plain pattern, or every slot's.
    #[serde(default)]
    pub backend: Option<String>,
    /// The backend of each slot (composite patterns: `registry`, `messaging`).
    #[serde(default)]
    pub slots: BTreeMap<Slot, String>,
    /// Capabilities the backend declares that this namespace must not offer (refused as UNIMPLEMENTED).
    #[serde(default)]
    pub disable: Vec<Capability>,
    /// Limits for this namespace, over the top-level `limits`.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// A Mailbox's topic source: what a topic of its messaging slot carries is stored.
    #[serde(default)]
    pub source: Option<SourceConfig>,
}

/// `source:` of a Mailbox namespace: store every message published to `topic` of PubSub namespace
/// `namespace` (on the mailbox's messaging slot backend) in a mailbox.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The PubSub namespace publishers use (its backend must be the messaging slot's).
    pub namespace: String,
    /// The topic.
    pub topic: String,
    /// The mailbox a message goes to when it has no `mailbox_header` (default: the topic's name).
    #[serde(default)]
    pub mailbox: Option<String>,
    /// A header naming the mailbox per message (default `x-mailbox`).
    #[serde(default = "default_mailbox_header")]
    pub mailbox_header: String,
}

fn default_mailbox_header() -> String {
    "x-mailbox".into()
}

impl NamespaceConfig {
    /// A namespace of `pattern` with every slot on `backend` and no other settings.
    pub fn on(pattern: Pattern, backend: &str) -> Self {
        Self {
            pattern,
            backend: Some(backend.to_string()),
            slots: BTreeMap::new(),
            disable: Vec::new(),
            limits: LimitsConfig::default(),
            source: None,
        }
    }

    /// The backend named for each of the pattern's slots, in the pattern's slot order: `slots:`
    /// where given, else `backend:` (for a slot that is not optional). A slot with neither is left
    /// out (the config check names a required one).
    pub fn slot_backends(&self) -> Vec<(Slot, &str)> {
        self.pattern
            .spec()
            .slots
            .iter()
            .filter_map(|s| {
                self.slots
                    .get(&s.slot)
                    .or(self.backend.as_ref().filter(|_| !s.optional))
                    .map(|b| (s.slot, b.as_str()))
            })
            .collect()
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read config: {source}")]
    Read {
        /// The config path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The YAML is malformed or does not match the config shape.
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        /// The config path.
        path: PathBuf,
        /// 1-based line (0 when unknown).
        line: u64,
        /// 1-based column (0 when unknown).
        column: u64,
        /// What is wrong.
        message: String,
    },
    /// The config parses but is inconsistent (e.g. a namespace names a missing backend); one line
    /// per problem, located where the config says where.
    #[error("{}", problems.iter().map(|p| p.render(path)).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The config path.
        path: PathBuf,
        /// What is wrong, all of it.
        problems: Vec<Problem>,
    },
}

/// One inconsistency in a config, with its place when known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line and column of the offending value, when known.
    pub at: Option<(u64, u64)>,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    fn new(message: impl Into<String>) -> Self {
        Self {
            at: None,
            message: message.into(),
        }
    }

    /// `path:line:column: message`, or `path: message` without a place.
    pub fn render(&self, path: &Path) -> String {
        match self.at {
            Some((line, column)) => format!("{}:{line}:{column}: {}", path.display(), self.message),
            None => format!("{}: {}", path.display(), self.message),
        }
    }
}

/// Where the values of each namespace are written, read again only to place a problem.
#[derive(Deserialize)]
struct Places {
    #[serde(default)]
    namespaces: BTreeMap<String, NamespacePlaces>,
}

#[derive(Deserialize)]
struct NamespacePlaces {
    pattern: Option<serde_saphyr::Spanned<serde::de::IgnoredAny>>,
    backend: Option<serde_saphyr::Spanned<serde::de::IgnoredAny>>,
    #[serde(default)]
    slots: BTreeMap<String, serde_saphyr::Spanned<serde::de::IgnoredAny>>,
    #[serde(default)]
    disable: Vec<serde_saphyr::Spanned<serde::de::IgnoredAny>>,
    limits: Option<serde_saphyr::Spanned<serde::de::IgnoredAny>>,
    source: Option<serde_saphyr::Spanned<serde::de::IgnoredAny>>,
}

fn place(location: serde_saphyr::Location) -> Option<(u64, u64)> {
    (location.line() > 0).then(|| (location.line(), location.column()))
}

impl ProxyConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates config text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: ProxyConfig = serde_saphyr::from_str_with_options(text, yaml_options())
            .map_err(|e| {
                let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
                ConfigError::Syntax {
                    path: path.to_owned(),
                    line,
                    column,
                    message: yaml_message(&e),
                }
            })?;
        let problems = config.problems(text);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems,
            })
        }
    }

    /// Every inconsistency; `text` is the YAML it came from, read again to place them.
    fn problems(&self, text: &str) -> Vec<Problem> {
        let places: Option<Places> = serde_saphyr::from_str_with_options(text, yaml_options()).ok();
        let ns_places = |name: &str| places.as_ref().and_then(|p| p.namespaces.get(name));
        let mut problems: Vec<Problem> = self
            .auth
            .problems()
            .into_iter()
            .chain(self.tracing.iter().flat_map(|t| t.problems()))
            .map(Problem::new)
            .collect();
        if self.namespaces.is_empty() {
            problems.push(Problem::new(
                "no namespaces configured (add at least one under `namespaces:`)",
            ));
        }
        for (name, ns) in &self.namespaces {
            let places = ns_places(name);
            problems.extend(self.slot_problems(name, ns, places));
            problems.extend(self.source_problems(name, ns, places));
            for (i, capability) in ns.disable.iter().enumerate() {
                if capability.pattern() != ns.pattern {
                    problems.push(Problem {
                        at: places.and_then(|p| p.disable.get(i)).and_then(|s| place(s.referenced)),
                        message: format!(
                            "namespace '{name}' disables {capability}, a capability of the {} pattern; this namespace serves {} (its capabilities: {})",
                            capability.pattern().name(),
                            ns.pattern.name(),
                            ns.pattern.capabilities().map(|c| c.name()).collect::<Vec<_>>().join(", ")
                        ),
                    });
                }
            }
            let settings = ns.pattern.spec().settings;
            let foreign: Vec<&str> = ns
                .limits
                .set_names()
                .into_iter()
                .filter(|s| !settings.contains(s))
                .collect();
            if !foreign.is_empty() {
                problems.push(Problem {
                    at: places.and_then(|p| p.limits.as_ref()).and_then(|s| place(s.referenced)),
                    message: format!(
                        "namespace '{name}' sets {}, which does not apply to the {} pattern (its settings: {})",
                        foreign.join(", "),
                        ns.pattern.name(),
                        settings.join(", ")
                    ),
                });
            }
            if !is_identifier(name) {
                problems.push(Problem::new(format!(
                    "namespace name {name:?} must be letters, digits, '.', '_' or '-', starting with a letter or digit (it travels as gRPC metadata and prefixes backend keys)"
                )));
            }
        }
        for (name, backend) in &self.backends {
            if let BackendConfig::Nats(n) = backend {
                let token = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-');
                if n.subject_prefix.is_empty() || !n.subject_prefix.chars().all(token) {
                    problems.push(Problem::new(format!(
                        "backend '{name}': subject_prefix {:?} must be letters, digits, '_' or '-' (one subject token)",
                        n.subject_prefix
                    )));
                }
            }
            if let BackendConfig::Redis(r) = backend {
                if !is_identifier(&r.key_prefix) {
                    problems.push(Problem::new(format!(
                        "backend '{name}': key_prefix {:?} must be letters, digits, '.', '_' or '-'",
                        r.key_prefix
                    )));
                }
            }
        }
        problems
    }

    /// What is wrong with the slots of namespace `name`: slots the pattern does not have, slots
    /// without a backend, backends not defined or not offering what the slot needs.
    fn slot_problems(
        &self,
        name: &str,
        ns: &NamespaceConfig,
        places: Option<&NamespacePlaces>,
    ) -> Vec<Problem> {
        let spec = ns.pattern.spec();
        let slot_names = || {
            spec.slots
                .iter()
                .map(|s| s.slot.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let at_slot = |slot: Slot| {
            places
                .and_then(|p| p.slots.get(slot.name()))
                .or_else(|| places.and_then(|p| p.backend.as_ref()))
                .and_then(|s| place(s.referenced))
        };
        let mut problems = Vec::new();
        for slot in ns.slots.keys() {
            if spec.slot(*slot).is_none() {
                problems.push(Problem {
                    at: at_slot(*slot),
                    message: format!(
                        "namespace '{name}' names a backend for slot `{}`, which the {} pattern does not have (its slots: {})",
                        slot.name(),
                        ns.pattern.name(),
                        slot_names()
                    ),
                });
            }
        }
        for slot in spec.slots {
            let shorthand = ns.backend.as_ref().filter(|_| !slot.optional);
            let Some(backend_name) = ns.slots.get(&slot.slot).or(shorthand) else {
                if slot.optional {
                    continue;
                }
                problems.push(Problem {
                    at: places.and_then(|p| p.pattern.as_ref()).and_then(|s| place(s.referenced)),
                    message: if spec.slots.len() == 1 {
                        format!("namespace '{name}' names no backend (add `backend: NAME`)")
                    } else {
                        format!(
                            "namespace '{name}' names no backend for slot `{}` (add `slots: {{ {} }}` or `backend: NAME` for every slot)",
                            slot.slot.name(),
                            spec.slots
                                .iter()
                                .map(|s| format!("{}: NAME", s.slot.name()))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    },
                });
                continue;
            };
            let what = if spec.slots.len() == 1 {
                format!("namespace '{name}' uses backend '{backend_name}'")
            } else {
                format!(
                    "namespace '{name}' slot `{}` uses backend '{backend_name}'",
                    slot.slot.name()
                )
            };
            match self.backends.get(backend_name) {
                None => {
                    let known: Vec<_> = self.backends.keys().map(String::as_str).collect();
                    problems.push(Problem {
                        at: at_slot(slot.slot),
                        message: format!(
                            "{what}, which is not defined (defined: {})",
                            if known.is_empty() {
                                "none".into()
                            } else {
                                known.join(", ")
                            }
                        ),
                    });
                }
                Some(backend) if !backend.patterns().contains(&slot.offers) => {
                    let needed = if spec.slots.len() == 1 {
                        format!("serves the {} pattern", ns.pattern.name())
                    } else {
                        format!(
                            "needs the {} pattern for its `{}` slot",
                            slot.offers.name(),
                            slot.slot.name()
                        )
                    };
                    problems.push(Problem {
                        at: if spec.slots.len() == 1 {
                            places.and_then(|p| p.pattern.as_ref()).and_then(|s| place(s.referenced))
                        } else {
                            at_slot(slot.slot)
                        },
                        message: format!(
                            "namespace '{name}' {needed}, which backend '{backend_name}' (type {}) does not offer (it offers: {}){}",
                            backend.kind(),
                            backend.patterns().iter().map(|p| p.name()).collect::<Vec<_>>().join(", "),
                            backend.why_not(slot.offers).map(|why| format!(": {why}")).unwrap_or_default()
                        ),
                    });
                }
                Some(_) => {}
            }
        }
        problems
    }

    /// A `source:` only on a Mailbox with a messaging slot (and that slot only with it), reading
    /// a PubSub namespace of this config on the messaging slot's backend.
    fn source_problems(
        &self,
        name: &str,
        ns: &NamespaceConfig,
        places: Option<&NamespacePlaces>,
    ) -> Vec<Problem> {
        let at = places
            .and_then(|p| p.source.as_ref().or(p.pattern.as_ref()))
            .and_then(|s| place(s.referenced));
        let problem = |message: String| Problem { at, message };
        let messaging = ns.slots.get(&Slot::Messaging);
        let Some(source) = &ns.source else {
            return match (ns.pattern, messaging) {
                (Pattern::Mailbox, Some(b)) => vec![problem(format!(
                    "namespace '{name}' names backend '{b}' for slot `messaging`, which a mailbox uses only for `source: {{ namespace, topic }}` (add one, or remove the slot)"
                ))],
                _ => Vec::new(),
            };
        };
        if ns.pattern != Pattern::Mailbox {
            return vec![problem(format!(
                "namespace '{name}' has `source:`, which only the mailbox pattern has (it serves {})",
                ns.pattern.name()
            ))];
        }
        let Some(messaging) = messaging else {
            return vec![problem(format!(
                "namespace '{name}' has `source:` but no messaging slot to read it from (add `slots: {{ messaging: NAME }}`)"
            ))];
        };
        let mut problems = Vec::new();
        match self.namespaces.get(&source.namespace) {
            Some(from) if from.pattern == Pattern::Pubsub => {
                let from_backend = from.slots.get(&Slot::Backend).or(from.backend.as_ref());
                if from_backend != Some(messaging) {
                    problems.push(problem(format!(
                        "namespace '{name}' reads `source.namespace` '{}', whose backend is not '{messaging}', its messaging slot's",
                        source.namespace
                    )));
                }
            }
            _ => problems.push(problem(format!(
                "namespace '{name}' reads `source.namespace` '{}', which is not a pubsub namespace of this config",
                source.namespace
            ))),
        }
        let limits = self.limits_for(ns);
        let mut names = vec![("source.topic", source.topic.as_str())];
        if let Some(m) = &source.mailbox {
            names.push(("source.mailbox", m.as_str()));
        }
        for (field, value) in names {
            if let Err(status) = crate::patterns::names::check_name(field, value, &limits) {
                problems.push(problem(format!("namespace '{name}': {}", status.message())));
            }
        }
        problems
    }

    /// Resolved limits of a namespace.
    pub fn limits_for(&self, ns: &NamespaceConfig) -> Limits {
        ns.limits.resolve(self.limits.resolve(Limits::default()))
    }
}

/// Whether `name` is a safe identifier: `[A-Za-z0-9][A-Za-z0-9._-]*`.
pub fn is_identifier(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// YAML options shared by every Prism file: YAML 1.2 booleans only, so `n`, `yes` or `off` stay text.
pub fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options
}

/// The message of a serde-saphyr error without its location or source snippet (we print
/// `file:line:column` first ourselves), on one line.
pub fn yaml_message(e: &serde_saphyr::Error) -> String {
    use serde_saphyr::MessageFormatter;
    let text = serde_saphyr::DefaultMessageFormatter.format_message(e.without_snippet());
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    // serde lists nothing after "expected one of" when a section takes no keys at all.
    match text.trim_end().strip_suffix(", expected one of") {
        Some(head) => format!("{head} (this section takes no settings)"),
        None => text,
    }
}
