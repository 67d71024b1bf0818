//! The filter language (`prism.filter.v1`) of the patterns that select by a string map — a
//! registration's metadata, a mailbox message's headers: checking a `Filter` against the
//! namespace's limits (clauses and depth, each refusal naming its limit) and evaluating it on a map.
//! Filters are evaluated in the proxy for every backend, so every backend gives the same answers.

use crate::limits::Limits;
use prism_proto::filter::v1::{Compare, Filter, compare::Op, filter::Clause};
use std::cmp::Ordering;
use std::collections::HashMap;
use tonic::Status;

/// Checks `filter` (the request field `field`) against the namespace's limits: at most
/// `max_filter_clauses` clauses, nested at most `max_filter_depth` deep, every comparison with a key
/// and an operator.
pub fn check(field: &str, filter: Option<&Filter>, limits: &Limits) -> Result<(), Status> {
    let mut clauses = 0usize;
    if let Some(f) = filter {
        walk(field, f, 1, &mut clauses, limits)?;
    }
    Ok(())
}

fn walk(
    path: &str,
    filter: &Filter,
    depth: usize,
    clauses: &mut usize,
    limits: &Limits,
) -> Result<(), Status> {
    let Some(clause) = &filter.clause else {
        return if depth == 1 {
            Ok(())
        } else {
            Err(Status::invalid_argument(format!(
                "{path} has no clause set (set compare, exists, all, any or not)"
            )))
        };
    };
    *clauses += 1;
    if *clauses > limits.max_filter_clauses {
        return Err(Status::invalid_argument(format!(
            "filter has more than {} clauses, the limit max_filter_clauses",
            limits.max_filter_clauses
        )));
    }
    match clause {
        Clause::Compare(c) => {
            if c.key.is_empty() {
                return Err(Status::invalid_argument(format!(
                    "{path}.compare.key is empty"
                )));
            }
            if Op::try_from(c.op).unwrap_or(Op::Unspecified) == Op::Unspecified {
                return Err(Status::invalid_argument(format!(
                    "{path}.compare.op {} is not an operator (EQ, NE, LT, LE, GT, GE, STARTS_WITH, ENDS_WITH, CONTAINS)",
                    c.op
                )));
            }
            Ok(())
        }
        Clause::Exists(key) if key.is_empty() => Err(Status::invalid_argument(format!(
            "{path}.exists is empty (name a key)"
        ))),
        Clause::Exists(_) => Ok(()),
        Clause::All(list) | Clause::Any(list) | Clause::Not(list) => {
            if depth >= limits.max_filter_depth {
                return Err(Status::invalid_argument(format!(
                    "filter nests deeper than {} levels, the limit max_filter_depth",
                    limits.max_filter_depth
                )));
            }
            let name = match clause {
                Clause::All(_) => "all",
                Clause::Any(_) => "any",
                _ => "not",
            };
            if list.filters.is_empty() {
                return Err(Status::invalid_argument(format!(
                    "{path}.{name} lists no filters"
                )));
            }
            for (i, f) in list.filters.iter().enumerate() {
                walk(
                    &format!("{path}.{name}[{i}]"),
                    f,
                    depth + 1,
                    clauses,
                    limits,
                )?;
            }
            Ok(())
        }
    }
}

/// Whether `metadata` satisfies `filter` (no filter, or one without a clause, matches everything).
/// The filter must have passed [`check`].
pub fn matches(filter: Option<&Filter>, metadata: &HashMap<String, String>) -> bool {
    let Some(clause) = filter.and_then(|f| f.clause.as_ref()) else {
        return true;
    };
    match clause {
        Clause::Compare(c) => compare(c, metadata),
        Clause::Exists(key) => metadata.contains_key(key),
        Clause::All(list) => list.filters.iter().all(|f| matches(Some(f), metadata)),
        Clause::Any(list) => list.filters.iter().any(|f| matches(Some(f), metadata)),
        Clause::Not(list) => !list.filters.iter().any(|f| matches(Some(f), metadata)),
    }
}

/// Every key `filter` names (comparisons and `exists`), in the order they appear.
pub fn keys(filter: Option<&Filter>) -> Vec<&str> {
    let mut out = Vec::new();
    let mut todo: Vec<&Filter> = filter.into_iter().collect();
    while let Some(f) = todo.pop() {
        match &f.clause {
            Some(Clause::Compare(c)) => out.push(c.key.as_str()),
            Some(Clause::Exists(key)) => out.push(key.as_str()),
            Some(Clause::All(l) | Clause::Any(l) | Clause::Not(l)) => {
                todo.extend(l.filters.iter().rev())
            }
            None => {}
        }
    }
    out
}

/// Whether comparisons treat `s` as a number (a plain finite decimal).
pub fn is_number(s: &str) -> bool {
    number(s).is_some()
}

/// A finite decimal number, if `s` is one.
fn number(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.is_empty() || s.contains(|c: char| c.is_ascii_alphabetic()) {
        return None; // "inf", "nan" and "1e5" stay text: only plain decimals are numbers
    }
    s.parse::<f64>().ok().filter(|n| n.is_finite())
}

fn compare(c: &Compare, metadata: &HashMap<String, String>) -> bool {
    let Some(actual) = metadata.get(&c.key) else {
        return false;
    };
    let expected = c.value.as_str();
    let order = || match (number(actual), number(expected)) {
        (Some(a), Some(b)) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
        _ => actual.as_bytes().cmp(expected.as_bytes()),
    };
    match Op::try_from(c.op).unwrap_or(Op::Unspecified) {
        Op::Unspecified => false,
        Op::Eq => order() == Ordering::Equal,
        Op::Ne => order() != Ordering::Equal,
        Op::Lt => order() == Ordering::Less,
        Op::Le => order() != Ordering::Greater,
        Op::Gt => order() == Ordering::Greater,
        Op::Ge => order() != Ordering::Less,
        Op::StartsWith => actual.starts_with(expected),
        Op::EndsWith => actual.ends_with(expected),
        Op::Contains => actual.contains(expected),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prism_proto::filter::v1::Filters;
    use rstest::rstest;

    fn cmp(key: &str, op: Op, value: &str) -> Filter {
        Filter {
            clause: Some(Clause::Compare(Compare {
                key: key.into(),
                op: op as i32,
                value: value.into(),
            })),
        }
    }

    fn list(f: fn(Filters) -> Clause, filters: Vec<Filter>) -> Filter {
        Filter {
            clause: Some(f(Filters { filters })),
        }
    }

    fn meta(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[rstest]
    #[case(Op::Lt, "9", "10", true)] // numbers
    #[case(Op::Gt, "9", "10", false)]
    #[case(Op::Eq, "1.0", "1", true)]
    #[case(Op::Lt, "b", "a", false)] // strings, byte order
    #[case(Op::Lt, "9a", "10", false)] // one side not a number: "9a" > "10" as text
    #[case(Op::Ge, "-2", "-10", true)]
    #[case(Op::Ne, "x", "y", true)]
    #[case(Op::StartsWith, "eu-west", "eu-", true)]
    #[case(Op::EndsWith, "eu-west", "west", true)]
    #[case(Op::Contains, "eu-west", "u-w", true)]
    #[case(Op::Eq, "inf", "inf", true)] // text
    #[case(Op::Lt, "1e5", "2", true)] // "1e5" is text, compared bytewise with "2"
    fn comparisons(
        #[case] op: Op,
        #[case] actual: &str,
        #[case] value: &str,
        #[case] expected: bool,
    ) {
        let f = cmp("k", op, value);
        assert_eq!(matches(Some(&f), &meta(&[("k", actual)])), expected);
    }

    #[test]
    fn missing_keys_fail_every_comparison_and_combinators_compose() {
        let m = meta(&[("region", "eu"), ("load", "7")]);
        assert!(!matches(Some(&cmp("zone", Op::Ne, "a")), &m));
        assert!(matches(Some(&Filter { clause: None }), &m));
        assert!(matches(None, &m));
        let both = list(
            Clause::All,
            vec![cmp("region", Op::Eq, "eu"), cmp("load", Op::Lt, "10")],
        );
        assert!(matches(Some(&both), &m));
        let not = list(Clause::Not, vec![both.clone()]);
        assert!(!matches(Some(&not), &m));
        let any = list(
            Clause::Any,
            vec![
                cmp("region", Op::Eq, "us"),
                Filter {
                    clause: Some(Clause::Exists("load".into())),
                },
            ],
        );
        assert!(matches(Some(&any), &m));
    }

    #[test]
    fn limits_are_named() {
        let limits = Limits {
            max_filter_clauses: 3,
            max_filter_depth: 2,
            ..Limits::default()
        };
        let flat = list(
            Clause::All,
            vec![
                cmp("a", Op::Eq, "1"),
                cmp("b", Op::Eq, "1"),
                cmp("c", Op::Eq, "1"),
            ],
        );
        let e = check("filter", Some(&flat), &limits).expect_err("4 clauses");
        assert!(
            e.message().contains("max_filter_clauses"),
            "{}",
            e.message()
        );
        let deep = list(
            Clause::Not,
            vec![list(Clause::Not, vec![cmp("a", Op::Eq, "1")])],
        );
        let e = check("filter", Some(&deep), &limits).expect_err("depth 3");
        assert!(e.message().contains("max_filter_depth"), "{}", e.message());
        let e = check("filter", Some(&cmp("", Op::Eq, "1")), &limits).expect_err("no key");
        assert!(
            e.message().contains("filter.compare.key"),
            "{}",
            e.message()
        );
        let e = check("filter", Some(&cmp("a", Op::Unspecified, "1")), &limits).expect_err("no op");
        assert!(e.message().contains("compare.op"), "{}", e.message());
        assert!(check("filter", Some(&cmp("a", Op::Eq, "1")), &limits).is_ok());
    }
}
