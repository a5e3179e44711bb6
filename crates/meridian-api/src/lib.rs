//! Meridian's wire types for the REST API (version 1). Types only: the HTTP client that sends
//! them is `meridian-client`, so the server and everything else that only reads or writes the
//! wire format use them without one.
//!
//! API Boundary: everything a client or another Meridian process sends or receives over HTTP is
//! defined here. Inputs carry plain strings and numbers; `into_*` methods turn them into checked
//! `meridian-core` types, naming the field at fault when they cannot.

pub mod agent;
pub mod apps;
pub mod cluster;
pub mod error;
pub mod images;
pub mod nodes;
pub mod regions;
pub mod routing;
pub mod tokens;

pub use error::{ErrorBody, ErrorCode, ErrorDetail};

/// The API version prefix every route lives under.
pub const API_PREFIX: &str = "/v1";

/// Header carrying the cluster secret on server-to-server calls.
pub const CLUSTER_SECRET_HEADER: &str = "meridian-cluster-secret";

/// Header a server sets when it forwards a request to the leader, naming itself.
pub const FORWARDED_BY_HEADER: &str = "meridian-forwarded-by";

/// Set by a server on a request it forwards: the identity the client certificate of the
/// original caller names (`<name>.<role>.<region>.meridian`). Believed only from a peer that
/// presented a server certificate.
pub const PEER_HEADER: &str = "meridian-peer";

/// Set by a server on a request it forwards: the address of the original caller, for the
/// limits on failed authentication. Believed only from a peer with a server certificate.
pub const CLIENT_ADDR_HEADER: &str = "meridian-client-addr";

/// Header on an answer a follower relayed from the leader, naming the leader's URL (as the
/// leader advertises it to the cluster). Clients may send their next calls there directly.
pub const SERVED_BY_HEADER: &str = "meridian-served-by";

/// `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok` when the server answers.
    pub status: String,
    /// This server's Raft node id.
    pub node_id: u64,
}

/// `GET /v1/ready`: the cluster takes requests. Answered by the leader once it has confirmed
/// its leadership with a quorum, as for any linearizable read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Ready {
    /// Always `ready` when the answer is 200.
    pub status: String,
    /// The leader's Raft node id, as the answering server knows it.
    pub leader: Option<u64>,
    /// The last log index the answering server applied.
    pub applied_index: u64,
    /// Whether auth was bootstrapped (`POST /v1/auth/bootstrap`).
    pub bootstrapped: bool,
}
