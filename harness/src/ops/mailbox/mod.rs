//! Mailbox steps: deliver, query, get_message and delete_messages.

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
use model::{MAIL_STEPS, MailStep};
use prism_runtime::patterns::Pattern;
use prism_runtime::patterns::capability::Capability;
use serde_json::{Map, Value};

/// The Mailbox steps.
pub(crate) struct MailboxOps;

impl PatternOps for MailboxOps {
    type Step = MailStep;
    const NAMES: &'static [&'static str] = &MAIL_STEPS;

    fn pattern_of(_name: &str) -> Option<Pattern> {
        Some(Pattern::Mailbox)
    }

    fn parse(
        cx: &mut Ctx,
        name: &str,
        n: &Located,
        args: &Located,
        loc: Location,
        scope: &mut Scope,
    ) -> Option<MailStep> {
        cx.mail_step(name, n, args, loc, scope)
    }

    fn caller(step: &MailStep) -> Option<Caller> {
        Some(step.call().0.clone())
    }

    fn needs(step: &MailStep) -> Vec<Capability> {
        step.needs()
    }

    fn label(step: &MailStep, _vars: &Vars) -> String {
        step.name().to_string()
    }

    fn probe(step: &MailStep, capability: Capability) -> Option<MailStep> {
        if matches!(step, MailStep::SourcePublish { .. }) {
            return None;
        }
        let mut probe = step.clone();
        let (caller, expect) = probe.call_mut();
        caller.token = None;
        *expect = model::MailExpect {
            error: Some(StatusCode::from(tonic::Code::Unimplemented)),
            message_contains: Some(capability.name().to_string()),
            ..model::MailExpect::default()
        };
        Some(probe)
    }

    fn print(step: &MailStep, m: &mut Map<String, Value>) {
        print::step(step, m)
    }

    fn execute<'a>(session: &'a Session, step: &'a MailStep, vars: &'a mut Vars) -> StepFuture<'a> {
        Box::pin(exec::run(session, step, vars))
    }
}
