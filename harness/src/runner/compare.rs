//! Comparisons every family of steps shares: an expected-vs-actual failure, a call's outcome
//! against an expected error, and a number checked against `eq`/`gt`/… relations (saving it when
//! asked).

use super::Failure;
use crate::scenario::code::StatusCode;
use crate::scenario::model::{NumExpect, Operand};
use std::collections::HashMap;

type Vars = HashMap<String, String>;

/// A failure showing what was expected and what came back.
pub(crate) fn mismatch(
    what: &str,
    expected: impl Into<String>,
    actual: impl Into<String>,
) -> Failure {
    Failure {
        message: format!("{what} differs"),
        expected: Some(expected.into()),
        actual: Some(actual.into()),
        ..Failure::default()
    }
}

/// Judges a call's outcome: it must succeed when `error` is `None`, else fail with that code (and
/// a message containing `contains`). `Ok(Some(value))` when it succeeded as expected and the rest
/// of the expectation is to be checked, `Ok(None)` when it failed as expected.
pub(crate) fn outcome<T>(
    result: Result<T, tonic::Status>,
    error: Option<StatusCode>,
    contains: Option<&str>,
) -> Result<Option<T>, Failure> {
    match (result, error) {
        (Ok(v), None) => Ok(Some(v)),
        (Ok(_), Some(code)) => Err(mismatch("outcome", code.to_string(), "OK")),
        (Err(s), None) => Err(mismatch(
            "outcome",
            "OK",
            format!("{}: {}", StatusCode::from(s.code()), s.message()),
        )),
        (Err(s), Some(code)) => {
            let got = StatusCode::from(s.code());
            if got != code {
                return Err(mismatch(
                    "error code",
                    code.to_string(),
                    format!("{got}: {}", s.message()),
                ));
            }
            if let Some(m) = contains {
                if !s.message().contains(m) {
                    return Err(mismatch(
                        "error message",
                        format!("containing {m:?}"),
                        s.message(),
                    ));
                }
            }
            Ok(None)
        }
    }
}

/// Checks `actual` against every relation of `expected`; queues a save in `saves`.
pub(crate) fn num(
    what: &str,
    actual: u64,
    expected: Option<&NumExpect>,
    vars: &Vars,
    saves: &mut Vec<(String, String)>,
) -> Result<(), Failure> {
    let Some(n) = expected else { return Ok(()) };
    for (rel, operand) in &n.rels {
        let (bound, shown) = match operand {
            Operand::Lit(x) => (*x, x.to_string()),
            Operand::Var(name) => {
                let raw = vars.get(name).ok_or_else(|| {
                    Failure::message(format!("variable '{name}' was never saved"))
                })?;
                let x: u64 = raw.parse().map_err(|_| {
                    Failure::message(format!("variable '{name}' = {raw:?} is not a number"))
                })?;
                (x, format!("{name} ({x})"))
            }
        };
        if !rel.holds(actual, bound) {
            return Err(mismatch(
                what,
                format!("{what} {} {shown}", rel.name()),
                actual.to_string(),
            ));
        }
    }
    if let Some(var) = &n.save {
        saves.push((var.clone(), actual.to_string()));
    }
    Ok(())
}
