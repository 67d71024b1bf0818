//! Load profiles (`scenarios/load/*.yaml`): who calls, how hard, for how long, on what key space, with
//! which operation mix, and optional thresholds. The mix is a list of weighted operations, so
//! messaging patterns can add their operations (publish with fan-out, enqueue/consume/ack) later
//! without changing the shape.

use prism_runtime::config::yaml_message;
use prism_runtime::patterns::Pattern;
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

/// One load profile.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadProfile {
    /// Profile name.
    pub name: String,
    /// What it models.
    pub description: String,
    /// Pattern it drives.
    pub pattern: Pattern,
    /// Concurrent users (each runs the mix in a loop).
    #[serde(default = "default_users")]
    pub users: usize,
    /// Users started per second.
    #[serde(default = "default_hatch")]
    pub hatch_rate: usize,
    /// How long to measure, e.g. `30s`.
    #[serde(default = "default_duration")]
    pub duration: String,
    /// Target total operations per second (absent: as fast as the users go).
    pub rate: Option<f64>,
    /// The key space.
    #[serde(default)]
    pub keys: KeySpace,
    /// Value sizes.
    #[serde(default)]
    pub values: ValueSizes,
    /// The operation mix (KeyValue).
    #[serde(default)]
    pub mix: Vec<MixEntry>,
    /// Senders, receivers and payloads (PubSub and Queue).
    pub messaging: Option<super::messaging::MessagingLoad>,
    /// Callers, listeners and the call mix (Multicast Registry).
    pub registry: Option<super::registry::RegistryLoad>,
    /// Optional gates: the run exits 1 naming each one violated.
    #[serde(default)]
    pub thresholds: Thresholds,
}

fn default_users() -> usize {
    8
}
fn default_hatch() -> usize {
    8
}
fn default_duration() -> String {
    "10s".into()
}

/// Keys `k000000…` under a run prefix; written once before the measurement when `preload`.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpace {
    /// How many distinct keys.
    pub count: usize,
    /// Write every key before measuring (so reads hit).
    #[serde(default = "yes")]
    pub preload: bool,
}

fn yes() -> bool {
    true
}

impl Default for KeySpace {
    fn default() -> Self {
        Self {
            count: 1000,
            preload: true,
        }
    }
}

/// Value sizes: fixed (`bytes`) or uniform between `min_bytes` and `max_bytes`.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueSizes {
    /// Fixed size.
    pub bytes: Option<usize>,
    /// Smallest size.
    pub min_bytes: Option<usize>,
    /// Largest size.
    pub max_bytes: Option<usize>,
}

impl Default for ValueSizes {
    fn default() -> Self {
        Self {
            bytes: Some(256),
            min_bytes: None,
            max_bytes: None,
        }
    }
}

impl ValueSizes {
    /// The (min, max) range.
    pub fn range(&self) -> (usize, usize) {
        match (self.bytes, self.min_bytes, self.max_bytes) {
            (Some(b), _, _) => (b, b),
            (None, Some(lo), Some(hi)) => (lo.min(hi), lo.max(hi)),
            (None, Some(lo), None) => (lo, lo),
            (None, None, Some(hi)) => (hi, hi),
            (None, None, None) => (256, 256),
        }
    }
}

/// Operations a keyvalue mix can hold.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum LoadOp {
    /// Get a random key.
    Get,
    /// Set a random key.
    Set,
    /// Delete a random key.
    Delete,
    /// Exists on a random key.
    Exists,
    /// One Scan page from a random key.
    Scan,
    /// Get then Set with if_version (a read-modify-write).
    Cas,
}

impl LoadOp {
    /// The op's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            LoadOp::Get => "get",
            LoadOp::Set => "set",
            LoadOp::Delete => "delete",
            LoadOp::Exists => "exists",
            LoadOp::Scan => "scan",
            LoadOp::Cas => "cas",
        }
    }
}

/// One weighted operation of the mix.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixEntry {
    /// The operation.
    pub op: LoadOp,
    /// Relative weight.
    pub weight: u32,
    /// Scan page size (scan only).
    #[serde(default = "default_page")]
    pub page: u32,
}

fn default_page() -> u32 {
    20
}

/// Optional gates, checked on the whole run (all operations).
#[derive(Clone, Copy, Debug, Default, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Highest acceptable p50 in µs.
    pub p50_us: Option<u64>,
    /// Highest acceptable p99 in µs.
    pub p99_us: Option<u64>,
    /// Highest acceptable added p99 (proxy − direct) in µs; needs `--baseline direct`.
    pub added_p99_us: Option<i64>,
    /// Highest acceptable share of failed calls (0.01 = 1 %).
    pub error_rate: Option<f64>,
    /// Lowest acceptable throughput.
    pub min_ops_per_sec: Option<f64>,
}

/// Why a profile is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Not readable.
    #[error("{path}: {source}")]
    Read {
        /// Path.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// YAML or shape error.
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        /// Path.
        path: String,
        /// Line.
        line: u64,
        /// Column.
        column: u64,
        /// What.
        message: String,
    },
    /// Inconsistent.
    #[error("{path}: {message}")]
    Invalid {
        /// Path.
        path: String,
        /// What.
        message: String,
    },
}

/// Parses a duration like `30s`, `500ms`, `2m`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    crate::scenario::parse::parse_duration(text)
}

impl LoadProfile {
    /// Loads a profile by file path, or by name from `dir` (`NAME.yaml`).
    pub fn load(name_or_path: &str, dir: &Path) -> Result<Self, ProfileError> {
        let path = if Path::new(name_or_path).is_file() {
            Path::new(name_or_path).to_path_buf()
        } else {
            dir.join(format!("{name_or_path}.yaml"))
        };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|source| ProfileError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text, &shown)
    }

    /// Parses profile text; `path` is used in messages.
    pub fn parse(text: &str, path: &str) -> Result<Self, ProfileError> {
        let profile: LoadProfile =
            serde_saphyr::from_str_with_options(text, prism_runtime::config::yaml_options())
                .map_err(|e| {
                    let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
                    ProfileError::Syntax {
                        path: path.to_string(),
                        line,
                        column,
                        message: yaml_message(&e),
                    }
                })?;
        let invalid = |message: String| ProfileError::Invalid {
            path: path.to_string(),
            message,
        };
        if profile.registry.is_some() != (profile.pattern == Pattern::MulticastRegistry) {
            return Err(invalid(
                "registry: { register, enumerate, multicast } is the load of a multicast_registry profile, and only of one".into(),
            ));
        }
        match (profile.pattern, &profile.messaging) {
            (Pattern::MulticastRegistry, None) => {
                let r = profile.registry.as_ref().expect("checked above");
                if r.register + r.enumerate + r.multicast == 0 {
                    return Err(invalid(
                        "registry needs a weight above 0 for register, enumerate or multicast"
                            .into(),
                    ));
                }
            }
            (Pattern::Keyvalue, None) => {
                if profile.mix.is_empty() || profile.mix.iter().all(|m| m.weight == 0) {
                    return Err(invalid(
                        "mix needs at least one operation with a weight above 0".into(),
                    ));
                }
            }
            (Pattern::Keyvalue, Some(_)) => {
                return Err(invalid(
                    "messaging: is for pubsub and queue profiles; a keyvalue profile has a mix"
                        .into(),
                ));
            }
            (Pattern::Pubsub | Pattern::Queue, Some(m)) => {
                if !profile.mix.is_empty() {
                    return Err(invalid(format!(
                        "a {} profile has no mix; its load is messaging: senders and receivers",
                        profile.pattern
                    )));
                }
                if m.senders == 0 || m.receivers == 0 {
                    return Err(invalid(
                        "messaging.senders and messaging.receivers must be at least 1".into(),
                    ));
                }
                if parse_duration(&m.drain).is_none() {
                    return Err(invalid(format!(
                        "messaging.drain {:?} is not a duration such as 10s",
                        m.drain
                    )));
                }
            }
            (Pattern::Pubsub | Pattern::Queue, None) => {
                return Err(invalid(format!(
                    "a {} profile needs messaging: {{ senders: N, receivers: N }}",
                    profile.pattern
                )));
            }
            (other @ (Pattern::MulticastRegistry | Pattern::Mailbox), _) => {
                return Err(invalid(format!(
                    "pattern '{other}' has no load driver (expected keyvalue, pubsub, queue or multicast_registry)"
                )));
            }
        }
        if profile.users == 0 || profile.hatch_rate == 0 {
            return Err(invalid("users and hatch_rate must be at least 1".into()));
        }
        if profile.keys.count == 0 {
            return Err(invalid("keys.count must be at least 1".into()));
        }
        if parse_duration(&profile.duration).is_none() {
            return Err(invalid(format!(
                "duration {:?} is not a duration such as 30s",
                profile.duration
            )));
        }
        Ok(profile)
    }
}
