//! Nodes, instances, releases, plans and the audit log as the public API shows them.

use std::collections::BTreeMap;

use meridian_core::instance::{Desired, InstanceState};
use meridian_core::rollout::ReleaseStatus;
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

/// `desired` of an instance the control plane wants running.
pub const DESIRED_RUN: &str = Desired::Run.as_str();

impl InstanceView {
    /// The observed state, or `None` for one this client does not know (a newer server's).
    pub fn observed(&self) -> Option<InstanceState> {
        InstanceState::parse(&self.state)
    }

    /// Whether the control plane wants it running (not kept only for history).
    pub fn is_wanted(&self) -> bool {
        self.desired == DESIRED_RUN
    }

    /// Whether it serves: healthy, or running when the app has no health check.
    pub fn is_up(&self, has_health_check: bool) -> bool {
        match self.observed() {
            Some(InstanceState::Healthy) => true,
            Some(InstanceState::Running) => !has_health_check,
            _ => false,
        }
    }
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

impl ReleaseView {
    /// The status, or `None` for one this client does not know (a newer server's).
    pub fn rollout_status(&self) -> Option<ReleaseStatus> {
        ReleaseStatus::parse(&self.status)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(state: &str, desired: &str) -> InstanceView {
        InstanceView {
            id: "i".into(),
            app: "a".into(),
            node: "n".into(),
            region: "r".into(),
            release: 1,
            state: state.into(),
            desired: desired.into(),
            address: None,
            exit_code: None,
            detail: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn an_instance_is_up_when_healthy_or_running_without_a_check() {
        assert!(instance("healthy", "run").is_up(true));
        assert!(instance("running", "run").is_up(false));
        assert!(!instance("running", "run").is_up(true));
        assert!(!instance("unhealthy", "run").is_up(false));
        assert!(!instance("some-newer-state", "run").is_up(false));
        assert!(instance("running", "run").is_wanted());
        assert!(!instance("running", "stop").is_wanted());
    }

    #[test]
    fn a_release_status_this_client_does_not_know_reads_as_none() {
        let mut r = ReleaseView {
            app: "a".into(),
            number: 1,
            image: "x".into(),
            status: "rolling".into(),
            reason: None,
            created_at: 0,
            updated_at: 0,
        };
        assert_eq!(r.rollout_status(), Some(ReleaseStatus::Rolling));
        r.status = "paused-by-a-newer-server".into();
        assert_eq!(r.rollout_status(), None);
    }
}
