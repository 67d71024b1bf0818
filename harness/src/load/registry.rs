//! Multicast Registry load (`registry-mixed`), modelled on the load test of the project Prism grew
//! from: callers register new identities, enumerate a metadata group and multicast to a group, in
//! the profile's proportions, over a growing identity set, while some identities have live
//! listeners. Every multicast's answer says which identities got the message; the listeners count
//! what arrives, and the ledger at the end compares the two — a delivery reported but never heard,
//! or a live listener reported as not reached, is lost and fails the run. After the mix, an optional
//! fan-out probe multicasts to a group of `fanout` identities that all listen (`multicast-N`).

use super::driver::Rng;
use super::messaging::Ledger;
use super::stats::{Recorder, RunStats};
use futures_util::StreamExt;
use prism_proto::client::{NamespaceClient, Registry};
use prism_proto::filter::v1 as fpb;
use prism_proto::registry::v1 as pb;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// A registry profile's settings (`registry:` in the profile).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryLoad {
    /// Weight of Register (a new identity each time).
    pub register: u32,
    /// Weight of Enumerate (one page of a group).
    pub enumerate: u32,
    /// Weight of Multicast (to a group).
    pub multicast: u32,
    /// Concurrent callers running the mix.
    #[serde(default = "default_callers")]
    pub callers: usize,
    /// Identities registered before the mix, each with a live listener.
    #[serde(default = "default_listeners")]
    pub listeners: usize,
    /// Metadata groups the identities spread over; Enumerate and Multicast pick one at random.
    #[serde(default = "default_groups")]
    pub groups: usize,
    /// Enumerate page size.
    #[serde(default = "default_page")]
    pub page: u32,
    /// Identities of the fan-out probe after the mix, all listening (0: no probe).
    #[serde(default)]
    pub fanout: usize,
    /// Multicasts of the fan-out probe, one after another.
    #[serde(default = "default_fanout_calls")]
    pub fanout_calls: usize,
}

fn default_callers() -> usize {
    32
}
fn default_listeners() -> usize {
    100
}
fn default_groups() -> usize {
    20
}
fn default_page() -> u32 {
    100
}
fn default_fanout_calls() -> usize {
    100
}

/// Listen streams per HTTP/2 connection (the proxy allows 256 stream calls on one).
const STREAMS_PER_CONNECTION: usize = 200;
/// How long after the last multicast the listeners get to hear what is still on its way.
const DRAIN: Duration = Duration::from_secs(5);

/// What a registry run measured.
pub struct RegistryOutcome {
    /// `register`, `enumerate`, `multicast` and (the probe) `multicast-N` calls, over the mix's
    /// measured time plus the probe's.
    pub stats: RunStats,
    /// Deliveries reported by Multicast vs heard by the listeners.
    pub ledger: Ledger,
    /// Mix calls per second (the probe left out).
    pub mix_ops_per_sec: f64,
    /// Live listeners a Multicast reported as not reached.
    pub live_missed: u64,
    /// The first few of those, with the reason Multicast gave.
    pub missed_reasons: Vec<String>,
    /// Listeners whose stream ended before the run did, each with why.
    pub listeners_ended: Vec<String>,
}

/// What the listeners heard, per identity, what the proxy told them it dropped, and why listeners
/// ended before the run did.
#[derive(Default)]
struct Heard(Mutex<HashMap<String, u64>>, AtomicU64, Mutex<Vec<String>>);

impl Heard {
    fn add(&self, identity: &str) {
        *self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(identity.to_string())
            .or_default() += 1;
    }

    fn total(&self) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .sum()
    }
}

/// Deliveries Multicast reported, and live listeners it reported as missed (with the first few
/// reasons).
#[derive(Default)]
struct Reported {
    delivered: AtomicU64,
    live_missed: AtomicU64,
    multicasts: AtomicU64,
    reasons: Mutex<Vec<String>>,
}

fn eq(key: &str, value: &str) -> fpb::Filter {
    fpb::Filter {
        clause: Some(fpb::filter::Clause::Compare(fpb::Compare {
            key: key.into(),
            op: fpb::compare::Op::Eq as i32,
            value: value.into(),
        })),
    }
}

/// The run's identities in group `group`.
fn group_filter(run: &str, group: &str) -> fpb::Filter {
    fpb::Filter {
        clause: Some(fpb::filter::Clause::All(fpb::Filters {
            filters: vec![eq("run", run), eq("group", group)],
        })),
    }
}

async fn register(
    client: &mut Registry,
    identity: &str,
    run: &str,
    group: &str,
) -> Result<(), String> {
    client
        .register(pb::RegisterRequest {
            identity: identity.into(),
            metadata: HashMap::from([("run".into(), run.into()), ("group".into(), group.into())]),
            ttl_ms: 0,
            replace: false,
        })
        .await
        .map(|_| ())
        .map_err(|s| format!("{:?}", s.code()))
}

/// Registers `identities` in `group` and opens a listener for each (spread over connections from
/// `connect`, kept in `clients`); returns once every listener is confirmed.
async fn listen_all(
    connect: &(
         dyn Fn() -> futures_util::future::BoxFuture<'static, Result<NamespaceClient, String>>
             + Sync
     ),
    identities: &[String],
    run: &str,
    group: &str,
    heard: &Arc<Heard>,
    tasks: &mut tokio::task::JoinSet<()>,
    clients: &mut Vec<NamespaceClient>,
) -> Result<(), String> {
    for chunk in identities.chunks(STREAMS_PER_CONNECTION) {
        let ns = connect().await?;
        let mut client = ns.registry();
        clients.push(ns);
        for identity in chunk {
            register(&mut client, identity, run, group)
                .await
                .map_err(|c| format!("register {identity}: {c}"))?;
            let mut stream = client
                .listen(pb::ListenRequest {
                    identity: identity.clone(),
                })
                .await
                .map_err(|s| format!("listen {identity}: {}: {}", s.code(), s.message()))?
                .into_inner();
            match stream.next().await {
                Some(Ok(first))
                    if matches!(first.event, Some(pb::listen_response::Event::Listening(_))) => {}
                other => return Err(format!("listen {identity}: no confirmation: {other:?}")),
            }
            let (heard, identity) = (heard.clone(), identity.clone());
            tasks.spawn(async move {
                loop {
                    match stream.next().await {
                        Some(Ok(m)) => {
                            if let Some(pb::listen_response::Event::Message(d)) = m.event {
                                heard.add(&identity);
                                heard.1.fetch_add(d.dropped, Ordering::Relaxed);
                            }
                        }
                        ended => {
                            let why = match ended {
                                Some(Err(s)) => format!("{:?}: {}", s.code(), s.message()),
                                _ => "the stream ended".into(),
                            };
                            heard
                                .2
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(format!("{identity}: {why}"));
                            break;
                        }
                    }
                }
            });
        }
    }
    Ok(())
}

/// Multicasts to `group` and records what the answer says.
async fn multicast(
    client: &mut Registry,
    run: &str,
    group: &str,
    listeners: &HashSet<String>,
    reported: &Reported,
) -> Result<(), String> {
    let r = client
        .multicast(pb::MulticastRequest {
            filter: Some(group_filter(run, group)),
            payload: b"load".to_vec().into(),
            headers: HashMap::new(),
        })
        .await
        .map_err(|s| format!("{:?}", s.code()))?
        .into_inner();
    reported.multicasts.fetch_add(1, Ordering::Relaxed);
    reported
        .delivered
        .fetch_add(u64::from(r.delivered), Ordering::Relaxed);
    let missed: Vec<&pb::TargetOutcome> = r
        .outcomes
        .iter()
        .filter(|o| !o.delivered && listeners.contains(&o.identity))
        .collect();
    reported
        .live_missed
        .fetch_add(missed.len() as u64, Ordering::Relaxed);
    if let Some(o) = missed.first() {
        let mut reasons = reported.reasons.lock().unwrap_or_else(|p| p.into_inner());
        if reasons.len() < 5 {
            reasons.push(format!("{}: {}", o.identity, o.reason));
        }
    }
    Ok(())
}

/// Runs the mix for `duration` with the profile's callers (closed loop: each caller sends its next
/// call when the last one answered), then the fan-out probe; `connect` opens a connection.
pub async fn drive(
    connect: Arc<
        dyn Fn() -> futures_util::future::BoxFuture<'static, Result<NamespaceClient, String>>
            + Send
            + Sync,
    >,
    load: &RegistryLoad,
    duration: Duration,
    tick: impl Fn(u64, u64),
) -> Result<RegistryOutcome, String> {
    let run = format!(
        "load-{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
    );
    let groups = load.groups.max(1);
    let heard = Arc::new(Heard::default());
    let mut listening = tokio::task::JoinSet::new();
    let mut clients = Vec::new();
    // The live listeners, spread over the groups.
    let mut live = HashSet::new();
    for g in 0..groups {
        let ids: Vec<String> = (0..load.listeners)
            .filter(|i| i % groups == g)
            .map(|i| format!("{run}/l{i}"))
            .collect();
        listen_all(
            &*connect,
            &ids,
            &run,
            &format!("g{g}"),
            &heard,
            &mut listening,
            &mut clients,
        )
        .await?;
        live.extend(ids);
    }
    let live = Arc::new(live);
    let recorder = Arc::new(Recorder::new());
    let reported = Arc::new(Reported::default());
    let next_id = Arc::new(AtomicU64::new(0));
    let total = (load.register + load.enumerate + load.multicast).max(1);
    let started = Instant::now();
    let deadline = started + duration;
    let mut callers = tokio::task::JoinSet::new();
    for c in 0..load.callers.max(1) {
        let ns = connect().await?;
        let (recorder, reported, next_id, live, run, load) = (
            recorder.clone(),
            reported.clone(),
            next_id.clone(),
            live.clone(),
            run.clone(),
            load.clone(),
        );
        callers.spawn(async move {
            let mut client = ns.registry();
            let mut rng = Rng::for_user(c);
            while Instant::now() < deadline {
                let pick = rng.below(u64::from(total)) as u32;
                let group = format!("g{}", rng.below(groups as u64));
                let at = Instant::now();
                let (op, outcome) = if pick < load.register {
                    let n = next_id.fetch_add(1, Ordering::Relaxed);
                    let group = format!("g{}", n as usize % groups);
                    let id = format!("{run}/n{n}");
                    ("register", register(&mut client, &id, &run, &group).await)
                } else if pick < load.register + load.enumerate {
                    let got = client
                        .enumerate(pb::EnumerateRequest {
                            filter: Some(group_filter(&run, &group)),
                            cursor: String::new(),
                            limit: load.page,
                        })
                        .await
                        .map(|_| ())
                        .map_err(|s| format!("{:?}", s.code()));
                    ("enumerate", got)
                } else {
                    (
                        "multicast",
                        multicast(&mut client, &run, &group, &live, &reported).await,
                    )
                };
                recorder.record(op, at.elapsed(), outcome);
            }
        });
    }
    let ticking = async {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let (calls, failures) = recorder.counts();
            tick(calls, failures);
        }
    };
    tokio::select! {
        _ = async { while callers.join_next().await.is_some() {} } => {}
        _ = ticking => {}
    }
    let mix_elapsed = started.elapsed();
    let (mix_calls, _) = recorder.counts();
    // The fan-out probe: one group where every identity listens.
    let probe_started = Instant::now();
    if load.fanout > 0 {
        let ids: Vec<String> = (0..load.fanout).map(|i| format!("{run}/f{i}")).collect();
        listen_all(
            &*connect,
            &ids,
            &run,
            "fanout",
            &heard,
            &mut listening,
            &mut clients,
        )
        .await?;
        let probe: HashSet<String> = ids.into_iter().collect();
        let mut client = connect().await?.registry();
        let op: &'static str = Box::leak(format!("multicast-{}", load.fanout).into_boxed_str());
        for _ in 0..load.fanout_calls {
            let at = Instant::now();
            let got = multicast(&mut client, &run, "fanout", &probe, &reported).await;
            recorder.record(op, at.elapsed(), got);
        }
    }
    let probe_elapsed = probe_started.elapsed();
    // Let what is on its way arrive.
    let expected = reported.delivered.load(Ordering::Relaxed);
    let drain_until = Instant::now() + DRAIN;
    while heard.total() < expected && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ended = std::mem::take(&mut *heard.2.lock().unwrap_or_else(|p| p.into_inner()));
    listening.abort_all();
    drop(clients);
    let arrived = heard.total();
    let dropped = heard.1.load(Ordering::Relaxed);
    let live_missed = reported.live_missed.load(Ordering::Relaxed);
    let reasons = reported
        .reasons
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Ok(RegistryOutcome {
        stats: recorder.summary("proxy", mix_elapsed + probe_elapsed),
        ledger: Ledger {
            sent: reported.multicasts.load(Ordering::Relaxed),
            expected: expected + live_missed,
            arrived,
            dropped,
            lost: expected.saturating_sub(arrived + dropped) + live_missed,
            duplicates: arrived.saturating_sub(expected),
            redeliveries: 0,
        },
        mix_ops_per_sec: mix_calls as f64 / mix_elapsed.as_secs_f64().max(0.001),
        live_missed,
        missed_reasons: reasons,
        listeners_ended: ended,
    })
}
