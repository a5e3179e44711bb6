//! [`run`]: the agent's loops wired together.
//!
//! ```text
//!  node (register, heartbeat) ──registered──▶ watch (assignments) ──desired──▶ reconcile
//!                                                                               │   ▲
//!                              report ◀──────────── reports ────────────────────┘   │ wake
//!                                              Docker events, health changes, ends of creates
//! ```
//! All loops run on the caller's task and watch one stop signal; tasks spawned for creates,
//! removals and health probes belong to the reconciler, which awaits or aborts them.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use meridian_api::agent::{Assignments, InstanceReports, RegisterNode, AGENT_PROTOCOL};
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

use crate::config::AgentConfig;
use crate::control::{Backoff, ControlPlane};
use crate::docker::DockerRuntime;
use crate::error::AgentError;
use crate::images::ImageSource;
use crate::reconcile::{Reconciler, ReconcilerConfig};
use crate::runtime::{ContainerEvent, ContainerRuntime, RuntimeError};
use crate::stop::Stop;

/// How long the loops get to wind down after the shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

/// Engine events waiting for the reconcile loop.
const EVENT_QUEUE: usize = 256;

/// An event stream that stayed up this long counts as healthy (resets its backoff).
const EVENTS_HEALTHY_AFTER: Duration = Duration::from_secs(10);

/// Runs an agent against the Docker engine at `config.docker_host` until `shutdown`
/// resolves. Waits for the engine's socket to appear if needed. Containers are left running
/// on shutdown; the next start adopts them.
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    config.validate()?;
    tokio::pin!(shutdown);
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
    let runtime = loop {
        match DockerRuntime::connect(&config.docker_host, config.stop_timeout) {
            Ok(rt) => break rt.scoped_to(config.cluster.clone()),
            Err(RuntimeError::Unavailable(detail)) => {
                if backoff.is_fresh() {
                    tracing::warn!(host = %config.docker_host, %detail,
                        "docker engine not there yet; waiting for it");
                }
                let wait = backoff.fail();
                tokio::select! {
                    _ = &mut shutdown => return Ok(()),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            Err(e) => {
                return Err(AgentError::Docker {
                    host: config.docker_host.clone(),
                    detail: e.to_string(),
                })
            }
        }
    };
    run_with(config, Arc::new(runtime), shutdown).await
}

/// Runs an agent over any [`ContainerRuntime`] until `shutdown` resolves.
pub async fn run_with<R: ContainerRuntime>(
    config: AgentConfig,
    runtime: Arc<R>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    config.validate()?;
    let cp = Arc::new(
        ControlPlane::new(&config.name, &config.servers, &config.token, &config.tls)
            .map_err(AgentError::Client)?,
    );
    let body = RegisterNode {
        protocol: AGENT_PROTOCOL,
        region: config.region.clone(),
        cpu_millis: config.cpu_millis,
        memory_mb: config.memory_mb,
        labels: config.labels.clone(),
        advertise_host: config.advertise_host.clone(),
    };
    let (stop_tx, stop) = Stop::channel();
    let (registered_tx, registered_rx) = watch::channel(false);
    let (desired_tx, desired_rx) = watch::channel(None);
    let (reports_tx, reports_rx) = watch::channel(None);
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let wake = Arc::new(Notify::new());
    tracing::info!(
        node = %config.name,
        region = %config.region,
        servers = ?config.servers,
        cpu_millis = config.cpu_millis,
        memory_mb = config.memory_mb,
        advertise_host = %config.advertise_host,
        "starting meridian agent"
    );

    // Images the engine lacks (and cannot pull) come from the control plane.
    let images: Arc<dyn ImageSource> = cp.clone();
    let rec_config = ReconcilerConfig {
        node: config.name.clone(),
        advertise_host: config.advertise_host.clone(),
        pull_images: config.pull_images,
        network: config.network.clone(),
    };
    let reconciler =
        Reconciler::new(runtime.clone(), rec_config, wake.clone()).with_image_source(images);

    let loops = async {
        tokio::try_join!(
            crate::node::run_node(
                &cp,
                &body,
                &config.name,
                config.heartbeat,
                &registered_tx,
                stop.clone()
            ),
            crate::watch::run_watch(
                &cp,
                &config.name,
                config.watch_wait,
                registered_rx.clone(),
                &desired_tx,
                stop.clone()
            ),
            crate::report::run_reports(
                &cp,
                config.report_interval,
                registered_rx.clone(),
                reports_rx,
                stop.clone()
            ),
            reconcile_loop(
                reconciler,
                &config,
                desired_rx,
                &reports_tx,
                events_rx,
                wake.clone(),
                stop.clone()
            ),
            events_loop(
                runtime.clone(),
                &config.name,
                events_tx,
                wake.clone(),
                stop.clone()
            ),
        )
        .map(|_| ())
    };
    tokio::pin!(loops);
    tokio::pin!(shutdown);
    tokio::select! {
        result = &mut loops => return result,
        _ = &mut shutdown => {}
    }
    tracing::info!("stopping agent; containers keep running");
    stop_tx.send_replace(true);
    match tokio::time::timeout(SHUTDOWN_GRACE, loops).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "agent loops did not stop in time");
            Ok(())
        }
    }
}

/// Reconciles on every new assignment, engine event, health change, end of a create or
/// removal, and every
/// `resync_interval`; never before the first assignments arrived, so a restarted agent
/// removes nothing it does not know to be unassigned.
async fn reconcile_loop<R: ContainerRuntime>(
    mut rec: Reconciler<R>,
    config: &AgentConfig,
    mut desired: watch::Receiver<Option<Arc<Assignments>>>,
    reports: &watch::Sender<Option<InstanceReports>>,
    mut events: mpsc::Receiver<ContainerEvent>,
    wake: Arc<Notify>,
    mut stop: Stop,
) -> Result<(), AgentError> {
    let mut resync = tokio::time::interval(config.resync_interval);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // While the engine is down, passes are retried on a backoff of their own, so the agent
    // catches up soon after the engine is back whatever the resync interval.
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(5));
    let mut retry_at: Option<Instant> = None;
    loop {
        let retry = async {
            match retry_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.wait() => break,
            _ = retry => {}
            Ok(()) = desired.changed() => {}
            Some(event) = events.recv() => {
                rec.note_event(&event);
                while let Ok(event) = events.try_recv() {
                    rec.note_event(&event);
                }
            }
            _ = wake.notified() => {}
            _ = resync.tick() => {}
        }
        let Some(target) = desired.borrow_and_update().clone() else {
            continue;
        };
        let Some(result) = stop.run(rec.pass(&target)).await else {
            break;
        };
        match result {
            Ok(r) => {
                if retry_at.take().is_some() {
                    tracing::info!("docker engine reachable again");
                }
                backoff.reset();
                reports.send_if_modified(|current| {
                    let changed = current.as_ref() != Some(&r);
                    if changed {
                        *current = Some(r);
                    }
                    changed
                });
            }
            Err(e) => {
                if retry_at.is_none() {
                    tracing::warn!(error = %e, "cannot list containers; retrying");
                } else {
                    tracing::debug!(error = %e, "cannot list containers");
                }
                retry_at = Some(Instant::now() + backoff.fail());
            }
        }
    }
    rec.shutdown().await;
    Ok(())
}

/// Follows the engine's events about this node's containers, waking the reconcile loop on
/// each; subscribes again (with backoff) whenever the stream breaks, e.g. on engine restart.
async fn events_loop<R: ContainerRuntime>(
    runtime: Arc<R>,
    node: &str,
    forward: mpsc::Sender<ContainerEvent>,
    wake: Arc<Notify>,
    mut stop: Stop,
) -> Result<(), AgentError> {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
    loop {
        let opened = Instant::now();
        let mut events = runtime.events(node);
        let ended = loop {
            let Some(next) = stop.run(events.next()).await else {
                return Ok(());
            };
            match next {
                Some(Ok(ev)) => {
                    tracing::debug!(action = %ev.action, instance = ?ev.instance, "container event");
                    // A full queue only loses the exit hint; the wake still brings a pass.
                    if forward.try_send(ev).is_err() {
                        wake.notify_one();
                    }
                }
                Some(Err(e)) => break e.to_string(),
                None => break "stream ended".to_string(),
            }
        };
        drop(events);
        if opened.elapsed() >= EVENTS_HEALTHY_AFTER {
            backoff.reset();
        }
        if backoff.is_fresh() {
            tracing::warn!(reason = %ended, "lost docker events; subscribing again");
        } else {
            tracing::debug!(reason = %ended, "docker events still unavailable");
        }
        // Whatever happened while the stream was down is found by a full pass.
        wake.notify_one();
        if stop.sleep(backoff.fail()).await {
            return Ok(());
        }
    }
}
