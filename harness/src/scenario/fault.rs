//! Parsing the `fault` step: `fault: { backend: kill | stop | start | restart | pause | resume }`
//! acts on the backend's server; `fault: { network: latency, ms, jitter_ms }`, `{ network:
//! bandwidth, kbps }`, `{ network: blackhole | reset | restore }` on the link to it.

use super::model::{FaultAction, NetworkFault, StepKind};
use super::parse::{Ctx, Fields, one_of};
use super::yaml::{Located, Node};
use prism_runtime::patterns::capability::Capability;

impl Ctx {
    /// The step a `fault:` mapping describes.
    pub(crate) fn fault_step(&mut self, n: &Located) -> Option<StepKind> {
        let args = self.fields(
            n,
            "fault",
            &["backend", "network", "ms", "jitter_ms", "kbps"],
        )?;
        match (args.get("backend"), args.get("network")) {
            (Some(_), Some(network)) => {
                self.err(
                    network.loc,
                    "a fault step acts on the backend or on the network, not both",
                );
                None
            }
            (None, Some(network)) => self.network_fault(&args, network).map(StepKind::Network),
            _ => {
                if let Some(extra) = ["ms", "jitter_ms", "kbps"].iter().find_map(|k| args.get(k)) {
                    self.err(extra.loc, "ms, jitter_ms and kbps go with `network:`");
                    return None;
                }
                let action = self.required(&args, "backend", "fault")?;
                self.backend_fault(action).map(StepKind::Fault)
            }
        }
    }

    fn backend_fault(&mut self, action: &Located) -> Option<FaultAction> {
        let names: Vec<&str> = FaultAction::ALL.iter().map(|(_, n)| *n).collect();
        let found = match &action.node {
            Node::Str(s) => FaultAction::ALL.iter().find(|(_, n)| n == s),
            _ => None,
        };
        let Some((found, _)) = found else {
            let shown = shown(action);
            self.err(
                action.loc,
                format!(
                    "fault.backend must be one of: {} (found {shown})",
                    one_of(&names)
                ),
            );
            return None;
        };
        if matches!(
            found,
            FaultAction::Kill | FaultAction::Stop | FaultAction::Restart
        ) {
            self.observed
                .extend([Capability::KvDurable, Capability::QueueDurable]);
        }
        Some(*found)
    }

    fn network_fault(&mut self, args: &Fields<'_>, kind: &Located) -> Option<NetworkFault> {
        let name = match &kind.node {
            Node::Str(s) if NetworkFault::NAMES.contains(&s.as_str()) => s.clone(),
            _ => {
                let shown = shown(kind);
                self.err(
                    kind.loc,
                    format!(
                        "fault.network must be one of: {} (found {shown})",
                        one_of(&NetworkFault::NAMES)
                    ),
                );
                return None;
            }
        };
        let allowed: &[&str] = match name.as_str() {
            "latency" => &["ms", "jitter_ms"],
            "bandwidth" => &["kbps"],
            _ => &[],
        };
        for key in ["ms", "jitter_ms", "kbps"] {
            if let Some(v) = args.get(key).filter(|_| !allowed.contains(&key)) {
                self.err(v.loc, format!("{key} does not go with `network: {name}`"));
                return None;
            }
        }
        let mut number = |key: &str, default: Option<u64>| match args.get(key) {
            Some(v) => self.uint(v, &format!("fault.{key}")),
            None if default.is_some() => default,
            None => {
                self.err(args.loc, format!("`network: {name}` needs `{key}`"));
                None
            }
        };
        Some(match name.as_str() {
            "latency" => NetworkFault::Latency {
                ms: number("ms", None)?,
                jitter_ms: number("jitter_ms", Some(0))?,
            },
            "bandwidth" => {
                let kbps = number("kbps", None)?;
                if kbps == 0 {
                    self.err(
                        args.get("kbps").map_or(args.loc, |v| v.loc),
                        "fault.kbps must be at least 1 (for no traffic at all, use `network: blackhole`)",
                    );
                    return None;
                }
                NetworkFault::Bandwidth { kbps }
            }
            "blackhole" => NetworkFault::Blackhole,
            "reset" => NetworkFault::Reset,
            _ => NetworkFault::Restore,
        })
    }
}

/// A node as an error message shows what was found.
fn shown(n: &Located) -> String {
    match &n.node {
        Node::Str(s) => format!("{s:?}"),
        other => other.kind().to_string(),
    }
}
