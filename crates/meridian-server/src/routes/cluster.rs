//! Cluster status and membership changes.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use meridian_api::cluster::{ClusterStatus, JoinRequest, Member};
use meridian_api::{ErrorBody, ErrorCode};
use meridian_core::Action;
use meridian_state::MemberNode;
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::ChangeMembers;
use tokio::time::Instant;

use crate::auth::{Caller, ClusterPeer};
use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::json::ApiJson;

/// How long a membership change keeps retrying while another is in progress.
const CHANGE_WAIT: Duration = Duration::from_secs(20);

/// The members as this server's Raft sees them.
pub fn status(ctx: &Ctx) -> ClusterStatus {
    let m = ctx.raft().metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let members = membership
        .nodes()
        .map(|(id, node)| Member {
            id: *id,
            addr: node.addr.clone(),
            voter: voters.contains(id),
            region: node.region.clone(),
        })
        .collect();
    ClusterStatus {
        leader: m.current_leader,
        term: m.current_term,
        members,
    }
}

/// The leader, term and members.
#[utoipa::path(get, path = "/v1/cluster", tag = "cluster", security(("bearer" = [])),
    responses((status = 200, description = "Cluster status", body = ClusterStatus)))]
pub async fn get(State(ctx): State<Ctx>, caller: Caller) -> Result<Json<ClusterStatus>, ApiError> {
    caller.require(Action::Read)?;
    Ok(Json(status(&ctx)))
}

type ChangeResult = Result<(), RaftError<u64, ClientWriteError<u64, MemberNode>>>;

/// Retries a membership change while another one is still in progress.
async fn change<F, Fut>(what: &str, mut attempt: F) -> Result<(), ApiError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ChangeResult>,
{
    let deadline = Instant::now() + CHANGE_WAIT;
    loop {
        match attempt().await {
            Ok(()) => return Ok(()),
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                ChangeMembershipError::InProgress(_),
            ))) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                return Err(ApiError::unavailable(
                    ErrorCode::NotLeader,
                    "leadership moved; retry",
                ))
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                return Err(ApiError::conflict(format!("{what}: {e}")))
            }
            Err(e) => {
                tracing::error!(error = %e, "{what} failed");
                return Err(ApiError::unavailable(
                    ErrorCode::RaftUnavailable,
                    format!("{what}: {e}"),
                ));
            }
        }
    }
}

/// Adds a server as a voter. Called by servers started with `--join`, with the cluster secret.
/// Idempotent: joining again with the same address succeeds.
#[utoipa::path(post, path = "/v1/cluster/join", tag = "cluster", request_body = JoinRequest,
    security(("cluster_secret" = [])),
    responses(
        (status = 200, description = "The server is a voter", body = ClusterStatus),
        (status = 409, description = "That node id is taken by another address", body = ErrorBody)))]
pub async fn join(
    State(ctx): State<Ctx>,
    _peer: ClusterPeer,
    ApiJson(req): ApiJson<JoinRequest>,
) -> Result<Json<ClusterStatus>, ApiError> {
    let addr = req.addr.trim_end_matches('/').to_string();
    if !(addr.starts_with("http://") || addr.starts_with("https://")) {
        return Err(ApiError::invalid(
            "addr",
            "must be an http:// or https:// URL",
        ));
    }
    let current = status(&ctx);
    if let Some(m) = current.members.iter().find(|m| m.id == req.node_id) {
        if m.addr != addr {
            return Err(ApiError::conflict(format!(
                "node id {} is already a member at {}",
                req.node_id, m.addr
            )));
        }
        if m.voter {
            return Ok(Json(current));
        }
    }
    let node = MemberNode {
        addr,
        region: req.region,
    };
    let raft = ctx.raft().clone();
    change("adding a learner", || {
        let raft = raft.clone();
        let node = node.clone();
        async move { raft.add_learner(req.node_id, node, true).await.map(|_| ()) }
    })
    .await?;
    change("promoting to voter", || {
        let raft = raft.clone();
        async move {
            raft.change_membership(ChangeMembers::AddVoterIds([req.node_id].into()), false)
                .await
                .map(|_| ())
        }
    })
    .await?;
    tracing::info!(node = req.node_id, "server joined as a voter");
    Ok(Json(status(&ctx)))
}

/// Removes a server from the cluster.
#[utoipa::path(delete, path = "/v1/cluster/members/{id}", tag = "cluster", security(("bearer" = [])),
    params(("id" = u64, Path, description = "Node id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "Not a member", body = ErrorBody),
        (status = 409, description = "Would leave no voter", body = ErrorBody)))]
pub async fn remove(
    State(ctx): State<Ctx>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Action::ManageCluster)?;
    // Parsed here rather than by `Path<u64>`, whose rejection is plain text, not the JSON error.
    let id: u64 = raw
        .parse()
        .map_err(|_| ApiError::not_found(format!("node {raw:?} is not a member")))?;
    let current = status(&ctx);
    let Some(member) = current.members.iter().find(|m| m.id == id) else {
        return Err(ApiError::not_found(format!("node {id} is not a member")));
    };
    let voters = current.members.iter().filter(|m| m.voter).count();
    if member.voter && voters == 1 {
        return Err(ApiError::conflict("cannot remove the last voter"));
    }
    let raft = ctx.raft().clone();
    let changes = if member.voter {
        ChangeMembers::RemoveVoters([id].into())
    } else {
        ChangeMembers::RemoveNodes([id].into())
    };
    change("removing a member", || {
        let raft = raft.clone();
        let changes = changes.clone();
        async move { raft.change_membership(changes, false).await.map(|_| ()) }
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
