//! Multicast Registry steps: register, heartbeat, unregister, enumerate, multicast, and the
//! `listen` and `watch` stream handles that `hear`, `events` and `close` work on.

pub mod exec;
pub mod model;
pub mod parse;
pub mod print;

use super::{PatternOps, StepFuture};
use crate::runner::exec::{Session, Vars};
use crate::scenario::code::StatusCode;
use crate::scenario::model::{Caller, Location};
use crate::scenario::parse::{Ctx, Scope};
use crate::scenario::yaml::Located;
use model::{REG_STEPS, RegStep};
use prism_runtime::patterns::Pattern;
use prism_runtime::patterns::capability::Capability;
use serde_json::{Map, Value};

/// The Multicast Registry steps.
pub(crate) struct RegistryOps;

impl PatternOps for RegistryOps {
    type Step = RegStep;
    const NAMES: &'static [&'static str] = &REG_STEPS;

    fn pattern_of(_name: &str) -> Option<Pattern> {
        Some(Pattern::MulticastRegistry)
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

    fn caller(step: &RegStep) -> Option<Caller> {
        step.caller().cloned()
    }

    fn needs(step: &RegStep) -> Vec<Capability> {
        step.needs()
    }

    fn label(step: &RegStep, _vars: &Vars) -> String {
        step.name().to_string()
    }

    fn probe(step: &RegStep, capability: Capability) -> Option<RegStep> {
        let mut probe = step.clone();
        let refused = model::RegExpect {
            error: Some(StatusCode::from(tonic::Code::Unimplemented)),
            message_contains: Some(capability.name().to_string()),
            ..model::RegExpect::default()
        };
        match &mut probe {
            RegStep::Register { expect, caller, .. }
            | RegStep::Heartbeat { expect, caller, .. }
            | RegStep::Unregister { expect, caller, .. }
            | RegStep::Enumerate { expect, caller, .. }
            | RegStep::Multicast { expect, caller, .. }
            | RegStep::Listen { expect, caller, .. }
            | RegStep::Watch { expect, caller, .. } => {
                *expect = refused;
                caller.token = None;
            }
            RegStep::Hear { .. } | RegStep::Events { .. } | RegStep::Close { .. } => return None,
        }
        Some(probe)
    }

    fn print(step: &RegStep, m: &mut Map<String, Value>) {
        print::step(step, m)
    }

    fn execute<'a>(session: &'a Session, step: &'a RegStep, vars: &'a mut Vars) -> StepFuture<'a> {
        Box::pin(exec::run(session, step, vars))
    }
}
