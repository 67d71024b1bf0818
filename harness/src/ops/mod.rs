//! The operations of each family of pattern steps, one folder each — `keyvalue/`, `messaging/`
//! (PubSub and Queue, which share stream handles) and `registry/` (the Multicast Registry): the
//! steps' model, parser, printer, execution and judge. The scenario parser, the printer and the runner reach a family only through
//! [`PatternOps`], so adding an operation touches its family's folder.

pub mod keyvalue;
pub mod messaging;
pub mod registry;

use crate::runner::Failure;
use crate::runner::exec::{Counts, Session, Vars};
use crate::scenario::model::{Location, Step};
use crate::scenario::parse::{Ctx, Scope};
use crate::scenario::yaml::Located;
use prism_runtime::patterns::capability::Capability;
use serde_json::{Map, Value};
use std::future::Future;
use std::pin::Pin;

/// A boxed future borrowing a step's run.
pub type StepFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Failure>> + Send + 'a>>;

/// What the scenario layer and the runner need from a family of pattern steps.
pub(crate) trait PatternOps {
    /// The family's step, as the scenario model holds it.
    type Step;
    /// The step names (YAML keys) the family parses.
    const NAMES: &'static [&'static str];
    /// The pattern a step name belongs to, `None` when any of the family's patterns may use it.
    fn pattern_of(name: &str) -> Option<&'static str>;
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
    /// Adds the step's keys to its YAML mapping.
    fn print(step: &Self::Step, m: &mut Map<String, Value>);
    /// Runs the step and judges what came back (`tally`: count outcomes instead, where the
    /// family supports it).
    fn run<'a>(
        session: &'a Session,
        at: &'a Step,
        step: &'a Self::Step,
        vars: &'a mut Vars,
        tally: Option<&'a Counts>,
    ) -> StepFuture<'a>;
}

pub(crate) use keyvalue::KeyValueOps;
pub(crate) use messaging::MessagingOps;
pub(crate) use registry::RegistryOps;
