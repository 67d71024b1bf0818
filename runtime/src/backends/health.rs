//! Every backend call goes through its backend's [`Health`]: it gets a deadline (the backend call
//! timeout, or the caller's gRPC deadline when that is sooner), and while the backend is known to be
//! down calls fail at once with UNAVAILABLE instead of each waiting out a timeout. A reconnect loop
//! pings the backend every retry interval and clears the flag when it answers; a call cut by its
//! caller's deadline (or abandoned by its caller) makes the loop check the backend once, so a dead
//! or frozen backend is noticed even when every caller gives up before the backend's own timeout.

use crate::backends::error::{StoreError, StoreResult};
use crate::telemetry::{BackendMetrics, Operation, Outcome};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// What the proxy does with every backend call (`backend_calls:` in the config).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BackendCallConfig {
    /// The deadline of one backend call, in milliseconds; past it the call is UNAVAILABLE and the
    /// backend is checked (default 5000). PostgreSQL also gets it as `statement_timeout`.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// While a backend is down, how often it is pinged, in milliseconds (default 100).
    #[serde(default = "default_retry_ms")]
    pub retry_interval_ms: u64,
}

fn default_timeout_ms() -> u64 {
    5000
}
fn default_retry_ms() -> u64 {
    100
}

impl Default for BackendCallConfig {
    fn default() -> Self {
        Self {
            timeout_ms: default_timeout_ms(),
            retry_interval_ms: default_retry_ms(),
        }
    }
}

impl BackendCallConfig {
    /// The call deadline.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1))
    }
}

/// A backend's liveness check.
#[async_trait]
pub trait Ping: Send + Sync {
    /// Answers `Ok` when the backend serves calls.
    async fn ping(&self) -> StoreResult<()>;
}

/// Why a backend call did not return the backend's answer.
#[derive(Debug)]
pub enum CallError {
    /// The backend answered with an error.
    Store(StoreError),
    /// The backend is known to be down; the call was not attempted.
    Down {
        /// Since when.
        for_ms: u64,
        /// The error that marked it down.
        reason: String,
    },
    /// The backend did not answer within the call timeout (the operation may or may not have
    /// been applied).
    TimedOut(Duration),
    /// The caller's deadline passed first.
    CallerDeadline,
}

/// Checks the backend if dropped before [`Abandoned::disarm`]: the caller left mid-call.
struct Abandoned<'a>(Option<&'a Arc<Health>>);

impl Abandoned<'_> {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if let Some(health) = self.0 {
            health.check_soon();
        }
    }
}

/// The longest a ping may take: a backend that serves calls answers `SELECT 1` or `PING` in
/// milliseconds, so a frozen one is found out well before the call timeout.
const PING_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Down {
    since: Instant,
    reason: String,
}

/// One backend's call policy and up/down state.
pub struct Health {
    name: String,
    config: BackendCallConfig,
    ping: Arc<dyn Ping>,
    /// `state.is_some()`, readable without the lock: every backend call reads it.
    down: AtomicBool,
    state: Mutex<Option<Down>>,
    checking: AtomicBool,
    metrics: BackendMetrics,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("name", &self.name)
            .field("down", &self.down.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl Health {
    /// The health of backend `name`, checked with `ping`.
    pub fn new(name: &str, config: BackendCallConfig, ping: Arc<dyn Ping>) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_string(),
            config,
            ping,
            down: AtomicBool::new(false),
            state: Mutex::new(None),
            checking: AtomicBool::new(false),
            metrics: BackendMetrics::default(),
        })
    }

    /// Whether the backend is known to be down.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }

    /// The backend's call and reconnect metrics.
    pub fn metrics(&self) -> &BackendMetrics {
        &self.metrics
    }

    /// Runs one backend call of `op` under the policy, recording its duration and outcome when
    /// metrics are on; `caller` is the caller's deadline, if any.
    pub async fn call<T>(
        self: &Arc<Self>,
        op: Operation,
        caller: Option<Instant>,
        call: impl Future<Output = StoreResult<T>>,
    ) -> Result<T, CallError> {
        if !self.metrics.enabled() {
            return self.call_unrecorded(caller, call).await;
        }
        let started = std::time::Instant::now();
        let answer = self.call_unrecorded(caller, call).await;
        let outcome = match &answer {
            Ok(_) => Outcome::Ok,
            Err(CallError::Store(e)) => match e {
                StoreError::AlreadyExists { .. } | StoreError::VersionMismatch { .. } => {
                    Outcome::Conflict
                }
                StoreError::TooLarge { .. } | StoreError::OverBackendLimit(_) => Outcome::TooLarge,
                StoreError::Unavailable(_) => Outcome::Unavailable,
                StoreError::Internal(_) => Outcome::Internal,
            },
            Err(CallError::Down { .. }) => Outcome::RefusedDown,
            Err(CallError::TimedOut(_)) => Outcome::Timeout,
            Err(CallError::CallerDeadline) => Outcome::CallerDeadline,
        };
        self.metrics.observe(op, outcome, started.elapsed());
        answer
    }

    async fn call_unrecorded<T>(
        self: &Arc<Self>,
        caller: Option<Instant>,
        call: impl Future<Output = StoreResult<T>>,
    ) -> Result<T, CallError> {
        if self.is_down() {
            let refused = {
                let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                state.as_ref().map(|down| CallError::Down {
                    for_ms: down.since.elapsed().as_millis() as u64,
                    reason: down.reason.clone(),
                })
            };
            if let Some(refused) = refused {
                // Costs one swap while the reconnect loop runs, and restarts it should it have
                // ended: the down flag never outlives its loop.
                self.check_soon();
                return Err(refused);
            }
        }
        let own = Instant::now() + self.config.timeout();
        let (deadline, callers) = match caller {
            Some(c) if c < own => (c, true),
            _ => (own, false),
        };
        // A caller that gives up (its stream reset at its deadline, before ours fires) drops this
        // future mid-call: that too makes the reconnect loop check the backend.
        let abandoned = Abandoned(Some(self));
        let answer = tokio::time::timeout_at(deadline, call).await;
        abandoned.disarm();
        match answer {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(StoreError::Unavailable(e))) => {
                self.mark_down(e.to_string());
                Err(CallError::Store(StoreError::Unavailable(e)))
            }
            Ok(Err(e)) => Err(CallError::Store(e)),
            Err(_) if callers => {
                self.check_soon();
                Err(CallError::CallerDeadline)
            }
            Err(_) => {
                self.mark_down(format!(
                    "no answer within {} ms",
                    self.config.timeout().as_millis()
                ));
                Err(CallError::TimedOut(self.config.timeout()))
            }
        }
    }

    /// Marks the backend down (a call, or a stream that lost its connection, found it
    /// unavailable): calls fail fast and the reconnect loop pings it until it answers.
    pub fn mark_down(self: &Arc<Self>, reason: String) {
        self.note_down(reason);
        self.check_soon();
    }

    /// Sets the down flag, keeping the first reason and time of an outage.
    fn note_down(&self, reason: String) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.is_none() {
            tracing::warn!(backend = %self.name, reason = %reason, "backend down: calls fail fast until it answers a ping");
            *state = Some(Down {
                since: Instant::now(),
                reason,
            });
        }
        self.down.store(true, Ordering::SeqCst);
    }

    fn mark_up(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(down) = state.take() {
            self.metrics.reconnected();
            tracing::info!(backend = %self.name, down_ms = down.since.elapsed().as_millis() as u64, "backend recovered");
        }
        self.down.store(false, Ordering::SeqCst);
    }

    /// Starts the reconnect loop unless it runs: ping now, and every retry interval until the
    /// backend answers.
    fn check_soon(self: &Arc<Self>) {
        if self.checking.swap(true, Ordering::SeqCst) {
            return;
        }
        let health = self.clone();
        tokio::spawn(async move {
            let every = Duration::from_millis(health.config.retry_interval_ms.max(1));
            let ping_timeout = PING_TIMEOUT.min(health.config.timeout());
            loop {
                let answer = tokio::time::timeout(ping_timeout, health.ping.ping()).await;
                match answer {
                    Ok(Ok(())) => {
                        health.mark_up();
                        break;
                    }
                    Ok(Err(e)) => health.note_down(e.to_string()),
                    Err(_) => health.note_down(format!(
                        "no answer to a ping within {} ms",
                        ping_timeout.as_millis()
                    )),
                }
                tokio::time::sleep(every).await;
            }
            // A call that marks the backend down after this point, or finds it down, starts the
            // loop again (`call` checks on its fast-fail path too).
            health.checking.store(false, Ordering::SeqCst);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    const OP: Operation = Operation {
        method: 0,
        family: crate::telemetry::Family::Db,
    };

    /// A backend whose answers the test sets.
    #[derive(Default)]
    struct Switch {
        up: AtomicBool,
        pings: AtomicUsize,
    }

    #[async_trait]
    impl Ping for Switch {
        async fn ping(&self) -> StoreResult<()> {
            self.pings.fetch_add(1, Ordering::Relaxed);
            if self.up.load(Ordering::Relaxed) {
                Ok(())
            } else {
                Err(StoreError::Unavailable("refused".into()))
            }
        }
    }

    fn unavailable() -> StoreResult<()> {
        Err(StoreError::Unavailable("connection refused".into()))
    }

    #[tokio::test(start_paused = true)]
    async fn down_fails_fast_until_a_ping_answers() {
        let switch = Arc::new(Switch::default());
        let health = Health::new("pg", BackendCallConfig::default(), switch.clone());
        assert!(matches!(
            health.call(OP, None, async { unavailable() }).await,
            Err(CallError::Store(StoreError::Unavailable(_)))
        ));
        assert!(health.is_down());
        let started = Instant::now();
        let never = std::future::pending::<StoreResult<()>>();
        assert!(matches!(
            health.call(OP, None, never).await,
            Err(CallError::Down { .. })
        ));
        assert_eq!(started.elapsed(), Duration::ZERO, "refused without waiting");
        switch.up.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(!health.is_down(), "the reconnect loop cleared the flag");
        assert!(health.call(OP, None, async { Ok(()) }).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_backend_times_out_and_a_shorter_caller_deadline_wins() {
        let switch = Arc::new(Switch::default());
        switch.up.store(true, Ordering::Relaxed);
        let config = BackendCallConfig {
            timeout_ms: 2000,
            retry_interval_ms: 100,
        };
        let health = Health::new("pg", config, switch.clone());
        let started = Instant::now();
        let caller = Some(started + Duration::from_millis(300));
        let hung = std::future::pending::<StoreResult<()>>();
        assert!(matches!(
            health.call(OP, caller, hung).await,
            Err(CallError::CallerDeadline)
        ));
        assert_eq!(started.elapsed(), Duration::from_millis(300));
        tokio::task::yield_now().await;
        assert!(
            switch.pings.load(Ordering::Relaxed) >= 1,
            "the backend is checked"
        );
        assert!(!health.is_down(), "it answered the ping");
        let started = Instant::now();
        let hung = std::future::pending::<StoreResult<()>>();
        assert!(matches!(
            health.call(OP, None, hung).await,
            Err(CallError::TimedOut(_))
        ));
        assert_eq!(started.elapsed(), Duration::from_millis(2000));
    }
}
