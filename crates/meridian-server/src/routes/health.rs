//! Liveness.

use axum::extract::State;
use axum::Json;
use meridian_api::{Health, Ready};

use crate::ctx::Ctx;

/// This server answers; no auth, never forwarded.
#[utoipa::path(get, path = "/v1/health", tag = "cluster",
    responses((status = 200, description = "The server is up", body = Health)))]
pub async fn health(State(ctx): State<Ctx>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        node_id: ctx.0.id,
    })
}

/// The cluster takes requests: served through the leader, which first confirms its leadership
/// with a quorum, so a 200 means writes and linearizable reads work right now. No auth. With
/// `?stale=true` it only says that this server answers.
#[utoipa::path(get, path = "/v1/ready", tag = "cluster",
    responses((status = 200, description = "A leader with a quorum answered", body = Ready)))]
pub async fn ready(State(ctx): State<Ctx>) -> Json<Ready> {
    let m = ctx.raft().metrics().borrow().clone();
    Json(Ready {
        status: "ready".into(),
        leader: m.current_leader,
        applied_index: m.last_applied.map_or(0, |l| l.index),
        bootstrapped: ctx.reader().auth().signing_key.is_some(),
    })
}
