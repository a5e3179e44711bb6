//! Liveness.

use axum::extract::State;
use axum::Json;
use meridian_api::Health;

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
