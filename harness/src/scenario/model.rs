//! The scenario model: what a YAML file means once parsed. Every step carries its source location.

use crate::scenario::code::StatusCode;
use prism_runtime::patterns::Pattern;
use prism_runtime::patterns::capability::Capability;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// A 1-based line and column in a scenario file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Location {
    /// Line, from 1.
    pub line: u64,
    /// Column, from 1.
    pub column: u64,
}

/// One scenario file.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Path the scenario was read from.
    pub file: PathBuf,
    /// Unique name.
    pub name: String,
    /// One-sentence description.
    pub description: String,
    /// The pattern it exercises.
    pub pattern: Pattern,
    /// Capabilities the steps use.
    pub requires: Vec<Capability>,
    /// Free-form tags.
    pub tags: Vec<String>,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

impl Scenario {
    /// Whether any step, at any depth, satisfies `pred`.
    pub fn any_step(&self, pred: impl Fn(&StepKind) -> bool) -> bool {
        fn walk(steps: &[Step], pred: &dyn Fn(&StepKind) -> bool) -> bool {
            steps
                .iter()
                .any(|s| pred(&s.kind) || s.kind.bodies().iter().any(|(_, body)| walk(body, pred)))
        }
        walk(&self.steps, &pred)
    }

    /// How many steps a run of the scenario executes, repeats and parallel workers multiplied out
    /// (a `receive` of 10,000 messages counts once): a rough size, so the runner can start the
    /// largest scenarios first instead of finding one at the end of the queue.
    pub fn size(&self) -> u64 {
        fn walk(steps: &[Step]) -> u64 {
            steps.iter().fold(0u64, |n, s| {
                let nested = s.kind.bodies().iter().fold(0u64, |m, (times, body)| {
                    m.saturating_add(times.saturating_mul(walk(body)))
                });
                n.saturating_add(1).saturating_add(nested)
            })
        }
        walk(&self.steps)
    }

    /// Whether any step selects a token other than the default one.
    pub fn uses_token_matrix(&self) -> bool {
        let not_default = |t: &Option<String>| t.as_deref().is_some_and(|t| t != "default");
        self.any_step(|k| k.caller().is_some_and(|c| not_default(&c.token)))
    }

    /// Whether some call step needs one of `caps` (so a backend without it must refuse that call).
    pub fn calls_need_any(&self, caps: &[Capability]) -> bool {
        self.any_step(|k| k.needs().iter().any(|c| caps.contains(c)))
    }

    /// Whether any step restarts or kills a proxy.
    pub fn restarts_proxy(&self) -> bool {
        self.any_step(|k| matches!(k, StepKind::RestartProxy(_) | StepKind::KillProxy(_)))
    }

    /// Whether any step kills a proxy (which needs proxies run as processes).
    pub fn kills_proxy(&self) -> bool {
        self.any_step(|k| matches!(k, StepKind::KillProxy(_)))
    }

    /// Whether any step kills, stops, starts or freezes the backend's server, or troubles the
    /// network to it.
    pub fn injects_faults(&self) -> bool {
        self.any_step(|k| matches!(k, StepKind::Fault(_) | StepKind::Network(_)))
    }

    /// Whether any step troubles the network to the backend.
    pub fn troubles_network(&self) -> bool {
        self.any_step(|k| matches!(k, StepKind::Network(_)))
    }

    /// Whether any step reads the proxy's metrics.
    pub fn reads_metrics(&self) -> bool {
        self.any_step(|k| matches!(k, StepKind::Metrics(_)))
    }

    /// Whether any step reloads the proxy's config.
    pub fn reloads(&self) -> bool {
        self.any_step(|k| matches!(k, StepKind::Reload(_)))
    }

    /// Whether the scenario must run alone, after the others: a proxy restart, a backend fault or
    /// a reload would cut every other scenario's calls and streams, and another scenario's calls
    /// would move the counters a metrics step expects to move by an exact amount.
    pub fn runs_alone(&self) -> bool {
        self.restarts_proxy() || self.injects_faults() || self.reads_metrics() || self.reloads()
    }

    /// Whether any step addresses the run's second namespace.
    pub fn uses_other_namespace(&self) -> bool {
        self.any_step(|k| {
            k.caller()
                .is_some_and(|c| c.namespace == NamespaceRef::Other)
                || matches!(k, StepKind::Reload(r) if matches!(
                    r.change,
                    ConfigChange::Remove(NamespaceRef::Other) | ConfigChange::Add(NamespaceRef::Other)
                ))
        })
    }

    /// Whether any step goes through the second proxy (`via: b`).
    pub fn uses_second_proxy(&self) -> bool {
        self.any_step(|k| {
            k.caller().is_some_and(|c| c.via == Via::B)
                || matches!(
                    k,
                    StepKind::RestartProxy(Via::B) | StepKind::KillProxy(Via::B)
                )
        })
    }
}

/// One step with its location.
#[derive(Clone, Debug)]
pub struct Step {
    /// Where the step starts in its file.
    pub loc: Location,
    /// What the step does.
    pub kind: StepKind,
}

/// Operation and control steps.
#[derive(Clone, Debug)]
pub enum StepKind {
    /// A call of some pattern family (KeyValue, PubSub and Queue, Multicast Registry, Mailbox).
    Call(Box<dyn crate::ops::FamilyStep>),
    /// Wait.
    Sleep(Duration),
    /// Drain a proxy (when running) and serve again on the same address and backends.
    RestartProxy(Via),
    /// SIGKILL a proxy, as a crash would (proxies run as processes only).
    KillProxy(Via),
    /// Act on the backend's server (one the harness started).
    Fault(FaultAction),
    /// Trouble the network between the proxies and the backend's server.
    Network(NetworkFault),
    /// Read the proxy's `/metrics`: check series, mark the reading for later steps.
    Metrics(MetricsStep),
    /// Change the proxy's config file and ask it to reload (Admin `ReloadConfig`).
    Reload(ReloadStep),
    /// `steps` must all finish within a bound (a call that hangs fails the step).
    Within {
        /// The bound.
        within: Duration,
        /// The steps.
        steps: Vec<Step>,
    },
    /// Retry `steps` until all pass, within a bound.
    Eventually {
        /// Give up after this long.
        within: Duration,
        /// Pause between attempts.
        every: Duration,
        /// The steps to retry.
        steps: Vec<Step>,
    },
    /// Run `steps` `times` times with `${i}`.
    Repeat {
        /// Iterations.
        times: u64,
        /// The body.
        steps: Vec<Step>,
    },
    /// Run branches of concurrent workers.
    Parallel {
        /// Groups of workers; each worker runs its group's steps with `${worker}`.
        branches: Vec<Branch>,
        /// When set, ops without their own expectation are counted instead of judged.
        tally: Option<Tally>,
    },
}

impl StepKind {
    /// The namespace, token and proxy of a call step.
    pub fn caller(&self) -> Option<Caller> {
        match self {
            StepKind::Call(s) => s.caller(),
            _ => None,
        }
    }

    /// The call step as its family's own type `T` (`OpStep`, `MsgStep`, …), if it is one.
    pub fn call_as<T: 'static>(&self) -> Option<&T> {
        match self {
            StepKind::Call(s) => s.as_any().downcast_ref(),
            _ => None,
        }
    }

    /// Capabilities this step's own call needs (none for a control step).
    pub fn needs(&self) -> Vec<Capability> {
        match self {
            StepKind::Call(s) => s.needs(),
            _ => Vec::new(),
        }
    }

    /// The step lists this step runs, each with how many times it runs it: a `repeat` its body
    /// `times` times, a `parallel` each branch once per worker, `eventually` and `within` their
    /// body once (at least); none for a single step.
    pub fn bodies(&self) -> Vec<(u64, &[Step])> {
        match self {
            StepKind::Eventually { steps, .. } | StepKind::Within { steps, .. } => {
                vec![(1, steps)]
            }
            StepKind::Repeat { times, steps } => vec![(*times, steps)],
            StepKind::Parallel { branches, .. } => branches
                .iter()
                .map(|b| (b.workers, b.steps.as_slice()))
                .collect(),
            StepKind::Call(_)
            | StepKind::Sleep(_)
            | StepKind::RestartProxy(_)
            | StepKind::KillProxy(_)
            | StepKind::Fault(_)
            | StepKind::Network(_)
            | StepKind::Metrics(_)
            | StepKind::Reload(_) => Vec::new(),
        }
    }
}

/// What a `fault` step does to the backend's server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// SIGKILL, as a crash would.
    Kill,
    /// A graceful stop.
    Stop,
    /// Start it again on the same port and data, and wait until it answers.
    Start,
    /// A graceful stop, then a start.
    Restart,
    /// Freeze it (SIGSTOP): connections stay open, nothing answers.
    Pause,
    /// Let a paused server go on (SIGCONT).
    Resume,
}

impl FaultAction {
    /// Every action with its YAML name.
    pub const ALL: [(FaultAction, &'static str); 6] = [
        (FaultAction::Kill, "kill"),
        (FaultAction::Stop, "stop"),
        (FaultAction::Start, "start"),
        (FaultAction::Restart, "restart"),
        (FaultAction::Pause, "pause"),
        (FaultAction::Resume, "resume"),
    ];

    /// The YAML name.
    pub fn name(self) -> &'static str {
        FaultAction::ALL
            .iter()
            .find(|(a, _)| *a == self)
            .map_or("kill", |(_, n)| n)
    }
}

/// What a `fault: { network: … }` step does to the link between the proxies and the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetworkFault {
    /// Every answer from the server arrives `ms` (± `jitter_ms`) late.
    Latency {
        /// The delay.
        ms: u64,
        /// The most it varies either way.
        jitter_ms: u64,
    },
    /// Both directions pass at most `kbps` kilobits per second.
    Bandwidth {
        /// The rate.
        kbps: u64,
    },
    /// Nothing passes either way (and new connections get no answer).
    Blackhole,
    /// Every open connection is reset (RST).
    Reset,
    /// The link is clear again.
    Restore,
}

impl NetworkFault {
    /// The YAML names of the kinds.
    pub const NAMES: [&'static str; 5] = ["latency", "bandwidth", "blackhole", "reset", "restore"];

    /// The YAML name.
    pub fn name(self) -> &'static str {
        match self {
            NetworkFault::Latency { .. } => "latency",
            NetworkFault::Bandwidth { .. } => "bandwidth",
            NetworkFault::Blackhole => "blackhole",
            NetworkFault::Reset => "reset",
            NetworkFault::Restore => "restore",
        }
    }
}

/// A `metrics` step: one scrape of the proxy's `/metrics`, checked and optionally kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricsStep {
    /// Keep this reading under a name, for a later expectation's `since`.
    pub mark: Option<String>,
    /// What must hold of the reading.
    pub expect: Vec<SeriesExpect>,
}

/// What must hold of the series named `series` (summed over those whose labels match).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeriesExpect {
    /// The series name as exposed (`rpc_server_call_duration_seconds_count`).
    pub series: String,
    /// Labels a series must carry; a `namespace` or `backend` label not named here is held to the
    /// scenario's namespace and the target's backends.
    pub labels: BTreeMap<String, String>,
    /// The reading `moved` is measured from (`None`: the scenario's start).
    pub since: Option<String>,
    /// How much the sum grew since then.
    pub moved: Option<NumExpect>,
    /// The sum now.
    pub value: Option<NumExpect>,
}

/// A `reload` step: what changes in the proxy's config file before it is asked to reload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReloadStep {
    /// The change.
    pub change: ConfigChange,
    /// The token the `ReloadConfig` call carries (`None`: the default, admin on the namespaces).
    pub token: Option<String>,
    /// The refusal expected instead of a reload (an `invalid` change always expects one).
    pub error: Option<StatusCode>,
}

/// A change a `reload` step makes to the proxy's config file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigChange {
    /// Remove a namespace.
    Remove(NamespaceRef),
    /// Put back a namespace as the run's config has it.
    Add(NamespaceRef),
    /// A file that does not validate (a misspelled key in the scenario's namespace): the proxy
    /// must refuse it whole, naming the place, and keep serving the running config.
    Invalid,
}

impl ConfigChange {
    /// The YAML form (`remove: other`).
    pub fn name(self) -> (&'static str, &'static str) {
        let which = |ns: NamespaceRef| match ns {
            NamespaceRef::Main => "main",
            NamespaceRef::Other => "other",
        };
        match self {
            ConfigChange::Remove(ns) => ("remove", which(ns)),
            ConfigChange::Add(ns) => ("add", which(ns)),
            ConfigChange::Invalid => ("invalid", "misspelled key"),
        }
    }
}

/// A group of identical concurrent workers.
#[derive(Clone, Debug)]
pub struct Branch {
    /// How many workers.
    pub workers: u64,
    /// What each runs.
    pub steps: Vec<Step>,
}

/// Expected outcome counts of a tallied `parallel` step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Calls that must succeed.
    pub ok: Option<u64>,
    /// Calls that must fail, by code.
    pub errors: BTreeMap<StatusCode, u64>,
}

/// Which of the run's namespaces an op addresses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NamespaceRef {
    /// The scenario's namespace.
    #[default]
    Main,
    /// The run's second namespace on the same backend.
    Other,
}

/// A string with `${…}` variables.
pub type Template = String;

/// A value to write or compare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueSpec {
    /// UTF-8 text (after variable substitution).
    Text(Template),
    /// Literal bytes (written in YAML as base64).
    Bytes(Vec<u8>),
    /// Deterministic pseudo-random bytes.
    Blob {
        /// Length in bytes.
        bytes: u64,
        /// Seed (a number, or a template such as `${worker}`).
        seed: Template,
    },
}

/// A number relation operand: a literal or a saved variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operand {
    /// A literal.
    Lit(u64),
    /// A saved variable's name.
    Var(String),
}

/// Comparison relations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rel {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
}

impl Rel {
    /// Every relation with its YAML name.
    pub const ALL: [(Rel, &'static str); 6] = [
        (Rel::Eq, "eq"),
        (Rel::Ne, "ne"),
        (Rel::Gt, "gt"),
        (Rel::Ge, "ge"),
        (Rel::Lt, "lt"),
        (Rel::Le, "le"),
    ];

    /// The YAML name.
    pub fn name(self) -> &'static str {
        Rel::ALL
            .iter()
            .find(|(r, _)| *r == self)
            .map_or("eq", |(_, n)| n)
    }

    /// Whether `a rel b` holds.
    pub fn holds(self, a: u64, b: u64) -> bool {
        match self {
            Rel::Eq => a == b,
            Rel::Ne => a != b,
            Rel::Gt => a > b,
            Rel::Ge => a >= b,
            Rel::Lt => a < b,
            Rel::Le => a <= b,
        }
    }
}

/// An expectation on a number, optionally saving it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NumExpect {
    /// Relations that must all hold.
    pub rels: Vec<(Rel, Operand)>,
    /// Save the actual number under this variable name.
    pub save: Option<String>,
}

pub use crate::ops::keyvalue::model::{BatchEntry, Expect, Op, OpStep};

/// The namespace, token and proxy a call step uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    /// Which namespace.
    pub namespace: NamespaceRef,
    /// Which minted token (`None`: the default).
    pub token: Option<String>,
    /// Which proxy the call goes through.
    pub via: Via,
}

/// Which of the run's proxies a call goes through (`via: b`): both serve the same provisioned
/// backends, so what one writes the other must see.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Via {
    /// The run's proxy.
    #[default]
    A,
    /// The second proxy on the same backends.
    B,
}

impl Via {
    /// The YAML name.
    pub fn name(self) -> &'static str {
        match self {
            Via::A => "a",
            Via::B => "b",
        }
    }
}
