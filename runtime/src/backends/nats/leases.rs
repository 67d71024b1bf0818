//! Leases of the JetStream deliveries this proxy holds. JetStream redelivers a message its
//! consumer's `ack_wait` after delivering it unless it hears an in-progress ack (`+WPI`), which
//! starts that wait again. So the consumers use a short `ack_wait`, and one task per proxy renews
//! each held delivery shortly before its wait runs out, until the wait covers the delivery's lease
//! (its visibility timeout and a grace). A delivery whose proxy crashed goes out again at most
//! `ack_wait` after its lease; one acked or returned is forgotten at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// One held delivery: until when it is leased, and when JetStream's wait for it runs out.
#[derive(Clone, Copy, Debug)]
struct Lease {
    until: Instant,
    wait_ends: Instant,
}

/// The deliveries this proxy holds, by reply subject.
#[derive(Debug)]
pub struct Leases {
    held: Mutex<HashMap<String, Lease>>,
    ack_wait: Duration,
}

impl Leases {
    /// Leases renewed for consumers whose `ack_wait` is `ack_wait`; the renewing task runs while
    /// the returned value is held.
    pub fn start(client: async_nats::Client, ack_wait: Duration) -> Arc<Self> {
        let leases = Arc::new(Self {
            held: Mutex::default(),
            ack_wait,
        });
        tokio::spawn(renew(Arc::downgrade(&leases), client));
        leases
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, Lease>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A delivery just taken, leased for `lease`.
    pub fn hold(&self, receipt: &str, lease: Duration) {
        let now = Instant::now();
        let l = Lease {
            until: now + lease,
            wait_ends: now + self.ack_wait,
        };
        if l.wait_ends < l.until {
            self.held().insert(receipt.to_string(), l);
        }
    }

    /// A delivery acked or returned: no longer renewed.
    pub fn forget(&self, receipt: &str) {
        self.held().remove(receipt);
    }

    /// The reply subjects to renew now (their wait ends within half an `ack_wait` and does not
    /// yet cover their lease), with their wait moved on; deliveries whose wait covers their lease
    /// are forgotten.
    fn due(&self, now: Instant) -> Vec<String> {
        let mut due = Vec::new();
        let wait = self.ack_wait;
        self.held().retain(|receipt, l| {
            if l.wait_ends >= l.until {
                return false;
            }
            if l.wait_ends.saturating_duration_since(now) < wait / 2 {
                l.wait_ends = now + wait;
                due.push(receipt.clone());
            }
            true
        });
        due
    }
}

/// Every quarter of an `ack_wait`, sends `+WPI` for the deliveries due; ends when the leases go.
async fn renew(leases: Weak<Leases>, client: async_nats::Client) {
    let Some(tick) = leases.upgrade().map(|l| l.ack_wait / 4) else {
        return;
    };
    let mut ticks = tokio::time::interval(tick.max(Duration::from_millis(50)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(due) = leases.upgrade().map(|l| l.due(Instant::now())) else {
            return;
        };
        for receipt in &due {
            // Lost with the connection, the stream holding it ends and returns it anyway.
            let _ = client.publish(receipt.clone(), "+WPI".into()).await;
        }
        if !due.is_empty() {
            let _ = client.flush().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leases(ack_wait: Duration) -> Leases {
        Leases {
            held: Mutex::default(),
            ack_wait,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_delivery_is_renewed_until_its_wait_covers_its_lease_and_no_longer() {
        let l = leases(Duration::from_secs(3));
        l.hold("r", Duration::from_secs(10));
        let start = Instant::now();
        let mut renewed = Vec::new();
        for ms in (0..20_000).step_by(750) {
            let now = start + Duration::from_millis(ms);
            if !l.due(now).is_empty() {
                renewed.push(ms);
            }
        }
        // Renewed at the first tick with less than 1.5 s of its wait left (every 2.25 s) until
        // the wait reaches past 10 s (to 12 s); never after.
        assert_eq!(renewed, vec![2250, 4500, 6750, 9000]);
        assert!(l.held().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn short_leases_and_forgotten_deliveries_are_not_renewed() {
        let l = leases(Duration::from_secs(3));
        l.hold("short", Duration::from_secs(2));
        l.hold("acked", Duration::from_secs(30));
        l.forget("acked");
        let later = Instant::now() + Duration::from_secs(2);
        assert!(l.due(later).is_empty());
    }
}
