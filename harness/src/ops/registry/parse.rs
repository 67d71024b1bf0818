//! Parsing the registry steps (see `model.rs`); filters as `ops/filter.rs` reads them.

use super::model::*;
use crate::ops::messaging::model::HandleKind;
use crate::scenario::model::Location;
use crate::scenario::parse::{Ctx, Fields, Scope};
use crate::scenario::yaml::{Located, Node};
use prism_proto::filter::v1::Filter;
use std::collections::BTreeMap;
use std::time::Duration;

/// Watch event kinds as scenarios write them.
pub const EVENT_KINDS: [&str; 7] = [
    "present",
    "synced",
    "registered",
    "updated",
    "unregistered",
    "expired",
    "left",
];

impl Ctx {
    /// Parses the registry step `name` whose whole mapping is `n` and arguments `args`.
    pub(crate) fn reg_step(
        &mut self,
        name: &str,
        n: &Located,
        args: &Located,
        _loc: Location,
        scope: &mut Scope,
    ) -> Option<RegStep> {
        let what = format!("the {name} step");
        match name {
            "hear" | "events" => {
                self.fields(n, &what, &[name])?;
                let list = if name == "hear" { "payloads" } else { "expect" };
                let a = self.fields(args, name, &["from", list, "within"])?;
                let kind = if name == "hear" {
                    HandleKind::Listener
                } else {
                    HandleKind::Watcher
                };
                let from = self.handle_ref(&a, name, Some(kind));
                let within = match a.get("within") {
                    Some(d) => self.duration(d, "within"),
                    None => Some(Duration::from_secs(5)),
                };
                let items = self.required(&a, list, name)?;
                let items = self.list(items, list);
                if name == "hear" {
                    let payloads: Option<Vec<String>> = items
                        .into_iter()
                        .map(|p| self.template(p, "a payload", scope))
                        .collect();
                    Some(RegStep::Hear {
                        from: from?,
                        payloads: payloads?,
                        within: within?,
                    })
                } else {
                    let events: Option<Vec<EventSpec>> =
                        items.into_iter().map(|e| self.event(e, scope)).collect();
                    Some(RegStep::Events {
                        from: from?,
                        events: events?,
                        within: within?,
                    })
                }
            }
            "close" => {
                self.fields(n, &what, &[name])?;
                let handle = self.string(args, "close")?;
                if !self.handles.contains_key(&handle) {
                    self.err(
                        args.loc,
                        format!("close names '{handle}', which no listen or watch step opened"),
                    );
                    return None;
                }
                Some(RegStep::Close { handle })
            }
            _ => {
                let f = self.fields(n, &what, &[name, "expect", "namespace", "token", "via"])?;
                let caller = self.caller(&f)?;
                let expect = match f.get("expect") {
                    Some(e) => self.reg_expect(e, name, scope)?,
                    None => RegExpect::default(),
                };
                let allowed: &[&str] = match name {
                    "register" => &["identity", "metadata", "ttl_ms", "replace"],
                    "heartbeat" => &["identity", "ttl_ms"],
                    "unregister" => &["identity"],
                    "enumerate" => &["filter", "limit"],
                    "multicast" => &["filter", "payload"],
                    "listen" => &["identity", "as"],
                    _ => &["filter", "as"],
                };
                let a = self.fields(args, name, allowed)?;
                let identity = || "identity";
                let ident = |cx: &mut Ctx, a: &Fields<'_>| {
                    cx.required(a, identity(), name)
                        .and_then(|i| cx.template(i, "identity", scope))
                };
                let ttl = |cx: &mut Ctx, a: &Fields<'_>| {
                    a.get("ttl_ms").map_or(Some(0), |v| cx.uint(v, "ttl_ms"))
                };
                let filter = |cx: &mut Ctx, a: &Fields<'_>| match a.get("filter") {
                    Some(f) => cx.filter(f, scope),
                    None => Some(Filter::default()),
                };
                Some(match name {
                    "register" => {
                        let identity = ident(self, &a);
                        let metadata = match a.get("metadata") {
                            Some(m) => self.metadata(m, scope),
                            None => Some(BTreeMap::new()),
                        };
                        let ttl_ms = ttl(self, &a);
                        let replace = a
                            .get("replace")
                            .map_or(Some(false), |v| self.boolean(v, "replace"));
                        RegStep::Register {
                            identity: identity?,
                            metadata: metadata?,
                            ttl_ms: ttl_ms?,
                            replace: replace?,
                            caller,
                            expect,
                        }
                    }
                    "heartbeat" => {
                        let identity = ident(self, &a);
                        let ttl_ms = ttl(self, &a);
                        RegStep::Heartbeat {
                            identity: identity?,
                            ttl_ms: ttl_ms?,
                            caller,
                            expect,
                        }
                    }
                    "unregister" => RegStep::Unregister {
                        identity: ident(self, &a)?,
                        caller,
                        expect,
                    },
                    "enumerate" => {
                        let filter = filter(self, &a);
                        let limit = a.get("limit").map_or(Some(0), |v| self.uint(v, "limit"));
                        RegStep::Enumerate {
                            filter: filter?,
                            limit: limit?,
                            caller,
                            expect,
                        }
                    }
                    "multicast" => {
                        let filter = filter(self, &a);
                        let payload = self
                            .required(&a, "payload", name)
                            .and_then(|p| self.template(p, "payload", scope));
                        RegStep::Multicast {
                            filter: filter?,
                            payload: payload?,
                            caller,
                            expect,
                        }
                    }
                    "listen" => {
                        let identity = ident(self, &a);
                        let handle = self.handle_decl(&a, name, HandleKind::Listener);
                        RegStep::Listen {
                            identity: identity?,
                            name: handle?,
                            caller,
                            expect,
                        }
                    }
                    _ => {
                        let filter = filter(self, &a);
                        let handle = self.handle_decl(&a, name, HandleKind::Watcher);
                        RegStep::Watch {
                            filter: filter?,
                            name: handle?,
                            caller,
                            expect,
                        }
                    }
                })
            }
        }
    }

    fn metadata(&mut self, n: &Located, scope: &Scope) -> Option<BTreeMap<String, String>> {
        let Node::Map(entries) = &n.node else {
            self.err(
                n.loc,
                format!("metadata must be a mapping, found {}", n.node.kind()),
            );
            return None;
        };
        let mut out = BTreeMap::new();
        for (k, v) in entries {
            let key = self.text(k, "a metadata key")?;
            let value = self.template(v, "a metadata value", scope)?;
            out.insert(key, value);
        }
        Some(out)
    }

    fn event(&mut self, n: &Located, scope: &Scope) -> Option<EventSpec> {
        let text = self.string(n, "an event")?;
        let (kind, identity) = match text.split_once(' ') {
            Some((k, i)) => (k.to_string(), Some(i.trim().to_string())),
            None => (text.clone(), None),
        };
        if !EVENT_KINDS.contains(&kind.as_str()) {
            self.err(
                n.loc,
                format!(
                    "unknown event kind '{kind}' (expected one of: {})",
                    EVENT_KINDS.join(", ")
                ),
            );
            return None;
        }
        if (kind == "synced") != identity.is_none() {
            self.err(
                n.loc,
                "an event is `KIND IDENTITY` (e.g. `registered a`), or `synced` alone",
            );
            return None;
        }
        if let Some(i) = &identity {
            self.check_vars(n.loc, i, scope);
        }
        Some(EventSpec { kind, identity })
    }

    fn reg_expect(&mut self, n: &Located, op: &str, scope: &Scope) -> Option<RegExpect> {
        let own: &[&str] = match op {
            "register" => &["replaced"],
            "unregister" => &["existed"],
            "enumerate" => &["identities", "pages"],
            "multicast" => &["delivered_to", "failed_to"],
            _ => &[],
        };
        let mut allowed = vec!["error", "message_contains"];
        allowed.extend_from_slice(own);
        let f = self.fields(n, &format!("expect (for {op})"), &allowed)?;
        let (error, message_contains) = self.error_expect(&f)?;
        let mut e = RegExpect {
            error,
            message_contains,
            ..RegExpect::default()
        };
        let ids = |cx: &mut Ctx, key: &str| -> Option<Option<Vec<String>>> {
            match f.get(key) {
                None => Some(None),
                Some(l) => {
                    let items = cx.list(l, key);
                    let v: Option<Vec<String>> = items
                        .into_iter()
                        .map(|i| cx.template(i, "an identity", scope))
                        .collect();
                    Some(Some(v?))
                }
            }
        };
        e.identities = ids(self, "identities")?;
        e.delivered_to = ids(self, "delivered_to")?;
        e.failed_to = ids(self, "failed_to")?;
        if let Some(v) = f.get("replaced") {
            e.replaced = Some(self.boolean(v, "replaced")?);
        }
        if let Some(v) = f.get("existed") {
            e.existed = Some(self.boolean(v, "existed")?);
        }
        if let Some(v) = f.get("pages") {
            e.pages = Some(self.uint(v, "pages")?);
        }
        Some(e)
    }
}
