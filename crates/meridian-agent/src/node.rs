//! Registration and heartbeats: the node announces itself until a server accepts it, then
//! heartbeats; a server that has forgotten the node (404) gets a fresh registration.

use std::time::Duration;

use meridian_api::agent::RegisterNode;
use meridian_client::ClientError;
use tokio::sync::watch;

use crate::control::{is_not_found, is_refusal, Backoff, ControlPlane};
use crate::error::AgentError;
use crate::stop::Stop;

/// Registers, then heartbeats every `every` until the stop. Sets `registered` after the
/// first successful registration. Fails only when the control plane refuses the node.
pub async fn run_node(
    cp: &ControlPlane,
    body: &RegisterNode,
    node: &str,
    every: Duration,
    registered: &watch::Sender<bool>,
    mut stop: Stop,
) -> Result<(), AgentError> {
    if !register(cp, body, node, &mut stop).await? {
        return Ok(());
    }
    registered.send_replace(true);
    let mut failing = false;
    let mut last_status = String::new();
    loop {
        if stop.sleep(every).await {
            return Ok(());
        }
        let Some(result) = stop.run(cp.heartbeat()).await else {
            return Ok(());
        };
        match result {
            Ok(ack) => {
                if failing {
                    tracing::info!(server = cp.server(), "heartbeats are answered again");
                }
                failing = false;
                if ack.status != last_status {
                    tracing::info!(status = %ack.status, generation = ack.generation, "node status");
                    last_status = ack.status;
                }
            }
            Err(e) if is_not_found(&e) => {
                tracing::warn!(
                    server = cp.server(),
                    "the control plane does not know this node; registering again"
                );
                if !register(cp, body, node, &mut stop).await? {
                    return Ok(());
                }
            }
            Err(e) => {
                if failing {
                    tracing::debug!(error = %e, "heartbeat failed");
                } else {
                    tracing::warn!(error = %e, "heartbeat failed; retrying on the next server");
                }
                failing = true;
            }
        }
    }
}

/// Registers until it works (`true`) or the stop comes (`false`). A 4xx answer (unknown
/// region, bad token) is fatal: retrying would get the same answer.
pub async fn register(
    cp: &ControlPlane,
    body: &RegisterNode,
    node: &str,
    stop: &mut Stop,
) -> Result<bool, AgentError> {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        let Some(result) = stop.run(cp.register(body)).await else {
            return Ok(false);
        };
        // The server that answered (or the one the next attempt starts at).
        let server = cp.server().to_string();
        match result {
            Ok(view) => {
                tracing::info!(
                    server = %server,
                    node = %view.name,
                    region = %view.region,
                    status = %view.status,
                    "node registered"
                );
                return Ok(true);
            }
            Err(e) if is_refusal(&e) || is_not_found(&e) => return Err(refused(server, node, e)),
            Err(e) => {
                let wait = backoff.fail();
                tracing::warn!(server = %server, error = %e, retry_in = ?wait, "cannot register node");
                if stop.sleep(wait).await {
                    return Ok(false);
                }
            }
        }
    }
}

fn refused(server: String, node: &str, e: ClientError) -> AgentError {
    let (status, code, message) = match e.last() {
        ClientError::Api {
            status,
            code,
            message,
            ..
        } => (*status, code.to_string(), message.clone()),
        ClientError::Decode { status, detail, .. } => {
            (*status, "unexpected_answer".into(), detail.clone())
        }
        other => (0, "transport".into(), other.to_string()),
    };
    AgentError::Refused {
        server,
        node: node.to_string(),
        status,
        code,
        message,
    }
}
