//! KeyValue operations: their model, parser, printer, execution through the client and judge.

pub mod exec;
pub mod judge;
pub mod model;
pub mod parse;
pub mod print;

use super::{PatternOps, StepFuture};
use crate::runner::exec::{Counts, Session, Vars, locate};
use crate::scenario::code::StatusCode;
use crate::scenario::model::{Caller, Location, Step};
use crate::scenario::parse::{Ctx, Scope};
use crate::scenario::yaml::Located;
use model::OpStep;
use prism_runtime::patterns::Pattern;
use prism_runtime::patterns::capability::Capability;
use serde_json::{Map, Value};

/// The KeyValue operations.
pub(crate) struct KeyValueOps;

/// A KeyValue op as a scenario step (for code that builds scenarios, such as generators).
impl From<OpStep> for crate::scenario::model::StepKind {
    fn from(step: OpStep) -> Self {
        super::call_of::<KeyValueOps>(step)
    }
}

impl PatternOps for KeyValueOps {
    type Step = OpStep;
    const NAMES: &'static [&'static str] = &model::OPS;

    fn pattern_of(_name: &str) -> Option<Pattern> {
        Some(Pattern::Keyvalue)
    }

    fn parse(
        cx: &mut Ctx,
        name: &str,
        n: &Located,
        args: &Located,
        _loc: Location,
        scope: &mut Scope,
    ) -> Option<OpStep> {
        let f = cx.fields(
            n,
            &format!("the {name} step"),
            &[name, "expect", "namespace", "token", "via", "deadline_ms"],
        )?;
        cx.op_step(name, args.clone(), &f, scope)
    }

    fn caller(step: &OpStep) -> Option<Caller> {
        Some(Caller {
            namespace: step.namespace,
            token: step.token.clone(),
            via: step.via,
        })
    }

    fn needs(step: &OpStep) -> Vec<Capability> {
        step.op.needs()
    }

    fn label(step: &OpStep, vars: &Vars) -> String {
        exec::describe(&step.op, vars)
    }

    fn probe(step: &OpStep, capability: Capability) -> Option<OpStep> {
        Some(OpStep {
            token: None,
            expect: Some(model::Expect {
                error: Some(StatusCode::from(tonic::Code::Unimplemented)),
                message_contains: Some(capability.name().to_string()),
                ..model::Expect::default()
            }),
            ..step.clone()
        })
    }

    fn print(step: &OpStep, m: &mut Map<String, Value>) {
        print::step(step, m)
    }

    fn execute<'a>(session: &'a Session, step: &'a OpStep, vars: &'a mut Vars) -> StepFuture<'a> {
        Box::pin(exec::run_op(session, step, vars, None))
    }

    fn run<'a>(
        session: &'a Session,
        at: &'a Step,
        step: &'a OpStep,
        vars: &'a mut Vars,
        tally: Option<&'a Counts>,
    ) -> StepFuture<'a> {
        Box::pin(async move {
            let label = exec::describe(&step.op, vars);
            exec::run_op(session, step, vars, tally)
                .await
                .map_err(|f| locate(at, Some(label), f))
        })
    }
}
