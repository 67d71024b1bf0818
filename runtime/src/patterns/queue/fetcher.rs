//! A cancellation-safe [`QueueConsumer`] over any backend's "take one delivery" call. The proxy
//! drops `next()` whenever something else wins its select, so the backend call runs in a task of
//! its own: an answer whose asker has left is kept for the next ask, and whatever is kept or in
//! flight when the consumer goes is given back to the backend at once (not after a lease).

use super::adapter::{QueueConsumer, Received};
use crate::backends::error::{StoreError, StoreResult};
use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

/// How one backend takes the next delivery of a group for one consumer.
#[async_trait]
pub trait Take: Send + 'static {
    /// Takes the next deliverable message, waiting for one up to a bound of the adapter's
    /// choosing; `Ok(None)` when none came in that time (the fetcher asks again while the consumer
    /// still wants one).
    async fn take(&mut self) -> StoreResult<Option<Received>>;
    /// Makes a delivery taken for a consumer that has gone deliverable again at once.
    async fn give_back(&mut self, received: Received);
}

enum Msg {
    /// A `next()` waiting for a delivery.
    Ask(oneshot::Sender<StoreResult<Received>>),
    /// A delivery that reached the consumer after its `next()` was dropped, as it went away.
    Return(Received),
}

/// A [`QueueConsumer`] whose deliveries `take` supplies, from a task of its own.
pub fn consumer(take: impl Take) -> Box<dyn QueueConsumer> {
    let (asks, rx) = mpsc::unbounded_channel();
    tokio::spawn(fetcher(take, rx));
    Box::new(Fetching {
        asks,
        waiting: None,
    })
}

/// Serves asks one at a time; nothing is taken that nobody asked for, and a take that comes back
/// empty is not repeated once its asker has left.
async fn fetcher(mut take: impl Take, mut rx: mpsc::UnboundedReceiver<Msg>) {
    let mut kept: Option<Received> = None;
    while let Some(msg) = rx.recv().await {
        let ask = match msg {
            Msg::Ask(ask) => ask,
            Msg::Return(received) => {
                if let Some(earlier) = kept.replace(received) {
                    take.give_back(earlier).await;
                }
                continue;
            }
        };
        let taken = match kept.take() {
            Some(r) => Ok(Some(r)),
            None => loop {
                match take.take().await {
                    Ok(None) if !ask.is_closed() => {}
                    other => break other,
                }
            },
        };
        match taken {
            Ok(Some(r)) => {
                if let Err(Ok(r)) = ask.send(Ok(r)) {
                    kept = Some(r);
                }
            }
            Ok(None) => {}
            Err(e) => {
                let _ = ask.send(Err(e));
            }
        }
    }
    if let Some(r) = kept {
        take.give_back(r).await;
    }
}

struct Fetching {
    asks: mpsc::UnboundedSender<Msg>,
    /// The answer to an ask whose `next` was dropped before it arrived: the next call takes it.
    waiting: Option<oneshot::Receiver<StoreResult<Received>>>,
}

fn fetcher_gone() -> StoreError {
    StoreError::Unavailable("the consumer's fetch task ended".into())
}

#[async_trait]
impl QueueConsumer for Fetching {
    async fn next(&mut self) -> StoreResult<Received> {
        if self.waiting.is_none() {
            let (tx, rx) = oneshot::channel();
            self.asks.send(Msg::Ask(tx)).map_err(|_| fetcher_gone())?;
            self.waiting = Some(rx);
        }
        let rx = self.waiting.as_mut().expect("set above");
        let answer = rx.await;
        self.waiting = None;
        answer.map_err(|_| fetcher_gone())?
    }
}

impl Drop for Fetching {
    fn drop(&mut self) {
        // An answer that arrived for a dropped `next` goes back through the fetcher, which gives
        // it back to the backend when it sees the consumer has gone.
        let Some(mut waiting) = self.waiting.take() else {
            return;
        };
        waiting.close();
        if let Ok(Ok(received)) = waiting.try_recv() {
            let _ = self.asks.send(Msg::Return(received));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patterns::queue::adapter::QueuedMessage;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// Hands out numbered deliveries after a short wait, and records what is given back.
    struct Counting {
        next: u32,
        wait: Duration,
        given_back: Arc<Mutex<Vec<String>>>,
    }

    fn delivery(n: u32) -> Received {
        Received {
            message: QueuedMessage {
                message_id: format!("m{n}"),
                payload: Default::default(),
                headers: HashMap::new(),
                enqueued_at_ms: 0,
            },
            attempt: 1,
            receipt: format!("r{n}"),
        }
    }

    #[async_trait]
    impl Take for Counting {
        async fn take(&mut self) -> StoreResult<Option<Received>> {
            tokio::time::sleep(self.wait).await;
            self.next += 1;
            Ok(Some(delivery(self.next)))
        }
        async fn give_back(&mut self, received: Received) {
            self.given_back.lock().expect("lock").push(received.receipt);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_next_loses_nothing_and_what_is_kept_goes_back_at_the_end() {
        let given_back = Arc::new(Mutex::new(Vec::new()));
        let mut c = consumer(Counting {
            next: 0,
            wait: Duration::from_millis(10),
            given_back: given_back.clone(),
        });
        // Dropped before the take finishes: the delivery is kept for the next call.
        let early = tokio::time::timeout(Duration::from_millis(5), c.next()).await;
        assert!(early.is_err());
        assert_eq!(c.next().await.expect("next").receipt, "r1");
        assert_eq!(c.next().await.expect("next").receipt, "r2");
        // Dropped again, then the consumer goes: the third delivery is given back.
        let early = tokio::time::timeout(Duration::from_millis(5), c.next()).await;
        assert!(early.is_err());
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(c);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(*given_back.lock().expect("lock"), vec!["r3".to_string()]);
    }

    /// Never has anything: counts its takes.
    struct Empty(Arc<Mutex<u32>>);

    #[async_trait]
    impl Take for Empty {
        async fn take(&mut self) -> StoreResult<Option<Received>> {
            tokio::time::sleep(Duration::from_secs(1)).await;
            *self.0.lock().expect("lock") += 1;
            Ok(None)
        }
        async fn give_back(&mut self, _: Received) {}
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_take_is_not_repeated_once_the_consumer_left() {
        let takes = Arc::new(Mutex::new(0));
        let mut c = consumer(Empty(takes.clone()));
        let waited = tokio::time::timeout(Duration::from_millis(2500), c.next()).await;
        assert!(waited.is_err());
        drop(c);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(
            *takes.lock().expect("lock"),
            3,
            "three takes: two while asked, one in flight as the consumer left, none after"
        );
    }
}
