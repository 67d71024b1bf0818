//! Running the `fault` steps: on the backend's server (kill, stop, start, restart, pause, resume)
//! and on the network link in front of it (latency, bandwidth, blackhole, reset, restore). Each
//! step's duration goes into the case's report.

use super::Failure;
use super::exec::{Session, locate};
use crate::provision::netfault::NetLink;
use crate::scenario::model::{FaultAction, NetworkFault, Step};
use std::sync::Arc;
use std::time::Instant;

/// A `fault: { backend: … }` step. The link in front of the server refuses connections while the
/// server is stopped or killed, as the server would.
pub async fn run_backend(
    session: &Session,
    step: &Step,
    action: FaultAction,
) -> Result<(), Failure> {
    let what = Some(format!("fault: {{ backend: {} }}", action.name()));
    let fail = |e: String| locate(step, what.clone(), Failure::message(e));
    let server = session
        .server
        .clone()
        .ok_or_else(|| fail("fault steps need a server the harness started".into()))?;
    let started = Instant::now();
    // A pooler in front of the server keeps listening while the server is down.
    let fronted = server.lock().is_ok_and(|s| s.listens_when_down());
    let stops = !fronted
        && matches!(
            action,
            FaultAction::Kill | FaultAction::Stop | FaultAction::Restart
        );
    if let (Some(link), true) = (&session.link, stops) {
        link.refuse();
    }
    let done = tokio::task::spawn_blocking(move || {
        server
            .lock()
            .map_err(|_| "the server handle is poisoned".to_string())?
            .fault(action)
    })
    .await
    .unwrap_or_else(|e| Err(format!("the fault task failed: {e}")));
    done.map_err(&fail)?;
    if let (Some(link), FaultAction::Start | FaultAction::Restart, false) =
        (&session.link, action, fronted)
    {
        link.accept().await.map_err(|e| {
            fail(format!(
                "the link to the server could not listen again: {e}"
            ))
        })?;
    }
    session.note(format!(
        "line {}: {} took {} ms",
        step.loc.line,
        action.name(),
        started.elapsed().as_millis()
    ));
    Ok(())
}

/// A `fault: { network: … }` step.
pub async fn run_network(
    session: &Session,
    step: &Step,
    fault: NetworkFault,
) -> Result<(), Failure> {
    let link: &Arc<NetLink> = session.link.as_ref().ok_or_else(|| {
        locate(
            step,
            Some(format!("fault: {{ network: {} }}", fault.name())),
            Failure::message("network faults need a server the harness started as a process"),
        )
    })?;
    link.apply(fault);
    Ok(())
}
