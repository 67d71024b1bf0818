//! PostgreSQL's PubSub adapter on `LISTEN`/`NOTIFY`. Each namespace and topic has a channel
//! `prism_ps_<digest of ns and topic>` (within PostgreSQL's 63-byte identifiers, whatever the
//! names). A notification carries the namespace in hex and the message's
//! `prism.pubsub.v1.Message` encoding: inline in base64 while it fits the 8000-byte `NOTIFY` limit,
//! else as the id of a row of `prism_pubsub_bodies` written in the same transaction (rows are
//! purged after [`BODY_RETENTION`]). A subscriber drops what is not its namespace and topic (a
//! digest collision). Each subscription holds a connection of the listener pool; `LISTEN` has
//! completed when `subscribe` returns, and a lost connection ends the stream. Notifications from
//! one session's successive commits arrive in commit order (`pubsub.ordered`).

use super::{Db, PgListener, PgPool, PostgresStore, classify};
use crate::backends::error::{StoreError, StoreResult};
use crate::patterns::capability::Capability;
use crate::patterns::names::{digest, hex_token};
use crate::patterns::pubsub::adapter::{PubSubAdapter, Published, Subscription};
use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::time::Duration;

/// The largest `NOTIFY` payload PostgreSQL accepts is 7999 bytes.
const NOTIFY_MAX: usize = 7999;

/// How long a body too large for `NOTIFY` is kept for its subscribers to read.
pub(super) const BODY_RETENTION: Duration = Duration::from_secs(300);

/// Statements that create the body table (run with the store's other migrations).
pub(super) const MIGRATIONS: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS prism_pubsub_bodies (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        body BYTEA NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
    )",
    "CREATE INDEX IF NOT EXISTS prism_pubsub_bodies_created ON prism_pubsub_bodies (created_at)",
];

/// PubSub on `LISTEN`/`NOTIFY`.
#[derive(Debug)]
pub struct PgPubSub {
    db: Db,
    listen_pool: PgPool,
}

impl PgPubSub {
    /// PubSub in `store`'s database, if it has session connections to `LISTEN` on.
    pub(super) fn new(store: &PostgresStore) -> Option<Self> {
        Some(Self {
            db: store.db.clone(),
            listen_pool: store.listen_pool.clone()?,
        })
    }
}

/// The channel of `topic` in `ns`.
fn channel(ns: &str, topic: &str) -> String {
    format!("prism_ps_{}", digest(&[ns, topic]))
}

/// What a notification carries: `i <ns hex> <base64 message>` or `r <ns hex> <body id>`.
#[derive(Debug, PartialEq, Eq)]
enum Note<'a> {
    Inline(&'a str, &'a str),
    Body(&'a str, i64),
}

/// The inline notification of an encoded message, if it fits.
fn inline(ns: &str, encoded: &[u8]) -> Option<String> {
    let note = format!("i {} {}", hex_token(ns), STANDARD.encode(encoded));
    (note.len() <= NOTIFY_MAX).then_some(note)
}

fn parse(note: &str) -> Option<Note<'_>> {
    let mut parts = note.splitn(3, ' ');
    match (parts.next()?, parts.next()?, parts.next()?) {
        ("i", ns, b64) => Some(Note::Inline(ns, b64)),
        ("r", ns, id) => Some(Note::Body(ns, id.parse().ok()?)),
        _ => None,
    }
}

#[async_trait]
impl PubSubAdapter for PgPubSub {
    fn capabilities(&self) -> Vec<Capability> {
        vec![Capability::PubSubBasic, Capability::PubSubOrdered]
    }

    async fn publish(&self, ns: &str, message: Published) -> StoreResult<()> {
        let channel = channel(ns, &message.topic);
        let encoded = message.encode();
        let mut conn = self.db.conn().await?;
        match inline(ns, &encoded) {
            Some(note) => {
                self.db
                    .query("SELECT pg_notify($1, $2)")
                    .bind(&channel)
                    .bind(note)
                    .execute(&mut *conn)
                    .await
            }
            None => self
                .db
                .query(
                    "WITH b AS (INSERT INTO prism_pubsub_bodies (body) VALUES ($3) RETURNING id)
                         SELECT pg_notify($1, 'r ' || $2 || ' ' || b.id) FROM b",
                )
                .bind(&channel)
                .bind(hex_token(ns))
                .bind(&encoded)
                .execute(&mut *conn)
                .await,
        }
        .map_err(classify)?;
        conn.done().await
    }

    async fn subscribe(&self, ns: &str, topic: &str) -> StoreResult<Subscription> {
        let mut listener = PgListener::connect_with(&self.listen_pool)
            .await
            .map_err(classify)?;
        listener.eager_reconnect(false);
        listener
            .listen(&channel(ns, topic))
            .await
            .map_err(classify)?;
        let state = Listening {
            listener: Some(listener),
            db: self.db.clone(),
            ns: hex_token(ns),
            topic: topic.to_string(),
        };
        Ok(Box::pin(futures_util::stream::unfold(
            state,
            |mut state| async move {
                let item = state.next().await?;
                Some((item, state))
            },
        )))
    }
}

/// One subscription's listener; `None` once the stream has ended.
struct Listening {
    listener: Option<PgListener>,
    db: Db,
    ns: String,
    topic: String,
}

impl Listening {
    /// The body a notification names (`None` once purged).
    async fn body(&self, id: i64) -> StoreResult<Option<Vec<u8>>> {
        let mut conn = self.db.conn().await?;
        let body = self
            .db
            .scalar("SELECT body FROM prism_pubsub_bodies WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(classify)?;
        conn.done().await?;
        Ok(body)
    }

    /// The next message for this subscription; an error once, then the end, when the connection
    /// fails.
    async fn next(&mut self) -> Option<StoreResult<Published>> {
        loop {
            let listener = self.listener.as_mut()?;
            let note = match listener.try_recv().await {
                Ok(Some(n)) => n,
                Ok(None) => {
                    self.listener = None;
                    return Some(Err(StoreError::Unavailable(
                        "the postgres connection of the subscription was lost".into(),
                    )));
                }
                Err(e) => {
                    self.listener = None;
                    return Some(Err(classify(e)));
                }
            };
            let encoded = match parse(note.payload()) {
                Some(Note::Inline(ns, b64)) if ns == self.ns => match STANDARD.decode(b64) {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        tracing::warn!(error = %e, "skipped a notification that is not a Prism message");
                        continue;
                    }
                },
                Some(Note::Body(ns, id)) if ns == self.ns => {
                    let body: Option<Vec<u8>> = match self.body(id).await {
                        Ok(body) => body,
                        Err(e) => {
                            self.listener = None;
                            return Some(Err(e));
                        }
                    };
                    match body {
                        Some(body) => body,
                        None => {
                            tracing::warn!(
                                id,
                                "skipped a message whose body was purged before it was read"
                            );
                            continue;
                        }
                    }
                }
                Some(_) => continue,
                None => {
                    tracing::warn!("skipped a notification that is not a Prism message");
                    continue;
                }
            };
            match Published::decode(&encoded) {
                Ok(m) if m.topic == self.topic => return Some(Ok(m)),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "skipped a notification that is not a Prism message")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn channels_fit_an_identifier_and_keep_namespaces_and_topics_apart() {
        let long = "t".repeat(1000);
        let c = channel("ns", &long);
        assert!(c.len() <= 63, "{c}");
        assert!(
            c.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        );
        assert_ne!(channel("a", "b:c"), channel("a:b", "c"));
        assert_ne!(channel("ns", "t"), channel("other", "t"));
    }

    #[test]
    fn small_messages_go_inline_and_large_ones_by_reference() {
        let message = Published {
            topic: "t/1".into(),
            payload: vec![0u8, 255, 10].into(),
            headers: HashMap::from([("k".to_string(), "v".to_string())]),
            message_id: "id".into(),
            published_at_ms: 42,
        };
        let note = inline("ns", &message.encode()).expect("fits");
        let Some(Note::Inline(ns, b64)) = parse(&note) else {
            panic!("an inline note: {note}");
        };
        assert_eq!(ns, hex_token("ns"));
        let bytes = STANDARD.decode(b64).expect("base64");
        assert_eq!(Published::decode(&bytes).expect("decodes"), message);
        assert!(
            inline("ns", &[0u8; 6000]).is_none(),
            "over the NOTIFY limit"
        );
        assert_eq!(parse("r 6e73 17"), Some(Note::Body("6e73", 17)));
        assert_eq!(parse("x 6e73 17"), None);
        assert_eq!(parse("r 6e73 x"), None);
    }
}
