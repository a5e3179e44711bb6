//! Raft RPC endpoints, for other servers only (cluster secret required).

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use meridian_state::network::SnapshotChunk;
use meridian_state::TypeConfig;
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotResponse, VoteRequest, VoteResponse,
};

use crate::auth::require_secret;
use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::json::ApiJson;

/// AppendEntries.
pub async fn append(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<AppendEntriesRequest<TypeConfig>>,
) -> Result<Json<Result<AppendEntriesResponse<u64>, RaftError<u64>>>, ApiError> {
    require_secret(&ctx, &headers)?;
    Ok(Json(ctx.raft().append_entries(req).await))
}

/// RequestVote.
pub async fn vote(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<VoteRequest<u64>>,
) -> Result<Json<Result<VoteResponse<u64>, RaftError<u64>>>, ApiError> {
    require_secret(&ctx, &headers)?;
    Ok(Json(ctx.raft().vote(req).await))
}

/// InstallSnapshot, one chunk.
pub async fn snapshot(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    ApiJson(chunk): ApiJson<SnapshotChunk>,
) -> Result<
    Json<Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>>,
    ApiError,
> {
    require_secret(&ctx, &headers)?;
    let req = chunk
        .into_request()
        .map_err(|e| ApiError::bad_request(format!("snapshot data is not base64: {e}")))?;
    Ok(Json(ctx.raft().install_snapshot(req).await))
}
