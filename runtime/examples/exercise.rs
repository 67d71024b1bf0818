//! Moves the messaging and auth metrics of a running proxy for `ci/prometheus-check.sh`: on the
//! example config's `events` (PubSub) and `jobs` (Queue) namespaces it subscribes and publishes,
//! enqueues, consumes, nacks once and acks the rest, and makes one call with a bad token.
//!
//! `cargo run --example exercise -- URL TOKEN [ROUNDS]`

use prism_proto::client::PrismClient;
use prism_proto::pubsub::v1::{PublishRequest, SubscribeRequest};
use prism_proto::queue::v1::consume_response::Event;
use prism_proto::queue::v1::{AckRequest, ConsumeRequest, EnqueueRequest, NackRequest};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().ok_or("URL (http://127.0.0.1:8980)")?;
    let token = args.next().ok_or("TOKEN")?;
    let rounds: usize = args.next().map_or(Ok(20), |r| r.parse())?;
    let client = PrismClient::connect(url.clone())
        .await?
        .with_token(&token)?;

    let mut pubsub = client.namespace("events").pubsub();
    let mut subscription = pubsub
        .subscribe(SubscribeRequest { topic: "t".into() })
        .await?
        .into_inner();
    subscription.message().await?.ok_or("no confirmation")?;
    for i in 0..rounds {
        pubsub
            .publish(PublishRequest {
                topic: "t".into(),
                payload: format!("m{i}").into_bytes().into(),
                ..Default::default()
            })
            .await?;
        subscription.message().await?.ok_or("the stream ended")?;
    }

    let mut queue = client.namespace("jobs").queue();
    for i in 0..rounds {
        queue
            .enqueue(EnqueueRequest {
                queue: "q".into(),
                payload: format!("j{i}").into_bytes().into(),
                ..Default::default()
            })
            .await?;
    }
    let mut consumer = queue
        .consume(ConsumeRequest {
            queue: "q".into(),
            max_in_flight: 4,
            ..Default::default()
        })
        .await?
        .into_inner();
    let (mut acked, mut nacked) = (0, false);
    while acked < rounds {
        let Some(Event::Delivery(d)) = consumer.message().await?.ok_or("ended")?.event else {
            continue;
        };
        if !nacked {
            nacked = true;
            queue
                .nack(NackRequest {
                    queue: "q".into(),
                    delivery_id: d.delivery_id,
                    ..Default::default()
                })
                .await?;
            continue;
        }
        queue
            .ack(AckRequest {
                queue: "q".into(),
                delivery_ids: vec![d.delivery_id],
                ..Default::default()
            })
            .await?;
        acked += 1;
    }

    let stranger = PrismClient::connect(url).await?.with_token("not.a.token")?;
    let refused = stranger
        .namespace("events")
        .pubsub()
        .publish(PublishRequest {
            topic: "t".into(),
            payload: b"x".to_vec().into(),
            ..Default::default()
        })
        .await
        .expect_err("a bad token is refused");
    println!(
        "published and received {rounds}, enqueued {rounds}, acked {acked} (one nack), bad token: {:?}",
        refused.code()
    );
    Ok(())
}
