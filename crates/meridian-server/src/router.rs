//! The HTTP surface: which routes exist and which layers wrap them.

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use axum::{middleware, Router};
use meridian_api::ErrorCode;

use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::routes::{
    agent, apps, audit, cluster, health, images, nodes, raft, regions, releases, routing, tokens,
};
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
        .route(
            "/v1/cluster/settings",
            get(routing::settings).patch(routing::patch_settings),
        )
        .route("/v1/router/table", get(routing::table))
        .route("/v1/router/register", post(routing::register))
        .route("/v1/route", get(routing::explain))
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
        .route("/v1/apps/{name}/deploy", post(releases::deploy))
        .route("/v1/apps/{name}/releases", get(releases::releases))
        .route("/v1/apps/{name}/instances", get(releases::instances))
        .route("/v1/apps/{name}/plan", get(releases::plan))
        .route("/v1/nodes", get(nodes::list))
        .route("/v1/nodes/{name}", get(nodes::get))
        .route("/v1/nodes/{name}/drain", post(nodes::drain))
        .route("/v1/audit", get(audit::list))
        .route("/v1/images", post(images::register).get(images::list))
        .route("/v1/agent/nodes/{name}", put(agent::register))
        .route("/v1/agent/nodes/{name}/heartbeat", post(agent::heartbeat))
        .route(
            "/v1/agent/nodes/{name}/assignments",
            get(agent::assignments),
        )
        .route("/v1/agent/nodes/{name}/instances", put(agent::report))
        .layer(DefaultBodyLimit::max(max_body))
        .route_layer(middleware::from_fn_with_state(
            ctx.clone(),
            leader::route_to_leader,
        ));
    // Image blobs stream to and from this server's own disk.
    let blobs = Router::new()
        .route("/v1/images/blobs", post(images::upload))
        .route("/v1/agent/images", get(images::fetch))
        .route(images::INTERNAL_BLOB_PATH, get(images::internal_blob))
        .layer(DefaultBodyLimit::disable());
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
        .merge(blobs)
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
        ErrorCode::MethodNotAllowed,
        "method not allowed on this route",
    )
}
