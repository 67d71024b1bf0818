//! The filter language as scenarios write it, shared by the steps that select by a string map
//! (registry metadata, mailbox headers): one operator per mapping — `{ eq: { region: eu } }`,
//! `{ lt: { load: 10 } }` (also `ne`, `le`, `gt`, `ge`, `startswith`, `endswith`, `contains`),
//! `{ exists: key }`, `{ and: [..] }`, `{ or: [..] }` and `{ not: FILTER }` (or a list: none of
//! them holds) — parsed into `prism.filter.v1.Filter` and printed back. Compared values may hold
//! `${var}`s, expanded when the step runs.

use crate::runner::Failure;
use crate::runner::exec::Vars;
use crate::scenario::parse::{Ctx, Scope};
use crate::scenario::template;
use crate::scenario::yaml::{Located, Node};
use prism_proto::filter::v1::{Compare, Filter, Filters, compare::Op, filter::Clause};
use serde_json::{Value, json};

/// The comparison operators with their YAML names.
pub const COMPARISONS: [(&str, Op); 9] = [
    ("eq", Op::Eq),
    ("ne", Op::Ne),
    ("lt", Op::Lt),
    ("le", Op::Le),
    ("gt", Op::Gt),
    ("ge", Op::Ge),
    ("startswith", Op::StartsWith),
    ("endswith", Op::EndsWith),
    ("contains", Op::Contains),
];

impl Ctx {
    /// Parses a filter (see the module docs).
    pub(crate) fn filter(&mut self, n: &Located, scope: &Scope) -> Option<Filter> {
        let Node::Map(entries) = &n.node else {
            self.err(
                n.loc,
                format!(
                    "a filter is a mapping such as `{{ eq: {{ region: eu }} }}`, found {}",
                    n.node.kind()
                ),
            );
            return None;
        };
        let [(k, v)] = entries.as_slice() else {
            self.err(n.loc, "a filter has exactly one operator key");
            return None;
        };
        let op = self.string(k, "a filter operator")?;
        let list = |cx: &mut Ctx, v: &Located| -> Option<Filters> {
            let items = match &v.node {
                Node::Seq(_) => cx.list(v, &op),
                _ => vec![v],
            };
            let filters: Option<Vec<Filter>> =
                items.into_iter().map(|f| cx.filter(f, scope)).collect();
            Some(Filters { filters: filters? })
        };
        let clause = match op.as_str() {
            "and" => Clause::All(list(self, v)?),
            "or" => Clause::Any(list(self, v)?),
            "not" => Clause::Not(list(self, v)?),
            "exists" => Clause::Exists(self.text(v, "exists")?),
            other => {
                let Some((_, cmp)) = COMPARISONS.iter().find(|(n, _)| *n == other) else {
                    let mut names: Vec<&str> = COMPARISONS.iter().map(|(n, _)| *n).collect();
                    names.extend(["exists", "and", "or", "not"]);
                    self.err(
                        k.loc,
                        format!(
                            "unknown filter operator '{other}' (expected one of: {})",
                            names.join(", ")
                        ),
                    );
                    return None;
                };
                let Node::Map(pair) = &v.node else {
                    self.err(v.loc, format!("`{other}` takes one `KEY: VALUE` mapping"));
                    return None;
                };
                let [(key, value)] = pair.as_slice() else {
                    self.err(v.loc, format!("`{other}` takes exactly one `KEY: VALUE`"));
                    return None;
                };
                Clause::Compare(Compare {
                    key: self.text(key, "a key")?,
                    op: *cmp as i32,
                    value: self.template(value, "a value", scope)?,
                })
            }
        };
        Some(Filter {
            clause: Some(clause),
        })
    }
}

/// A filter in its YAML form.
pub fn print(f: &Filter) -> Value {
    let Some(clause) = &f.clause else {
        return json!({});
    };
    let list =
        |l: &prism_proto::filter::v1::Filters| Value::Array(l.filters.iter().map(print).collect());
    match clause {
        Clause::All(l) => json!({ "and": list(l) }),
        Clause::Any(l) => json!({ "or": list(l) }),
        Clause::Not(l) => json!({ "not": list(l) }),
        Clause::Exists(k) => json!({ "exists": k }),
        Clause::Compare(c) => {
            let name = COMPARISONS
                .iter()
                .find(|(_, op)| *op as i32 == c.op)
                .map_or("eq", |(n, _)| *n);
            json!({ name: { c.key.clone(): c.value.clone() } })
        }
    }
}

/// `f` with the `${var}`s of its compared values expanded.
pub fn expand(f: &Filter, vars: &Vars) -> Result<Filter, Failure> {
    let clause = match &f.clause {
        None => None,
        Some(Clause::Compare(c)) => Some(Clause::Compare(Compare {
            value: template::expand(&c.value, vars).map_err(|e| Failure::message(e.to_string()))?,
            ..c.clone()
        })),
        Some(Clause::Exists(k)) => Some(Clause::Exists(k.clone())),
        Some(Clause::All(l)) => Some(Clause::All(expand_list(l, vars)?)),
        Some(Clause::Any(l)) => Some(Clause::Any(expand_list(l, vars)?)),
        Some(Clause::Not(l)) => Some(Clause::Not(expand_list(l, vars)?)),
    };
    Ok(Filter { clause })
}

fn expand_list(l: &Filters, vars: &Vars) -> Result<Filters, Failure> {
    Ok(Filters {
        filters: l
            .filters
            .iter()
            .map(|f| expand(f, vars))
            .collect::<Result<_, _>>()?,
    })
}
