//! The HTTP surface: which routes exist and which layers wrap them.

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{middleware, Router};

use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::routes::{apps, cluster, health, raft, regions, tokens};
use crate::{leader, metrics, openapi};

/// Raft RPCs carry log batches and snapshot chunks: allow far more than the public API.
const RAFT_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// Builds the whole router.
pub fn build(ctx: Ctx) -> Router {
    let max_body = ctx.0.max_body;
    // Served by the leader (forwarded there by any other server).
    let public = Router::new()
        .route("/v1/auth/bootstrap", post(tokens::bootstrap))
        .route("/v1/tokens", post(tokens::create).get(tokens::list))
        .route("/v1/tokens/{id}", delete(tokens::revoke))
        .route("/v1/cluster", get(cluster::get))
        .route("/v1/cluster/join", post(cluster::join))
        .route("/v1/cluster/members/{id}", delete(cluster::remove))
        .route("/v1/regions", post(regions::create).get(regions::list))
        .route(
            "/v1/regions/{name}",
            get(regions::get)
                .patch(regions::patch)
                .delete(regions::delete),
        )
        .route("/v1/apps", post(apps::create).get(apps::list))
        .route(
            "/v1/apps/{name}",
            get(apps::get).patch(apps::patch).delete(apps::delete),
        )
        .layer(DefaultBodyLimit::max(max_body))
        .route_layer(middleware::from_fn_with_state(
            ctx.clone(),
            leader::route_to_leader,
        ));
    // Answered by this server itself.
    let local = Router::new()
        .route("/v1/health", get(health::health))
        .route("/v1/openapi.json", get(openapi::serve))
        .route("/metrics", get(metrics::render));
    let internal = Router::new()
        .route(meridian_state::network::APPEND_PATH, post(raft::append))
        .route(meridian_state::network::VOTE_PATH, post(raft::vote))
        .route(meridian_state::network::SNAPSHOT_PATH, post(raft::snapshot))
        .layer(DefaultBodyLimit::max(RAFT_BODY_LIMIT));
    Router::new()
        .merge(public)
        .merge(local)
        .merge(internal)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(ctx.clone(), metrics::track))
        .with_state(ctx)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> impl IntoResponse {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}
