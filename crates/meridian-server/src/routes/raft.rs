//! Raft RPC endpoints, for other servers only (cluster secret required).

use axum::extract::State;
use axum::Json;
use meridian_api::ErrorBody;
use meridian_state::TypeConfig;
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotResponse, VoteRequest, VoteResponse,
};

use crate::auth::ClusterPeer;
use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::raft_network::{SnapshotChunk, APPEND_PATH, SNAPSHOT_PATH, VOTE_PATH};

/// AppendEntries.
#[utoipa::path(post, path = APPEND_PATH, tag = "internal",
    security(("cluster_secret" = [])),
    request_body(content = Object, description = "openraft's AppendEntriesRequest"),
    responses((status = 200, description = "openraft's answer, `{\"Ok\": ...}` or `{\"Err\": ...}`", body = Object)))]
pub async fn append(
    State(ctx): State<Ctx>,
    _peer: ClusterPeer,
    ApiJson(req): ApiJson<AppendEntriesRequest<TypeConfig>>,
) -> Result<Json<Result<AppendEntriesResponse<u64>, RaftError<u64>>>, ApiError> {
    Ok(Json(ctx.raft().append_entries(req).await))
}

/// RequestVote.
#[utoipa::path(post, path = VOTE_PATH, tag = "internal",
    security(("cluster_secret" = [])),
    request_body(content = Object, description = "openraft's VoteRequest"),
    responses((status = 200, description = "openraft's answer, `{\"Ok\": ...}` or `{\"Err\": ...}`", body = Object)))]
pub async fn vote(
    State(ctx): State<Ctx>,
    _peer: ClusterPeer,
    ApiJson(req): ApiJson<VoteRequest<u64>>,
) -> Result<Json<Result<VoteResponse<u64>, RaftError<u64>>>, ApiError> {
    Ok(Json(ctx.raft().vote(req).await))
}

/// InstallSnapshot, one chunk.
#[utoipa::path(post, path = SNAPSHOT_PATH, tag = "internal",
    security(("cluster_secret" = [])),
    request_body(content = Object, description = "One snapshot chunk: openraft's InstallSnapshotRequest with the data in base64"),
    responses(
        (status = 200, description = "openraft's answer, `{\"Ok\": ...}` or `{\"Err\": ...}`", body = Object),
        (status = 400, description = "`bad_request`: the chunk's data is not base64", body = ErrorBody)))]
pub async fn snapshot(
    State(ctx): State<Ctx>,
    _peer: ClusterPeer,
    ApiJson(chunk): ApiJson<SnapshotChunk>,
) -> Result<
    Json<Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>>,
    ApiError,
> {
    let req = chunk
        .into_request()
        .map_err(|e| ApiError::bad_request(format!("snapshot data is not base64: {e}")))?;
    Ok(Json(ctx.raft().install_snapshot(req).await))
}
