//! Parsing the KeyValue steps: each operation's arguments and what it must return.

use super::model::*;
use crate::scenario::parse::{Ctx, Fields, Scope};
use crate::scenario::yaml::{Located, Node};

impl Ctx {
    pub(crate) fn op_step(
        &mut self,
        name: &str,
        args: Located,
        f: &Fields<'_>,
        scope: &mut Scope,
    ) -> Option<OpStep> {
        let caller = self.caller(f)?;
        let expects_error = f
            .get("expect")
            .is_some_and(|e| matches!(&e.node, Node::Map(m) if m.iter().any(|(k, _)| matches!(&k.node, Node::Str(s) if s == "error"))));
        let op = self.op(name, &args, scope, expects_error);
        let expect = match f.get("expect") {
            Some(e) => Some(self.expect(name, e, scope)?),
            None => None,
        };
        Some(OpStep {
            op: op?,
            namespace: caller.namespace,
            token: caller.token,
            via: caller.via,
            deadline_ms: match f.get("deadline_ms") {
                Some(d) => Some(self.uint(d, "deadline_ms")?),
                None => None,
            },
            expect,
        })
    }

    pub(crate) fn op(
        &mut self,
        name: &str,
        n: &Located,
        scope: &Scope,
        expects_error: bool,
    ) -> Option<Op> {
        let what = name;
        Some(match name {
            "set" => {
                let f = self.fields(
                    n,
                    what,
                    &["key", "value", "ttl_ms", "if_absent", "if_version"],
                )?;
                let key = self
                    .required(&f, "key", what)
                    .and_then(|k| self.key(k, "key", scope, expects_error));
                let value = self
                    .required(&f, "value", what)
                    .and_then(|v| self.value(v, scope));
                let ttl_ms = f.get("ttl_ms").map_or(Some(0), |v| self.uint(v, "ttl_ms"));
                let if_absent = f
                    .get("if_absent")
                    .map_or(Some(false), |v| self.boolean(v, "if_absent"));
                let if_version = match f.get("if_version") {
                    Some(v) => Some(self.template(v, "if_version", scope)?),
                    None => None,
                };
                Op::Set {
                    key: key?,
                    value: value?,
                    ttl_ms: ttl_ms?,
                    if_absent: if_absent?,
                    if_version,
                }
            }
            "get" | "delete" | "exists" => {
                let f = self.fields(n, what, &["key"])?;
                let key = self
                    .required(&f, "key", what)
                    .and_then(|k| self.key(k, "key", scope, expects_error))?;
                match name {
                    "get" => Op::Get { key },
                    "delete" => Op::Delete { key },
                    _ => Op::Exists { key },
                }
            }
            "expire" => {
                let f = self.fields(n, what, &["key", "ttl_ms"])?;
                let key = self
                    .required(&f, "key", what)
                    .and_then(|k| self.key(k, "key", scope, expects_error));
                let ttl_ms = self
                    .required(&f, "ttl_ms", what)
                    .and_then(|v| self.uint(v, "ttl_ms"));
                Op::Expire {
                    key: key?,
                    ttl_ms: ttl_ms?,
                }
            }
            "scan" => {
                let f = self.fields(n, what, &["prefix", "cursor", "limit", "keys_only"])?;
                let prefix = self
                    .required(&f, "prefix", what)
                    .and_then(|k| self.key(k, "prefix", scope, expects_error));
                let cursor = match f.get("cursor") {
                    Some(c) => Some(self.template(c, "cursor", scope)?),
                    None => None,
                };
                let limit = f.get("limit").map_or(Some(0), |v| self.uint(v, "limit"));
                let keys_only = f
                    .get("keys_only")
                    .map_or(Some(false), |v| self.boolean(v, "keys_only"));
                Op::Scan {
                    prefix: prefix?,
                    cursor,
                    limit: limit?,
                    keys_only: keys_only?,
                }
            }
            "scan_all" => {
                let f = self.fields(n, what, &["prefix", "limit", "keys_only"])?;
                let prefix = self
                    .required(&f, "prefix", what)
                    .and_then(|k| self.key(k, "prefix", scope, expects_error));
                let limit = f.get("limit").map_or(Some(0), |v| self.uint(v, "limit"));
                let keys_only = f
                    .get("keys_only")
                    .map_or(Some(false), |v| self.boolean(v, "keys_only"));
                Op::ScanAll {
                    prefix: prefix?,
                    limit: limit?,
                    keys_only: keys_only?,
                }
            }
            "batch_set" => {
                let f = self.fields(n, what, &["entries"])?;
                let list = self.required(&f, "entries", what)?;
                let mut entries = Vec::new();
                for e in self.list(list, "entries") {
                    let ef = self.fields(e, "a batch entry", &["key", "value", "ttl_ms"])?;
                    let key = self
                        .required(&ef, "key", "a batch entry")
                        .and_then(|k| self.key(k, "key", scope, expects_error));
                    let value = self
                        .required(&ef, "value", "a batch entry")
                        .and_then(|v| self.value(v, scope));
                    let ttl_ms = ef.get("ttl_ms").map_or(Some(0), |v| self.uint(v, "ttl_ms"));
                    if let (Some(key), Some(value), Some(ttl_ms)) = (key, value, ttl_ms) {
                        entries.push(BatchEntry { key, value, ttl_ms });
                    }
                }
                Op::BatchSet { entries }
            }
            _ => {
                let f = self.fields(n, what, &["keys"])?;
                let list = self.required(&f, "keys", what)?;
                let keys = self
                    .list(list, "keys")
                    .into_iter()
                    .filter_map(|k| self.key(k, "key", scope, expects_error))
                    .collect();
                if name == "batch_get" {
                    Op::BatchGet { keys }
                } else {
                    Op::BatchDelete { keys }
                }
            }
        })
    }

    pub(crate) fn expect(&mut self, op: &str, n: &Located, scope: &mut Scope) -> Option<Expect> {
        let specific: &[&str] = match op {
            "set" => &["version"],
            "get" => &["found", "value", "value_in", "version", "ttl_ms"],
            "delete" => &["deleted"],
            "exists" => &["exists"],
            "expire" => &["updated"],
            "scan" => &["keys", "values", "count", "done", "save_cursor"],
            "scan_all" => &["keys", "values", "count"],
            "batch_set" => &["count"],
            "batch_get" => &["results"],
            _ => &["deleted"],
        };
        let allowed: Vec<&str> = ["error", "message_contains"]
            .iter()
            .chain(specific)
            .copied()
            .collect();
        let f = self.fields(n, &format!("expect (for {op})"), &allowed)?;
        let mut e = Expect::default();
        if let Some(code) = f.get("error") {
            e.error = self.status_code(code);
            if let Some((k, loc, _)) = f
                .entries
                .iter()
                .find(|(k, _, _)| !["error", "message_contains"].contains(k))
            {
                self.err(
                    *loc,
                    format!("`{k}` cannot be checked on a call expected to fail with `error`"),
                );
            }
        }
        if let Some(m) = f.get("message_contains") {
            if !f.has("error") {
                self.err(
                    m.loc,
                    "message_contains needs `error` (it checks the error message)",
                );
            }
            e.message_contains = self.string(m, "message_contains");
        }
        for (name, _, v) in &f.entries {
            match *name {
                "found" => e.found = self.boolean(v, name),
                "value" => e.value = self.value(v, scope),
                "value_in" => {
                    e.value_in = self
                        .list(v, name)
                        .into_iter()
                        .filter_map(|x| self.value(x, scope))
                        .collect()
                }
                "version" => e.version = self.num(v, name, scope),
                "ttl_ms" => e.ttl_ms = self.num(v, name, scope),
                "deleted" if op == "delete" => e.deleted = self.boolean(v, name),
                "deleted" => e.deleted_count = self.num(v, name, scope),
                "exists" => e.exists = self.boolean(v, name),
                "updated" => e.updated = self.boolean(v, name),
                "keys" => {
                    e.keys = Some(
                        self.list(v, name)
                            .into_iter()
                            .filter_map(|k| self.template(k, "key", scope))
                            .collect(),
                    )
                }
                "values" => {
                    e.values = Some(
                        self.list(v, name)
                            .into_iter()
                            .filter_map(|x| self.value(x, scope))
                            .collect(),
                    )
                }
                "count" => e.count = self.num(v, name, scope),
                "done" => e.done = self.boolean(v, name),
                "save_cursor" => {
                    if let Some(var) = self.string(v, name) {
                        scope.vars.insert(var.clone());
                        e.save_cursor = Some(var);
                    }
                }
                "results" => {
                    let mut results = Vec::new();
                    for r in self.list(v, name) {
                        results.push(self.expect("get", r, scope)?);
                    }
                    e.results = Some(results);
                }
                _ => {}
            }
        }
        Some(e)
    }
}
