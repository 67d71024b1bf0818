//! Renders every metric family from the live cells at scrape time: the call path only adds to
//! atomics; names, labels and text are made here, once per scrape.

use super::exposition::{Exposition, Kind};
use super::methods::methods;
use super::{CODE_NAMES, Family, NamespaceMetrics, Outcome, Redelivery, Sources};
use std::sync::atomic::Ordering;

/// The exposition of every family, in OpenMetrics when `open_metrics`, else Prometheus text.
pub fn render(sources: &Sources, open_metrics: bool) -> (String, &'static str) {
    let mut out = Exposition::new(open_metrics);
    let router = sources.router.current();
    let namespaces: Vec<&NamespaceMetrics> = router
        .routes()
        .map(|r| r.metrics.as_ref())
        .chain(std::iter::once(sources.proxy.unrouted.as_ref()))
        .collect();
    calls(&mut out, &namespaces);
    messaging(&mut out, sources, &namespaces);
    backends(&mut out, sources);
    proxy(&mut out, sources);
    process(&mut out);
    let content_type = out.content_type();
    (out.finish(), content_type)
}

/// Reads one value of a method's cells.
type CellValue = fn(&super::MethodCells) -> f64;
/// Reads one messaging counter.
type MessagingValue = fn(&super::MessagingCounters) -> u64;

fn ns_labels(ns: &NamespaceMetrics) -> [(&'static str, &str); 2] {
    [("namespace", ns.name.as_str()), ("pattern", ns.pattern)]
}

fn calls(out: &mut Exposition, namespaces: &[&NamespaceMetrics]) {
    let table = methods();
    let name = "rpc_server_call_duration_seconds";
    out.family(
        name,
        Kind::Histogram,
        Some("seconds"),
        "Duration of gRPC calls the proxy served, to the end of the response (a stream's whole life).",
    );
    for ns in namespaces {
        for (id, cells) in ns.calls.iter().enumerate() {
            let method = table.label(id as u16);
            for (code, h) in cells.by_code.seen() {
                let [n, p] = ns_labels(ns);
                let labels = [
                    ("rpc_method", method),
                    ("rpc_status_code", CODE_NAMES[code]),
                    n,
                    p,
                ];
                out.histogram(name, &labels, &h.snapshot());
            }
        }
    }
    let families: [(&str, Kind, &str, CellValue); 3] = [
        (
            "rpc_server_active_calls",
            Kind::Gauge,
            "gRPC calls in progress (streams included).",
            |c| c.active.load(Ordering::Relaxed) as f64,
        ),
        (
            "prism_rpc_request_bytes",
            Kind::Counter,
            "Bytes of gRPC request bodies (message framing included).",
            |c| c.request_bytes.load(Ordering::Relaxed) as f64,
        ),
        (
            "prism_rpc_response_bytes",
            Kind::Counter,
            "Bytes of gRPC response bodies (message framing included).",
            |c| c.response_bytes.load(Ordering::Relaxed) as f64,
        ),
    ];
    for (name, kind, help, value) in families {
        out.family(name, kind, None, help);
        for ns in namespaces {
            for (id, cells) in ns.calls.iter().enumerate() {
                if cells.by_code.seen().next().is_none()
                    && cells.active.load(Ordering::Relaxed) == 0
                {
                    continue;
                }
                let [n, p] = ns_labels(ns);
                let labels = [("rpc_method", table.label(id as u16)), n, p];
                match kind {
                    Kind::Counter => out.counter(name, &labels, value(cells) as u64),
                    _ => out.gauge(name, &labels, value(cells)),
                }
            }
        }
    }
}

fn messaging(out: &mut Exposition, sources: &Sources, namespaces: &[&NamespaceMetrics]) {
    let routed = &namespaces[..namespaces.len() - 1];
    let counters: [(&str, &str, MessagingValue); 4] = [
        (
            "prism_messages_sent",
            "Messages accepted by Publish, Enqueue or Multicast.",
            |m| m.sent.load(Ordering::Relaxed),
        ),
        (
            "prism_messages_delivered",
            "Messages handed to a subscriber's, consumer's or listener's stream.",
            |m| m.delivered.load(Ordering::Relaxed),
        ),
        (
            "prism_subscriber_dropped_messages",
            "Messages a slow subscriber or listener lost (its buffer was full).",
            |m| m.dropped.load(Ordering::Relaxed),
        ),
        (
            "prism_messages_dead_lettered",
            "Queue messages moved to their dead-letter queue after max_attempts.",
            |m| m.dead_lettered.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, value) in counters {
        out.family(name, Kind::Counter, None, help);
        for ns in routed.iter().filter(|ns| ns.pattern != "keyvalue") {
            out.counter(name, &ns_labels(ns), value(&ns.messaging));
        }
    }
    let name = "prism_queue_redeliveries";
    out.family(
        name,
        Kind::Counter,
        None,
        "Queue deliveries given back for redelivery, by cause.",
    );
    for ns in routed.iter().filter(|ns| ns.pattern == "queue") {
        for cause in Redelivery::ALL {
            let [n, p] = ns_labels(ns);
            out.counter(
                name,
                &[n, p, ("cause", cause.label())],
                ns.messaging.returned_by(cause),
            );
        }
    }
    let name = "prism_queue_deliveries_in_flight";
    out.family(
        name,
        Kind::Gauge,
        None,
        "Queue deliveries held by consumers of this proxy and not yet acked.",
    );
    let held = sources.deliveries.held_by_namespace();
    for ns in routed.iter().filter(|ns| ns.pattern == "queue") {
        let n = held.get(ns.name.as_str()).copied().unwrap_or(0);
        out.gauge(name, &ns_labels(ns), n as f64);
    }
    let name = "prism_streams_open";
    out.family(
        name,
        Kind::Gauge,
        None,
        "Live Subscribe, Consume, Listen and Watch streams, against the namespace's max_streams.",
    );
    for route in sources.router.load().routes() {
        out.gauge(
            name,
            &ns_labels(&route.metrics),
            route.streams.live() as f64,
        );
    }
}

fn backends(out: &mut Exposition, sources: &Sources) {
    let table = methods();
    let router = sources.router.current();
    let backends: Vec<_> = router.backends().collect();
    for (family, name, system, operation) in [
        (
            Family::Db,
            "db_client_operation_duration_seconds",
            "db_system_name",
            "db_operation_name",
        ),
        (
            Family::Messaging,
            "messaging_client_operation_duration_seconds",
            "messaging_system",
            "messaging_operation_name",
        ),
    ] {
        out.family(
            name,
            Kind::Histogram,
            Some("seconds"),
            "Duration of backend calls, by the gRPC method that made them and their outcome.",
        );
        for (backend_name, backend) in &backends {
            let metrics = backend.health.metrics();
            for (id, row) in metrics.ops.iter().enumerate() {
                for (outcome, h) in row[family as usize].seen() {
                    let labels = [
                        (system, backend.kind),
                        ("backend", backend_name),
                        (operation, table.short(id as u16)),
                        // Two services' methods may share a short name (KeyValue and Mailbox
                        // both have Get): the full method keeps each series apart.
                        ("rpc_method", table.label(id as u16)),
                        ("outcome", Outcome::LABELS[outcome]),
                    ];
                    out.histogram(name, &labels, &h.snapshot());
                }
            }
        }
    }
    out.family(
        "prism_backend_up",
        Kind::Gauge,
        None,
        "1 while the backend answers, 0 while calls fail fast and the proxy pings it.",
    );
    for (name, backend) in &backends {
        let up = if backend.health.is_down() { 0.0 } else { 1.0 };
        out.gauge(
            "prism_backend_up",
            &[("backend", name), ("kind", backend.kind)],
            up,
        );
    }
    out.family(
        "prism_backend_reconnects",
        Kind::Counter,
        None,
        "Times the backend answered a ping after an outage.",
    );
    for (name, backend) in &backends {
        let n = backend.health.metrics().reconnects.load(Ordering::Relaxed);
        out.counter(
            "prism_backend_reconnects",
            &[("backend", name), ("kind", backend.kind)],
            n,
        );
    }
    out.family(
        "prism_backend_pool_connections",
        Kind::Gauge,
        None,
        "Connections of the backend's pool, by state (PostgreSQL and SQLite).",
    );
    for (name, backend) in &backends {
        if let Some((size, idle)) = backend.pool_stats() {
            let labels = |state| [("backend", *name), ("kind", backend.kind), ("state", state)];
            out.gauge(
                "prism_backend_pool_connections",
                &labels("idle"),
                idle as f64,
            );
            out.gauge(
                "prism_backend_pool_connections",
                &labels("in_use"),
                (size as usize).saturating_sub(idle) as f64,
            );
        }
    }
}

fn proxy(out: &mut Exposition, sources: &Sources) {
    let p = &sources.proxy;
    let t = sources.transport.snapshot();
    let auth = sources.guard.counters();
    out.single_gauge(
        "prism_connections_open",
        "Client connections open now.",
        sources.transport.open() as f64,
    );
    out.counters_by(
        "prism_connections_closed",
        "Connections the proxy closed or refused, by reason (limits and timeouts; not clients' own closes).",
        "reason",
        [
            ("max_connections", t.connections_refused),
            ("shed_unauthenticated", t.connections_shed),
            ("handshake_timeout", t.handshake_timeouts),
            ("idle_timeout", t.idle_closed),
            ("drain_timeout", t.drain_cut),
            ("accept_exhausted", t.accept_exhausted),
        ],
    );
    out.counters_by(
        "prism_calls_refused",
        "Calls the transport refused before their service, by limit.",
        "reason",
        [
            ("request_buffer", t.buffer_refusals),
            ("request_body_timeout", t.body_timeouts),
            ("stream_calls_per_connection", t.stream_calls_refused),
            ("unauthenticated_calls", t.unauthenticated_refused),
        ],
    );
    out.counters_by(
        "prism_auth_failures",
        "Calls refused UNAUTHENTICATED, by the check that failed.",
        "check",
        auth.failures(),
    );
    out.counters_by(
        "prism_authz_denials",
        "Calls refused PERMISSION_DENIED by the authorization map, by the permission missing.",
        "permission",
        auth.denials(),
    );
    let draining = p.draining.load(Ordering::Relaxed);
    out.single_gauge(
        "prism_draining",
        "1 once the proxy has begun to drain (SIGTERM).",
        if draining { 1.0 } else { 0.0 },
    );
    out.single_gauge(
        "prism_config_generation",
        "The running config's generation: 1 at start, one more per reload that took.",
        p.generation.load(Ordering::Relaxed) as f64,
    );
    if let Some(tracer) = &sources.tracer {
        out.counters_by(
            "prism_trace_spans_dropped",
            "Spans dropped because the exporter's queue was full (the collector is slow or down).",
            "reason",
            [("queue_full", tracer.dropped())],
        );
    }
    out.counters_by(
        "prism_config_reloads",
        "Config reloads (SIGHUP, Admin ReloadConfig), by outcome.",
        "outcome",
        [
            ("applied", p.reloads_applied.load(Ordering::Relaxed)),
            ("refused", p.reloads_refused.load(Ordering::Relaxed)),
        ],
    );
}

/// The process's CPU time, resident memory and open descriptors, from /proc (Linux).
fn process(out: &mut Exposition) {
    if let Some(cpu) = cpu_seconds() {
        out.family(
            "process_cpu_seconds",
            Kind::Counter,
            Some("seconds"),
            "User and system CPU time spent.",
        );
        out.counter_f64("process_cpu_seconds", &[], cpu);
    }
    if let Some(rss) = resident_bytes() {
        out.family(
            "process_resident_memory_bytes",
            Kind::Gauge,
            Some("bytes"),
            "Resident memory size.",
        );
        out.gauge("process_resident_memory_bytes", &[], rss as f64);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        out.family(
            "process_open_fds",
            Kind::Gauge,
            None,
            "Open file descriptors.",
        );
        out.gauge("process_open_fds", &[], fds.count() as f64);
    }
}

fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command (which may hold spaces) start at state, field 3; utime and stime
    // are fields 14 and 15, in clock ticks (USER_HZ, 100 on Linux).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
