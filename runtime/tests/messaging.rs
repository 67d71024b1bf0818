//! PubSub and Queue end to end through the proxy on memstore: fan-out, topic and namespace
//! isolation, counted drops for a slow subscriber (bounded in messages and in bytes), each caller's
//! share of a namespace's streams, back-pressure, ack/nack, redelivery after a
//! visibility timeout and after a stream ends, the dead-letter queue, the errors, streams ending
//! on drain and on token expiry, and the config checks that tie a namespace to its backend.

mod support;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use prism_proto::client::{PrismClient, PubSub, Queue};
use prism_proto::pubsub::v1::{self as ps, subscribe_response::Event as PsEvent};
use prism_proto::queue::v1::{self as q, consume_response::Event as QEvent};
use prism_runtime::config::ProxyConfig;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::{Instant, timeout};
use tonic::{Code, Streaming};

const CONFIG: &str = "listen: 127.0.0.1:0\nauth: { mode: none }\nbackends: { m: { type: memstore } }\nnamespaces:\n  events: { pattern: pubsub, backend: m, limits: { subscriber_buffer: 4 } }\n  events2: { pattern: pubsub, backend: m }\n  jobs: { pattern: queue, backend: m, limits: { max_attempts: 2 } }\n  jobs2: { pattern: queue, backend: m }\n";

async fn client(url: &str) -> PrismClient {
    PrismClient::connect(url.to_string()).await.unwrap()
}

async fn subscribe(p: &mut PubSub, topic: &str) -> Streaming<ps::SubscribeResponse> {
    let mut s = p
        .subscribe(ps::SubscribeRequest {
            topic: topic.into(),
        })
        .await
        .unwrap()
        .into_inner();
    match s.message().await.unwrap().and_then(|m| m.event) {
        Some(PsEvent::Subscribed(c)) => assert_eq!(c.topic, topic),
        other => panic!("first event is the confirmation, got {other:?}"),
    }
    s
}

async fn publish(p: &mut PubSub, topic: &str, payload: &str) -> String {
    p.publish(ps::PublishRequest {
        topic: topic.into(),
        payload: payload.to_string().into(),
        headers: [("k".to_string(), payload.chars().take(64).collect())].into(),
    })
    .await
    .unwrap()
    .into_inner()
    .message_id
}

async fn next_message(s: &mut Streaming<ps::SubscribeResponse>) -> ps::Message {
    match timeout(Duration::from_secs(5), s.message()).await {
        Ok(Ok(Some(ps::SubscribeResponse {
            event: Some(PsEvent::Message(m)),
        }))) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}

async fn silent<T: std::fmt::Debug>(s: &mut Streaming<T>, for_ms: u64) {
    if let Ok(got) = timeout(Duration::from_millis(for_ms), s.message()).await {
        panic!("expected nothing, got {got:?}");
    }
}

#[tokio::test]
async fn every_subscriber_gets_every_later_message_in_order_and_nothing_crosses_topics_or_namespaces()
 {
    let served = support::serve(CONFIG).await;
    let url = format!("http://{}", served.addr);
    let c = client(&url).await;
    let mut p = c.namespace("events2").pubsub();
    publish(&mut p, "t", "before").await;
    let mut a = subscribe(&mut p, "t").await;
    let mut b = subscribe(&mut p, "t").await;
    let mut other_topic = subscribe(&mut p, "u").await;
    let mut other_ns = subscribe(&mut c.namespace("events").pubsub(), "t").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(publish(&mut p, "t", &format!("m{i}")).await);
    }
    for s in [&mut a, &mut b] {
        for (i, id) in ids.iter().enumerate() {
            let m = next_message(s).await;
            assert_eq!(
                (
                    m.payload.as_ref(),
                    &m.message_id,
                    m.headers.get("k").map(String::as_str),
                    m.dropped
                ),
                (
                    format!("m{i}").as_bytes(),
                    id,
                    Some(format!("m{i}").as_str()),
                    0
                )
            );
            assert!(m.published_at_ms > 0);
        }
    }
    silent(&mut other_topic, 200).await;
    silent(&mut other_ns, 50).await;
}

/// Publishes `sent` payloads of `size` bytes to a subscriber that reads nothing meanwhile, then
/// reads its backlog and one more message, which carries the count of what was dropped after the
/// backlog; returns (delivered, dropped), the last message included. Every message is one or the
/// other.
async fn flood_a_slow_subscriber(p: &mut PubSub, sent: u64, size: usize) -> (u64, u64) {
    let mut slow = subscribe(p, "big").await;
    let payload = "x".repeat(size);
    for _ in 0..sent {
        publish(p, "big", &payload).await;
    }
    let (mut received, mut dropped) = (0u64, 0u64);
    while let Ok(Ok(Some(m))) = timeout(Duration::from_millis(500), slow.message()).await {
        if let Some(PsEvent::Message(m)) = m.event {
            received += 1;
            dropped += m.dropped;
        }
    }
    publish(p, "big", "last").await;
    let last = next_message(&mut slow).await;
    assert_eq!(last.payload.as_ref(), b"last");
    assert_eq!(
        received + 1 + dropped + last.dropped,
        sent + 1,
        "every message is either delivered or counted"
    );
    (received + 1, dropped + last.dropped)
}

#[tokio::test]
async fn a_slow_subscriber_loses_messages_counted_and_the_proxy_does_not_buffer_them() {
    let served = support::serve(CONFIG).await;
    let url = format!("http://{}", served.addr);
    let c = client(&url).await;
    // Payloads large enough that the HTTP/2 windows fill quickly: the proxy's buffer of 4 then
    // overflows while the subscriber reads nothing.
    let (_, dropped) =
        flood_a_slow_subscriber(&mut c.namespace("events").pubsub(), 40, 512 * 1024).await;
    assert!(dropped > 0, "a full buffer drops, and says so");
}

#[rstest::rstest]
#[case::per_subscriber("server: {}", "subscriber_buffer_bytes: 1048576")]
#[case::process_wide(
    "server: { max_subscriber_buffer_bytes: 1048576 }",
    "subscriber_buffer_bytes: 67108864"
)]
#[tokio::test]
async fn a_slow_subscribers_buffer_is_bounded_in_bytes_as_well_as_in_messages(
    #[case] server: &str,
    #[case] limit: &str,
) {
    // Room for 1,000 messages, but only for 1 MiB of them: 40 of 256 KiB overflow it.
    let served = support::serve(&format!(
        "listen: 127.0.0.1:0\nauth: {{ mode: none }}\n{server}\nbackends: {{ m: {{ type: memstore }} }}\nnamespaces:\n  events: {{ pattern: pubsub, backend: m, limits: {{ subscriber_buffer: 1000, {limit} }} }}\n"
    ))
    .await;
    let c = client(&format!("http://{}", served.addr)).await;
    let (received, dropped) =
        flood_a_slow_subscriber(&mut c.namespace("events").pubsub(), 40, 256 * 1024).await;
    // What got through is what the client's HTTP/2 window (2 MiB) and the proxy's byte bound hold,
    // not the 1,000 messages the count allows.
    assert!((2..=21).contains(&received), "received {received} of 41");
    assert!(dropped >= 20, "dropped {dropped} of 41");
}

#[tokio::test]
async fn one_caller_cannot_take_every_stream_of_a_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    let key = "0123456789abcdef0123456789abcdef";
    std::fs::write(&secret, key).unwrap();
    let served = support::serve(&format!(
        "listen: 127.0.0.1:0\nauth:\n  hs256: {{ secret_file: {} }}\nbackends: {{ m: {{ type: memstore }} }}\nnamespaces:\n  events: {{ pattern: pubsub, backend: m, limits: {{ max_streams: 3, max_streams_per_subject: 2 }} }}\n",
        secret.display()
    ))
    .await;
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let as_subject = |sub: &str| {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &json!({ "sub": sub, "exp": exp, "prism": { "namespaces": { "events": ["read"] } } }),
            &EncodingKey::from_secret(key.as_bytes()),
        )
        .unwrap()
    };
    let url = format!("http://{}", served.addr);
    let greedy = client(&url)
        .await
        .with_token(&as_subject("greedy"))
        .unwrap();
    let mut g = greedy.namespace("events").pubsub();
    let _held = [subscribe(&mut g, "a").await, subscribe(&mut g, "b").await];
    let e = g
        .subscribe(ps::SubscribeRequest { topic: "c".into() })
        .await
        .expect_err("a third stream is over the subject's share");
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(
        e.message().contains("max_streams_per_subject") && e.message().contains("'greedy'"),
        "{}",
        e.message()
    );
    let other = client(&url).await.with_token(&as_subject("other")).unwrap();
    let mut o = other.namespace("events").pubsub();
    let _mine = subscribe(&mut o, "a").await;
    let e = o
        .subscribe(ps::SubscribeRequest { topic: "b".into() })
        .await
        .expect_err("the namespace's max_streams still holds");
    assert!(
        e.message().ends_with("the limit max_streams"),
        "{}",
        e.message()
    );
}

async fn consume(
    qc: &mut Queue,
    queue: &str,
    group: &str,
    in_flight: u32,
    vis_ms: u64,
) -> Streaming<q::ConsumeResponse> {
    let mut s = qc
        .consume(q::ConsumeRequest {
            queue: queue.into(),
            group: group.into(),
            max_in_flight: in_flight,
            visibility_timeout_ms: vis_ms,
        })
        .await
        .unwrap()
        .into_inner();
    match s.message().await.unwrap().and_then(|m| m.event) {
        Some(QEvent::Consuming(c)) => assert_eq!(c.queue, queue),
        other => panic!("first event is the registration, got {other:?}"),
    }
    s
}

async fn enqueue(qc: &mut Queue, queue: &str, payload: &str) -> String {
    qc.enqueue(q::EnqueueRequest {
        queue: queue.into(),
        payload: payload.to_string().into(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .message_id
}

async fn delivery(s: &mut Streaming<q::ConsumeResponse>) -> q::Delivery {
    match timeout(Duration::from_secs(5), s.message()).await {
        Ok(Ok(Some(q::ConsumeResponse {
            event: Some(QEvent::Delivery(d)),
        }))) => d,
        other => panic!("expected a delivery, got {other:?}"),
    }
}

async fn ack(qc: &mut Queue, queue: &str, group: &str, ids: &[&str]) -> Result<u32, tonic::Status> {
    qc.ack(q::AckRequest {
        queue: queue.into(),
        group: group.into(),
        delivery_ids: ids.iter().map(|s| s.to_string()).collect(),
    })
    .await
    .map(|r| r.into_inner().acked)
}

#[tokio::test]
async fn max_in_flight_holds_back_deliveries_until_an_ack_and_acks_are_checked() {
    let served = support::serve(CONFIG).await;
    let c = client(&format!("http://{}", served.addr)).await;
    let mut qc = c.namespace("jobs2").queue();
    for i in 0..3 {
        enqueue(&mut qc, "work", &format!("m{i}")).await;
    }
    let mut s = consume(&mut qc, "work", "", 2, 0).await;
    let first = delivery(&mut s).await;
    let second = delivery(&mut s).await;
    assert_eq!(
        (
            first.payload.as_ref(),
            second.payload.as_ref(),
            first.attempt
        ),
        (&b"m0"[..], &b"m1"[..], 1)
    );
    silent(&mut s, 300).await;
    assert_eq!(
        ack(&mut qc, "work", "", &[&first.delivery_id])
            .await
            .unwrap(),
        1
    );
    let third = delivery(&mut s).await;
    assert_eq!(third.payload.as_ref(), b"m2");

    let again = ack(&mut qc, "work", "", &[&first.delivery_id])
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound, "{again:?}");
    assert!(
        again.message().contains(&first.delivery_id),
        "{}",
        again.message()
    );
    let mixed = ack(&mut qc, "work", "", &[&second.delivery_id, "nope"])
        .await
        .unwrap_err();
    assert_eq!(mixed.code(), Code::NotFound);
    let other_ns = ack(
        &mut c.namespace("jobs").queue(),
        "work",
        "",
        &[&second.delivery_id],
    )
    .await
    .unwrap_err();
    assert_eq!(
        other_ns.code(),
        Code::NotFound,
        "another namespace cannot ack it"
    );
    assert_eq!(
        ack(
            &mut qc,
            "work",
            "",
            &[&second.delivery_id, &third.delivery_id]
        )
        .await
        .unwrap(),
        2,
        "a refused ack took nothing"
    );
    let empty = ack(&mut qc, "work", "", &[]).await.unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn nacks_timeouts_and_ended_streams_redeliver_and_the_last_attempt_goes_to_the_dlq() {
    let served = support::serve(CONFIG).await;
    let c = client(&format!("http://{}", served.addr)).await;
    let mut qc = c.namespace("jobs").queue();
    let id = enqueue(&mut qc, "work", "m").await;

    // An ended stream returns what it held: another consumer gets it, attempt 2.
    let mut first = consume(&mut qc, "work", "g", 1, 0).await;
    assert_eq!(delivery(&mut first).await.attempt, 1);
    drop(first);
    let mut second = consume(&mut qc, "work", "g", 1, 200).await;
    let d = delivery(&mut second).await;
    assert_eq!((d.message_id.as_str(), d.attempt), (id.as_str(), 2));
    // max_attempts is 2: its visibility timeout passing moves it to the dead-letter queue.
    let mut dlq = consume(&mut qc, "work.dlq", "g", 1, 0).await;
    let dead = delivery(&mut dlq).await;
    assert_eq!(dead.message_id, id);
    assert_eq!(
        dead.headers.get("x-prism-dlq-source").map(String::as_str),
        Some("work")
    );
    assert_eq!(
        dead.headers.get("x-prism-dlq-attempts").map(String::as_str),
        Some("2")
    );
    silent(&mut second, 300).await;

    // A nack with a delay: back after the delay, attempt 2.
    let id = enqueue(&mut qc, "other", "n").await;
    let mut s = consume(&mut qc, "other", "g", 1, 0).await;
    let d = delivery(&mut s).await;
    let nacked = Instant::now();
    qc.nack(q::NackRequest {
        queue: "other".into(),
        group: "g".into(),
        delivery_id: d.delivery_id.clone(),
        requeue_delay_ms: 300,
    })
    .await
    .unwrap();
    let again = delivery(&mut s).await;
    assert!(nacked.elapsed() >= Duration::from_millis(300));
    assert_eq!((again.message_id.as_str(), again.attempt), (id.as_str(), 2));
    let twice = qc
        .nack(q::NackRequest {
            queue: "other".into(),
            group: "g".into(),
            delivery_id: d.delivery_id,
            requeue_delay_ms: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(twice.code(), Code::NotFound);
}

#[tokio::test]
async fn groups_each_get_every_message_and_consumers_in_a_group_compete() {
    let served = support::serve(CONFIG).await;
    let c = client(&format!("http://{}", served.addr)).await;
    let mut qc = c.namespace("jobs2").queue();
    let mut a1 = consume(&mut qc, "fan", "a", 10, 0).await;
    let mut a2 = consume(&mut qc, "fan", "a", 10, 0).await;
    let mut b = consume(&mut qc, "fan", "b", 10, 0).await;
    for i in 0..4 {
        enqueue(&mut qc, "fan", &format!("m{i}")).await;
    }
    let mut got_b = Vec::new();
    for _ in 0..4 {
        got_b.push(delivery(&mut b).await.payload);
    }
    assert_eq!(
        got_b,
        ["m0", "m1", "m2", "m3"].map(bytes::Bytes::from).to_vec()
    );
    let mut got_a = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got_a.len() < 4 && Instant::now() < deadline {
        tokio::select! {
            Ok(Some(m)) = a1.message() => if let Some(QEvent::Delivery(d)) = m.event { got_a.push(d.payload) },
            Ok(Some(m)) = a2.message() => if let Some(QEvent::Delivery(d)) = m.event { got_a.push(d.payload) },
        }
    }
    got_a.sort();
    assert_eq!(
        got_a, got_b,
        "group a got each message once between its two consumers"
    );
}

#[tokio::test]
async fn bad_requests_name_their_field() {
    let served = support::serve(CONFIG).await;
    let c = client(&format!("http://{}", served.addr)).await;
    let mut p = c.namespace("events").pubsub();
    for (topic, code) in [
        ("", Code::InvalidArgument),
        ("a.*", Code::InvalidArgument),
        ("a b", Code::InvalidArgument),
    ] {
        let e = p
            .publish(ps::PublishRequest {
                topic: topic.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "{topic:?}: {e:?}");
        assert!(e.message().contains("topic"), "{}", e.message());
    }
    let e = p
        .subscribe(ps::SubscribeRequest {
            topic: "x".repeat(300),
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("max_name_bytes"), "{}", e.message());
    let mut qc = c.namespace("jobs").queue();
    let e = qc
        .consume(q::ConsumeRequest {
            queue: "q".into(),
            max_in_flight: 1_000_000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("max_in_flight"), "{}", e.message());
    let e = c
        .namespace("jobs")
        .keyvalue()
        .get(prism_proto::keyvalue::v1::GetRequest { key: "k".into() })
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::FailedPrecondition,
        "a queue namespace is not a KeyValue one"
    );
}

#[tokio::test]
async fn a_drain_ends_live_streams_with_unavailable_and_returns_what_they_held() {
    let served = support::serve(CONFIG).await;
    let c = client(&format!("http://{}", served.addr)).await;
    let mut sub = subscribe(&mut c.namespace("events").pubsub(), "t").await;
    let mut qc = c.namespace("jobs").queue();
    enqueue(&mut qc, "work", "held").await;
    let mut cons = consume(&mut qc, "work", "", 1, 0).await;
    delivery(&mut cons).await;
    let started = Instant::now();
    served.stop.send(()).unwrap();
    for end in [
        sub.message().await.map(|_| ()),
        cons.message().await.map(|_| ()),
    ] {
        let e = end.expect_err("the stream ends with a status");
        assert_eq!(e.code(), Code::Unavailable, "{e:?}");
        assert!(e.message().contains("draining"), "{}", e.message());
    }
    timeout(Duration::from_secs(5), served.task)
        .await
        .expect("drained in time")
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "streams do not hold up the drain"
    );
}

#[tokio::test]
async fn a_stream_ends_unauthenticated_when_its_token_expires() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    let key = "0123456789abcdef0123456789abcdef";
    std::fs::write(&secret, key).unwrap();
    let yaml = format!(
        "listen: 127.0.0.1:0\nauth:\n  hs256: {{ secret_file: {} }}\n  leeway_secs: 0\nbackends: {{ m: {{ type: memstore }} }}\nnamespaces:\n  events: {{ pattern: pubsub, backend: m }}\n",
        secret.display()
    );
    let served = support::serve(&yaml).await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({ "sub": "s", "exp": now + 2, "prism": { "namespaces": { "events": ["read", "write"] } } }),
        &EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap();
    let c = client(&format!("http://{}", served.addr))
        .await
        .with_token(&token)
        .unwrap();
    let mut s = subscribe(&mut c.namespace("events").pubsub(), "t").await;
    let e = timeout(Duration::from_secs(10), s.message())
        .await
        .expect("ends in time")
        .expect_err("ends with a status");
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(e.message().contains("expired"), "{}", e.message());
}

#[test]
fn a_namespace_whose_backend_lacks_its_pattern_or_disables_another_patterns_capability_is_located()
{
    let yaml = "auth: { mode: none }\nbackends:\n  s: { type: sqlite, path: ':memory:' }\n  m: { type: memstore }\nnamespaces:\n  feed:\n    pattern: pubsub\n    backend: s\n  jobs:\n    pattern: queue\n    backend: m\n    disable: [queue.delay, keyvalue.ttl]\n";
    let e = ProxyConfig::parse(yaml, Path::new("p.yaml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("p.yaml:7:14: namespace 'feed' serves the pubsub pattern, which backend 's' (type sqlite) does not offer (it offers: keyvalue, queue)"), "{e}");
    assert!(e.contains("p.yaml:12:28: namespace 'jobs' disables keyvalue.ttl, a capability of the keyvalue pattern"), "{e}");
}

#[tokio::test]
async fn a_connection_full_of_subscriptions_still_serves_unary_calls_and_refuses_one_more_stream() {
    let served = support::serve(CONFIG).await;
    let c = client(&format!("http://{}", served.addr)).await;
    let mut p = c.namespace("events2").pubsub();
    let mut streams = Vec::new();
    for i in 0..256 {
        streams.push(subscribe(&mut p, &format!("t{i}")).await);
    }
    let more = p
        .subscribe(ps::SubscribeRequest {
            topic: "t-extra".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(more.code(), Code::ResourceExhausted, "{more:?}");
    assert!(
        more.message().contains("max_stream_calls_per_connection"),
        "{}",
        more.message()
    );
    let publishes = (0..32).map(|i| {
        let mut p = p.clone();
        async move { publish(&mut p, &format!("t{i}"), "unary still served").await }
    });
    let ids = timeout(
        Duration::from_secs(10),
        futures_util::future::join_all(publishes),
    )
    .await
    .expect("unary calls are not starved by the streams");
    assert_eq!(ids.len(), 32);
    assert_eq!(
        next_message(&mut streams[7]).await.payload.as_ref(),
        b"unary still served"
    );
    drop(streams.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    subscribe(&mut p, "t-after").await;
}

#[tokio::test]
async fn a_subscriber_too_slow_to_drain_its_buffer_still_gets_the_draining_status() {
    let served = support::serve(CONFIG).await;
    let c = client(&format!("http://{}", served.addr)).await;
    let mut p = c.namespace("events").pubsub();
    let mut slow = subscribe(&mut p, "big").await;
    let payload = "x".repeat(512 * 1024);
    for _ in 0..40 {
        publish(&mut p, "big", &payload).await;
    }
    served.stop.send(()).unwrap();
    // The buffer (and the HTTP/2 windows) are full; the final status travels apart and arrives
    // after what was buffered, instead of being dropped for want of room.
    let end = loop {
        match timeout(Duration::from_secs(10), slow.message()).await {
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) => panic!("the stream ended without a status"),
            Ok(Err(e)) => break e,
            Err(_) => panic!("the stream did not end"),
        }
    };
    assert_eq!(end.code(), Code::Unavailable, "{end:?}");
    assert!(end.message().contains("draining"), "{}", end.message());
}

#[tokio::test]
async fn a_dead_letter_queue_is_consumable_even_when_its_suffix_passes_the_name_limit() {
    let served = support::serve(CONFIG).await;
    let c = client(&format!("http://{}", served.addr)).await;
    let mut qc = c.namespace("jobs").queue();
    let long = "q".repeat(255);
    enqueue(&mut qc, &long, "m").await;
    consume(&mut qc, &format!("{long}.dlq"), "", 1, 0).await;
    let too_long = qc
        .enqueue(q::EnqueueRequest {
            queue: format!("{long}x"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(too_long.code(), Code::InvalidArgument);
}

#[test]
fn a_setting_of_another_pattern_is_located() {
    let yaml = "auth: { mode: none }\nbackends: { m: { type: memstore } }\nnamespaces:\n  kv:\n    pattern: keyvalue\n    backend: m\n    limits: { max_attempts: 3, max_key_bytes: 10 }\n";
    let e = ProxyConfig::parse(yaml, Path::new("s.yaml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("s.yaml:7:13: namespace 'kv' sets max_attempts, which does not apply to the keyvalue pattern (its settings: max_key_bytes,"),
        "{e}"
    );
}
