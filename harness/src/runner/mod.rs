//! The runner: plans pattern × backend × scenario cases, runs them concurrently through the client,
//! applies the two-way capability check, and emits events.

pub mod compare;
pub mod exec;
pub mod fault;
pub mod operate;
pub mod values;

use crate::events::{Event, EventKind, SuiteKey};
use crate::ops::finish;
use crate::report::model::{
    CaseReport, CaseStatus, FailureReport, RunReport, SCHEMA_VERSION, SuiteReport, Totals,
};
use crate::scenario::{Location, Scenario};
use exec::{Refusal, Session, refusal_walk, run_steps};
use prism_proto::client::PrismClient;
use prism_runtime::patterns::Pattern;
use prism_runtime::patterns::capability::Capability;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Semaphore, mpsc};

/// Why a step (and so its scenario) failed.
#[derive(Clone, Debug, Default)]
pub struct Failure {
    /// The failing step's location (`None` when not tied to a step).
    pub loc: Option<Location>,
    /// The failing step, rendered.
    pub step: String,
    /// What went wrong.
    pub message: String,
    /// Expected, when there was a comparison.
    pub expected: Option<String>,
    /// Actual, when there was a comparison.
    pub actual: Option<String>,
}

/// The W3C `traceparent` a case's calls carry: one trace per case, marked sampled, so a proxy
/// with tracing on records every call of the case under one trace id (whatever its ratio).
struct TraceParent {
    trace_id: String,
    parent: String,
}

impl TraceParent {
    fn new() -> Self {
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let trace: [u8; 16] = rand::random();
        let parent: [u8; 8] = rand::random();
        // All-zero ids are invalid; a random one is all zeros with negligible odds, but stay valid.
        let mut trace = trace;
        trace[0] |= 1;
        let mut parent = parent;
        parent[0] |= 1;
        Self {
            trace_id: hex(&trace),
            parent: hex(&parent),
        }
    }

    /// `client`, sending this traceparent with every call.
    fn on(&self, client: &PrismClient) -> PrismClient {
        let header = format!("00-{}-{}-01", self.trace_id, self.parent);
        // The header is well-formed by construction; were it not, the calls go untraced.
        client
            .clone()
            .with_traceparent(&header)
            .unwrap_or_else(|_| client.clone())
    }
}

impl Failure {
    /// A failure with only a message.
    pub fn message(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            ..Self::default()
        }
    }
}

/// One backend the run targets: a proxy namespace (plus an optional second one) serving a pattern.
#[derive(Clone, Debug)]
pub struct Target {
    /// Backend name for reports (`memstore`, `sqlite`, or a label).
    pub backend: String,
    /// Backend kind as the proxy reports it.
    pub backend_kind: String,
    /// Pattern served.
    pub pattern: Pattern,
    /// The connection (without a token).
    pub client: PrismClient,
    /// The token calls carry by default (admin on the target's namespaces), if authentication is on.
    pub token: Option<String>,
    /// The minted token matrix for `token: NAME` steps (in-process proxy only).
    pub tokens: Option<Arc<BTreeMap<String, Option<String>>>>,
    /// The in-process proxy, for `restart_proxy` steps (`None` with `--target`).
    pub proxy: Option<crate::provision::RunningProxy>,
    /// A second proxy on the same backends, for `via: b` steps (`None` when a slot's backend is
    /// memstore, which keeps its data per proxy, or with `--target`).
    pub second: Option<PrismClient>,
    /// That second proxy, for `restart_proxy: b` and `kill_proxy: b`.
    pub second_proxy: Option<crate::provision::RunningProxy>,
    /// The link between the proxies and the backend's server, for `fault: { network: … }` steps
    /// (when the harness started the server as a process).
    pub link: Option<Arc<crate::provision::netfault::NetLink>>,
    /// The backend's server when the harness started it, for `fault` steps.
    pub server: Option<Arc<std::sync::Mutex<crate::provision::ServerHandle>>>,
    /// Namespace for scenarios.
    pub namespace: String,
    /// Second namespace on the same backend, for isolation scenarios.
    pub other_namespace: Option<String>,
    /// Capabilities the namespace declares.
    pub capabilities: Vec<Capability>,
}

/// Run settings.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Cases in flight at once.
    pub jobs: usize,
    /// Stop starting new cases after the first failure.
    pub fail_fast: bool,
    /// Longest one scenario may take.
    pub scenario_timeout: Duration,
    /// Spread each scenario's calls and streams over the run's two proxies (`--proxies 2`), where
    /// the target has a second one.
    pub spread: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            jobs: 16,
            fail_fast: false,
            scenario_timeout: Duration::from_secs(120),
            spread: false,
        }
    }
}

static RUN_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A `${prefix}` unique to one scenario run: `conform/<slug>/<run>-<n>/`.
pub fn unique_prefix(scenario: &Scenario) -> String {
    let stem = scenario
        .file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "scenario".into());
    let slug: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let n = RUN_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("conform/{slug}/{:x}-{n}/", nanos % 0xffff_ffff_ffff)
}

fn to_report(
    scenario: &Scenario,
    status: CaseStatus,
    took: Duration,
    reason: Option<String>,
    failure: Option<Failure>,
) -> CaseReport {
    let file = scenario.file.display().to_string();
    CaseReport {
        scenario: scenario.name.clone(),
        file: file.clone(),
        tags: scenario.tags.clone(),
        status,
        duration_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
        reason,
        failure: failure.map(|f| {
            let loc = f.loc.unwrap_or_default();
            FailureReport {
                file,
                line: loc.line,
                column: loc.column,
                step: f.step,
                message: f.message,
                expected: f.expected,
                actual: f.actual,
                trace_id: None,
            }
        }),
    }
}

/// Why `scenario` cannot run on `target` at all, if it cannot.
fn unrunnable(target: &Target, scenario: &Scenario) -> Option<String> {
    if target.other_namespace.is_none() && scenario.uses_other_namespace() {
        return Some(format!(
            "needs a second namespace on the same backend; pass --namespace {}.other=NAME",
            target.pattern
        ));
    }
    if target.proxy.is_none() && scenario.restarts_proxy() {
        return Some(
            "restarts the proxy, which the harness can do only with a proxy it started".into(),
        );
    }
    if scenario.kills_proxy() && !target.proxy.as_ref().is_some_and(|p| p.is_process()) {
        return Some(
            "kills a proxy (SIGKILL), which needs the proxies run as processes: --proxy-mode process".into(),
        );
    }
    if target.proxy.is_none() && (scenario.reads_metrics() || scenario.reloads()) {
        return Some(
            "reads the proxy's /metrics or reloads its config file, which the harness can do only with its in-process proxy".into(),
        );
    }
    if scenario.injects_faults() {
        let can = target
            .server
            .as_ref()
            .is_some_and(|s| s.lock().is_ok_and(|s| s.can_fault()));
        if !can {
            return Some(format!(
                "injects backend faults, which the harness can do only to a server it started as a process; backend '{}' is {}",
                target.backend,
                if target.proxy.is_none() {
                    "behind --target"
                } else if target.server.is_some() {
                    "a container"
                } else {
                    "embedded or external"
                }
            ));
        }
    }
    if target.link.is_none() && scenario.troubles_network() {
        return Some(format!(
            "troubles the network to the backend, which the harness can do only to a server it started as a process (it puts a link in front of it); backend '{}' is not one",
            target.backend
        ));
    }
    if target.second.is_none() && scenario.uses_second_proxy() {
        return Some(format!(
            "goes through a second proxy on the same backends, which the harness starts only when every slot's backend is shared by processes (memstore keeps its data per proxy; backend '{}')",
            target.backend
        ));
    }
    if target.tokens.is_none() && scenario.uses_token_matrix() {
        return Some(
            "needs the token matrix, which the harness mints only for its in-process proxy".into(),
        );
    }
    None
}

/// Whether `scenario`'s calls may be spread over two proxies: not when it acts on one proxy
/// (restarts or kills it, reads its metrics, reloads its config) or
/// checks how one proxy rides out a backend fault (each proxy reconnects on its own, so an
/// `eventually` that one proxy met says nothing of the other).
fn spreadable(scenario: &Scenario) -> bool {
    !(scenario.restarts_proxy()
        || scenario.injects_faults()
        || scenario.reads_metrics()
        || scenario.reloads())
}

/// How long after a fault or proxy restart scenario every proxy must be ready again.
const RECOVERY_BOUND: Duration = Duration::from_secs(30);

/// Runs one scenario against one target, applying the two-way capability check; long steps report
/// through `progress`.
pub async fn run_case(
    target: &Target,
    scenario: &Scenario,
    options: &RunOptions,
    progress: crate::ops::messaging::exec::Progress,
) -> CaseReport {
    let timeout = options.scenario_timeout;
    let started = Instant::now();
    if let Some(reason) = unrunnable(target, scenario) {
        return to_report(
            scenario,
            CaseStatus::Skipped,
            Duration::ZERO,
            Some(reason),
            None,
        );
    }
    let trace = TraceParent::new();
    let session = Session {
        base: trace.on(&target.client),
        namespace: target.namespace.clone(),
        backends: target.backend.split('+').map(str::to_string).collect(),
        other: target.other_namespace.clone(),
        token: target.token.clone(),
        tokens: target.tokens.clone(),
        progress,
        proxy: target.proxy.clone(),
        second: target.second.as_ref().map(|c| trace.on(c)),
        second_proxy: target.second_proxy.clone(),
        link: target.link.clone(),
        spread: (options.spread && target.second.is_some() && spreadable(scenario))
            .then(Arc::default),
        server: target.server.clone(),
        notes: Arc::default(),
        families: Default::default(),
    };
    let mut vars = HashMap::from([("prefix".to_string(), unique_prefix(scenario))]);
    let missing: Vec<Capability> = scenario
        .requires
        .iter()
        .copied()
        .filter(|c| !target.capabilities.contains(c))
        .collect();
    let work = async {
        if scenario.reads_metrics() {
            operate::mark_start(&session).await?;
        }
        if missing.is_empty() {
            run_steps(&session, &scenario.steps, &mut vars, None).await?;
            let mut notes = finish(&session)?;
            notes.extend(session.take_notes());
            Ok((
                CaseStatus::Passed,
                (!notes.is_empty()).then(|| notes.join("; ")),
            ))
        } else if !scenario.calls_need_any(&missing) {
            // Only properties are missing (ordering, durability): no call can be refused, and the
            // scenario's steps would only test what the backend does not promise.
            let names: Vec<&str> = missing.iter().map(|c| c.name()).collect();
            Ok((
                CaseStatus::Skipped,
                Some(format!(
                    "backend does not declare {}, a property no call can be refused for",
                    names.join(", ")
                )),
            ))
        } else {
            let names: Vec<&str> = missing.iter().map(|c| c.name()).collect();
            match refusal_walk(&session, &scenario.steps, &mut vars, &missing).await? {
                Refusal::Refused { capability, step } => Ok((
                    CaseStatus::Skipped,
                    Some(format!(
                        "backend does not declare {}; verified `{step}` is refused with UNIMPLEMENTED naming {capability}",
                        names.join(", ")
                    )),
                )),
                Refusal::NotExercised => Ok((
                    CaseStatus::Skipped,
                    Some(format!(
                        "backend does not declare {}; no call needs it (a property such as ordering or durability: nothing to refuse)",
                        names.join(", ")
                    )),
                )),
            }
        }
    };
    let mut outcome = match tokio::time::timeout(timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(Failure::message(format!(
            "scenario did not finish within {}s",
            timeout.as_secs()
        ))),
    };
    if scenario.reloads() {
        if let (Err(f), Ok(_)) = (operate::restore(&session).await, &outcome) {
            outcome = Err(f);
        }
    }
    if let Some(link) = target.link.as_ref().filter(|_| scenario.troubles_network()) {
        // The network is clear again for the scenarios after it, whatever the outcome.
        link.apply(crate::scenario::model::NetworkFault::Restore);
    }
    if scenario.injects_faults() || scenario.restarts_proxy() {
        // Every proxy serves again, with every backend up, before the next scenario: a proxy the
        // scenario killed is started again, and one still reconnecting to a faulted backend is
        // waited for (a bounded wait: one that never recovers fails this case).
        for proxy in [&target.proxy, &target.second_proxy].into_iter().flatten() {
            let ready = match proxy.ensure_running().await {
                Ok(()) => operate::wait_ready(proxy, RECOVERY_BOUND).await,
                Err(e) => Err(format!("could not start a killed proxy again: {e}")),
            };
            if let (Err(e), Ok(_)) = (ready, &outcome) {
                outcome = Err(Failure::message(format!(
                    "a proxy ({}) was not ready {} s after the scenario: {e}",
                    proxy.url,
                    RECOVERY_BOUND.as_secs()
                )));
            }
        }
    }
    match outcome {
        Ok((status, reason)) => to_report(scenario, status, started.elapsed(), reason, None),
        Err(f) => {
            let mut report = to_report(
                scenario,
                CaseStatus::Failed,
                started.elapsed(),
                None,
                Some(f),
            );
            if let Some(failure) = &mut report.failure {
                failure.trace_id = Some(trace.trace_id);
            }
            report
        }
    }
}

/// Runs every scenario of each target's pattern on that target; emits events and returns the report.
pub async fn run(
    targets: &[Target],
    scenarios: &[Arc<Scenario>],
    options: &RunOptions,
    events: mpsc::UnboundedSender<Event>,
) -> RunReport {
    let started = Instant::now();
    let started_at_unix_ms = u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(0);
    let emit = |kind: EventKind| {
        let _ = events.send(Event {
            elapsed: started.elapsed(),
            kind,
        });
    };
    let plan: Vec<(usize, Vec<Arc<Scenario>>)> = targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            (
                i,
                scenarios
                    .iter()
                    .filter(|s| s.pattern == t.pattern)
                    .cloned()
                    .collect(),
            )
        })
        .collect();
    emit(EventKind::RunStarted {
        suites: plan
            .iter()
            .map(|(i, list)| (key(&targets[*i]), list.len()))
            .collect(),
    });
    let semaphore = Arc::new(Semaphore::new(options.jobs.max(1)));
    let stop = Arc::new(AtomicBool::new(false));
    let mut results: Vec<Vec<Option<CaseReport>>> =
        plan.iter().map(|(_, l)| vec![None; l.len()]).collect();
    // Scenarios that restart the proxy or fault a backend run last and alone: either would cut
    // every other scenario's streams and calls.
    for exclusive in [false, true] {
        let mut tasks = tokio::task::JoinSet::new();
        // The largest scenarios are admitted first, so a long one (10,000 messages) runs beside
        // the many short ones instead of after them; the reports keep the corpus order, and the
        // scenarios that run alone keep it too.
        let mut order: Vec<(usize, usize, usize, &Arc<Scenario>)> = plan
            .iter()
            .enumerate()
            .flat_map(|(slot, (ti, list))| {
                list.iter()
                    .enumerate()
                    .map(move |(si, scenario)| (slot, *ti, si, scenario))
            })
            .filter(|(_, _, _, scenario)| scenario.runs_alone() == exclusive)
            .collect();
        if !exclusive {
            order.sort_by_key(|(_, _, _, scenario)| std::cmp::Reverse(scenario.size()));
        }
        for (slot, ti, si, scenario) in order {
            let target = targets[ti].clone();
            let scenario = scenario.clone();
            let semaphore = semaphore.clone();
            let stop = stop.clone();
            let events = events.clone();
            let options = options.clone();
            let job = async move {
                let _permit = semaphore
                    .acquire_owned()
                    .await
                    .expect("semaphore is never closed");
                let case = if stop.load(Ordering::SeqCst) {
                    to_report(
                        &scenario,
                        CaseStatus::Skipped,
                        Duration::ZERO,
                        Some("not run: --fail-fast stopped the run after a failure".into()),
                        None,
                    )
                } else {
                    let progress = {
                        let events = events.clone();
                        let suite = key(&target);
                        let name = scenario.name.clone();
                        crate::ops::messaging::exec::Progress(Arc::new(move |message: String| {
                            let _ = events.send(Event {
                                elapsed: started.elapsed(),
                                kind: EventKind::Progress {
                                    suite: suite.clone(),
                                    scenario: name.clone(),
                                    message,
                                },
                            });
                        }))
                    };
                    run_case(&target, &scenario, &options, progress).await
                };
                if case.status == CaseStatus::Failed && options.fail_fast {
                    stop.store(true, Ordering::SeqCst);
                }
                let _ = events.send(Event {
                    elapsed: started.elapsed(),
                    kind: EventKind::CaseFinished {
                        suite: key(&target),
                        case: Box::new(case.clone()),
                    },
                });
                (slot, si, case)
            };
            if exclusive {
                let (slot, si, case) = job.await;
                results[slot][si] = Some(case);
            } else {
                tasks.spawn(job);
            }
        }
        while let Some(joined) = tasks.join_next().await {
            if let Ok((slot, si, case)) = joined {
                results[slot][si] = Some(case);
            }
        }
    }
    let mut totals = Totals::default();
    let suites = plan
        .iter()
        .zip(results)
        .map(|((ti, _), cases)| {
            let t = &targets[*ti];
            let cases: Vec<CaseReport> = cases.into_iter().flatten().collect();
            let mut st = Totals::default();
            for c in &cases {
                st.add(c.status);
                totals.add(c.status);
            }
            SuiteReport {
                pattern: t.pattern.to_string(),
                backend: t.backend.clone(),
                backend_kind: t.backend_kind.clone(),
                capabilities: t
                    .capabilities
                    .iter()
                    .map(|c| c.name().to_string())
                    .collect(),
                provisioning: None,
                provision_ms: None,
                totals: st,
                duration_ms: cases.iter().map(|c| c.duration_ms).sum(),
                cases,
            }
        })
        .collect();
    let report = RunReport {
        schema: SCHEMA_VERSION,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at_unix_ms,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        totals,
        suites,
        unavailable: Vec::new(),
    };
    emit(EventKind::RunFinished(Box::new(report.clone())));
    report
}

fn key(t: &Target) -> SuiteKey {
    SuiteKey {
        pattern: t.pattern.to_string(),
        backend: t.backend.clone(),
    }
}
