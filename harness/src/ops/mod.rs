//! The operations of each family of pattern steps, one folder each — `keyvalue/`, `messaging/`
//! (PubSub and Queue, which share stream handles), `registry/` (the Multicast Registry) and
//! `mailbox/`: the steps' model, parser, printer, execution and judge; `filter.rs` holds the filter
//! language the registry and mailbox steps share. The scenario parser, the printer and the runner
//! reach a family only through [`FAMILIES`] (one entry per family) and the [`FamilyStep`] a parsed
//! step is, so adding an operation touches its family's folder and adding a family one entry here.

pub mod filter;
pub mod keyvalue;
pub mod mailbox;
pub mod messaging;
pub mod registry;

use crate::runner::Failure;
use crate::runner::exec::{Counts, Session, Vars, locate};
use crate::scenario::model::{Caller, Location, Step, StepKind};
use crate::scenario::parse::{Ctx, Scope};
use crate::scenario::yaml::Located;
use prism_runtime::patterns::Pattern;
use prism_runtime::patterns::capability::Capability;
use serde_json::{Map, Value};
use std::fmt;
use std::future::Future;
use std::pin::Pin;

/// A boxed future borrowing a step's run.
pub type StepFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Failure>> + Send + 'a>>;

/// What the scenario layer and the runner need from a family of pattern steps.
pub(crate) trait PatternOps {
    /// The family's step, as the scenario model holds it.
    type Step: Clone + fmt::Debug + Send + Sync + 'static;
    /// The step names (YAML keys) the family parses.
    const NAMES: &'static [&'static str];
    /// The pattern a step name belongs to, `None` when any of the family's patterns may use it.
    fn pattern_of(name: &str) -> Option<Pattern>;
    /// Parses step `name`: `n` is the whole step mapping, `args` the value under its name.
    fn parse(
        cx: &mut Ctx,
        name: &str,
        n: &Located,
        args: &Located,
        loc: Location,
        scope: &mut Scope,
    ) -> Option<Self::Step>;
    /// Capabilities a backend needs to accept the step's call as written.
    fn needs(step: &Self::Step) -> Vec<Capability>;
    /// The namespace, token and proxy the step's call goes to, if it makes one.
    fn caller(step: &Self::Step) -> Option<Caller>;
    /// How reports name the step (`vars`: the run's variables, for a step that names its key).
    fn label(step: &Self::Step, vars: &Vars) -> String;
    /// The refusal probe of a step whose call needs `capability`, which the namespace does not
    /// offer: the same call with the run's default token, expected to fail with UNIMPLEMENTED
    /// naming the capability. `None` when the step makes no call of its own.
    fn probe(step: &Self::Step, capability: Capability) -> Option<Self::Step>;
    /// Adds the step's keys to its YAML mapping.
    fn print(step: &Self::Step, m: &mut Map<String, Value>);
    /// After a scenario's steps passed: ends what the family still holds open and gives its
    /// verdict on the whole run (a note for the report, or the failure, such as a lost message).
    fn finish(_session: &Session) -> Result<Option<String>, Failure> {
        Ok(None)
    }
    /// Runs the step and judges what came back; a failure is not yet located.
    fn execute<'a>(
        session: &'a Session,
        step: &'a Self::Step,
        vars: &'a mut Vars,
    ) -> StepFuture<'a>;
    /// Runs the step at `at` and judges what came back, a failure located at the step (`tally`:
    /// count outcomes instead, where the family supports it).
    fn run<'a>(
        session: &'a Session,
        at: &'a Step,
        step: &'a Self::Step,
        vars: &'a mut Vars,
        _tally: Option<&'a Counts>,
    ) -> StepFuture<'a> {
        Box::pin(async move {
            let label = Self::label(step, vars);
            Self::execute(session, step, vars)
                .await
                .map_err(|f| locate(at, Some(label), f))
        })
    }
}

/// A parsed step of some family, as the scenario model holds it: what the model, the printer and
/// the runner ask of it, whichever family it belongs to.
pub trait FamilyStep: fmt::Debug + Send + Sync {
    /// Capabilities a backend needs to accept the step's call as written.
    fn needs(&self) -> Vec<Capability>;
    /// The namespace, token and proxy the step's call goes to, if it makes one.
    fn caller(&self) -> Option<Caller>;
    /// Adds the step's keys to its YAML mapping.
    fn print(&self, m: &mut Map<String, Value>);
    /// Runs the step at `at` and judges it (see [`PatternOps::run`]).
    fn run<'a>(
        &'a self,
        session: &'a Session,
        at: &'a Step,
        vars: &'a mut Vars,
        tally: Option<&'a Counts>,
    ) -> StepFuture<'a>;
    /// See [`PatternOps::label`].
    fn label(&self, vars: &Vars) -> String;
    /// See [`PatternOps::probe`].
    fn probe(&self, capability: Capability) -> Option<Box<dyn FamilyStep>>;
    /// A copy of the step.
    fn clone_box(&self) -> Box<dyn FamilyStep>;
    /// The family's own step type (`OpStep`, `MsgStep`, …), for code that knows the family.
    fn as_any(&self) -> &dyn std::any::Any;
}

impl Clone for Box<dyn FamilyStep> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}

/// A step of family `F`.
struct Of<F: PatternOps>(F::Step);

/// Family `F`'s step `step` as a scenario step.
pub(crate) fn call_of<F: PatternOps + 'static>(step: F::Step) -> StepKind {
    StepKind::Call(Box::new(Of::<F>(step)))
}

impl<F: PatternOps> fmt::Debug for Of<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<F: PatternOps + 'static> FamilyStep for Of<F> {
    fn needs(&self) -> Vec<Capability> {
        F::needs(&self.0)
    }
    fn caller(&self) -> Option<Caller> {
        F::caller(&self.0)
    }
    fn print(&self, m: &mut Map<String, Value>) {
        F::print(&self.0, m)
    }
    fn run<'a>(
        &'a self,
        session: &'a Session,
        at: &'a Step,
        vars: &'a mut Vars,
        tally: Option<&'a Counts>,
    ) -> StepFuture<'a> {
        F::run(session, at, &self.0, vars, tally)
    }
    fn label(&self, vars: &Vars) -> String {
        F::label(&self.0, vars)
    }
    fn probe(&self, capability: Capability) -> Option<Box<dyn FamilyStep>> {
        F::probe(&self.0, capability).map(|p| Box::new(Of::<F>(p)) as _)
    }
    fn clone_box(&self) -> Box<dyn FamilyStep> {
        Box::new(Of::<F>(self.0.clone()))
    }
    fn as_any(&self) -> &dyn std::any::Any {
        &self.0
    }
}

/// How a family parses one step (see [`PatternOps::parse`]).
type ParseFn =
    fn(&mut Ctx, &str, &Located, &Located, Location, &mut Scope) -> Option<Box<dyn FamilyStep>>;

/// A family as the scenario parser and the runner see it.
pub(crate) struct Family {
    /// The step names (YAML keys) the family parses.
    pub names: &'static [&'static str],
    /// See [`PatternOps::pattern_of`].
    pub pattern_of: fn(&str) -> Option<Pattern>,
    /// See [`PatternOps::parse`].
    pub parse: ParseFn,
    /// See [`PatternOps::finish`].
    pub finish: fn(&Session) -> Result<Option<String>, Failure>,
}

/// Family `F` as the parser and the runner see it.
const fn family<F: PatternOps + 'static>() -> Family {
    Family {
        names: F::NAMES,
        pattern_of: F::pattern_of,
        parse: |cx, name, n, args, loc, scope| {
            F::parse(cx, name, n, args, loc, scope).map(|s| Box::new(Of::<F>(s)) as _)
        },
        finish: F::finish,
    }
}

/// Every family of pattern steps: the one list a new family joins.
pub(crate) const FAMILIES: &[Family] = &[
    family::<KeyValueOps>(),
    family::<MessagingOps>(),
    family::<RegistryOps>(),
    family::<MailboxOps>(),
];

/// The family that parses step `name`, if any.
pub(crate) fn family_of(name: &str) -> Option<&'static Family> {
    FAMILIES.iter().find(|f| f.names.contains(&name))
}

/// Every family's verdict after a scenario's steps passed ([`PatternOps::finish`]), as report
/// notes.
pub(crate) fn finish(session: &Session) -> Result<Vec<String>, Failure> {
    let mut notes = Vec::new();
    for family in FAMILIES {
        notes.extend((family.finish)(session)?);
    }
    Ok(notes)
}

pub(crate) use keyvalue::KeyValueOps;
pub(crate) use mailbox::MailboxOps;
pub(crate) use messaging::MessagingOps;
pub(crate) use registry::RegistryOps;
