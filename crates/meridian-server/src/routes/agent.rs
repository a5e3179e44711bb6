//! The agent protocol: node registration, heartbeats, the blocking assignments watch and
//! instance reports. See `meridian_api::agent`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use meridian_api::agent::{
    Assignment, Assignments, HeartbeatAck, InstanceReports, RegisterNode, AGENT_PROTOCOL,
    MAX_WATCH_MS,
};
use meridian_api::nodes::NodeView;
use meridian_api::{ErrorBody, ErrorCode};
use meridian_core::{Action, Name, NodeStatus};
use meridian_state::{Applied, Command, Observed};
use tokio::time::Instant;

use crate::auth::Caller;
use crate::ctx::{now, Ctx};
use crate::error::ApiError;
use crate::json::JsonBody;
use crate::query::{Query, MAX_STORED};
use crate::routes::nodes::{node_name, node_view};

/// Longest advertise host accepted.
const MAX_HOST_LEN: usize = 253;
/// Most labels per node.
const MAX_LABELS: usize = 64;
/// Most instance reports in one call.
const MAX_REPORTS: usize = 10_000;

/// Registers a node (or updates it) and marks it ready.
#[utoipa::path(put, path = "/v1/agent/nodes/{name}", tag = "agent", request_body = RegisterNode,
    security(("bearer" = [])),
    params(("name" = String, Path, description = "Node name")),
    responses(
        (status = 200, description = "Registered", body = NodeView),
        (status = 422, description = "Invalid field or unknown region", body = ErrorBody)))]
pub async fn register(
    State(ctx): State<Ctx>,
    caller: Caller,
    Path(name): Path<String>,
    body: JsonBody<RegisterNode>,
) -> Result<Json<NodeView>, ApiError> {
    // The token, then the name (no certificate can name what is not a label), then this
    // node's certificate, all before the body is looked at; then the body, and that the
    // certificate names its region.
    caller.require(Action::AgentEndpoint)?;
    let name = Name::parse(&name).map_err(|p| ApiError::invalid("name", p.to_string()))?;
    caller.require_agent(&ctx, Some(name.as_str()), None)?;
    let body = body.parse()?;
    if body.protocol != AGENT_PROTOCOL {
        return Err(ApiError::invalid(
            "protocol",
            format!(
                "agent protocol {} is not supported; this server speaks {AGENT_PROTOCOL}",
                body.protocol
            ),
        ));
    }
    let region =
        Name::parse(&body.region).map_err(|p| ApiError::invalid("region", p.to_string()))?;
    caller.require_agent(&ctx, Some(name.as_str()), Some(region.as_str()))?;
    if body.cpu_millis == 0 {
        return Err(ApiError::invalid("cpu_millis", "must be at least 1"));
    }
    if body.memory_mb == 0 {
        return Err(ApiError::invalid("memory_mb", "must be at least 1"));
    }
    let host = body.advertise_host.trim();
    if host.is_empty()
        || host.len() > MAX_HOST_LEN
        || host.contains(|c: char| c.is_whitespace() || c == '/')
    {
        return Err(ApiError::invalid(
            "advertise_host",
            "must be a host name or IP address",
        ));
    }
    if body.labels.len() > MAX_LABELS
        || body
            .labels
            .iter()
            .any(|(k, v)| k.is_empty() || k.len() > 128 || v.len() > 1024)
    {
        return Err(ApiError::invalid(
            "labels",
            format!(
                "at most {MAX_LABELS} labels, non-empty keys up to 128 bytes, values up to 1024"
            ),
        ));
    }
    let applied = ctx
        .propose(Command::RegisterNode {
            name: name.clone(),
            region,
            cpu_millis: body.cpu_millis,
            memory_mb: body.memory_mb,
            labels: body.labels,
            advertise_host: host.to_string(),
            at: now(),
        })
        .await?;
    saw(&ctx, &name);
    let Applied::Node(node) = applied else {
        return Err(ApiError::storage("unexpected apply result"));
    };
    Ok(Json(node_view(&ctx, &node).await?))
}

fn saw(ctx: &Ctx, node: &Name) {
    if let Ok(mut seen) = ctx.0.heartbeats.lock() {
        seen.insert(node.to_string(), Instant::now());
    }
}

/// Records a heartbeat (on the leader); a node that was down is ready again.
#[utoipa::path(post, path = "/v1/agent/nodes/{name}/heartbeat", tag = "agent",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "Node name")),
    responses(
        (status = 200, description = "Recorded", body = HeartbeatAck),
        (status = 404, description = "Unknown node: register again", body = ErrorBody)))]
pub async fn heartbeat(
    State(ctx): State<Ctx>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<HeartbeatAck>, ApiError> {
    caller.require(Action::AgentEndpoint)?;
    let name = node_name(&name)?;
    caller.require_agent(&ctx, Some(name.as_str()), None)?;
    let Some(mut node) = ctx
        .reader()
        .node(name.as_str())
        .await
        .map_err(ApiError::storage)?
    else {
        return Err(ApiError::not_found(format!(
            "node {name} is not registered"
        )));
    };
    saw(&ctx, &name);
    if node.status == NodeStatus::Down {
        tracing::info!(node = %name, "node heartbeats again; marking it ready");
        if let Applied::Node(n) = ctx
            .propose(Command::SetNodeStatus {
                name: name.clone(),
                status: NodeStatus::Ready,
                at: now(),
            })
            .await?
        {
            node = n;
        }
    }
    Ok(Json(HeartbeatAck {
        status: node.status.as_str().to_string(),
        generation: node.generation,
    }))
}

/// The node's assignments, once its generation is above `index` or after `wait_ms`.
#[utoipa::path(get, path = "/v1/agent/nodes/{name}/assignments", tag = "agent",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "Node name"),
        ("index" = Option<u64>, Query, minimum = 0,
            description = "Answer once the generation is above this (default 0: at once)"),
        ("wait_ms" = Option<u64>, Query, minimum = 0, maximum = 60000,
            description = "Longest wait in milliseconds (default 0); more than 60000 is refused")),
    responses(
        (status = 200, description = "The assignments", body = Assignments),
        (status = 404, description = "Unknown node", body = ErrorBody),
        (status = 503, description = "`shutting_down`: the server is stopping", body = ErrorBody)))]
pub async fn assignments(
    State(ctx): State<Ctx>,
    caller: Caller,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Assignments>, ApiError> {
    caller.require(Action::AgentEndpoint)?;
    let name = node_name(&name)?;
    caller.require_agent(&ctx, Some(name.as_str()), None)?;
    let query = Query::parse(raw.as_deref());
    let index = query.u64("index", 0, MAX_STORED)?;
    let wait = Duration::from_millis(query.u64("wait_ms", 0, MAX_WATCH_MS)?);
    let deadline = Instant::now() + wait;
    let mut applied = ctx.raft().metrics();
    loop {
        // Read the generation before waiting, so no change between the read and the wait
        // is missed: `changed` fires for anything applied after this borrow.
        applied.borrow_and_update();
        let node = ctx
            .reader()
            .node(name.as_str())
            .await
            .map_err(ApiError::storage)?
            .ok_or_else(|| ApiError::not_found(format!("node {name} is not registered")))?;
        if node.generation > index || Instant::now() >= deadline {
            return Ok(Json(assignments_of(&ctx, &name, node.generation).await?));
        }
        tokio::select! {
            changed = applied.changed() => {
                if changed.is_err() {
                    let stopping = "the server is stopping";
                    return Err(ApiError::unavailable(ErrorCode::ShuttingDown, stopping));
                }
            }
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

async fn assignments_of(ctx: &Ctx, node: &Name, generation: u64) -> Result<Assignments, ApiError> {
    let r = ctx.reader();
    let instances = r
        .node_instances(node.as_str())
        .await
        .map_err(ApiError::storage)?;
    let mut releases: BTreeMap<(String, u64), meridian_state::ReleaseConfig> = BTreeMap::new();
    let mut out = Vec::with_capacity(instances.len());
    for i in instances {
        let key = (i.app.to_string(), i.release);
        if !releases.contains_key(&key) {
            let all = r
                .releases(Some(i.app.as_str()))
                .await
                .map_err(ApiError::storage)?;
            for rel in all {
                releases.insert((rel.app.to_string(), rel.number), rel.config);
            }
        }
        // A release deleted with its app leaves nothing to run.
        let Some(config) = releases.get(&key) else {
            continue;
        };
        out.push(Assignment {
            id: i.id,
            app: i.app.to_string(),
            release: i.release,
            image: config.image.clone(),
            port: config.port,
            env: config.env.clone(),
            cpu_millis: config.cpu_millis,
            memory_mb: config.memory_mb,
            health: config.health.clone(),
        });
    }
    Ok(Assignments {
        node: node.to_string(),
        generation,
        instances: out,
    })
}

/// Records what a node's agent observed.
#[utoipa::path(put, path = "/v1/agent/nodes/{name}/instances", tag = "agent",
    request_body = InstanceReports, security(("bearer" = [])),
    params(("name" = String, Path, description = "Node name")),
    responses(
        (status = 204, description = "Recorded"),
        (status = 404, description = "Unknown node", body = ErrorBody)))]
pub async fn report(
    State(ctx): State<Ctx>,
    caller: Caller,
    Path(name): Path<String>,
    body: JsonBody<InstanceReports>,
) -> Result<StatusCode, ApiError> {
    caller.require(Action::AgentEndpoint)?;
    let name = node_name(&name)?;
    caller.require_agent(&ctx, Some(name.as_str()), None)?;
    let body = body.parse()?;
    if body.instances.len() > MAX_REPORTS {
        return Err(ApiError::invalid(
            "instances",
            format!("at most {MAX_REPORTS} reports per call"),
        ));
    }
    if ctx
        .reader()
        .node(name.as_str())
        .await
        .map_err(ApiError::storage)?
        .is_none()
    {
        return Err(ApiError::not_found(format!(
            "node {name} is not registered"
        )));
    }
    // Only what differs from the applied state is committed.
    let current: HashMap<String, meridian_state::InstanceRecord> = ctx
        .reader()
        .node_instances(name.as_str())
        .await
        .map_err(ApiError::storage)?
        .into_iter()
        .map(|i| (i.id.clone(), i))
        .collect();
    let reports: Vec<Observed> = body
        .instances
        .into_iter()
        .map(|r| Observed {
            id: r.id,
            state: r.state,
            exit_code: r.exit_code,
            address: r.address,
            detail: r.detail.map(|d| d.chars().take(500).collect()),
        })
        .filter(|r| {
            current.get(&r.id).is_some_and(|c| {
                c.state != r.state
                    || c.exit_code != r.exit_code
                    || c.address != r.address
                    || c.detail != r.detail
            })
        })
        .collect();
    if !reports.is_empty() {
        ctx.propose(Command::ReportInstances {
            node: name,
            reports,
            at: now(),
        })
        .await?;
    }
    Ok(StatusCode::NO_CONTENT)
}
