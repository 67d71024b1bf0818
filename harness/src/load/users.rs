//! The load users: spread over client threads, each a current-thread runtime with its own
//! connections, its users' drivers and its own recorder, so nothing on the hot path is shared
//! between threads (no lock, no counter, no wake-up across cores). The recorders are merged when
//! the run ends.

use super::driver::{BoxFuture, Driver, Rng, Workload};
use super::stats::Recorder;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long after the end a call still unanswered is given up (and counted `DEADLINE_EXCEEDED`).
pub const GRACE: Duration = Duration::from_secs(30);

/// How the users run.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Concurrent users (each one call in flight at a time).
    pub users: usize,
    /// Users started per second.
    pub hatch_rate: usize,
    /// How long to measure.
    pub duration: Duration,
    /// Client threads (each runs every `threads`-th user); at least 1 and at most `users`
    /// ([`Plan::new`]).
    pub threads: usize,
}

impl Plan {
    /// A plan of `users` users (at least 1) on `threads` client threads, clamped to 1..=users.
    pub fn new(users: usize, hatch_rate: usize, duration: Duration, threads: usize) -> Self {
        let users = users.max(1);
        Self {
            users,
            hatch_rate,
            duration,
            threads: threads.clamp(1, users),
        }
    }
}

/// Makes the drivers of one client thread's users, on that thread's runtime: given the thread's
/// index and how many users it runs, one driver per user.
pub type Setup = Arc<
    dyn Fn(usize, usize) -> BoxFuture<'static, Result<Vec<Box<dyn Driver>>, String>> + Send + Sync,
>;

/// What a finished run measured.
pub struct Measured {
    /// Every thread's calls, merged.
    pub recorder: Recorder,
    /// From the start signal to the last user's end.
    pub elapsed: Duration,
}

/// Runs `plan` on `workload`: starts the client threads, waits until every thread has its drivers,
/// then measures. `on_tick` is called about four times a second with (calls, failures) so far.
pub async fn drive(
    plan: Plan,
    workload: Arc<Workload>,
    setup: Setup,
    on_tick: impl Fn(u64, u64),
) -> Result<Measured, String> {
    let threads = plan.threads;
    let recorders: Vec<Arc<Recorder>> = (0..threads).map(|_| Arc::new(Recorder::new())).collect();
    let (start_tx, start_rx) = tokio::sync::watch::channel(false);
    let mut ready = Vec::new();
    let mut done = Vec::new();
    for (t, recorder) in recorders.iter().enumerate() {
        let users: Vec<usize> = (t..plan.users).step_by(threads).collect();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let (workload, setup, recorder) = (workload.clone(), setup.clone(), recorder.clone());
        let mut start = start_rx.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("client runtime: {e}"))?;
        std::thread::Builder::new()
            .name(format!("load-client-{t}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let drivers = match setup(t, users.len()).await {
                        Ok(d) => {
                            let _ = ready_tx.send(Ok(()));
                            d
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    if start.wait_for(|go| *go).await.is_err() {
                        return;
                    }
                    let started = Instant::now();
                    let mut tasks = tokio::task::JoinSet::new();
                    for (user, mut driver) in users.into_iter().zip(drivers) {
                        let (workload, recorder) = (workload.clone(), recorder.clone());
                        let delay =
                            Duration::from_secs_f64(user as f64 / plan.hatch_rate.max(1) as f64);
                        tasks.spawn(async move {
                            tokio::time::sleep(delay).await;
                            let mut rng = Rng::for_user(user);
                            let remote = driver.remote();
                            // A call still unanswered this long after the end is given up (one
                            // timer per user, not per call), so a stalled proxy cannot hang a run.
                            let give_up =
                                tokio::time::sleep_until((started + plan.duration + GRACE).into());
                            tokio::pin!(give_up);
                            while started.elapsed() < plan.duration {
                                let pick = workload.pick(&mut rng);
                                let op = pick.entry.op;
                                let call = workload.call(driver.as_mut(), pick, &recorder);
                                let outcome = tokio::select! {
                                    (_, _, outcome) = call => outcome,
                                    () = &mut give_up => {
                                        recorder.record_abandoned(op.name());
                                        break;
                                    }
                                };
                                if matches!(&outcome, Err(c) if c == "UNAVAILABLE") {
                                    // A connection that is gone fails at once: back off instead
                                    // of spinning and starving the thread's other users.
                                    tokio::time::sleep(Duration::from_millis(10)).await;
                                }
                                if remote {
                                    // Let the thread's other users whose answers came in the same
                                    // read stamp theirs before this one sends its next call
                                    // (h2load stamps every answer as it parses them).
                                    tokio::task::yield_now().await;
                                } else {
                                    // A call that never waits (an in-process store) still lets
                                    // the thread's other users run.
                                    tokio::task::consume_budget().await;
                                }
                            }
                        });
                    }
                    while tasks.join_next().await.is_some() {}
                    let _ = done_tx.send(());
                });
            })
            .map_err(|e| format!("client thread: {e}"))?;
        ready.push(ready_rx);
        done.push(done_rx);
    }
    for r in ready {
        match r.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("a client thread stopped before it was ready".into()),
        }
    }
    let started = Instant::now();
    let _ = start_tx.send(true);
    // Done when every thread has said so (or has gone).
    let mut all = std::pin::pin!(async move {
        for d in done {
            let _ = d.await;
        }
    });
    loop {
        tokio::select! {
            _ = &mut all => break,
            () = tokio::time::sleep(Duration::from_millis(250)) => {
                let (calls, failures) = recorders.iter().fold((0, 0), |(c, f), r| {
                    let (rc, rf) = r.counts();
                    (c + rc, f + rf)
                });
                on_tick(calls, failures);
            }
        }
    }
    let elapsed = started.elapsed();
    let recorder = Recorder::new();
    for r in &recorders {
        recorder.merge(r);
    }
    Ok(Measured { recorder, elapsed })
}
