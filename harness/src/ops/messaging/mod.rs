//! PubSub and Queue steps: stream handles, publish/enqueue, receive, silence, ack/nack, disconnect,
//! and the delivery ledger that judges every queue scenario.

pub mod exec;
pub mod ledger;
pub mod model;
pub mod parse;
pub mod print;

use super::{PatternOps, StepFuture};
use crate::runner::exec::{Counts, Session, Vars, locate};
use crate::scenario::model::{Location, Step};
use crate::scenario::parse::{Ctx, Scope};
use crate::scenario::yaml::Located;
use model::{MSG_STEPS, MsgStep};
use prism_runtime::patterns::capability::Capability;
use serde_json::{Map, Value};

/// The PubSub and Queue steps.
pub(crate) struct MessagingOps;

impl PatternOps for MessagingOps {
    type Step = MsgStep;
    const NAMES: &'static [&'static str] = &MSG_STEPS;

    fn pattern_of(name: &str) -> Option<&'static str> {
        match name {
            "subscribe" | "publish" => Some("pubsub"),
            "consume" | "enqueue" | "ack" | "nack" => Some("queue"),
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

    fn needs(step: &MsgStep) -> Vec<Capability> {
        step.needs()
    }

    fn print(step: &MsgStep, m: &mut Map<String, Value>) {
        print::step(step, m)
    }

    fn run<'a>(
        session: &'a Session,
        at: &'a Step,
        step: &'a MsgStep,
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
