//! What every handler shares.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use meridian_api::ErrorCode;
use meridian_state::{Applied, Command, Node, NodeId, ProposeError, Raft, StateReader};

use crate::error::ApiError;
use crate::metrics::Metrics;

/// Handler state: cheap to clone.
#[derive(Clone)]
pub struct Ctx(pub Arc<Inner>);

/// The shared parts.
pub struct Inner {
    /// This server's node id.
    pub id: NodeId,
    /// The replicated store.
    pub node: Node,
    /// The cluster secret.
    pub secret: String,
    /// HTTP client for forwarding requests to the leader.
    pub forward: reqwest::Client,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Public API body limit.
    pub max_body: usize,
    /// When each node last heartbeated to this server (only meaningful on the leader).
    pub heartbeats: std::sync::Mutex<std::collections::HashMap<String, tokio::time::Instant>>,
    /// Since when this server leads, as the reconcile loop saw it.
    pub leader_since: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// How long a node may stay silent before it is marked down.
    pub node_grace: std::time::Duration,
    /// Image blobs pushed to this server.
    pub images: crate::image_store::ImageStore,
    /// Locates clients for `GET /v1/route`.
    pub locator: meridian_geo::Locator,
    /// Measured round trips between regions, when configured.
    pub rtt: meridian_core::route::RttTable,
    /// The region this server runs in, where `GET /v1/route` places unlocated clients.
    pub region: Option<String>,
    /// Tokens whose signature this server has checked.
    pub verified: crate::auth::VerifiedTokens,
    /// Failed authentications, per client address and credential.
    pub failed_auth: crate::auth_limit::FailedAuth,
    /// Whether the API listens with TLS and checks client certificates: then server-only
    /// endpoints need a server certificate, and agent and router endpoints one of their role.
    pub mutual_tls: bool,
    /// The last route table built, with the applied index it reflects.
    pub route_table:
        tokio::sync::Mutex<Option<(u64, std::sync::Arc<meridian_api::routing::RouteTable>)>>,
}

/// How long a write may wait for commit before the client is told the outcome is unknown.
const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl Ctx {
    /// The Raft handle.
    pub fn raft(&self) -> &Raft {
        &self.0.node.raft
    }

    /// The applied state.
    pub fn reader(&self) -> &StateReader {
        &self.0.node.reader
    }

    /// Whether this server believes it leads.
    pub fn is_leader(&self) -> bool {
        self.raft().metrics().borrow().current_leader == Some(self.0.id)
    }

    /// Commits `cmd` through Raft and answers what applying it produced. Returns only after
    /// the entry is committed on a majority and applied here.
    pub async fn propose(&self, cmd: Command) -> Result<Applied, ApiError> {
        let write = tokio::time::timeout(WRITE_TIMEOUT, self.0.node.proposer.propose(cmd)).await;
        match write {
            Err(_) => Err(ApiError::unavailable(
                ErrorCode::CommitTimeout,
                "the write was not committed in time; its outcome is unknown",
            )),
            Ok(Ok(result)) => result.map_err(ApiError::from),
            Ok(Err(ProposeError::NotLeader)) => Err(ApiError::unavailable(
                ErrorCode::NotLeader,
                "leadership moved while writing; retry",
            )),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "raft write failed");
                Err(ApiError::unavailable(
                    ErrorCode::RaftUnavailable,
                    "raft is not accepting writes",
                ))
            }
        }
    }
}

/// How many times a read-modify-write is recomputed when its target changed underneath it.
const FRESH_ATTEMPTS: usize = 3;

impl Ctx {
    /// Proposes the command `build` computes from the current state, computing it again (up
    /// to three times) when apply refuses it as stale: a PATCH raced another change.
    pub async fn propose_fresh<F, Fut>(&self, mut build: F) -> Result<Applied, ApiError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Command, ApiError>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.propose(build().await?).await {
                Err(e) if e.code == ErrorCode::Stale && attempt < FRESH_ATTEMPTS => continue,
                other => return other,
            }
        }
    }
}

/// Seconds since the Unix epoch, read on the leader when it builds a command.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
