//! Executing the messaging steps. `subscribe` and `consume` open a named handle whose stream a
//! background task reads into a buffer (recording deliveries in the ledger as they arrive, and
//! acking them with `auto_ack`); `receive`, `expect_silence`, `ack`, `nack` and `disconnect` work on
//! those buffers. The handles live for one scenario run; [`Messaging::finish`] ends them and gives
//! the ledger's verdict.

use super::ledger::{Cause, Ledger, Verdict};
use super::model::*;
use crate::runner::Failure;
use crate::runner::compare::{mismatch, num};
use crate::runner::exec::Session;
use crate::runner::values::{expand, resolve_value};
use crate::scenario::code::StatusCode;
use crate::scenario::model::Template;
use crate::scenario::value::render;
use prism_proto::client::NamespaceClient;
use prism_proto::pubsub::v1 as ps;
use prism_proto::queue::v1 as q;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::time::Instant;
use tonic::{Status, Streaming};

/// Reports progress of a long step (shown on the console so a long receive never looks hung).
#[derive(Clone)]
pub struct Progress(pub Arc<dyn Fn(String) + Send + Sync>);

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress")
    }
}

type Vars = HashMap<String, String>;

/// How long opening a stream may take to be confirmed, and one unary call to answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a waiting receive looks at its buffers.
const POLL: Duration = Duration::from_millis(5);
/// How often a long receive reports progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// The delivery id an `ack: { which: unknown }` names.
const UNKNOWN_DELIVERY: &str = "no-such-delivery";

/// One received stream message.
#[derive(Clone, Debug)]
enum Item {
    Message(ps::Message),
    Delivery(q::Delivery),
}

impl Item {
    fn payload(&self) -> &[u8] {
        match self {
            Item::Message(m) => &m.payload,
            Item::Delivery(d) => &d.payload,
        }
    }
    fn headers(&self) -> &HashMap<String, String> {
        match self {
            Item::Message(m) => &m.headers,
            Item::Delivery(d) => &d.headers,
        }
    }
}

#[derive(Debug, Default)]
struct HandleState {
    items: VecDeque<Item>,
    ended: Option<Status>,
    unacked: Vec<q::Delivery>,
    problems: Vec<String>,
}

/// An open stream of the scenario.
struct Handle {
    client: NamespaceClient,
    /// `namespace/queue` for consumers (the ledger's key), the topic for subscriptions.
    ledger_key: String,
    queue: String,
    group: String,
    state: Mutex<HandleState>,
    task: OnceLock<tokio::task::AbortHandle>,
}

impl Handle {
    fn state(&self) -> std::sync::MutexGuard<'_, HandleState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn stop(&self) {
        if let Some(t) = self.task.get() {
            t.abort();
        }
    }
}

/// The messaging state of one scenario run.
#[derive(Default)]
pub struct Messaging {
    handles: Mutex<HashMap<String, Arc<Handle>>>,
    ledger: Arc<Mutex<Ledger>>,
}

impl std::fmt::Debug for Messaging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Messaging").finish_non_exhaustive()
    }
}

impl Drop for Messaging {
    fn drop(&mut self) {
        for h in self
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            h.stop();
        }
    }
}

impl Messaging {
    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn handle(&self, name: &str) -> Result<Arc<Handle>, Failure> {
        self.handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| Failure::message(format!("handle '{name}' is not open (it was disconnected, or its subscribe/consume step failed)")))
    }

    /// Ends every handle; the ledger's verdict when the scenario used a queue. A lost message, or
    /// a problem a handle's reader met (a failed auto-ack), is a failure.
    pub fn finish(&self) -> Result<Option<Verdict>, Failure> {
        let handles: Vec<Arc<Handle>> = self
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, h)| h)
            .collect();
        let mut problems = Vec::new();
        for h in &handles {
            h.stop();
            problems.append(&mut h.state().problems);
        }
        if let Some(p) = problems.first() {
            return Err(Failure::message(format!("a stream handle failed: {p}")));
        }
        let ledger = self.ledger();
        if ledger.is_empty() {
            return Ok(None);
        }
        let verdict = ledger.verdict();
        if verdict.lost.is_empty() {
            Ok(Some(verdict))
        } else {
            Err(Failure {
                message: format!(
                    "the delivery ledger does not balance: {}",
                    verdict.summary()
                ),
                expected: Some(
                    "every acknowledged enqueue delivered at least once to every consuming group"
                        .into(),
                ),
                actual: Some(format!("{} never delivered", verdict.lost.len())),
                ..Failure::default()
            })
        }
    }
}

fn judge_call<T>(result: Result<T, Status>, expect: &CallExpect) -> Result<Option<T>, Failure> {
    match (result, expect.error) {
        (Ok(v), None) => Ok(Some(v)),
        (Ok(_), Some(code)) => Err(mismatch("outcome", format!("error {code}"), "OK")),
        (Err(s), None) => Err(mismatch(
            "outcome",
            "OK",
            format!("{}: {}", StatusCode::from(s.code()), s.message()),
        )),
        (Err(s), Some(code)) => {
            let actual = StatusCode::from(s.code());
            if actual != code {
                return Err(mismatch(
                    "error",
                    code.to_string(),
                    format!("{actual}: {}", s.message()),
                ));
            }
            if let Some(part) = &expect.message_contains {
                if !s.message().contains(part.as_str()) {
                    return Err(mismatch(
                        "error message",
                        format!("containing {part:?}"),
                        s.message(),
                    ));
                }
            }
            Ok(None)
        }
    }
}

async fn timed<T>(
    fut: impl Future<Output = Result<T, Status>>,
) -> Result<Result<T, Status>, Failure> {
    tokio::time::timeout(CALL_TIMEOUT, fut).await.map_err(|_| {
        Failure::message(format!(
            "the call did not answer within {}s",
            CALL_TIMEOUT.as_secs()
        ))
    })
}

fn headers(
    h: &BTreeMap<String, Template>,
    vars: &Vars,
) -> Result<HashMap<String, String>, Failure> {
    h.iter()
        .map(|(k, v)| Ok((k.clone(), expand(v, vars)?)))
        .collect()
}

/// Runs one messaging step.
pub async fn run(session: &Session, step: &MsgStep, vars: &mut Vars) -> Result<(), Failure> {
    let m = &*session.family::<Messaging>();
    match step {
        MsgStep::Publish {
            topic,
            payload,
            headers: h,
            caller,
            expect,
        } => {
            let client = session.caller_client(caller)?;
            let req = ps::PublishRequest {
                topic: expand(topic, vars)?,
                payload: resolve_value(payload, vars)?.into(),
                headers: headers(h, vars)?,
            };
            let result = timed(async { client.pubsub().publish(req).await }).await?;
            judge_call(result, expect).map(|_| ())
        }
        MsgStep::Enqueue {
            queue,
            payload,
            headers: h,
            delay_ms,
            caller,
            expect,
        } => {
            let client = session.caller_client(caller)?;
            let queue = expand(queue, vars)?;
            let req = q::EnqueueRequest {
                queue: queue.clone(),
                payload: resolve_value(payload, vars)?.into(),
                headers: headers(h, vars)?,
                delay_ms: *delay_ms,
            };
            let result = timed(async { client.queue().enqueue(req).await }).await?;
            if let Some(r) = judge_call(result, expect)? {
                let ns = session.namespace_name(caller.namespace)?;
                m.ledger()
                    .enqueued(&format!("{ns}/{queue}"), &r.into_inner().message_id);
            }
            Ok(())
        }
        MsgStep::Subscribe {
            topic,
            name,
            caller,
            expect,
        } => {
            let client = session.caller_client(caller)?;
            let topic = expand(topic, vars)?;
            let req = ps::SubscribeRequest {
                topic: topic.clone(),
            };
            let opened = timed(async { client.pubsub().subscribe(req).await }).await?;
            let Some(stream) = judge_call(opened, expect)? else {
                return Ok(());
            };
            let mut stream = stream.into_inner();
            match first(&mut stream).await? {
                Some(ps::SubscribeResponse {
                    event: Some(ps::subscribe_response::Event::Subscribed(_)),
                }) => {}
                other => {
                    return Err(Failure::message(format!(
                        "the first event of a subscription must be `subscribed`, got {other:?}"
                    )));
                }
            }
            let handle = open(m, name, client, topic, String::new(), String::new());
            let reader = handle.clone();
            let task = tokio::spawn(async move {
                let end = read_to_end(&mut stream, |m| {
                    if let Some(ps::subscribe_response::Event::Message(msg)) = m.event {
                        reader.state().items.push_back(Item::Message(msg));
                    }
                })
                .await;
                reader.state().ended = Some(end);
            });
            let _ = handle.task.set(task.abort_handle());
            Ok(())
        }
        MsgStep::Consume {
            queue,
            group,
            max_in_flight,
            visibility_timeout_ms,
            auto_ack,
            name,
            caller,
            expect,
        } => {
            let client = session.caller_client(caller)?;
            let queue = expand(queue, vars)?;
            let group = match group {
                Some(g) => expand(g, vars)?,
                None => String::new(),
            };
            let req = q::ConsumeRequest {
                queue: queue.clone(),
                group: group.clone(),
                max_in_flight: u32::try_from(*max_in_flight).unwrap_or(u32::MAX),
                visibility_timeout_ms: *visibility_timeout_ms,
            };
            let opened = timed(async { client.queue().consume(req).await }).await?;
            let Some(stream) = judge_call(opened, expect)? else {
                return Ok(());
            };
            let mut stream = stream.into_inner();
            let group = match first(&mut stream).await? {
                Some(q::ConsumeResponse {
                    event: Some(q::consume_response::Event::Consuming(c)),
                }) => c.group,
                other => {
                    return Err(Failure::message(format!(
                        "the first event of a Consume stream must be `consuming`, got {other:?}"
                    )));
                }
            };
            let ns = session.namespace_name(caller.namespace)?;
            let key = format!("{ns}/{queue}");
            m.ledger().consuming(&key, &group);
            let handle = open(m, name, client, key, queue, group);
            let ledger = m.ledger.clone();
            // Acks go through their own task, so the reader always drains the stream: a reader that
            // waited for each ack would leave deliveries buffered in the client's HTTP/2 layer, whose
            // small-frame budget (h2) then closes the connection.
            let acker = auto_ack.then(|| {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
                let h = handle.clone();
                let task = tokio::spawn(async move {
                    while let Some(id) = rx.recv().await {
                        let req = q::AckRequest {
                            queue: h.queue.clone(),
                            group: h.group.clone(),
                            delivery_ids: vec![id.clone()],
                        };
                        if let Err(s) = h.client.queue().ack(req).await {
                            h.state().problems.push(format!(
                                "auto-ack of {id} failed: {}: {}",
                                StatusCode::from(s.code()),
                                s.message()
                            ));
                        }
                    }
                });
                (tx, task.abort_handle())
            });
            let reader = handle.clone();
            let task = tokio::spawn(async move {
                let end = read_to_end(&mut stream, |m| {
                    let Some(q::consume_response::Event::Delivery(d)) = m.event else {
                        return;
                    };
                    ledger.lock().unwrap_or_else(|p| p.into_inner()).delivered(
                        &reader.ledger_key,
                        &reader.group,
                        &d.message_id,
                    );
                    let mut st = reader.state();
                    match &acker {
                        Some((tx, _)) => {
                            let _ = tx.send(d.delivery_id.clone());
                        }
                        None => st.unacked.push(d.clone()),
                    }
                    st.items.push_back(Item::Delivery(d));
                })
                .await;
                reader.state().ended = Some(end);
                if let Some((_, acks)) = acker {
                    acks.abort();
                }
            });
            let _ = handle.task.set(task.abort_handle());
            Ok(())
        }
        MsgStep::Receive {
            from,
            count,
            within,
            order,
            expect,
        } => receive(session, from, *count, *within, *order, expect, vars).await,
        MsgStep::ExpectSilence { from, duration } => {
            let handles = from
                .iter()
                .map(|h| m.handle(h))
                .collect::<Result<Vec<_>, _>>()?;
            tokio::time::sleep(*duration).await;
            for (name, h) in from.iter().zip(&handles) {
                let st = h.state();
                if let Some(item) = st.items.front() {
                    return Err(mismatch(
                        &format!("silence on {name}"),
                        format!("nothing for {}ms", duration.as_millis()),
                        format!(
                            "{} message(s), the first {}",
                            st.items.len(),
                            render(item.payload())
                        ),
                    ));
                }
                if let Some(s) = &st.ended {
                    return Err(mismatch(
                        &format!("silence on {name}"),
                        "a live stream",
                        format!("ended: {}: {}", StatusCode::from(s.code()), s.message()),
                    ));
                }
            }
            Ok(())
        }
        MsgStep::Ack {
            from,
            which,
            expect,
        } => {
            let h = m.handle(from)?;
            let picked = pick(&h, which, vars)?;
            let ids: Vec<String> = picked.iter().map(|d| d.delivery_id.clone()).collect();
            let req = q::AckRequest {
                queue: h.queue.clone(),
                group: h.group.clone(),
                delivery_ids: ids.clone(),
            };
            let result = timed(async { h.client.queue().ack(req).await }).await?;
            if judge_call(result, expect)?.is_some() {
                h.state().unacked.retain(|d| !ids.contains(&d.delivery_id));
            }
            Ok(())
        }
        MsgStep::Nack {
            from,
            which,
            requeue_delay_ms,
            expect,
        } => {
            let h = m.handle(from)?;
            for d in pick(&h, which, vars)? {
                // Recorded first: a redelivery may arrive before the nack's answer.
                let real = !d.message_id.is_empty();
                if real {
                    m.ledger()
                        .returned(&h.ledger_key, &h.group, &d.message_id, Cause::Nack);
                }
                let req = q::NackRequest {
                    queue: h.queue.clone(),
                    group: h.group.clone(),
                    delivery_id: d.delivery_id.clone(),
                    requeue_delay_ms: *requeue_delay_ms,
                };
                let result = timed(async { h.client.queue().nack(req).await }).await?;
                let nacked = result.is_ok();
                if !nacked && real {
                    m.ledger()
                        .not_returned(&h.ledger_key, &h.group, &d.message_id);
                }
                judge_call(result, expect)?;
                if nacked {
                    h.state().unacked.retain(|u| u.delivery_id != d.delivery_id);
                }
            }
            Ok(())
        }
        MsgStep::Disconnect { from } => {
            let h = m.handle(from)?;
            h.stop();
            m.handles
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(from);
            let held = std::mem::take(&mut h.state().unacked);
            let mut ledger = m.ledger();
            for d in held {
                ledger.returned(&h.ledger_key, &h.group, &d.message_id, Cause::Disconnect);
            }
            Ok(())
        }
    }
}

/// Registers a handle (replacing, and ending, one of the same name).
fn open(
    m: &Messaging,
    name: &str,
    client: NamespaceClient,
    ledger_key: String,
    queue: String,
    group: String,
) -> Arc<Handle> {
    let handle = Arc::new(Handle {
        client,
        ledger_key,
        queue,
        group,
        state: Mutex::default(),
        task: OnceLock::new(),
    });
    if let Some(old) = m
        .handles
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(name.to_string(), handle.clone())
    {
        old.stop();
    }
    handle
}

/// Reads a stream to its end, handing each message to `each`; the status it ended with.
async fn read_to_end<T>(stream: &mut Streaming<T>, mut each: impl FnMut(T)) -> Status {
    loop {
        match stream.message().await {
            Ok(Some(m)) => each(m),
            Ok(None) => return Status::new(tonic::Code::Ok, "the stream ended without a status"),
            Err(s) => return s,
        }
    }
}

async fn first<T>(stream: &mut Streaming<T>) -> Result<Option<T>, Failure> {
    match tokio::time::timeout(CALL_TIMEOUT, stream.message()).await {
        Ok(Ok(m)) => Ok(m),
        Ok(Err(s)) => Err(Failure::message(format!(
            "the stream ended before it was confirmed: {}: {}",
            StatusCode::from(s.code()),
            s.message()
        ))),
        Err(_) => Err(Failure::message(format!(
            "the stream was not confirmed within {}s",
            CALL_TIMEOUT.as_secs()
        ))),
    }
}

/// The deliveries of a consumer handle an ack or nack names.
fn pick(h: &Handle, which: &Which, vars: &Vars) -> Result<Vec<q::Delivery>, Failure> {
    let st = h.state();
    let none =
        || Failure::message("the handle holds no unacked delivery that matches (receive it first)");
    Ok(match which {
        Which::All if st.unacked.is_empty() => return Err(none()),
        Which::All => st.unacked.clone(),
        Which::Position(i) => vec![st.unacked.get(*i as usize).cloned().ok_or_else(none)?],
        Which::Payload(v) => {
            let want = resolve_value(v, vars)?;
            vec![
                st.unacked
                    .iter()
                    .find(|d| d.payload.as_ref() == want.as_slice())
                    .cloned()
                    .ok_or_else(none)?,
            ]
        }
        Which::Unknown => vec![q::Delivery {
            delivery_id: UNKNOWN_DELIVERY.into(),
            ..Default::default()
        }],
    })
}

async fn receive(
    session: &Session,
    from: &[String],
    count: u64,
    within: Duration,
    order: Order,
    expect: &ReceiveExpect,
    vars: &mut Vars,
) -> Result<(), Failure> {
    let m = &*session.family::<Messaging>();
    let handles = from
        .iter()
        .map(|h| m.handle(h))
        .collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    let deadline = started + within;
    let mut next_report = started + PROGRESS_EVERY;
    if let Some(code) = expect.error {
        // The streams must end, with this status.
        loop {
            let ended: Vec<Option<Status>> =
                handles.iter().map(|h| h.state().ended.clone()).collect();
            if ended.iter().all(Option::is_some) {
                for (name, s) in from.iter().zip(ended.into_iter().flatten()) {
                    let actual = StatusCode::from(s.code());
                    if actual != code {
                        return Err(mismatch(
                            &format!("end of {name}"),
                            code.to_string(),
                            format!("{actual}: {}", s.message()),
                        ));
                    }
                    if let Some(part) = &expect.message_contains {
                        if !s.message().contains(part.as_str()) {
                            return Err(mismatch(
                                &format!("end of {name}"),
                                format!("a message containing {part:?}"),
                                s.message(),
                            ));
                        }
                    }
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Failure::message(format!(
                    "the stream did not end within {}ms",
                    within.as_millis()
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }
    let mut got: Vec<(usize, Item)> = Vec::new();
    while (got.len() as u64) < count {
        let mut ended = None;
        for (i, h) in handles.iter().enumerate() {
            let mut st = h.state();
            while (got.len() as u64) < count {
                match st.items.pop_front() {
                    Some(item) => got.push((i, item)),
                    None => break,
                }
            }
            if st.items.is_empty() {
                if let Some(s) = &st.ended {
                    ended = Some((i, s.clone()));
                }
            }
        }
        if (got.len() as u64) >= count {
            break;
        }
        if let Some((i, s)) = ended {
            return Err(Failure {
                message: format!(
                    "stream {} ended after {} of {count} messages",
                    from[i],
                    got.len()
                ),
                expected: Some(format!("{count} messages")),
                actual: Some(format!(
                    "{} then {}: {}",
                    got.len(),
                    StatusCode::from(s.code()),
                    s.message()
                )),
                ..Failure::default()
            });
        }
        let now = Instant::now();
        if now > deadline {
            return Err(Failure {
                message: format!(
                    "received {} of {count} messages within {}ms",
                    got.len(),
                    within.as_millis()
                ),
                expected: Some(format!("{count} messages")),
                actual: Some(format!("{}", got.len())),
                ..Failure::default()
            });
        }
        if now >= next_report {
            (session.progress.0)(format!(
                "receive from {}: {}/{count} after {}s",
                from.join(", "),
                got.len(),
                started.elapsed().as_secs()
            ));
            next_report = now + PROGRESS_EVERY;
        }
        tokio::time::sleep(POLL).await;
    }
    judge_received(&got, from, order, expect, vars)
}

fn judge_received(
    got: &[(usize, Item)],
    from: &[String],
    order: Order,
    expect: &ReceiveExpect,
    vars: &mut Vars,
) -> Result<(), Failure> {
    if let Some(expected) = &expect.payloads {
        let want: Vec<Vec<u8>> = expected
            .iter()
            .map(|v| resolve_value(v, vars))
            .collect::<Result<_, _>>()?;
        let mut sorted_want = want.clone();
        sorted_want.sort();
        let mut sorted_got: Vec<Vec<u8>> = got.iter().map(|(_, i)| i.payload().to_vec()).collect();
        sorted_got.sort();
        if sorted_want != sorted_got {
            let missing: Vec<String> = sorted_want
                .iter()
                .filter(|w| !sorted_got.contains(w))
                .take(5)
                .map(|w| render(w))
                .collect();
            let extra: Vec<String> = sorted_got
                .iter()
                .filter(|g| !sorted_want.contains(g))
                .take(5)
                .map(|g| render(g))
                .collect();
            return Err(Failure {
                message: "the received payloads differ from the expected ones".into(),
                expected: Some(format!(
                    "{} payloads; missing: {}",
                    want.len(),
                    missing.join(", ")
                )),
                actual: Some(format!(
                    "{} payloads; unexpected: {}",
                    got.len(),
                    extra.join(", ")
                )),
                ..Failure::default()
            });
        }
        if order == Order::Strict {
            for (hi, name) in from.iter().enumerate() {
                let mut last: Option<usize> = None;
                for (_, item) in got.iter().filter(|(i, _)| *i == hi) {
                    let pos = want.iter().position(|w| w.as_slice() == item.payload());
                    if let (Some(p), Some(l)) = (pos, last) {
                        if p < l {
                            return Err(mismatch(
                                &format!("order on {name}"),
                                format!("{} before {}", render(&want[p]), render(&want[l])),
                                format!("{} after {}", render(&want[p]), render(&want[l])),
                            ));
                        }
                    }
                    last = pos.or(last);
                }
            }
        }
    }
    for (k, v) in &expect.headers {
        let want = expand(v, vars)?;
        for (_, item) in got {
            let actual = item.headers().get(k);
            if actual != Some(&want) {
                return Err(mismatch(
                    &format!("header {k}"),
                    want.clone(),
                    actual.cloned().unwrap_or_else(|| "(absent)".into()),
                ));
            }
        }
    }
    let mut saves = Vec::new();
    if expect.attempt.is_some() {
        for (_, item) in got {
            if let Item::Delivery(d) = item {
                num(
                    "attempt",
                    u64::from(d.attempt),
                    expect.attempt.as_ref(),
                    vars,
                    &mut saves,
                )?;
            }
        }
    }
    if expect.dropped.is_some() {
        let dropped: u64 = got
            .iter()
            .map(|(_, i)| {
                if let Item::Message(m) = i {
                    m.dropped
                } else {
                    0
                }
            })
            .sum();
        num(
            "dropped",
            dropped,
            expect.dropped.as_ref(),
            vars,
            &mut saves,
        )?;
    }
    vars.extend(saves);
    Ok(())
}
