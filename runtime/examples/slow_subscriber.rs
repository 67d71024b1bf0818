//! The slow-subscriber probe behind `ci/hostile-probes.sh`: SUBSCRIBERS subscriptions, each on its
//! own topic, that never read (a 64 KiB HTTP/2 window, never released), then MESSAGES messages of
//! BYTES bytes published to each topic; reports the proxy's RSS before and after.
//!
//! `cargo run --example slow_subscriber -- ADDR PID [SUBSCRIBERS] [MESSAGES] [BYTES]`

mod probe;

use probe::rss_mib;
use prost::Message;
use std::time::Duration;

#[tokio::main]
async fn main() {
    let addr: String = probe::arg(0, "127.0.0.1:8980", "ADDR");
    let pid: u32 = probe::arg(1, "0", "PID");
    let subscribers: usize = probe::arg(2, "1", "SUBSCRIBERS");
    let messages: usize = probe::arg(3, "1024", "MESSAGES");
    let bytes: usize = probe::arg(4, "1048576", "BYTES");

    let baseline = rss_mib(pid);
    let mut held = Vec::new();
    for i in 0..subscribers {
        let (mut send, task) = probe::connect(&addr, 65_535).await.expect("connect");
        let request = probe::request(&addr, "/prism.pubsub.v1.PubSub/Subscribe", "events");
        let (response, mut body) = send.send_request(request, false).expect("subscribe");
        let subscribe = prism_proto::pubsub::v1::SubscribeRequest {
            topic: format!("t{i}"),
        };
        body.send_data(probe::framed(&subscribe.encode_to_vec()), true)
            .expect("send");
        let response = response.await.expect("subscribed");
        assert!(probe::refusal(&response).is_none(), "subscribe refused");
        // The body is never read: the subscriber is stalled.
        held.push((task, send, response.into_body()));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let client = prism_proto::client::PrismClient::connect(format!("http://{addr}"))
        .await
        .expect("publisher connects");
    let mut publisher = client.namespace("events").pubsub();
    let payload = bytes::Bytes::from(vec![b'x'; bytes]);
    let mut peak = baseline;
    for n in 0..messages {
        for i in 0..subscribers {
            publisher
                .publish(prism_proto::pubsub::v1::PublishRequest {
                    topic: format!("t{i}"),
                    payload: payload.clone(),
                    headers: Default::default(),
                })
                .await
                .expect("publish");
        }
        if n % 16 == 0 {
            peak = peak.max(rss_mib(pid));
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    peak = peak.max(rss_mib(pid));
    println!(
        "slow-subscriber: {subscribers} never-reading subscribers, {messages} messages of {bytes} bytes each"
    );
    println!("slow-subscriber: RSS baseline {baseline:.1} MiB, peak {peak:.1} MiB");
    drop(held);
}
