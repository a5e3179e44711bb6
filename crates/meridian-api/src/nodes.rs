//! Nodes, instances, releases, plans and the audit log as the public API shows them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A worker node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeView {
    /// Node name.
    pub name: String,
    /// Region.
    pub region: String,
    /// The region's country.
    pub country: String,
    /// `ready`, `draining` or `down`.
    pub status: String,
    /// Whether an operator drained it: it takes no new work, even after it goes down and
    /// comes back, until it is undrained.
    #[serde(default)]
    pub drain: bool,
    /// CPU offered, in thousandths of a core.
    pub cpu_millis: u32,
    /// Memory offered, in MiB.
    pub memory_mb: u32,
    /// CPU taken by assigned instances.
    pub cpu_used: u32,
    /// Memory taken by assigned instances.
    pub memory_used: u32,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Where instance ports are published.
    pub advertise_host: String,
    /// Assigned instances.
    pub instances: u32,
    /// Assignment generation.
    pub generation: u64,
    /// Unix seconds of the first registration.
    pub registered_at: u64,
    /// Unix seconds of the last status change.
    pub updated_at: u64,
    /// Milliseconds since the leader last heard the node's heartbeat; `null` when it has heard
    /// none since it became leader (or when a follower answers with `?stale=true`).
    #[serde(default)]
    pub heartbeat_ms_ago: Option<u64>,
}

/// One instance of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InstanceView {
    /// Instance id.
    pub id: String,
    /// App.
    pub app: String,
    /// Node.
    pub node: String,
    /// The node's region.
    pub region: String,
    /// Release number.
    pub release: u64,
    /// Observed state (`starting` until the agent reports).
    pub state: String,
    /// Whether the control plane still wants it to run.
    pub desired: String,
    /// `host:port`, once running.
    pub address: Option<String>,
    /// Exit code, once exited.
    pub exit_code: Option<i64>,
    /// Last detail the agent gave.
    pub detail: Option<String>,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds of the last change.
    pub updated_at: u64,
}

/// A release of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReleaseView {
    /// App.
    pub app: String,
    /// Number, from 1.
    pub number: u64,
    /// Image.
    pub image: String,
    /// `rolling`, `active`, `halted` or `superseded`.
    pub status: String,
    /// Why it halted.
    pub reason: Option<String>,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds of the last status change.
    pub updated_at: u64,
}

/// `POST /v1/apps/{name}/deploy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeployBody {
    /// The image to roll out.
    pub image: String,
}

/// The scheduler's view of an app, without changing anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlanView {
    /// App.
    pub app: String,
    /// Its residency, e.g. `EU`.
    pub residency: String,
    /// Every node: eligible, or why not.
    pub nodes: Vec<NodeEligibility>,
    /// Instances that would be placed now, by node.
    pub would_place: Vec<String>,
    /// What could not be placed, with the reason.
    pub unplaced: Vec<UnplacedView>,
}

/// One node in a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeEligibility {
    /// Node.
    pub node: String,
    /// Region.
    pub region: String,
    /// Whether it could take one more instance.
    pub eligible: bool,
    /// Why not.
    pub reason: Option<String>,
}

/// Instances an app lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UnplacedView {
    /// Release.
    pub release: u64,
    /// Missing instances.
    pub count: u32,
    /// Why.
    pub reason: String,
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Position in the log.
    pub seq: u64,
    /// Unix seconds.
    pub at: u64,
    /// App.
    pub app: String,
    /// `created`, `placed`, `refused`, `stopped`, `release`.
    pub kind: String,
    /// Instance id, when one is concerned.
    pub instance: Option<String>,
    /// Node, when one is concerned.
    pub node: Option<String>,
    /// Region, when one is concerned.
    pub region: Option<String>,
    /// The region's country.
    pub country: Option<String>,
    /// The policy checked: residency and pinned regions, e.g. `residency [EU]`.
    pub policy: String,
    /// What happened, for people. A `created` entry says where the residency came from: the
    /// app's own, the cluster's default residency, or none.
    pub detail: String,
}

/// Which entries `GET /v1/audit` answers (its query parameters).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only this app's.
    pub app: Option<String>,
    /// Only entries made at or after this time, unix seconds.
    pub since: Option<u64>,
    /// Only entries after this sequence number.
    pub after: Option<u64>,
    /// At most this many (the server's maximum when left out).
    pub limit: Option<u64>,
    /// The newest `limit` entries that match, instead of the oldest.
    pub newest: bool,
}
