//! Parsing the mailbox steps (see `model.rs`); filters as `ops/filter.rs` reads them.

use super::model::*;
use crate::scenario::model::Location;
use crate::scenario::parse::{Ctx, Fields, Scope};
use crate::scenario::yaml::Located;
use prism_proto::filter::v1::Filter;
use prism_runtime::patterns::capability::Capability;
use std::collections::BTreeMap;

impl Ctx {
    /// Parses the mailbox step `name` whose whole mapping is `n` and arguments `args`.
    pub(crate) fn mail_step(
        &mut self,
        name: &str,
        n: &Located,
        args: &Located,
        _loc: Location,
        scope: &mut Scope,
    ) -> Option<MailStep> {
        let f = self.fields(
            n,
            &format!("the {name} step"),
            &[name, "expect", "namespace", "token", "via"],
        )?;
        let caller = self.caller(&f)?;
        let expect = match f.get("expect") {
            Some(e) => self.mail_expect(e, name, scope)?,
            None => MailExpect::default(),
        };
        let allowed: &[&str] = match name {
            "deliver" => &["mailbox", "payload", "headers", "message_id", "as"],
            "query" => &[
                "mailbox",
                "filter",
                "since_ms",
                "until_ms",
                "limit",
                "headers_only",
            ],
            "get_message" => &["mailbox", "message_id"],
            "source_publish" => &["mailbox", "payload", "headers"],
            _ => &["mailbox", "message_ids"],
        };
        let a = self.fields(args, name, allowed)?;
        let mailbox = self
            .required(&a, "mailbox", name)
            .and_then(|m| self.template(m, "mailbox", scope));
        let optional = |cx: &mut Ctx, a: &Fields<'_>, key: &str| -> Option<Option<String>> {
            match a.get(key) {
                Some(v) => cx.template(v, key, scope).map(Some),
                None => Some(None),
            }
        };
        Some(match name {
            "deliver" => {
                let (payload, headers) = self.payload_and_headers(&a, name, scope);
                let message_id = optional(self, &a, "message_id");
                let save = match a.get("as") {
                    Some(v) => {
                        let var = self.string(v, "as")?;
                        scope.vars.insert(var.clone());
                        scope.vars.insert(format!("{var}_at"));
                        Some(var)
                    }
                    None => None,
                };
                MailStep::Deliver {
                    mailbox: mailbox?,
                    payload: payload?,
                    headers: headers?,
                    message_id: message_id?,
                    save,
                    caller,
                    expect,
                }
            }
            "query" => {
                let filter = match a.get("filter") {
                    Some(f) => self.filter(f, scope),
                    None => Some(Filter::default()),
                };
                let since_ms = optional(self, &a, "since_ms");
                let until_ms = optional(self, &a, "until_ms");
                let limit = a.get("limit").map_or(Some(0), |v| self.uint(v, "limit"));
                let headers_only = a
                    .get("headers_only")
                    .map_or(Some(false), |v| self.boolean(v, "headers_only"));
                MailStep::Query {
                    mailbox: mailbox?,
                    filter: filter?,
                    since_ms: since_ms?,
                    until_ms: until_ms?,
                    limit: limit?,
                    headers_only: headers_only?,
                    caller,
                    expect,
                }
            }
            "source_publish" => {
                let (payload, headers) = self.payload_and_headers(&a, name, scope);
                self.observed.insert(Capability::MailboxSource);
                MailStep::SourcePublish {
                    mailbox: mailbox?,
                    payload: payload?,
                    headers: headers?,
                    caller,
                    expect,
                }
            }
            "get_message" => {
                let message_id = self
                    .required(&a, "message_id", name)
                    .and_then(|m| self.template(m, "message_id", scope));
                MailStep::Get {
                    mailbox: mailbox?,
                    message_id: message_id?,
                    caller,
                    expect,
                }
            }
            _ => {
                let ids: Option<Vec<String>> = self
                    .required(&a, "message_ids", name)
                    .map(|l| self.list(l, "message_ids"))
                    .and_then(|items| {
                        items
                            .into_iter()
                            .map(|i| self.template(i, "a message id", scope))
                            .collect()
                    });
                MailStep::Delete {
                    mailbox: mailbox?,
                    message_ids: ids?,
                    caller,
                    expect,
                }
            }
        })
    }

    fn payload_and_headers(
        &mut self,
        a: &Fields<'_>,
        name: &str,
        scope: &Scope,
    ) -> (Option<String>, Option<BTreeMap<String, String>>) {
        let payload = self
            .required(a, "payload", name)
            .and_then(|p| self.template(p, "payload", scope));
        let headers = match a.get("headers") {
            Some(h) => self.header_map(h, scope),
            None => Some(BTreeMap::new()),
        };
        (payload, headers)
    }

    fn mail_expect(&mut self, n: &Located, op: &str, scope: &Scope) -> Option<MailExpect> {
        let own: &[&str] = match op {
            "query" => &["payloads", "pages", "headers"],
            "get_message" => &["payloads", "headers"],
            "delete_messages" => &["deleted"],
            _ => &[],
        };
        let mut allowed = vec!["error", "message_contains"];
        allowed.extend_from_slice(own);
        let f = self.fields(n, &format!("expect (for {op})"), &allowed)?;
        let (error, message_contains) = self.error_expect(&f)?;
        let mut e = MailExpect {
            error,
            message_contains,
            ..MailExpect::default()
        };
        if let Some(l) = f.get("payloads") {
            let items = self.list(l, "payloads");
            let v: Option<Vec<String>> = items
                .into_iter()
                .map(|i| self.template(i, "a payload", scope))
                .collect();
            e.payloads = Some(v?);
        }
        if let Some(v) = f.get("pages") {
            e.pages = Some(self.uint(v, "pages")?);
        }
        if let Some(h) = f.get("headers") {
            e.headers = Some(self.header_map(h, scope)?);
        }
        if let Some(v) = f.get("deleted") {
            e.deleted = Some(self.uint(v, "deleted")?);
        }
        Some(e)
    }
}
