//! Records of the worker side of the state: nodes, releases, instances and the audit log, and
//! the parts of the commands that change them.

use std::collections::BTreeMap;

use meridian_core::schedule::Unplaced;
use meridian_core::{AppSpec, HealthCheck, InstanceState, Name, NodeStatus, ReleaseStatus};
use serde::{Deserialize, Serialize};

/// A worker node as the state keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Unique name.
    pub name: Name,
    /// Its region.
    pub region: Name,
    /// CPU offered, in thousandths of a core.
    pub cpu_millis: u32,
    /// Memory offered, in MiB.
    pub memory_mb: u32,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Where instance ports are published.
    pub advertise_host: String,
    /// Status.
    pub status: NodeStatus,
    /// Bumped on every change to its assignments.
    pub generation: u64,
    /// Unix seconds.
    pub registered_at: u64,
    /// Unix seconds.
    pub updated_at: u64,
}

/// What every instance of one release runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseConfig {
    /// Image reference.
    pub image: String,
    /// Container port.
    pub port: u16,
    /// Environment.
    pub env: BTreeMap<String, String>,
    /// Health check.
    pub health: Option<HealthCheck>,
    /// CPU per instance.
    pub cpu_millis: u32,
    /// Memory per instance.
    pub memory_mb: u32,
}

impl ReleaseConfig {
    /// The runtime part of an app spec.
    pub fn of(spec: &AppSpec) -> Self {
        Self {
            image: spec.image.clone(),
            port: spec.port,
            env: spec.env.clone(),
            health: spec.health.clone(),
            cpu_millis: spec.cpu_millis,
            memory_mb: spec.memory_mb,
        }
    }

    /// Writes this config back into `spec`.
    pub fn apply_to(&self, spec: &mut AppSpec) {
        spec.image = self.image.clone();
        spec.port = self.port;
        spec.env = self.env.clone();
        spec.health = self.health.clone();
        spec.cpu_millis = self.cpu_millis;
        spec.memory_mb = self.memory_mb;
    }
}

/// A release as the state keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRecord {
    /// The app.
    pub app: Name,
    /// Its number, from 1.
    pub number: u64,
    /// What its instances run.
    pub config: ReleaseConfig,
    /// Status.
    pub status: ReleaseStatus,
    /// Why it halted.
    pub reason: Option<String>,
    /// Unix seconds by which a rolling release must be fully healthy.
    pub deadline_at: u64,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds.
    pub updated_at: u64,
}

/// Whether the control plane wants an instance to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Desired {
    /// Run it.
    Run,
    /// Stop it (kept for history).
    Stop,
}

impl Desired {
    /// `run` or `stop`.
    pub fn as_str(self) -> &'static str {
        match self {
            Desired::Run => "run",
            Desired::Stop => "stop",
        }
    }
}

/// An instance: desired placement plus the last observed state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// Unique id.
    pub id: String,
    /// The app.
    pub app: Name,
    /// The release it runs.
    pub release: u64,
    /// Its node.
    pub node: Name,
    /// Run or stop.
    pub desired: Desired,
    /// Last observed state.
    pub state: InstanceState,
    /// Exit code, once exited.
    pub exit_code: Option<i64>,
    /// `host:port`, once running.
    pub address: Option<String>,
    /// Last detail from the agent or the reason it was stopped.
    pub detail: Option<String>,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds.
    pub updated_at: u64,
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position; assigned on apply (0 in commands).
    pub seq: u64,
    /// Unix seconds.
    pub at: u64,
    /// The app.
    pub app: Name,
    /// `placed`, `stopped`, `refused` or `release`.
    pub kind: String,
    /// The instance concerned.
    pub instance: Option<String>,
    /// The node concerned.
    pub node: Option<String>,
    /// Its region.
    pub region: Option<String>,
    /// The region's country.
    pub country: Option<String>,
    /// The policy checked, e.g. `residency [EU]`.
    pub policy: String,
    /// What happened.
    pub detail: String,
}

/// A new instance decided by the scheduler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewInstance {
    /// Its id, chosen by the leader.
    pub id: String,
    /// The app.
    pub app: Name,
    /// The release.
    pub release: u64,
    /// The node.
    pub node: Name,
}

/// An instance to stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopInstance {
    /// Its id.
    pub id: String,
    /// Why.
    pub reason: String,
}

/// A release status change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseUpdate {
    /// The app.
    pub app: Name,
    /// The release.
    pub number: u64,
    /// Its new status: `active` supersedes the other active and rolling releases; `halted`
    /// restores the app's config from the serving release.
    pub status: ReleaseStatus,
    /// Why.
    pub reason: Option<String>,
}

/// What an agent observed of one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    /// Instance id.
    pub id: String,
    /// State.
    pub state: InstanceState,
    /// Exit code.
    pub exit_code: Option<i64>,
    /// Address.
    pub address: Option<String>,
    /// Detail.
    pub detail: Option<String>,
}

/// The unplaced instances of one app, replacing what was recorded before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppUnplaced {
    /// The app.
    pub app: Name,
    /// What is missing; empty when everything is placed.
    pub unplaced: Vec<Unplaced>,
}

/// One scheduling round of the leader's reconcile loop, committed as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Schedule {
    /// New instances.
    pub place: Vec<NewInstance>,
    /// Instances to stop.
    pub stop: Vec<StopInstance>,
    /// Release status changes.
    pub releases: Vec<ReleaseUpdate>,
    /// Unplaced instances per app, for apps whose record changed.
    pub unplaced: Vec<AppUnplaced>,
    /// Audit entries.
    pub audit: Vec<AuditRecord>,
    /// The applied index of the state the round was planned from.
    #[serde(default)]
    pub planned_at: u64,
}

impl Schedule {
    /// Whether the round changes nothing.
    pub fn is_empty(&self) -> bool {
        self.place.is_empty()
            && self.stop.is_empty()
            && self.releases.is_empty()
            && self.unplaced.is_empty()
            && self.audit.is_empty()
    }
}

/// An image pushed to the control plane, as the state keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Image reference.
    pub name: String,
    /// `sha256:<hex>` of the tar.
    pub digest: String,
    /// Bytes.
    pub size: u64,
    /// Servers holding the blob.
    pub holders: Vec<u64>,
    /// Unix seconds.
    pub pushed_at: u64,
}
