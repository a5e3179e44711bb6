//! Cluster membership.

use serde::{Deserialize, Serialize};

/// `GET /v1/cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClusterStatus {
    /// The current leader's id, if one is known.
    pub leader: Option<u64>,
    /// The current Raft term.
    pub term: u64,
    /// Every member, voters and learners.
    pub members: Vec<Member>,
}

/// A server in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Member {
    /// Raft node id.
    pub id: u64,
    /// Base URL other servers reach it at.
    pub addr: String,
    /// Whether it votes (else it is a learner).
    pub voter: bool,
    /// The region it runs in, if it said.
    pub region: Option<String>,
}

/// `POST /v1/cluster/join` body, sent by a server started with `--join`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// The joining server's node id.
    pub node_id: u64,
    /// Its base URL, e.g. `http://10.0.0.5:7001`.
    pub addr: String,
    /// Its region, if any.
    #[serde(default)]
    pub region: Option<String>,
}
