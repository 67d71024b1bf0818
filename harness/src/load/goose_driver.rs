//! `--driver goose` (the `goose` feature): goose starts the users at the hatch rate, runs them for
//! the duration and writes `goose-report.{html,json,md}`; every call is also recorded with goose
//! (`record_custom_request_duration`), which is the per-call cost the lean driver avoids.

use super::driver::{Driver, Rng, Workload};
use super::stats::Recorder;
use super::users::{Measured, Plan, Setup};
use goose::config::GooseConfiguration;
use goose::prelude::*;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// One goose user's driver and random state (goose's session data must be `Clone`; clones share it).
#[derive(Clone)]
struct UserState {
    driver: Arc<tokio::sync::Mutex<(Box<dyn Driver>, Rng)>>,
}

/// Runs `plan` with goose driving the users; drivers come from `setup` on this runtime.
pub async fn drive(
    plan: Plan,
    workload: Arc<Workload>,
    setup: Setup,
    mut config: GooseConfiguration,
    host: &str,
    report_dir: &Path,
) -> Result<Measured, String> {
    let drivers = setup(0, plan.users).await?;
    let pool: Arc<std::sync::Mutex<Vec<Box<dyn Driver>>>> =
        Arc::new(std::sync::Mutex::new(drivers));
    let recorder = Arc::new(Recorder::new());
    config.host = Some(host.to_string());
    config.users = Some(plan.users);
    config
        .increase_rate
        .get_or_insert_with(|| plan.hatch_rate.to_string());
    config.run_time = Some(format!("{}s", plan.duration.as_secs().max(1)));
    if config.report_file.is_empty() {
        config.report_file = ["goose-report.html", "goose-report.json", "goose-report.md"]
            .iter()
            .map(|f| report_dir.join(f).display().to_string())
            .collect();
    }
    config.quiet = config.quiet.max(1);
    config.no_print_metrics = true;
    let next_user = Arc::new(AtomicUsize::new(0));
    let start = Transaction::new(Arc::new(move |user: &mut GooseUser| {
        let (pool, next_user) = (pool.clone(), next_user.clone());
        Box::pin(async move {
            let driver = pool.lock().ok().and_then(|mut p| p.pop());
            if let Some(driver) = driver {
                let rng = Rng::for_user(next_user.fetch_add(1, Ordering::Relaxed));
                user.set_session_data(UserState {
                    driver: Arc::new(tokio::sync::Mutex::new((driver, rng))),
                });
            }
            Ok(())
        })
    }))
    .set_on_start();
    let rec = recorder.clone();
    let call = Transaction::new(Arc::new(move |user: &mut GooseUser| {
        let (wl, rec) = (workload.clone(), rec.clone());
        Box::pin(async move {
            let Some(state) = user.get_session_data::<UserState>() else {
                // More goose users than drivers: this one has nothing to call (never busy-loop).
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                return Ok(());
            };
            let state = state.driver.clone();
            let (op, latency, outcome) = {
                let mut guard = state.lock().await;
                let (driver, rng) = &mut *guard;
                let pick = wl.pick(rng);
                wl.call(driver.as_mut(), pick, &rec).await
            };
            let _ = user
                .record_custom_request_duration(
                    "GRPC",
                    op.name(),
                    latency,
                    outcome.is_ok(),
                    None,
                    outcome.as_ref().err().map(String::as_str),
                )
                .await;
            Ok(())
        })
    }))
    .set_name("keyvalue");
    let started = Instant::now();
    GooseAttack::initialize_with_config(config)
        .map_err(|e| format!("goose: {e}"))?
        .register_scenario(
            scenario!("keyvalue")
                .register_transaction(start)
                .register_transaction(call),
        )
        .execute()
        .await
        .map_err(|e| format!("goose: {e}"))?;
    let elapsed = started.elapsed();
    let recorder = Arc::try_unwrap(recorder).unwrap_or_else(|shared| {
        let copy = Recorder::new();
        copy.merge(&shared);
        copy
    });
    Ok(Measured { recorder, elapsed })
}
