//! Executing a scenario's steps: ops through the client, control steps (sleep, eventually, repeat,
//! parallel), and the refusal walk of the two-way capability check.

use super::Failure;
use crate::ops::FamilyStep;
use crate::ops::messaging::model::{Caller, Via};
use crate::scenario::code::StatusCode;
use crate::scenario::model::{NamespaceRef, Step, StepKind, Tally};
use prism_proto::client::{NamespaceClient, PrismClient};
use prism_runtime::patterns::capability::Capability;
use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

/// A scenario run's variables.
pub type Vars = HashMap<String, String>;
/// Outcome counts of a tallied `parallel` step.
pub type Counts = Arc<Mutex<BTreeMap<StatusCode, u64>>>;

/// Per-run state of the step families, one value per type, so a family keeps its own state (open
/// handles) without a field in [`Session`].
#[derive(Clone, Default)]
pub struct Families(Arc<Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>>);

impl std::fmt::Debug for Families {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Families")
    }
}

/// What one scenario run talks to: a connection, its namespaces, and the tokens steps may select.
#[derive(Clone, Debug)]
pub struct Session {
    /// The connection, without a token.
    pub base: PrismClient,
    /// The scenario's namespace.
    pub namespace: String,
    /// The names of the target's backends in the proxy's config (metrics' `backend` label).
    pub backends: Vec<String>,
    /// The run's second namespace on the same backend, when there is one.
    pub other: Option<String>,
    /// The token used when a step names none.
    pub token: Option<String>,
    /// The minted token matrix (`token: NAME`), when the harness holds the keys.
    pub tokens: Option<Arc<BTreeMap<String, Option<String>>>>,
    /// Reports progress of long steps (receives) to the event stream.
    pub progress: crate::ops::messaging::exec::Progress,
    /// The run's proxy, for `restart_proxy`, `kill_proxy`, metrics and reloads.
    pub proxy: Option<crate::provision::RunningProxy>,
    /// A connection to the second proxy on the same backends, for `via: b` steps.
    pub second: Option<PrismClient>,
    /// The second proxy, for `restart_proxy: b` and `kill_proxy: b`.
    pub second_proxy: Option<crate::provision::RunningProxy>,
    /// With `--proxies 2`: the calls made so far, so steps that name no proxy alternate between
    /// the two.
    pub spread: Option<Arc<AtomicU64>>,
    /// The link to the backend's server, for `fault: { network: … }` steps.
    pub link: Option<Arc<crate::provision::netfault::NetLink>>,
    /// The backend's server, for `fault` steps (when the harness started it).
    pub server: Option<Arc<Mutex<crate::provision::ServerHandle>>>,
    /// What the run measured on the way (fault and recovery times), for the case's report.
    pub notes: Arc<Mutex<Vec<String>>>,
    /// The step families' own state for this run.
    pub families: Families,
}

impl Session {
    /// The run's state of type `T` (created on first use).
    pub fn family<T: Default + Send + Sync + 'static>(&self) -> Arc<T> {
        let mut map = self.families.0.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Arc::new(T::default()));
        entry
            .clone()
            .downcast::<T>()
            .expect("a family's state is stored under its own type")
    }

    /// Records a measurement for the case's report.
    pub fn note(&self, note: String) {
        self.notes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(note);
    }

    /// The measurements recorded so far, in order.
    pub fn take_notes(&self) -> Vec<String> {
        std::mem::take(&mut *self.notes.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The namespace a step addresses, by name.
    pub fn namespace_name(&self, ns: NamespaceRef) -> Result<&str, Failure> {
        match ns {
            NamespaceRef::Main => Ok(&self.namespace),
            NamespaceRef::Other => self.other.as_deref().ok_or_else(|| {
                Failure::message("this step uses `namespace: other`, but the target has no second namespace (pass --namespace PATTERN.other=NAME)")
            }),
        }
    }

    /// A client for a call step's namespace, token and proxy.
    pub fn caller_client(&self, caller: &Caller) -> Result<NamespaceClient, Failure> {
        let via = match (&self.spread, caller.via) {
            (Some(calls), Via::A) if calls.fetch_add(1, Ordering::Relaxed) % 2 == 1 => Via::B,
            (_, via) => via,
        };
        let base = match via {
            Via::A => &self.base,
            Via::B => self.second.as_ref().ok_or_else(|| {
                Failure::message(
                    "this step goes `via: b`, but the run has no second proxy on the same backends",
                )
            })?,
        };
        self.client_on(base, caller.namespace, caller.token.as_deref())
    }

    /// A client of the run's proxy for the namespace called `name` (one the harness configured
    /// beside the scenario's, such as a mailbox's source) carrying the token a step selects.
    pub fn named_client(
        &self,
        name: &str,
        token: Option<&str>,
    ) -> Result<NamespaceClient, Failure> {
        self.with_token(&self.base, token)?
            .try_namespace(name)
            .map_err(|e| Failure::message(e.to_string()))
    }

    /// The Admin API of the run's proxy, with the token a step selects.
    pub fn admin_client(&self, token: Option<&str>) -> Result<prism_proto::client::Admin, Failure> {
        Ok(self.with_token(&self.base, token)?.admin())
    }

    /// `base` carrying the token a step selects.
    fn with_token(&self, base: &PrismClient, token: Option<&str>) -> Result<PrismClient, Failure> {
        match self.token_for(token)? {
            Some(t) => base
                .clone()
                .with_token(&t)
                .map_err(|e| Failure::message(e.to_string())),
            None => Ok(base.clone()),
        }
    }

    /// The token a step selects (`None`: the run's default).
    fn token_for(&self, token: Option<&str>) -> Result<Option<String>, Failure> {
        match token {
            None | Some("default") => Ok(self.token.clone()),
            Some(name) => self
                .tokens
                .as_ref()
                .ok_or_else(|| {
                    Failure::message(format!(
                        "token `{name}` is minted only for the in-process proxy"
                    ))
                })?
                .get(name)
                .cloned()
                .ok_or_else(|| Failure::message(format!("unknown token `{name}`"))),
        }
    }

    /// A client of the run's proxy for namespace `ns` carrying the token a step selects.
    pub fn namespace_client(
        &self,
        ns: NamespaceRef,
        token: Option<&str>,
    ) -> Result<NamespaceClient, Failure> {
        self.client_on(&self.base, ns, token)
    }

    fn client_on(
        &self,
        base: &PrismClient,
        ns: NamespaceRef,
        token: Option<&str>,
    ) -> Result<NamespaceClient, Failure> {
        let namespace = self.namespace_name(ns)?;
        self.with_token(base, token)?
            .try_namespace(namespace)
            .map_err(|e| Failure::message(e.to_string()))
    }
}

/// Places a failure at `step` (unless it already has a place).
pub fn locate(step: &Step, op: Option<String>, mut f: Failure) -> Failure {
    if f.loc.is_none() {
        f.loc = Some(step.loc);
        f.step = op.unwrap_or_default();
    }
    f
}

/// Runs steps in order; the first failure stops the run.
pub fn run_steps<'a>(
    session: &'a Session,
    steps: &'a [Step],
    vars: &'a mut Vars,
    tally: Option<&'a Counts>,
) -> Pin<Box<dyn Future<Output = Result<(), Failure>> + Send + 'a>> {
    Box::pin(async move {
        for step in steps {
            run_step(session, step, vars, tally).await?;
        }
        Ok(())
    })
}

async fn run_step(
    session: &Session,
    step: &Step,
    vars: &mut Vars,
    tally: Option<&Counts>,
) -> Result<(), Failure> {
    match &step.kind {
        StepKind::Call(call) => call.run(session, step, vars, tally).await,
        StepKind::Sleep(d) => {
            tokio::time::sleep(*d).await;
            Ok(())
        }
        StepKind::RestartProxy(via) | StepKind::KillProxy(via) => {
            let kill = matches!(step.kind, StepKind::KillProxy(_));
            let what = format!(
                "{}: {}",
                if kill { "kill_proxy" } else { "restart_proxy" },
                via.name()
            );
            let proxy = match via {
                Via::A => session.proxy.as_ref(),
                Via::B => session.second_proxy.as_ref(),
            }
            .ok_or_else(|| {
                locate(
                    step,
                    Some(what.clone()),
                    Failure::message(format!(
                        "the run has no proxy {} the harness started",
                        via.name()
                    )),
                )
            })?;
            let started = Instant::now();
            let done = if kill {
                proxy.kill().await
            } else {
                proxy.restart().await
            };
            done.map_err(|e| locate(step, Some(what.clone()), Failure::message(e.to_string())))?;
            session.note(format!(
                "line {}: {what} took {} ms",
                step.loc.line,
                started.elapsed().as_millis()
            ));
            Ok(())
        }
        StepKind::Fault(action) => super::fault::run_backend(session, step, *action).await,
        StepKind::Network(fault) => super::fault::run_network(session, step, *fault).await,
        StepKind::Metrics(metrics) => {
            super::operate::run_metrics(session, step, metrics, vars).await
        }
        StepKind::Reload(reload) => super::operate::run_reload(session, step, reload).await,
        StepKind::Within { within, steps } => {
            let started = Instant::now();
            match tokio::time::timeout(*within, run_steps(session, steps, vars, tally)).await {
                Ok(done) => {
                    if done.is_ok() {
                        session.note(format!(
                            "line {}: within {} ms: done in {} ms",
                            step.loc.line,
                            within.as_millis(),
                            started.elapsed().as_millis()
                        ));
                    }
                    done
                }
                Err(_) => Err(locate(
                    step,
                    Some(format!("within: {}ms", within.as_millis())),
                    Failure::message(format!(
                        "the steps did not finish within {} ms (a call or receive hung)",
                        within.as_millis()
                    )),
                )),
            }
        }
        StepKind::Eventually {
            within,
            every,
            steps,
        } => {
            let started = Instant::now();
            let deadline = started + *within;
            let mut attempts = 0u32;
            loop {
                attempts += 1;
                let mut attempt_vars = vars.clone();
                match run_steps(session, steps, &mut attempt_vars, tally).await {
                    Ok(()) => {
                        *vars = attempt_vars;
                        if attempts > 1 {
                            session.note(format!(
                                "line {}: eventually satisfied after {} ms ({attempts} attempts)",
                                step.loc.line,
                                started.elapsed().as_millis()
                            ));
                        }
                        return Ok(());
                    }
                    Err(mut f) if Instant::now() + *every > deadline => {
                        f.message = format!(
                            "not satisfied within {}ms ({attempts} attempts); last attempt: {}",
                            within.as_millis(),
                            f.message
                        );
                        return Err(f);
                    }
                    Err(_) => tokio::time::sleep(*every).await,
                }
            }
        }
        StepKind::Repeat { times, steps } => {
            for i in 0..*times {
                vars.insert("i".into(), i.to_string());
                run_steps(session, steps, vars, tally)
                    .await
                    .map_err(|mut f| {
                        f.message = format!("iteration i={i}: {}", f.message);
                        f
                    })?;
            }
            vars.remove("i");
            Ok(())
        }
        StepKind::Parallel {
            branches,
            tally: expected,
        } => {
            let counts: Counts = Arc::default();
            let mut tasks = tokio::task::JoinSet::new();
            for branch in branches {
                for worker in 0..branch.workers {
                    let session = session.clone();
                    let steps = branch.steps.clone();
                    let mut vars = vars.clone();
                    vars.insert("worker".into(), worker.to_string());
                    let counts = expected.as_ref().map(|_| counts.clone());
                    tasks.spawn(async move {
                        run_steps(&session, &steps, &mut vars, counts.as_ref())
                            .await
                            .map_err(|mut f| {
                                f.message = format!("worker {worker}: {}", f.message);
                                f
                            })
                    });
                }
            }
            let mut first: Option<Failure> = None;
            while let Some(joined) = tasks.join_next().await {
                let result = joined
                    .unwrap_or_else(|e| Err(Failure::message(format!("worker panicked: {e}"))));
                if let (Err(f), None) = (result, &first) {
                    first = Some(f);
                }
            }
            if let Some(f) = first {
                return Err(f);
            }
            match expected {
                Some(t) => check_tally(t, &counts.lock().expect("tally lock"))
                    .map_err(|f| locate(step, Some("parallel".into()), f)),
                None => Ok(()),
            }
        }
    }
}

fn show_counts(counts: &BTreeMap<StatusCode, u64>) -> String {
    counts
        .iter()
        .map(|(c, n)| format!("{c}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_tally(expected: &Tally, counts: &BTreeMap<StatusCode, u64>) -> Result<(), Failure> {
    let mut want = expected.errors.clone();
    if let Some(ok) = expected.ok {
        want.insert(StatusCode(0), ok);
    }
    let mut got = counts.clone();
    if expected.ok.is_none() {
        got.remove(&StatusCode(0));
    }
    got.retain(|_, n| *n > 0);
    want.retain(|_, n| *n > 0);
    if want == got {
        Ok(())
    } else {
        Err(Failure {
            message: "outcome counts differ".into(),
            expected: Some(show_counts(&want)),
            actual: Some(show_counts(&got)),
            ..Failure::default()
        })
    }
}

/// What the refusal walk found.
#[derive(Debug)]
pub enum Refusal {
    /// The first op needing `capability` was refused with UNIMPLEMENTED naming it.
    Refused {
        /// The undeclared capability.
        capability: Capability,
        /// The op, rendered.
        step: String,
    },
    /// No op needs an undeclared capability (the scenario's `requires` is wider than its steps).
    NotExercised,
}

fn flatten<'a>(
    steps: &'a [Step],
    vars: &Vars,
    out: &mut Vec<(&'a Step, &'a dyn FamilyStep, Vars, bool)>,
    tallied: bool,
) {
    for step in steps {
        match &step.kind {
            StepKind::Call(call) => out.push((step, call.as_ref(), vars.clone(), tallied)),
            StepKind::Sleep(_)
            | StepKind::RestartProxy(_)
            | StepKind::KillProxy(_)
            | StepKind::Fault(_)
            | StepKind::Network(_)
            | StepKind::Metrics(_)
            | StepKind::Reload(_) => {}
            StepKind::Eventually { steps, .. } | StepKind::Within { steps, .. } => {
                flatten(steps, vars, out, tallied)
            }
            StepKind::Repeat { steps, .. } => {
                let mut v = vars.clone();
                v.insert("i".into(), "0".into());
                flatten(steps, &v, out, tallied);
            }
            StepKind::Parallel { branches, tally } => {
                for b in branches {
                    let mut v = vars.clone();
                    v.insert("worker".into(), "0".into());
                    flatten(&b.steps, &v, out, tallied || tally.is_some());
                }
            }
        }
    }
}

/// One call step of the refusal walk: `Ok(Some(_))` ends the walk — the step needed a missing
/// capability and its probe was refused as it must be (or it makes no call of its own). A step
/// needing nothing missing runs as written (counted, not judged, where a tally covers it).
async fn walk_step(
    session: &Session,
    at: &Step,
    step: &dyn FamilyStep,
    missing: &[Capability],
    tallied: bool,
    vars: &mut Vars,
) -> Result<Option<Refusal>, Failure> {
    let Some(capability) = step.needs().into_iter().find(|c| missing.contains(c)) else {
        let scratch = Counts::default();
        step.run(session, at, vars, tallied.then_some(&scratch))
            .await?;
        return Ok(None);
    };
    let Some(probe) = step.probe(capability) else {
        return Ok(Some(Refusal::NotExercised));
    };
    probe
        .run(session, at, vars, None)
        .await
        .map_err(|mut f| {
            f.message = format!(
                "the namespace does not offer {capability}, yet this call was not refused with UNIMPLEMENTED naming it (a backend must not do more than it declares): {}",
                f.message
            );
            f
        })?;
    Ok(Some(Refusal::Refused {
        capability,
        step: step.label(vars),
    }))
}

/// The two-way check's refusal walk: runs ops in order (once each, workers and iterations collapsed
/// to 0) up to the first op needing a capability in `missing`, which must fail with UNIMPLEMENTED
/// naming that capability.
pub async fn refusal_walk(
    session: &Session,
    steps: &[Step],
    vars: &mut Vars,
    missing: &[Capability],
) -> Result<Refusal, Failure> {
    let mut ops = Vec::new();
    flatten(steps, vars, &mut ops, false);
    for (step, call, mut local, tallied) in ops {
        for (k, v) in vars.iter() {
            local.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let refusal = walk_step(session, step, call, missing, tallied, &mut local).await?;
        if let Some(refusal) = refusal {
            return Ok(refusal);
        }
        // What the step saved (a version, a message id) is there for the steps after it.
        vars.extend(local);
    }
    Ok(Refusal::NotExercised)
}
