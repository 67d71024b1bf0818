//! The operations of each family of pattern steps, one folder each — `keyvalue/`, `messaging/`
//! (PubSub and Queue, which share stream handles), `registry/` (the Multicast Registry) and
//! `mailbox/`: the steps' model, parser, printer, execution and judge; `filter.rs` holds the filter
//! language the registry and mailbox steps share. The scenario parser, the printer and the runner
//! reach a family only through [`PatternOps`], so adding an operation touches its family's folder.

pub mod filter;
pub mod keyvalue;
pub mod mailbox;
pub mod messaging;
pub mod registry;

use crate::runner::Failure;
use crate::runner::exec::{Counts, Session, Vars, locate};
use crate::scenario::model::{Location, Step};
use crate::scenario::parse::{Ctx, Scope};
use crate::scenario::yaml::Located;
use prism_runtime::patterns::Pattern;
use prism_runtime::patterns::capability::Capability;
use serde_json::{Map, Value};
use std::future::Future;
use std::pin::Pin;

/// A boxed future borrowing a step's run.
pub type StepFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Failure>> + Send + 'a>>;

/// What the scenario layer and the runner need from a family of pattern steps.
pub(crate) trait PatternOps {
    /// The family's step, as the scenario model holds it.
    type Step: Send + Sync;
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

/// Every family's verdict after a scenario's steps passed ([`PatternOps::finish`]), as report
/// notes.
pub(crate) fn finish(session: &Session) -> Result<Vec<String>, Failure> {
    let verdicts = [
        KeyValueOps::finish(session)?,
        MessagingOps::finish(session)?,
        RegistryOps::finish(session)?,
        MailboxOps::finish(session)?,
    ];
    Ok(verdicts.into_iter().flatten().collect())
}

pub(crate) use keyvalue::KeyValueOps;
pub(crate) use mailbox::MailboxOps;
pub(crate) use messaging::MessagingOps;
pub(crate) use registry::RegistryOps;
