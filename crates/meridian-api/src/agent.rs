//! The agent protocol: how a `meridian agent` registers its node, heartbeats, learns its
//! assignments by a blocking watch, and reports what it observes.
//!
//! - `PUT  /v1/agent/nodes/{name}` with [`RegisterNode`] → [`crate::nodes::NodeView`]
//! - `POST /v1/agent/nodes/{name}/heartbeat` → [`HeartbeatAck`]
//! - `GET  /v1/agent/nodes/{name}/assignments?index=N&wait_ms=MS&stale=true` → [`Assignments`];
//!   answers at once when the node's generation is above `index`, else when it rises or the
//!   wait ends (then with the same generation).
//! - `PUT  /v1/agent/nodes/{name}/instances` with [`InstanceReports`] → 204

use std::collections::BTreeMap;

use meridian_core::{HealthCheck, InstanceState};
use serde::{Deserialize, Serialize};

/// Version of the agent protocol; sent on registration, refused if unknown.
pub const AGENT_PROTOCOL: u32 = 1;

/// Longest wait a watch may ask for.
pub const MAX_WATCH_MS: u64 = 60_000;

/// An agent announcing its node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RegisterNode {
    /// [`AGENT_PROTOCOL`].
    pub protocol: u32,
    /// The region the node is in; it must exist.
    pub region: String,
    /// CPU offered to instances, in thousandths of a core.
    pub cpu_millis: u32,
    /// Memory offered to instances, in MiB.
    pub memory_mb: u32,
    /// Free-form labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Host name or address where instance ports are published.
    pub advertise_host: String,
}

/// Answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HeartbeatAck {
    /// The node's status as the control plane sees it: `ready`, `draining` or `down`.
    pub status: String,
    /// The node's current assignment generation.
    pub generation: u64,
}

/// Everything a node should run. A generation only ever grows; an agent acts on the newest it
/// has seen and ignores older ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Assignments {
    /// The node.
    pub node: String,
    /// Bumped on every change to this node's assignments.
    pub generation: u64,
    /// The instances to run; anything else labelled with this node is to be removed.
    pub instances: Vec<Assignment>,
}

/// One instance to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Assignment {
    /// Instance id, unique in the cluster.
    pub id: String,
    /// App name.
    pub app: String,
    /// Release number.
    pub release: u64,
    /// Image reference.
    pub image: String,
    /// Port the app listens on inside the container.
    pub port: u16,
    /// Environment.
    pub env: BTreeMap<String, String>,
    /// CPU limit, in thousandths of a core.
    pub cpu_millis: u32,
    /// Memory limit, in MiB.
    pub memory_mb: u32,
    /// Health check, if the app has one.
    #[schema(value_type = Option<Object>)]
    pub health: Option<HealthCheck>,
}

/// What an agent observed of the instances on its node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InstanceReports {
    /// The assignment generation the agent was acting on.
    pub generation: u64,
    /// One entry per instance it knows of.
    pub instances: Vec<InstanceReport>,
}

/// The observed state of one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InstanceReport {
    /// Instance id.
    pub id: String,
    /// Observed state.
    #[schema(value_type = String)]
    pub state: InstanceState,
    /// Exit code, for `exited`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// `host:port` where the instance answers, once it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// A short explanation (last health failure, Docker error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}
