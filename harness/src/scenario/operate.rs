//! Parsing the operability steps: `metrics` (read the proxy's `/metrics` and check that series
//! moved) and `reload` (change the proxy's config file and ask it to reload).

use super::model::{ConfigChange, MetricsStep, NamespaceRef, ReloadStep, SeriesExpect};
use super::parse::{Ctx, Scope};
use super::yaml::{Located, Node};
use std::collections::BTreeMap;

impl Ctx {
    /// `metrics: { mark: NAME, expect: [ { series, labels, since, moved | value } ] }`.
    pub(crate) fn metrics_step(&mut self, n: &Located, scope: &mut Scope) -> Option<MetricsStep> {
        let f = self.fields(n, "metrics", &["mark", "expect"])?;
        if f.entries.is_empty() {
            self.err(
                f.loc,
                "metrics needs `expect` (what must hold), `mark` (keep the reading), or both",
            );
            return None;
        }
        let mut step = MetricsStep::default();
        if let Some(list) = f.get("expect") {
            for item in self.list(list, "metrics.expect") {
                if let Some(e) = self.series_expect(item, scope) {
                    step.expect.push(e);
                }
            }
        }
        // A mark is taken after the checks, so an expectation cannot name its own step's reading.
        if let Some(m) = f.get("mark") {
            let name = self.string(m, "mark")?;
            self.marks.insert(name.clone());
            step.mark = Some(name);
        }
        Some(step)
    }

    fn series_expect(&mut self, n: &Located, scope: &mut Scope) -> Option<SeriesExpect> {
        let f = self.fields(
            n,
            "a metrics expectation",
            &["series", "labels", "since", "moved", "value"],
        )?;
        let series = self.required(&f, "series", "a metrics expectation");
        let series = self.string(series?, "series")?;
        if !is_series_name(&series) {
            self.err(
                f.loc,
                format!("series '{series}' is not a metric name (letters, digits, '_' and ':', not starting with a digit; labels go under `labels`)"),
            );
        }
        let mut labels = BTreeMap::new();
        if let Some(l) = f.get("labels") {
            let lf = self.fields_any(l, "labels")?;
            for (name, value) in lf {
                let value = self.text(value, "a label value")?;
                labels.insert(name, value);
            }
        }
        let since = match f.get("since") {
            Some(s) => {
                let name = self.string(s, "since")?;
                if !self.marks.contains(&name) {
                    self.err(
                        s.loc,
                        format!("no earlier metrics step marks '{name}' (write `metrics: {{ mark: {name} }}` before it)"),
                    );
                }
                Some(name)
            }
            None => None,
        };
        let moved = match f.get("moved") {
            Some(m) => Some(self.num(m, "moved", scope)?),
            None => None,
        };
        let value = match f.get("value") {
            Some(v) => Some(self.num(v, "value", scope)?),
            None => None,
        };
        if moved.is_none() && value.is_none() {
            self.err(
                f.loc,
                "a metrics expectation needs `moved` (growth since the mark) or `value` (the sum now)",
            );
        }
        if since.is_some() && moved.is_none() {
            self.err(f.loc, "`since` goes with `moved`");
        }
        Some(SeriesExpect {
            series,
            labels,
            since,
            moved,
            value,
        })
    }

    /// A mapping of free keys (label names) to their nodes.
    fn fields_any<'n>(&mut self, n: &'n Located, what: &str) -> Option<Vec<(String, &'n Located)>> {
        let Node::Map(entries) = &n.node else {
            self.err(
                n.loc,
                format!(
                    "{what} must be a mapping of label names to values, found {}",
                    n.node.kind()
                ),
            );
            return None;
        };
        let mut out: Vec<(String, &Located)> = Vec::new();
        for (k, v) in entries {
            let Node::Str(name) = &k.node else {
                self.err(k.loc, format!("{what}: keys must be label names"));
                continue;
            };
            if !is_series_name(name) || name.contains(':') {
                self.err(k.loc, format!("'{name}' is not a label name"));
                continue;
            }
            if out.iter().any(|(seen, _)| seen == name) {
                self.err(k.loc, format!("duplicate label '{name}'"));
                continue;
            }
            out.push((name.clone(), v));
        }
        Some(out)
    }

    /// `reload: { remove: other | add: other | invalid: {} }` with an optional `token` and
    /// `expect: { error: CODE }`.
    pub(crate) fn reload_step(
        &mut self,
        step: &super::parse::Fields<'_>,
        args: &Located,
    ) -> Option<ReloadStep> {
        let f = self.fields(args, "reload", &["remove", "add", "invalid"])?;
        let change = match f.entries.as_slice() {
            [("invalid", _, v)] => {
                self.fields(v, "invalid", &[])?;
                ConfigChange::Invalid
            }
            [(verb, _, v)] => {
                let ns = match self.string(v, verb)?.as_str() {
                    "other" => NamespaceRef::Other,
                    found => {
                        self.err(
                            v.loc,
                            format!("{verb} names the namespace it changes: `other` (the run's second namespace; found {found:?})"),
                        );
                        return None;
                    }
                };
                if *verb == "remove" {
                    ConfigChange::Remove(ns)
                } else {
                    ConfigChange::Add(ns)
                }
            }
            _ => {
                self.err(
                    f.loc,
                    "reload takes exactly one change: `remove: other`, `add: other` or `invalid: {}`",
                );
                return None;
            }
        };
        let token = match step.get("token") {
            Some(t) => Some(self.token_name(t)?),
            None => None,
        };
        let error = match step.get("expect") {
            Some(e) => {
                let ef = self.fields(e, "reload's expect", &["error"])?;
                let code = self.required(&ef, "error", "reload's expect")?;
                Some(self.status_code(code)?)
            }
            None => None,
        };
        Some(ReloadStep {
            change,
            token,
            error,
        })
    }
}

/// Whether `name` is a Prometheus metric name.
fn is_series_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}
