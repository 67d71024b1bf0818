//! Judging an [`OpOutput`] against a step's expectation. Pure: no I/O, so it is unit-tested directly.
//! On success it records saved variables; on mismatch it returns expected vs actual.

use super::exec::OpOutput;
use crate::runner::Failure;
use crate::runner::compare::{mismatch, num};
use crate::runner::values::resolve_value;
use crate::scenario::model::Expect;
use crate::scenario::template;
use crate::scenario::value::render;
use prism_proto::keyvalue::v1::GetResponse;
use std::collections::HashMap;

type Vars = HashMap<String, String>;

fn show_output(out: &OpOutput) -> String {
    match out {
        OpOutput::Error { code, message } => format!("{code}: {message}"),
        OpOutput::Set { version } => format!("OK (version {version})"),
        OpOutput::Get(g) if g.found => format!("OK (found, value {})", render(&g.value)),
        OpOutput::Get(_) => "OK (not found)".into(),
        OpOutput::Delete { deleted } => format!("OK (deleted = {deleted})"),
        OpOutput::Exists { exists } => format!("OK (exists = {exists})"),
        OpOutput::Expire { updated } => format!("OK (updated = {updated})"),
        OpOutput::Scan { keys, .. } => format!("OK ({} keys)", keys.len()),
        OpOutput::BatchSet { versions } => format!("OK ({} versions)", versions.len()),
        OpOutput::BatchGet { results } => format!("OK ({} results)", results.len()),
        OpOutput::BatchDelete { deleted } => format!("OK (deleted {deleted})"),
    }
}

/// Judges `out`; `expect = None` means "must succeed".
pub fn judge(out: &OpOutput, expect: Option<&Expect>, vars: &mut Vars) -> Result<(), Failure> {
    let default = Expect::default();
    let e = expect.unwrap_or(&default);
    if let Some(code) = e.error {
        return match out {
            OpOutput::Error {
                code: actual,
                message,
            } if *actual == code => match &e.message_contains {
                Some(needle) if !message.contains(needle.as_str()) => Err(mismatch(
                    "error message",
                    format!("{code} with a message containing {needle:?}"),
                    format!("{actual}: {message}"),
                )),
                _ => Ok(()),
            },
            other => Err(mismatch("status", code.to_string(), show_output(other))),
        };
    }
    if let OpOutput::Error { .. } = out {
        return Err(mismatch("status", "OK", show_output(out)));
    }
    let mut saves = Vec::new();
    match out {
        OpOutput::Set { version } => {
            num("version", *version, e.version.as_ref(), vars, &mut saves)?
        }
        OpOutput::Get(g) => get(g, e, vars, &mut saves)?,
        OpOutput::Delete { deleted } => flag("deleted", *deleted, e.deleted)?,
        OpOutput::Exists { exists } => flag("exists", *exists, e.exists)?,
        OpOutput::Expire { updated } => flag("updated", *updated, e.updated)?,
        OpOutput::Scan {
            keys,
            values,
            next_cursor,
        } => {
            if let Some(expected) = &e.keys {
                let expected = expected
                    .iter()
                    .map(|k| {
                        template::expand(k, vars).map_err(|err| Failure::message(err.to_string()))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if &expected != keys {
                    return Err(key_diff(&expected, keys));
                }
            }
            if let Some(expected) = &e.values {
                let mut want = Vec::new();
                for v in expected {
                    want.push(resolve_value(v, vars)?);
                }
                let got: Vec<&[u8]> = values.iter().map(|v| v.as_ref()).collect();
                if want.iter().map(Vec::as_slice).ne(got.iter().copied()) {
                    return Err(mismatch(
                        "values",
                        want.iter()
                            .map(|v| render(v))
                            .collect::<Vec<_>>()
                            .join(", "),
                        got.iter().map(|v| render(v)).collect::<Vec<_>>().join(", "),
                    ));
                }
            }
            num(
                "count",
                keys.len() as u64,
                e.count.as_ref(),
                vars,
                &mut saves,
            )?;
            flag("done", next_cursor.is_empty(), e.done)?;
            if let Some(var) = &e.save_cursor {
                saves.push((var.clone(), next_cursor.clone()));
            }
        }
        OpOutput::BatchSet { versions } => num(
            "count",
            versions.len() as u64,
            e.count.as_ref(),
            vars,
            &mut saves,
        )?,
        OpOutput::BatchGet { results } => {
            if let Some(expected) = &e.results {
                if expected.len() != results.len() {
                    return Err(mismatch(
                        "number of results",
                        expected.len().to_string(),
                        results.len().to_string(),
                    ));
                }
                for (i, (want, got)) in expected.iter().zip(results).enumerate() {
                    get(got, want, vars, &mut saves).map_err(|mut f| {
                        f.message = format!("results[{i}]: {}", f.message);
                        f
                    })?;
                }
            }
        }
        OpOutput::BatchDelete { deleted } => num(
            "deleted",
            u64::from(*deleted),
            e.deleted_count.as_ref(),
            vars,
            &mut saves,
        )?,
        OpOutput::Error { .. } => {}
    }
    vars.extend(saves);
    Ok(())
}

fn flag(what: &str, actual: bool, expected: Option<bool>) -> Result<(), Failure> {
    match expected {
        Some(want) if want != actual => Err(mismatch(what, want.to_string(), actual.to_string())),
        _ => Ok(()),
    }
}

fn get(
    g: &GetResponse,
    e: &Expect,
    vars: &Vars,
    saves: &mut Vec<(String, String)>,
) -> Result<(), Failure> {
    flag("found", g.found, e.found)?;
    if let Some(v) = &e.value {
        let want = resolve_value(v, vars)?;
        if want != g.value.as_ref() {
            return Err(mismatch("value", render(&want), render(&g.value)));
        }
    }
    if !e.value_in.is_empty() {
        let mut options = Vec::new();
        for v in &e.value_in {
            options.push(resolve_value(v, vars)?);
        }
        if !options.iter().any(|o| o.as_slice() == g.value.as_ref()) {
            let shown: Vec<String> = options.iter().map(|o| render(o)).collect();
            return Err(mismatch(
                "value",
                format!("one of {}", shown.join(", ")),
                render(&g.value),
            ));
        }
    }
    num("version", g.version, e.version.as_ref(), vars, saves)?;
    num("ttl_ms", g.ttl_ms, e.ttl_ms.as_ref(), vars, saves)?;
    Ok(())
}

fn key_diff(expected: &[String], actual: &[String]) -> Failure {
    let missing: Vec<&String> = expected.iter().filter(|k| !actual.contains(k)).collect();
    let extra: Vec<&String> = actual.iter().filter(|k| !expected.contains(k)).collect();
    let mut message = format!(
        "keys differ ({} expected, {} returned",
        expected.len(),
        actual.len()
    );
    if !missing.is_empty() {
        message.push_str(&format!("; missing {missing:?}"));
    }
    if !extra.is_empty() {
        message.push_str(&format!("; unexpected {extra:?}"));
    }
    if missing.is_empty() && extra.is_empty() {
        message.push_str("; same keys, different order");
    }
    message.push(')');
    Failure {
        message,
        expected: Some(format!("{expected:?}")),
        actual: Some(format!("{actual:?}")),
        ..Failure::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::code::StatusCode;
    use crate::scenario::model::{NumExpect, Operand, Rel, ValueSpec};

    fn found(value: &'static str, version: u64) -> OpOutput {
        OpOutput::Get(GetResponse {
            found: true,
            value: value.into(),
            version,
            ttl_ms: 0,
        })
    }

    #[test]
    fn success_is_required_without_an_expectation() {
        let err = OpOutput::Error {
            code: StatusCode::from_name("INTERNAL").unwrap(),
            message: "boom".into(),
        };
        let f = judge(&err, None, &mut Vars::new()).unwrap_err();
        assert_eq!(f.expected.as_deref(), Some("OK"));
        assert_eq!(f.actual.as_deref(), Some("INTERNAL: boom"));
        assert!(judge(&found("x", 1), None, &mut Vars::new()).is_ok());
    }

    #[test]
    fn expected_error_must_match_code_and_message() {
        let out = OpOutput::Error {
            code: StatusCode::from_name("INVALID_ARGUMENT").unwrap(),
            message: "key must not be empty".into(),
        };
        let mut e = Expect {
            error: StatusCode::from_name("INVALID_ARGUMENT"),
            message_contains: Some("empty".into()),
            ..Expect::default()
        };
        assert!(judge(&out, Some(&e), &mut Vars::new()).is_ok());
        e.message_contains = Some("max_key_bytes".into());
        assert!(judge(&out, Some(&e), &mut Vars::new()).is_err());
        e.error = StatusCode::from_name("NOT_FOUND");
        assert!(judge(&found("x", 1), Some(&e), &mut Vars::new()).is_err());
    }

    #[test]
    fn versions_save_and_compare() {
        let mut vars = Vars::new();
        let save = Expect {
            version: Some(NumExpect {
                rels: vec![],
                save: Some("v1".into()),
            }),
            ..Expect::default()
        };
        judge(&OpOutput::Set { version: 5 }, Some(&save), &mut vars).unwrap();
        assert_eq!(vars["v1"], "5");
        let gt = Expect {
            version: Some(NumExpect {
                rels: vec![(Rel::Gt, Operand::Var("v1".into()))],
                save: None,
            }),
            ..Expect::default()
        };
        assert!(judge(&OpOutput::Set { version: 6 }, Some(&gt), &mut vars).is_ok());
        let f = judge(&OpOutput::Set { version: 5 }, Some(&gt), &mut vars).unwrap_err();
        assert_eq!(f.expected.as_deref(), Some("version gt v1 (5)"));
    }

    #[test]
    fn values_compare_bytes_and_render_readably() {
        let e = Expect {
            value: Some(ValueSpec::Text("hello".into())),
            ..Expect::default()
        };
        let f = judge(&found("hullo", 1), Some(&e), &mut Vars::new()).unwrap_err();
        assert_eq!(f.expected.as_deref(), Some("\"hello\""));
        assert_eq!(f.actual.as_deref(), Some("\"hullo\""));
    }

    #[test]
    fn key_lists_report_missing_and_extra() {
        let e = Expect {
            keys: Some(vec!["a".into(), "b".into()]),
            ..Expect::default()
        };
        let out = OpOutput::Scan {
            keys: vec!["a".into(), "c".into()],
            values: vec![],
            next_cursor: String::new(),
        };
        let f = judge(&out, Some(&e), &mut Vars::new()).unwrap_err();
        assert!(f.message.contains("missing [\"b\"]"), "{}", f.message);
        assert!(f.message.contains("unexpected [\"c\"]"), "{}", f.message);
    }
}
