//! The reporter: sends the latest [`InstanceReports`] whenever they change, and again at
//! least every `report_interval` while something is assigned, so a control plane that lost
//! them (a new leader, a restart) catches up.

use std::time::Duration;

use meridian_api::agent::InstanceReports;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::control::{Backoff, ControlPlane};
use crate::error::AgentError;
use crate::stop::Stop;

/// Reports until the stop, after `registered` turns true.
pub async fn run_reports(
    cp: &ControlPlane,
    every: Duration,
    mut registered: watch::Receiver<bool>,
    mut reports: watch::Receiver<Option<InstanceReports>>,
    mut stop: Stop,
) -> Result<(), AgentError> {
    if stop.run(registered.wait_for(|r| *r)).await.is_none() {
        return Ok(());
    }
    let mut last_sent: Option<InstanceReports> = None;
    let mut sent_at = Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        let current = reports.borrow_and_update().clone();
        if let Some(r) = current {
            let changed = last_sent.as_ref() != Some(&r);
            let due = !r.instances.is_empty() && sent_at.elapsed() >= every;
            if changed || due {
                let Some(result) = stop.run(cp.report(&r)).await else {
                    return Ok(());
                };
                match result {
                    Ok(()) => {
                        tracing::debug!(
                            generation = r.generation,
                            states = ?r.instances.iter().map(|i| (&i.id, i.state)).collect::<Vec<_>>(),
                            "reported"
                        );
                        last_sent = Some(r);
                        sent_at = Instant::now();
                        backoff.reset();
                    }
                    Err(e) => {
                        let pause = backoff.fail();
                        tracing::warn!(error = %e, retry_in = ?pause, "cannot report instances");
                        if stop.sleep(pause).await {
                            return Ok(());
                        }
                        continue;
                    }
                }
            }
        }
        let periodic = last_sent.as_ref().is_some_and(|r| !r.instances.is_empty());
        let nap = if periodic {
            every.saturating_sub(sent_at.elapsed())
        } else {
            every
        };
        tokio::select! {
            changed = reports.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
            }
            _ = tokio::time::sleep(nap) => {}
            _ = stop.wait() => return Ok(()),
        }
    }
}
