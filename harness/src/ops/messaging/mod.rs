//! PubSub and Queue steps: stream handles, publish/enqueue, receive, silence, ack/nack, disconnect,
//! and the delivery ledger that judges every queue scenario.

pub mod exec;
pub mod ledger;
pub mod model;
pub mod parse;
pub mod print;

use super::{PatternOps, StepFuture};
use crate::runner::Failure;
use crate::runner::exec::{Session, Vars};
use crate::scenario::code::StatusCode;
use crate::scenario::model::{Caller, Location};
use crate::scenario::parse::{Ctx, Scope};
use crate::scenario::yaml::Located;
use model::{MSG_STEPS, MsgStep};
use prism_runtime::patterns::Pattern;
use prism_runtime::patterns::capability::Capability;
use serde_json::{Map, Value};

/// The PubSub and Queue steps.
pub(crate) struct MessagingOps;

impl PatternOps for MessagingOps {
    type Step = MsgStep;
    const NAMES: &'static [&'static str] = &MSG_STEPS;

    fn pattern_of(name: &str) -> Option<Pattern> {
        match name {
            "subscribe" | "publish" => Some(Pattern::Pubsub),
            "consume" | "enqueue" | "ack" | "nack" => Some(Pattern::Queue),
            _ => None,
        }
    }

    fn parse(
        cx: &mut Ctx,
        name: &str,
        n: &Located,
        args: &Located,
        loc: Location,
        scope: &mut Scope,
    ) -> Option<MsgStep> {
        cx.msg_step(name, n, args, loc, scope)
    }

    fn caller(step: &MsgStep) -> Option<Caller> {
        step.caller().cloned()
    }

    fn needs(step: &MsgStep) -> Vec<Capability> {
        step.needs()
    }

    fn label(step: &MsgStep, _vars: &Vars) -> String {
        step.name().to_string()
    }

    fn probe(step: &MsgStep, capability: Capability) -> Option<MsgStep> {
        let mut probe = step.clone();
        let refused = model::CallExpect {
            error: Some(StatusCode::from(tonic::Code::Unimplemented)),
            message_contains: Some(capability.name().to_string()),
        };
        match &mut probe {
            MsgStep::Subscribe { expect, caller, .. }
            | MsgStep::Publish { expect, caller, .. }
            | MsgStep::Consume { expect, caller, .. }
            | MsgStep::Enqueue { expect, caller, .. } => {
                *expect = refused;
                caller.token = None;
            }
            MsgStep::Ack { expect, .. } | MsgStep::Nack { expect, .. } => *expect = refused,
            _ => return None,
        }
        Some(probe)
    }

    fn finish(session: &Session) -> Result<Option<String>, Failure> {
        Ok(session
            .family::<exec::Messaging>()
            .finish()?
            .map(|v| v.summary()))
    }

    fn print(step: &MsgStep, m: &mut Map<String, Value>) {
        print::step(step, m)
    }

    fn execute<'a>(session: &'a Session, step: &'a MsgStep, vars: &'a mut Vars) -> StepFuture<'a> {
        Box::pin(exec::run(session, step, vars))
    }
}
