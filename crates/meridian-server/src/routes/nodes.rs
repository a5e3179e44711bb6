//! Worker nodes: list, show, drain, undrain.

use axum::extract::{Path, State};
use axum::Json;
use meridian_api::nodes::NodeView;
use meridian_api::ErrorBody;
use meridian_core::{Action, Name};
use meridian_state::{Applied, Command, NodeRecord};

use crate::auth::Caller;
use crate::ctx::{now, Ctx};
use crate::error::ApiError;

/// A node name from a path, or a 404.
pub fn node_name(raw: &str) -> Result<Name, ApiError> {
    Name::parse(raw).map_err(|p| ApiError::not_found(format!("node {raw:?} does not exist ({p})")))
}

/// The wire view of a node, with the resources its instances take.
pub async fn node_view(ctx: &Ctx, n: &NodeRecord) -> Result<NodeView, ApiError> {
    let r = ctx.reader();
    let usage = r.node_usage().await.map_err(ApiError::storage)?;
    let country = r
        .region(n.region.as_str())
        .await
        .map_err(ApiError::storage)?
        .map(|r| r.region.country.to_string())
        .unwrap_or_default();
    Ok(view(ctx, n, country, &usage))
}

/// Milliseconds since this server last heard `node`'s heartbeat (only the leader hears them).
fn heartbeat_ms_ago(ctx: &Ctx, node: &str) -> Option<u64> {
    let seen = ctx.0.heartbeats.lock().ok()?;
    let at = seen.get(node)?;
    Some(u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX))
}

fn view(ctx: &Ctx, n: &NodeRecord, country: String, usage: &[(String, u32, u32, u32)]) -> NodeView {
    let (count, cpu, mem) = usage
        .iter()
        .find(|u| u.0 == n.name.as_str())
        .map_or((0, 0, 0), |u| (u.1, u.2, u.3));
    NodeView {
        name: n.name.to_string(),
        region: n.region.to_string(),
        country,
        status: n.status.as_str().to_string(),
        drain: n.drain,
        cpu_millis: n.cpu_millis,
        memory_mb: n.memory_mb,
        cpu_used: cpu,
        memory_used: mem,
        labels: n.labels.clone(),
        advertise_host: n.advertise_host.clone(),
        instances: count,
        generation: n.generation,
        registered_at: n.registered_at,
        updated_at: n.updated_at,
        heartbeat_ms_ago: heartbeat_ms_ago(ctx, n.name.as_str()),
    }
}

/// Lists nodes.
#[utoipa::path(get, path = "/v1/nodes", tag = "nodes", security(("bearer" = [])),
    responses((status = 200, description = "Every node", body = [NodeView])))]
pub async fn list(State(ctx): State<Ctx>, caller: Caller) -> Result<Json<Vec<NodeView>>, ApiError> {
    caller.require(Action::Read)?;
    let r = ctx.reader();
    let st = ApiError::storage;
    let nodes = r.nodes().await.map_err(st)?;
    let regions = r.regions().await.map_err(st)?;
    let usage = r.node_usage().await.map_err(st)?;
    let out = nodes
        .iter()
        .map(|n| {
            let country = regions
                .iter()
                .find(|r| r.region.name == n.region)
                .map(|r| r.region.country.to_string())
                .unwrap_or_default();
            view(&ctx, n, country, &usage)
        })
        .collect();
    Ok(Json(out))
}

/// One node.
#[utoipa::path(get, path = "/v1/nodes/{name}", tag = "nodes", security(("bearer" = [])),
    params(("name" = String, Path, description = "Node name")),
    responses(
        (status = 200, description = "The node", body = NodeView),
        (status = 404, description = "No such node", body = ErrorBody)))]
pub async fn get(
    State(ctx): State<Ctx>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<NodeView>, ApiError> {
    caller.require(Action::Read)?;
    let name = node_name(&name)?;
    let node = ctx
        .reader()
        .node(name.as_str())
        .await
        .map_err(ApiError::storage)?
        .ok_or_else(|| ApiError::not_found(format!("node {name} does not exist")))?;
    Ok(Json(node_view(&ctx, &node).await?))
}

/// Drains a node: nothing new lands on it, and each of its instances stops once a
/// replacement elsewhere is healthy. The drain lasts, through restarts of its agent, until
/// the node is undrained.
#[utoipa::path(post, path = "/v1/nodes/{name}/drain", tag = "nodes", security(("bearer" = [])),
    params(("name" = String, Path, description = "Node name")),
    responses(
        (status = 200, description = "Draining (or down, and drained when it comes back)", body = NodeView),
        (status = 404, description = "No such node", body = ErrorBody)))]
pub async fn drain(
    State(ctx): State<Ctx>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<NodeView>, ApiError> {
    set_drain(ctx, caller, name, true).await
}

/// Undrains a node: it takes new work again (once it answers, if it is down). Undraining a
/// node that is not drained changes nothing.
#[utoipa::path(post, path = "/v1/nodes/{name}/undrain", tag = "nodes", security(("bearer" = [])),
    params(("name" = String, Path, description = "Node name")),
    responses(
        (status = 200, description = "Ready (or down, and ready when it comes back)", body = NodeView),
        (status = 404, description = "No such node", body = ErrorBody)))]
pub async fn undrain(
    State(ctx): State<Ctx>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<NodeView>, ApiError> {
    set_drain(ctx, caller, name, false).await
}

async fn set_drain(
    ctx: Ctx,
    caller: Caller,
    name: String,
    drain: bool,
) -> Result<Json<NodeView>, ApiError> {
    caller.require(Action::ManageCluster)?;
    let name = node_name(&name)?;
    let applied = ctx
        .propose(Command::SetNodeDrain {
            name,
            drain,
            at: now(),
        })
        .await?;
    let Applied::Node(node) = applied else {
        return Err(ApiError::storage("unexpected apply result"));
    };
    Ok(Json(node_view(&ctx, &node).await?))
}
