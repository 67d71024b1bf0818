//! Parsing the messaging steps (see `model.rs`): stream handles are declared by
//! `subscribe`/`consume` with `as:` and must exist (with the right kind) where `receive`, `ack`,
//! `nack`, `expect_silence` and `disconnect` name them.

use super::model::*;
use crate::scenario::model::{Location, NamespaceRef, Operand, ValueSpec};
use crate::scenario::parse::{Ctx, Fields, Scope, one_of};
use crate::scenario::yaml::{Located, Node};
use prism_runtime::patterns::capability::Capability;
use std::collections::BTreeMap;

/// Largest `count` of one receive.
const MAX_RECEIVE: u64 = 1_000_000;

impl Ctx {
    /// Parses the messaging step `name` whose whole mapping is `n` and arguments `args`.
    pub(crate) fn msg_step(
        &mut self,
        name: &str,
        n: &Located,
        args: &Located,
        loc: Location,
        scope: &mut Scope,
    ) -> Option<MsgStep> {
        let what = format!("the {name} step");
        let step = match name {
            "subscribe" | "publish" | "consume" | "enqueue" => {
                let f = self.fields(n, &what, &[name, "expect", "namespace", "token", "via"])?;
                let caller = self.caller(&f)?;
                let expect = match f.get("expect") {
                    Some(e) => self.call_expect(e, name)?,
                    None => CallExpect::default(),
                };
                let fails = expect.error.is_some();
                match name {
                    "subscribe" => {
                        let a = self.fields(args, name, &["topic", "as"])?;
                        let topic = self
                            .req(&a, "topic", name)
                            .and_then(|t| self.key(t, "topic", scope, fails));
                        let handle = self.handle_decl(&a, name, HandleKind::Subscription);
                        MsgStep::Subscribe {
                            topic: topic?,
                            name: handle?,
                            caller,
                            expect,
                        }
                    }
                    "publish" => {
                        let a = self.fields(args, name, &["topic", "payload", "headers"])?;
                        let topic = self
                            .req(&a, "topic", name)
                            .and_then(|t| self.key(t, "topic", scope, fails));
                        let payload = self.payload(&a, scope);
                        let headers = self.headers(&a, scope);
                        MsgStep::Publish {
                            topic: topic?,
                            payload: payload?,
                            headers: headers?,
                            caller,
                            expect,
                        }
                    }
                    "consume" => {
                        let a = self.fields(
                            args,
                            name,
                            &[
                                "queue",
                                "group",
                                "max_in_flight",
                                "visibility_timeout_ms",
                                "auto_ack",
                                "as",
                            ],
                        )?;
                        let queue = self
                            .req(&a, "queue", name)
                            .and_then(|t| self.key(t, "queue", scope, fails));
                        let group = match a.get("group") {
                            Some(g) => Some(self.template(g, "group", scope)?),
                            None => None,
                        };
                        let max_in_flight = a
                            .get("max_in_flight")
                            .map_or(Some(1), |v| self.uint(v, "max_in_flight"));
                        let visibility = a
                            .get("visibility_timeout_ms")
                            .map_or(Some(0), |v| self.uint(v, "visibility_timeout_ms"));
                        let auto_ack = a
                            .get("auto_ack")
                            .map_or(Some(false), |v| self.boolean(v, "auto_ack"));
                        let handle = self.handle_decl(&a, name, HandleKind::Consumer);
                        if queue.as_deref().is_some_and(|q| q.ends_with(".dlq")) {
                            self.used.entry(Capability::QueueDeadLetter).or_insert(loc);
                        }
                        MsgStep::Consume {
                            queue: queue?,
                            group,
                            max_in_flight: max_in_flight?,
                            visibility_timeout_ms: visibility?,
                            auto_ack: auto_ack?,
                            name: handle?,
                            caller,
                            expect,
                        }
                    }
                    _ => {
                        let a =
                            self.fields(args, name, &["queue", "payload", "headers", "delay_ms"])?;
                        let queue = self
                            .req(&a, "queue", name)
                            .and_then(|t| self.key(t, "queue", scope, fails));
                        let payload = self.payload(&a, scope);
                        let headers = self.headers(&a, scope);
                        let delay_ms = a
                            .get("delay_ms")
                            .map_or(Some(0), |v| self.uint(v, "delay_ms"));
                        MsgStep::Enqueue {
                            queue: queue?,
                            payload: payload?,
                            headers: headers?,
                            delay_ms: delay_ms?,
                            caller,
                            expect,
                        }
                    }
                }
            }
            "receive" => {
                let f = self.fields(n, &what, &["receive", "expect"])?;
                let a = self.fields(args, name, &["from", "count", "within", "order"])?;
                let from = self.handle_refs(&a, name, None);
                let count = self
                    .req(&a, "count", name)
                    .and_then(|c| self.uint(c, "count"));
                if count.is_some_and(|c| c > MAX_RECEIVE) {
                    self.err(a.loc, format!("count must be at most {MAX_RECEIVE}"));
                }
                let within = self
                    .req(&a, "within", name)
                    .and_then(|d| self.duration(d, "within"));
                let order = match a.get("order") {
                    None => Some(Order::Any),
                    Some(o) => match self.string(o, "order")?.as_str() {
                        "strict" => Some(Order::Strict),
                        "any" => Some(Order::Any),
                        other => {
                            self.err(
                                o.loc,
                                format!("unknown order '{other}' (expected one of: strict, any)"),
                            );
                            None
                        }
                    },
                };
                let expect = match f.get("expect") {
                    Some(e) => self.receive_expect(e, scope, count.unwrap_or(0))?,
                    None => ReceiveExpect::default(),
                };
                if order == Some(Order::Strict) {
                    for h in from.iter().flatten() {
                        let cap = match self.handles.get(h) {
                            Some(HandleKind::Subscription) => Capability::PubSubOrdered,
                            _ => Capability::QueueOrdered,
                        };
                        self.used.entry(cap).or_insert(loc);
                    }
                }
                let redelivered = expect.attempt.as_ref().is_some_and(|a| {
                    a.rels
                        .iter()
                        .any(|(_, o)| matches!(o, Operand::Lit(n) if *n >= 2))
                });
                if redelivered {
                    self.used.entry(Capability::QueueRedelivery).or_insert(loc);
                }
                MsgStep::Receive {
                    from: from?,
                    count: count?,
                    within: within?,
                    order: order?,
                    expect,
                }
            }
            "expect_silence" => {
                self.fields(n, &what, &["expect_silence"])?;
                let a = self.fields(args, name, &["from", "for"])?;
                let from = self.handle_refs(&a, name, None);
                let duration = self
                    .req(&a, "for", name)
                    .and_then(|d| self.duration(d, "for"));
                MsgStep::ExpectSilence {
                    from: from?,
                    duration: duration?,
                }
            }
            "ack" | "nack" => {
                let f = self.fields(n, &what, &[name, "expect"])?;
                let allowed: &[&str] = if name == "ack" {
                    &["from", "which"]
                } else {
                    &["from", "which", "requeue_delay_ms"]
                };
                let a = self.fields(args, name, allowed)?;
                let from = self.handle_ref(&a, name, Some(HandleKind::Consumer));
                let which = match a.get("which") {
                    None => Some(Which::All),
                    Some(w) => self.which(w, scope),
                };
                let expect = match f.get("expect") {
                    Some(e) => self.call_expect(e, name)?,
                    None => CallExpect::default(),
                };
                if name == "ack" {
                    MsgStep::Ack {
                        from: from?,
                        which: which?,
                        expect,
                    }
                } else {
                    let delay = a
                        .get("requeue_delay_ms")
                        .map_or(Some(0), |v| self.uint(v, "requeue_delay_ms"));
                    MsgStep::Nack {
                        from: from?,
                        which: which?,
                        requeue_delay_ms: delay?,
                        expect,
                    }
                }
            }
            _ => {
                self.fields(n, &what, &["disconnect"])?;
                let a = self.fields(args, name, &["from"])?;
                MsgStep::Disconnect {
                    from: self.handle_ref(&a, name, None)?,
                }
            }
        };
        Some(step)
    }

    fn req<'n>(&mut self, f: &Fields<'n>, key: &str, what: &str) -> Option<&'n Located> {
        self.required(f, key, what)
    }

    /// The `namespace`, `token` and `via` keys of a call step.
    pub(crate) fn caller(&mut self, f: &Fields<'_>) -> Option<Caller> {
        let namespace = match f.get("namespace") {
            None => NamespaceRef::Main,
            Some(n) => match self.string(n, "namespace")?.as_str() {
                "main" => NamespaceRef::Main,
                "other" => NamespaceRef::Other,
                other => {
                    self.err(
                        n.loc,
                        format!("unknown namespace '{other}' (expected one of: main, other)"),
                    );
                    return None;
                }
            },
        };
        let token = match f.get("token") {
            None => None,
            Some(t) => Some(self.token_name(t)?),
        };
        let via = match f.get("via") {
            None => Via::A,
            Some(v) => self.proxy(v, "via")?,
        };
        Some(Caller {
            namespace,
            token,
            via,
        })
    }

    fn payload(&mut self, f: &Fields<'_>, scope: &Scope) -> Option<ValueSpec> {
        match f.get("payload") {
            Some(v) => self.value(v, scope),
            None => Some(ValueSpec::Text(String::new())),
        }
    }

    fn headers(&mut self, f: &Fields<'_>, scope: &Scope) -> Option<BTreeMap<String, String>> {
        let Some(h) = f.get("headers") else {
            return Some(BTreeMap::new());
        };
        self.header_map(h, scope)
    }

    pub(crate) fn header_map(
        &mut self,
        h: &Located,
        scope: &Scope,
    ) -> Option<BTreeMap<String, String>> {
        let Node::Map(entries) = &h.node else {
            self.err(
                h.loc,
                format!(
                    "headers must be a mapping of names to values, found {}",
                    h.node.kind()
                ),
            );
            return None;
        };
        let mut out = BTreeMap::new();
        for (k, v) in entries {
            let key = self.string(k, "a header name")?;
            let value = self.template(v, "a header value", scope)?;
            if out.insert(key.clone(), value).is_some() {
                self.err(k.loc, format!("duplicate header '{key}'"));
            }
        }
        Some(out)
    }

    pub(crate) fn handle_decl(
        &mut self,
        f: &Fields<'_>,
        what: &str,
        kind: HandleKind,
    ) -> Option<String> {
        let n = self.required(f, "as", what)?;
        let name = self.string(n, "as")?;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            self.err(n.loc, "a handle name is letters, digits, '_' or '-'");
            return None;
        }
        match self.handles.get(&name) {
            Some(k) if *k != kind => {
                self.err(n.loc, format!("handle '{name}' is already a {k:?} handle"));
                None
            }
            _ => {
                self.handles.insert(name.clone(), kind);
                Some(name)
            }
        }
    }

    pub(crate) fn check_handle(&mut self, n: &Located, kind: Option<HandleKind>) -> Option<String> {
        let name = self.string(n, "a handle")?;
        match (self.handles.get(&name), kind) {
            (None, _) => {
                let known: Vec<&str> = self.handles.keys().map(String::as_str).collect();
                self.err(
                    n.loc,
                    format!(
                        "unknown handle '{name}' (open it first with `subscribe` or `consume` and `as: {name}`; known: {})",
                        if known.is_empty() { "none".to_string() } else { one_of(&known) }
                    ),
                );
                None
            }
            (Some(k), Some(want)) if *k != want => {
                self.err(
                    n.loc,
                    format!("handle '{name}' is a {k:?} handle; this step needs a {want:?} handle"),
                );
                None
            }
            _ => Some(name),
        }
    }

    pub(crate) fn handle_ref(
        &mut self,
        f: &Fields<'_>,
        what: &str,
        kind: Option<HandleKind>,
    ) -> Option<String> {
        let n = self.required(f, "from", what)?;
        self.check_handle(n, kind)
    }

    fn handle_refs(
        &mut self,
        f: &Fields<'_>,
        what: &str,
        kind: Option<HandleKind>,
    ) -> Option<Vec<String>> {
        let n = self.required(f, "from", what)?;
        match &n.node {
            Node::Seq(items) if !items.is_empty() => {
                let names: Vec<Option<String>> =
                    items.iter().map(|i| self.check_handle(i, kind)).collect();
                names.into_iter().collect()
            }
            Node::Seq(_) => {
                self.err(n.loc, "from must name at least one handle");
                None
            }
            _ => Some(vec![self.check_handle(n, kind)?]),
        }
    }

    fn which(&mut self, n: &Located, scope: &Scope) -> Option<Which> {
        match &n.node {
            Node::Str(s) if s == "all" => Some(Which::All),
            Node::Str(s) if s == "unknown" => Some(Which::Unknown),
            Node::Map(_) => {
                let f = self.fields(n, "which", &["position", "payload"])?;
                match (f.get("position"), f.get("payload")) {
                    (Some(p), None) => Some(Which::Position(self.uint(p, "position")?)),
                    (None, Some(v)) => Some(Which::Payload(self.value(v, scope)?)),
                    _ => {
                        self.err(f.loc, "which takes one of `position` or `payload`");
                        None
                    }
                }
            }
            _ => {
                self.err(
                    n.loc,
                    "which must be all, unknown, { position: N } or { payload: VALUE }",
                );
                None
            }
        }
    }

    fn call_expect(&mut self, n: &Located, op: &str) -> Option<CallExpect> {
        let f = self.fields(
            n,
            &format!("expect (for {op})"),
            &["error", "message_contains"],
        )?;
        let (error, message_contains) = self.error_expect(&f)?;
        Some(CallExpect {
            error,
            message_contains,
        })
    }

    fn receive_expect(
        &mut self,
        n: &Located,
        scope: &mut Scope,
        count: u64,
    ) -> Option<ReceiveExpect> {
        let f = self.fields(
            n,
            "expect (for receive)",
            &[
                "payloads",
                "headers",
                "attempt",
                "dropped",
                "error",
                "message_contains",
            ],
        )?;
        let mut e = ReceiveExpect::default();
        if let Some(c) = f.get("error") {
            e.error = Some(self.status_code(c)?);
            if let Some((k, loc, _)) = f
                .entries
                .iter()
                .find(|(k, _, _)| !["error", "message_contains"].contains(k))
            {
                self.err(
                    *loc,
                    format!("`{k}` cannot be checked on a stream expected to end with `error`"),
                );
            }
        }
        if let Some(m) = f.get("message_contains") {
            if e.error.is_none() {
                self.err(
                    m.loc,
                    "message_contains needs `error` (it checks the ending status)",
                );
            }
            e.message_contains = self.string(m, "message_contains");
        }
        if let Some(p) = f.get("payloads") {
            e.payloads = Some(self.payloads(p, scope, count)?);
        }
        if let Some(h) = f.get("headers") {
            e.headers = self.header_map(h, scope)?;
        }
        if let Some(a) = f.get("attempt") {
            e.attempt = Some(self.num(a, "attempt", scope)?);
        }
        if let Some(d) = f.get("dropped") {
            e.dropped = Some(self.num(d, "dropped", scope)?);
        }
        Some(e)
    }

    /// A list of values, or `{ numbered: TEMPLATE }`: `count` texts with `${n}` from 0.
    fn payloads(&mut self, n: &Located, scope: &Scope, count: u64) -> Option<Vec<ValueSpec>> {
        if let Node::Map(_) = n.node {
            let f = self.fields(n, "payloads", &["numbered"])?;
            let t = self.required(&f, "numbered", "payloads")?;
            let template = self.template(t, "numbered", &scope.with("n"))?;
            return Some(
                (0..count)
                    .map(|i| ValueSpec::Text(template.replace("${n}", &i.to_string())))
                    .collect(),
            );
        }
        let list = self.list(n, "payloads");
        let values: Vec<Option<ValueSpec>> =
            list.into_iter().map(|v| self.value(v, scope)).collect();
        let values: Option<Vec<ValueSpec>> = values.into_iter().collect();
        if let Some(v) = &values {
            if v.len() as u64 != count {
                self.err(
                    n.loc,
                    format!("payloads lists {} values but count is {count}", v.len()),
                );
            }
        }
        values
    }
}
