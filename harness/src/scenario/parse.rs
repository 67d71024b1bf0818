//! Scenario YAML → [`Scenario`]. Walks the located YAML tree, collecting every error in the file with
//! its `line:column` and what was expected, instead of stopping at the first.

use super::code::StatusCode;
use super::model::*;
use super::template;
use super::yaml::{Located, Node, parse_tree};
use crate::ops::messaging::model::HandleKind;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use prism_runtime::patterns::Pattern;
use prism_runtime::patterns::capability::Capability;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One located mistake in a scenario file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The file.
    pub file: PathBuf,
    /// Where.
    pub loc: Location,
    /// What is wrong, and what was expected.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.loc.line,
            self.loc.column,
            self.message
        )
    }
}

impl std::error::Error for ParseError {}

/// Control step names.
pub const CONTROLS: [&str; 10] = [
    "sleep",
    "eventually",
    "repeat",
    "parallel",
    "restart_proxy",
    "kill_proxy",
    "fault",
    "within",
    "metrics",
    "reload",
];
/// The patterns a scenario may name: every pattern of the proxy's registry.
pub fn patterns() -> Vec<&'static str> {
    prism_runtime::patterns::REGISTRY
        .iter()
        .map(|spec| spec.name)
        .collect()
}

/// Largest generated blob, a guard against runaway files.
const MAX_BLOB: u64 = 64 * 1024 * 1024;
/// Most workers in one parallel branch.
const MAX_WORKERS: u64 = 1024;

/// Parses one scenario file's text; `file` is used in messages and kept in the model.
pub fn parse_scenario(text: &str, file: &Path) -> Result<Scenario, Vec<ParseError>> {
    let mut cx = Ctx::default();
    let scenario = match parse_tree(text) {
        Ok(root) => cx.scenario(&root, file),
        Err((loc, message)) => {
            cx.err(loc, format!("invalid YAML: {message}"));
            None
        }
    };
    match scenario {
        Some(s) if cx.errors.is_empty() => Ok(s),
        _ => {
            let mut errors: Vec<ParseError> = cx
                .errors
                .into_iter()
                .map(|(loc, message)| ParseError {
                    file: file.to_owned(),
                    loc,
                    message,
                })
                .collect();
            errors.sort_by_key(|e| e.loc);
            errors.dedup();
            Err(errors)
        }
    }
}

pub(crate) type Entries<'n> = Vec<(&'n str, Location, &'n Located)>;

/// A checked mapping: known keys only, no duplicates.
pub(crate) struct Fields<'n> {
    pub(crate) loc: Location,
    pub(crate) entries: Entries<'n>,
}

impl<'n> Fields<'n> {
    pub(crate) fn get(&self, name: &str) -> Option<&'n Located> {
        self.entries
            .iter()
            .find(|(k, _, _)| *k == name)
            .map(|(_, _, v)| *v)
    }
    pub(crate) fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

#[derive(Default)]
pub(crate) struct Ctx {
    errors: Vec<(Location, String)>,
    pub(crate) used: BTreeMap<Capability, Location>,
    /// Capabilities a scenario may require though no call needs them: what its steps make
    /// observable (durability, once a step restarts the proxy or faults the backend).
    pub(crate) observed: HashSet<Capability>,
    pub(crate) handles: BTreeMap<String, HandleKind>,
    /// Names of the metrics readings kept so far (`metrics: { mark: NAME }`).
    pub(crate) marks: HashSet<String>,
    pattern: Option<Pattern>,
}

/// Variables visible at a point of the walk.
#[derive(Clone)]
pub(crate) struct Scope {
    pub(crate) vars: HashSet<String>,
}

impl Scope {
    pub(crate) fn with(&self, name: &str) -> Scope {
        let mut s = self.clone();
        s.vars.insert(name.to_string());
        s
    }
}

pub(crate) fn one_of(names: &[&str]) -> String {
    names.join(", ")
}

impl Ctx {
    pub(crate) fn err(&mut self, loc: Location, message: impl Into<String>) {
        self.errors.push((loc, message.into()));
    }

    pub(crate) fn fields<'n>(
        &mut self,
        n: &'n Located,
        what: &str,
        allowed: &[&str],
    ) -> Option<Fields<'n>> {
        let Node::Map(entries) = &n.node else {
            self.err(
                n.loc,
                format!(
                    "{what} must be a mapping, found {} (expected keys: {})",
                    n.node.kind(),
                    one_of(allowed)
                ),
            );
            return None;
        };
        let mut out: Entries<'n> = Vec::new();
        for (k, v) in entries {
            let Node::Str(name) = &k.node else {
                self.err(
                    k.loc,
                    format!("{what}: keys must be strings, found {}", k.node.kind()),
                );
                continue;
            };
            if !allowed.contains(&name.as_str()) {
                let expected = if allowed.is_empty() {
                    format!("{what} takes no settings: write `{what}: {{}}`")
                } else {
                    format!("expected one of: {}", one_of(allowed))
                };
                self.err(
                    k.loc,
                    format!("unknown key '{name}' in {what} ({expected})"),
                );
                continue;
            }
            if out.iter().any(|(seen, _, _)| seen == name) {
                self.err(k.loc, format!("duplicate key '{name}' in {what}"));
                continue;
            }
            out.push((name.as_str(), k.loc, v));
        }
        Some(Fields {
            loc: n.loc,
            entries: out,
        })
    }

    /// The `error` and `message_contains` keys of a call's expectation (`message_contains` only
    /// with `error`).
    pub(crate) fn error_expect(
        &mut self,
        f: &Fields<'_>,
    ) -> Option<(Option<StatusCode>, Option<String>)> {
        let error = match f.get("error") {
            Some(c) => Some(self.status_code(c)?),
            None => None,
        };
        let message_contains = match f.get("message_contains") {
            Some(m) => {
                if error.is_none() {
                    self.err(
                        m.loc,
                        "message_contains needs `error` (it checks the error message)",
                    );
                }
                Some(self.string(m, "message_contains")?)
            }
            None => None,
        };
        Some((error, message_contains))
    }

    pub(crate) fn required<'n>(
        &mut self,
        f: &Fields<'n>,
        name: &str,
        what: &str,
    ) -> Option<&'n Located> {
        let v = f.get(name);
        if v.is_none() {
            self.err(f.loc, format!("{what} is missing required key '{name}'"));
        }
        v
    }

    pub(crate) fn string(&mut self, n: &Located, what: &str) -> Option<String> {
        match &n.node {
            Node::Str(s) => Some(s.clone()),
            other => {
                self.err(
                    n.loc,
                    format!("{what} must be a string, found {}", other.kind()),
                );
                None
            }
        }
    }

    /// A proxy's name (`a` or `b`) as `what`.
    pub(crate) fn proxy(&mut self, n: &Located, what: &str) -> Option<Via> {
        match self.string(n, what)?.as_str() {
            "a" => Some(Via::A),
            "b" => Some(Via::B),
            other => {
                self.err(
                    n.loc,
                    format!("{what}: unknown proxy '{other}' (expected one of: a, b)"),
                );
                None
            }
        }
    }

    /// A scalar taken as text (numbers and booleans print as written).
    pub(crate) fn text(&mut self, n: &Located, what: &str) -> Option<String> {
        match &n.node {
            Node::Str(s) => Some(s.clone()),
            Node::Int(i) => Some(i.to_string()),
            Node::Bool(b) => Some(b.to_string()),
            Node::Float(x) => Some(x.to_string()),
            Node::Null => Some(String::new()),
            other => {
                self.err(
                    n.loc,
                    format!("{what} must be a string, found {}", other.kind()),
                );
                None
            }
        }
    }

    pub(crate) fn uint(&mut self, n: &Located, what: &str) -> Option<u64> {
        match &n.node {
            Node::Int(i) if *i >= 0 && *i <= i128::from(u64::MAX) => Some(*i as u64),
            other => {
                self.err(
                    n.loc,
                    format!(
                        "{what} must be a non-negative integer, found {}",
                        describe(other)
                    ),
                );
                None
            }
        }
    }

    pub(crate) fn boolean(&mut self, n: &Located, what: &str) -> Option<bool> {
        match &n.node {
            Node::Bool(b) => Some(*b),
            other => {
                self.err(
                    n.loc,
                    format!("{what} must be true or false, found {}", describe(other)),
                );
                None
            }
        }
    }

    pub(crate) fn duration(&mut self, n: &Located, what: &str) -> Option<Duration> {
        let parsed = match &n.node {
            Node::Int(ms) if *ms >= 0 => u64::try_from(*ms).ok().map(Duration::from_millis),
            Node::Str(s) => parse_duration(s),
            _ => None,
        };
        if parsed.is_none() {
            self.err(
                n.loc,
                format!(
                    "{what} must be a duration such as 250ms, 2s or 1m, found {}",
                    describe(&n.node)
                ),
            );
        }
        parsed
    }

    pub(crate) fn template(&mut self, n: &Located, what: &str, scope: &Scope) -> Option<String> {
        let t = self.text(n, what)?;
        self.check_vars(n.loc, &t, scope);
        Some(t)
    }

    pub(crate) fn check_vars(&mut self, loc: Location, t: &str, scope: &Scope) {
        match template::variables(t) {
            Ok(names) => {
                for name in names {
                    if !scope.vars.contains(&name) {
                        let mut known: Vec<_> = scope.vars.iter().cloned().collect();
                        known.sort();
                        self.err(
                            loc,
                            format!(
                                "undefined variable '${{{name}}}' (defined here: {})",
                                known.join(", ")
                            ),
                        );
                    }
                }
            }
            Err(e) => self.err(loc, e.to_string()),
        }
    }

    /// A status code name other than OK (`error:`), or a located error listing the names.
    pub(crate) fn status_code(&mut self, code: &Located) -> Option<StatusCode> {
        let name = self.string(code, "error")?;
        match StatusCode::from_name(&name) {
            Some(c) if c.name() == "OK" => {
                self.err(
                    code.loc,
                    "error: OK is not an error; leave `error` out to expect success",
                );
                None
            }
            Some(c) => Some(c),
            None => {
                let names: Vec<&str> = StatusCode::names().filter(|n| *n != "OK").collect();
                self.err(
                    code.loc,
                    format!(
                        "unknown status code '{name}' (expected one of: {})",
                        names.join(", ")
                    ),
                );
                None
            }
        }
    }

    pub(crate) fn key(
        &mut self,
        n: &Located,
        what: &str,
        scope: &Scope,
        expects_error: bool,
    ) -> Option<String> {
        let t = self.template(n, what, scope)?;
        if !expects_error && !t.starts_with("${prefix}") {
            self.err(
                n.loc,
                format!("{what} {t:?} must start with ${{prefix}} so runs never collide (only a step that expects an error may use another key)"),
            );
        }
        Some(t)
    }

    pub(crate) fn scenario(&mut self, root: &Located, file: &Path) -> Option<Scenario> {
        let allowed = [
            "name",
            "description",
            "pattern",
            "requires",
            "tags",
            "steps",
        ];
        let f = self.fields(root, "the scenario", &allowed)?;
        let name = self
            .required(&f, "name", "the scenario")
            .and_then(|n| self.string(n, "name"));
        if name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            self.err(
                f.get("name").map_or(f.loc, |n| n.loc),
                "name must not be empty",
            );
        }
        let description = self
            .required(&f, "description", "the scenario")
            .and_then(|n| self.string(n, "description"));
        let pattern = self.required(&f, "pattern", "the scenario").and_then(|n| {
            let p = self.string(n, "pattern")?;
            let known = patterns();
            if let Some(pattern) = Pattern::from_name(&p) {
                Some(pattern)
            } else {
                self.err(
                    n.loc,
                    format!(
                        "unknown pattern '{p}' (expected one of: {})",
                        one_of(&known)
                    ),
                );
                None
            }
        });
        self.pattern = pattern;
        let mut requires = Vec::new();
        let mut requires_at = Vec::new();
        if let Some(list) = f.get("requires") {
            for item in self.list(list, "requires") {
                if let Some(s) = self.string(item, "a capability") {
                    match Capability::from_name(&s) {
                        Some(c) if requires.contains(&c) => {
                            self.err(item.loc, format!("capability '{s}' is listed twice"));
                        }
                        Some(c) => {
                            requires.push(c);
                            requires_at.push(item.loc);
                        }
                        None => {
                            let names: Vec<_> = Capability::ALL.iter().map(|c| c.name()).collect();
                            self.err(
                                item.loc,
                                format!(
                                    "unknown capability '{s}' (expected one of: {})",
                                    names.join(", ")
                                ),
                            );
                        }
                    }
                }
            }
        } else {
            self.err(
                f.loc,
                "the scenario is missing required key 'requires' (the capabilities its steps use)",
            );
        }
        let tags = match f.get("tags") {
            Some(list) => self
                .list(list, "tags")
                .into_iter()
                .filter_map(|t| self.string(t, "a tag"))
                .collect(),
            None => Vec::new(),
        };
        let scope = Scope {
            vars: HashSet::from(["prefix".to_string()]),
        };
        let steps = match self.required(&f, "steps", "the scenario") {
            Some(list) => {
                let mut scope = scope;
                let steps = self.steps(list, "steps", &mut scope);
                if steps.is_empty() && matches!(list.node, Node::Seq(_)) {
                    self.err(list.loc, "steps must not be empty");
                }
                steps
            }
            None => Vec::new(),
        };
        for (cap, loc) in self.used.clone() {
            if !requires.contains(&cap) {
                self.err(
                    loc,
                    format!("this step uses {cap}, which is not in `requires` (add it)"),
                );
            }
        }
        for (cap, loc) in requires.iter().zip(&requires_at) {
            if !self.used.contains_key(cap) && !self.observed.contains(cap) {
                self.err(
                    *loc,
                    format!("`requires` lists {cap}, but no step uses it (remove it)"),
                );
            }
        }
        Some(Scenario {
            file: file.to_owned(),
            name: name?,
            description: description?,
            pattern: pattern?,
            requires,
            tags,
            steps,
        })
    }

    pub(crate) fn list<'n>(&mut self, n: &'n Located, what: &str) -> Vec<&'n Located> {
        match &n.node {
            Node::Seq(items) => items.iter().collect(),
            other => {
                self.err(
                    n.loc,
                    format!("{what} must be a list, found {}", other.kind()),
                );
                Vec::new()
            }
        }
    }

    pub(crate) fn steps(&mut self, n: &Located, what: &str, scope: &mut Scope) -> Vec<Step> {
        let items = self.list(n, what);
        items
            .into_iter()
            .filter_map(|item| self.step(item, scope))
            .collect()
    }

    pub(crate) fn step(&mut self, n: &Located, scope: &mut Scope) -> Option<Step> {
        let Node::Map(entries) = &n.node else {
            self.err(
                n.loc,
                format!(
                    "a step must be a mapping such as `- get: {{ key: ... }}`, found {}",
                    n.node.kind()
                ),
            );
            return None;
        };
        let all: Vec<&str> = crate::ops::FAMILIES
            .iter()
            .flat_map(|f| f.names.iter())
            .chain(CONTROLS.iter())
            .copied()
            .collect();
        let heads: Vec<&(Located, Located)> = entries
            .iter()
            .filter(|(k, _)| matches!(&k.node, Node::Str(s) if all.contains(&s.as_str())))
            .collect();
        let head = match heads.as_slice() {
            [one] => *one,
            [] => {
                let (k, _) = entries.first()?;
                let name = match &k.node {
                    Node::Str(s) => s.clone(),
                    other => other.kind().to_string(),
                };
                self.err(
                    k.loc,
                    format!("unknown step '{name}' (expected one of: {})", one_of(&all)),
                );
                return None;
            }
            [_, second, ..] => {
                self.err(
                    second.0.loc,
                    "a step has exactly one operation or control key; split this into two steps",
                );
                return None;
            }
        };
        let Node::Str(name) = &head.0.node else {
            return None;
        };
        let name = name.as_str();
        let loc = head.0.loc;
        let family = crate::ops::family_of(name);
        let step_pattern = family.and_then(|f| (f.pattern_of)(name));
        if let (Some(step), Some(scenario)) = (step_pattern, self.pattern) {
            if step != scenario {
                self.err(
                    loc,
                    format!(
                        "{name} is a {} step; this scenario's pattern is {}",
                        step.name(),
                        scenario.name()
                    ),
                );
                return None;
            }
        }
        let kind = if let Some(family) = family {
            let step = (family.parse)(self, name, n, &head.1, loc, scope)?;
            for cap in step.needs() {
                self.used.entry(cap).or_insert(loc);
            }
            StepKind::Call(step)
        } else {
            match name {
                "sleep" => {
                    self.fields(n, "the sleep step", &["sleep"])?;
                    StepKind::Sleep(self.duration(&head.1, "sleep")?)
                }
                "restart_proxy" => {
                    self.fields(n, "the restart_proxy step", &["restart_proxy"])?;
                    // `restart_proxy: {}` (the run's proxy) or `restart_proxy: a|b`.
                    let via = match &head.1.node {
                        Node::Map(_) => {
                            self.fields(&head.1, "restart_proxy", &[])?;
                            Via::A
                        }
                        _ => self.proxy(&head.1, "restart_proxy")?,
                    };
                    // What survives a restart of the only proxy is what a durable queue keeps.
                    if via == Via::A {
                        if self.pattern == Some(Pattern::Queue) {
                            self.used.entry(Capability::QueueDurable).or_insert(loc);
                        }
                        self.observed.insert(Capability::KvDurable);
                    }
                    StepKind::RestartProxy(via)
                }
                "kill_proxy" => {
                    self.fields(n, "the kill_proxy step", &["kill_proxy"])?;
                    StepKind::KillProxy(self.proxy(&head.1, "kill_proxy")?)
                }
                "fault" => {
                    self.fields(n, "the fault step", &["fault"])?;
                    self.fault_step(&head.1)?
                }
                "metrics" => {
                    self.fields(n, "the metrics step", &["metrics"])?;
                    StepKind::Metrics(self.metrics_step(&head.1, scope)?)
                }
                "reload" => {
                    let f = self.fields(n, "the reload step", &["reload", "token", "expect"])?;
                    StepKind::Reload(self.reload_step(&f, &head.1)?)
                }
                "within" => {
                    let f = self.fields(n, "the within step", &["within", "steps"])?;
                    let within = self.duration(&head.1, "within");
                    let body = self.required(&f, "steps", "within")?;
                    let steps = self.steps(body, "within.steps", scope);
                    StepKind::Within {
                        within: within?,
                        steps,
                    }
                }
                "eventually" => {
                    let f = self.fields(n, "the eventually step", &["eventually", "steps"])?;
                    let args = self.fields(&head.1, "eventually", &["within", "every"])?;
                    let within = self
                        .required(&args, "within", "eventually")
                        .and_then(|d| self.duration(d, "within"));
                    let every = match args.get("every") {
                        Some(d) => self.duration(d, "every"),
                        None => Some(Duration::from_millis(50)),
                    };
                    let body = self.required(&f, "steps", "eventually")?;
                    let steps = self.steps(body, "eventually.steps", scope);
                    StepKind::Eventually {
                        within: within?,
                        every: every?,
                        steps,
                    }
                }
                "repeat" => {
                    let f = self.fields(n, "the repeat step", &["repeat", "steps"])?;
                    let args = self.fields(&head.1, "repeat", &["times"])?;
                    let times = self
                        .required(&args, "times", "repeat")
                        .and_then(|t| self.uint(t, "times"));
                    let body = self.required(&f, "steps", "repeat")?;
                    let mut inner = scope.with("i");
                    let steps = self.steps(body, "repeat.steps", &mut inner);
                    scope
                        .vars
                        .extend(inner.vars.into_iter().filter(|v| v != "i"));
                    StepKind::Repeat {
                        times: times?,
                        steps,
                    }
                }
                _ => self.parallel(n, &head.1, scope)?,
            }
        };
        Some(Step { loc, kind })
    }

    pub(crate) fn parallel(
        &mut self,
        n: &Located,
        args_node: &Located,
        scope: &Scope,
    ) -> Option<StepKind> {
        let f = self.fields(n, "the parallel step", &["parallel", "steps", "expect"])?;
        let args = self.fields(args_node, "parallel", &["workers", "branches"])?;
        let tally = f.get("expect").and_then(|e| self.tally(e));
        let inner = scope.with("worker");
        let mut branches = Vec::new();
        match (args.get("branches"), f.get("steps")) {
            (Some(list), None) => {
                if args.has("workers") {
                    self.err(args.loc, "parallel takes either `workers` with `steps`, or `branches` (each with its own workers)");
                }
                for b in self.list(list, "branches") {
                    let bf = self.fields(b, "a branch", &["workers", "steps"])?;
                    let workers = self.workers(&bf);
                    let body = self.required(&bf, "steps", "a branch")?;
                    let steps = self.steps(body, "branch steps", &mut inner.clone());
                    branches.push(Branch {
                        workers: workers?,
                        steps,
                    });
                }
            }
            (None, Some(body)) => {
                let workers = self.workers(&args);
                let steps = self.steps(body, "parallel.steps", &mut inner.clone());
                branches.push(Branch {
                    workers: workers?,
                    steps,
                });
            }
            (Some(_), Some(_)) => {
                self.err(f.loc, "parallel has both `branches` and `steps`; use one");
                return None;
            }
            (None, None) => {
                self.err(
                    f.loc,
                    "parallel needs `steps` (with `workers`) or `branches`",
                );
                return None;
            }
        }
        Some(StepKind::Parallel { branches, tally })
    }

    pub(crate) fn workers(&mut self, f: &Fields<'_>) -> Option<u64> {
        let n = self.required(f, "workers", "parallel")?;
        let w = self.uint(n, "workers")?;
        if w == 0 || w > MAX_WORKERS {
            self.err(
                n.loc,
                format!("workers must be between 1 and {MAX_WORKERS}"),
            );
            return None;
        }
        Some(w)
    }

    pub(crate) fn tally(&mut self, n: &Located) -> Option<Tally> {
        let f = self.fields(n, "parallel.expect", &["ok", "errors"])?;
        let mut tally = Tally {
            ok: f.get("ok").and_then(|v| self.uint(v, "ok")),
            ..Tally::default()
        };
        if let Some(errors) = f.get("errors") {
            let codes: Vec<&str> = StatusCode::names().collect();
            let ef = self.fields(errors, "parallel.expect.errors", &codes)?;
            for (name, _, v) in &ef.entries {
                if let (Some(code), Some(count)) = (StatusCode::from_name(name), self.uint(v, name))
                {
                    tally.errors.insert(code, count);
                }
            }
        }
        Some(tally)
    }

    pub(crate) fn token_name(&mut self, t: &Located) -> Option<String> {
        let name = self.string(t, "token")?;
        if !crate::tokens::TOKEN_NAMES.iter().any(|(n, _)| *n == name) {
            let names: Vec<&str> = crate::tokens::TOKEN_NAMES.iter().map(|(n, _)| *n).collect();
            self.err(
                t.loc,
                format!(
                    "unknown token '{name}' (expected one of: {})",
                    names.join(", ")
                ),
            );
            return None;
        }
        Some(name)
    }

    pub(crate) fn value(&mut self, n: &Located, scope: &Scope) -> Option<ValueSpec> {
        match &n.node {
            Node::Map(_) => {
                let f = self.fields(n, "a value", &["base64", "bytes", "seed"])?;
                match (f.get("base64"), f.get("bytes")) {
                    (Some(b), None) => {
                        if f.has("seed") {
                            self.err(f.loc, "`seed` goes with `bytes`, not `base64`");
                        }
                        let s = self.string(b, "base64")?;
                        match STANDARD.decode(s.trim()) {
                            Ok(bytes) => Some(ValueSpec::Bytes(bytes)),
                            Err(e) => {
                                self.err(b.loc, format!("invalid base64: {e}"));
                                None
                            }
                        }
                    }
                    (None, Some(len)) => {
                        let bytes = self.uint(len, "bytes")?;
                        if bytes > MAX_BLOB {
                            self.err(len.loc, format!("bytes must be at most {MAX_BLOB}"));
                        }
                        let seed = match f.get("seed") {
                            Some(s) => self.template(s, "seed", scope)?,
                            None => "0".into(),
                        };
                        Some(ValueSpec::Blob { bytes, seed })
                    }
                    _ => {
                        self.err(f.loc, "a value mapping needs exactly one of `base64` or `bytes` (with optional `seed`)");
                        None
                    }
                }
            }
            _ => self.template(n, "value", scope).map(ValueSpec::Text),
        }
    }

    pub(crate) fn num(&mut self, n: &Located, what: &str, scope: &mut Scope) -> Option<NumExpect> {
        if let Node::Int(_) = n.node {
            return Some(NumExpect {
                rels: vec![(Rel::Eq, Operand::Lit(self.uint(n, what)?))],
                save: None,
            });
        }
        let names: Vec<&str> = Rel::ALL.iter().map(|(_, n)| *n).chain(["save"]).collect();
        let f = self.fields(n, what, &names)?;
        let mut out = NumExpect::default();
        for (name, _, v) in &f.entries {
            if *name == "save" {
                let var = self.string(v, "save")?;
                scope.vars.insert(var.clone());
                out.save = Some(var);
                continue;
            }
            let rel = Rel::ALL.iter().find(|(_, n)| n == name).map(|(r, _)| *r)?;
            let operand = match &v.node {
                Node::Str(var) => {
                    if !scope.vars.contains(var) {
                        self.err(
                            v.loc,
                            format!(
                                "undefined variable '{var}' (save it first with `save: {var}`)"
                            ),
                        );
                    }
                    Operand::Var(var.clone())
                }
                _ => Operand::Lit(self.uint(v, name)?),
            };
            out.rels.push((rel, operand));
        }
        Some(out)
    }
}

fn describe(n: &Node) -> String {
    match n {
        Node::Str(s) => format!("{s:?}"),
        Node::Int(i) => i.to_string(),
        Node::Float(x) => x.to_string(),
        Node::Bool(b) => b.to_string(),
        other => other.kind().to_string(),
    }
}

/// Parses `250ms`, `2s`, `1m` (or a bare number of milliseconds).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "ms"), |i| (&s[..i], &s[i..]));
    let n: u64 = num.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        _ => None,
    }
}
