//! Multicast Registry steps: register, heartbeat, unregister, enumerate, multicast, and the
//! `listen` and `watch` stream handles that `hear`, `events` and `close` work on.

pub mod exec;
pub mod model;
pub mod parse;
pub mod print;

use super::{PatternOps, StepFuture};
use crate::runner::exec::{Counts, Session, Vars, locate};
use crate::scenario::model::{Location, Step};
use crate::scenario::parse::{Ctx, Scope};
use crate::scenario::yaml::Located;
use model::{REG_STEPS, RegStep};
use prism_runtime::patterns::capability::Capability;
use serde_json::{Map, Value};

/// The Multicast Registry steps.
pub(crate) struct RegistryOps;

impl PatternOps for RegistryOps {
    type Step = RegStep;
    const NAMES: &'static [&'static str] = &REG_STEPS;

    fn pattern_of(_name: &str) -> Option<&'static str> {
        Some("multicast_registry")
    }

    fn parse(
        cx: &mut Ctx,
        name: &str,
        n: &Located,
        args: &Located,
        loc: Location,
        scope: &mut Scope,
    ) -> Option<RegStep> {
        cx.reg_step(name, n, args, loc, scope)
    }

    fn needs(step: &RegStep) -> Vec<Capability> {
        step.needs()
    }

    fn print(step: &RegStep, m: &mut Map<String, Value>) {
        print::step(step, m)
    }

    fn run<'a>(
        session: &'a Session,
        at: &'a Step,
        step: &'a RegStep,
        vars: &'a mut Vars,
        _tally: Option<&'a Counts>,
    ) -> StepFuture<'a> {
        Box::pin(async move {
            exec::run(session, step, vars)
                .await
                .map_err(|f| locate(at, Some(step.name().to_string()), f))
        })
    }
}
