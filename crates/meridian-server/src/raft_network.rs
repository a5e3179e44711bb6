//! Raft RPCs over HTTP, the calling side: the `RaftNetworkFactory` a server hands to
//! `meridian_state::open`. Every call carries the cluster secret; the answering side is
//! `routes::raft`, which answers with the JSON of `Result<response, RaftError>`. Both sides
//! live in this crate, so the paths and the snapshot chunk are defined once, here.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::Vote;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use meridian_state::types::SnapshotMeta;
use meridian_state::{MemberNode, NodeId, TypeConfig};

/// Path of the append-entries RPC.
pub const APPEND_PATH: &str = "/v1/internal/raft/append";
/// Path of the vote RPC.
pub const VOTE_PATH: &str = "/v1/internal/raft/vote";
/// Path of the install-snapshot RPC.
pub const SNAPSHOT_PATH: &str = "/v1/internal/raft/snapshot";

/// One snapshot chunk on the wire. The data is base64: JSON would otherwise spell every byte
/// as a number.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotChunk {
    /// The sender's vote.
    pub vote: Vote<NodeId>,
    /// Which snapshot.
    pub meta: SnapshotMeta,
    /// Byte offset of this chunk.
    pub offset: u64,
    /// The bytes, base64.
    pub data: String,
    /// Whether this is the last chunk.
    pub done: bool,
}

impl SnapshotChunk {
    /// Encodes a request for the wire.
    pub fn from_request(r: InstallSnapshotRequest<TypeConfig>) -> Self {
        Self {
            vote: r.vote,
            meta: r.meta,
            offset: r.offset,
            data: base64::engine::general_purpose::STANDARD.encode(&r.data),
            done: r.done,
        }
    }

    /// Decodes a chunk received from the wire.
    pub fn into_request(self) -> Result<InstallSnapshotRequest<TypeConfig>, base64::DecodeError> {
        Ok(InstallSnapshotRequest {
            vote: self.vote,
            meta: self.meta,
            offset: self.offset,
            data: base64::engine::general_purpose::STANDARD.decode(self.data)?,
            done: self.done,
        })
    }
}

/// How long one RPC may keep going after openraft stopped waiting for it: long enough to set
/// up a connection across regions, so the next RPC finds it ready.
const CONNECTING_GRACE: Duration = Duration::from_secs(5);

/// How long a peer may take to accept a connection. Each RPC's whole deadline comes from
/// openraft (`RPCOption::hard_ttl`), set per call.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Makes one connection per peer; all share one HTTP client (and its keep-alive pool).
#[derive(Debug, Clone)]
pub struct HttpNetwork {
    http: reqwest::Client,
    secret: Arc<str>,
}

impl HttpNetwork {
    /// A network that authenticates with `secret` (and, with TLS, this server's certificate). Fails only when the HTTP client cannot be
    /// built, rather than falling back to one without the connect timeout.
    pub fn new(secret: &str, tls: &rustls::ClientConfig) -> Result<Self, reqwest::Error> {
        let http = crate::peer_http(tls)
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .build()?;
        Ok(Self {
            http,
            secret: secret.into(),
        })
    }
}

impl RaftNetworkFactory<TypeConfig> for HttpNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &MemberNode) -> PeerConnection {
        PeerConnection {
            net: self.clone(),
            target,
            node: node.clone(),
        }
    }
}

/// RPCs to one peer.
#[derive(Debug)]
pub struct PeerConnection {
    net: HttpNetwork,
    target: NodeId,
    node: MemberNode,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, MemberNode, RaftError<NodeId, E>>>;

impl PeerConnection {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let url = format!("{}{}", self.node.addr.trim_end_matches('/'), path);
        // Sent from a task of its own: openraft drops this future at the RPC's deadline (a
        // heartbeat interval), which can be shorter than making a connection to a distant
        // peer takes (TCP, then TLS: two round trips). The task finishes the connection and
        // leaves it in the pool for the next RPC; a late answer is dropped.
        let send = self
            .net
            .http
            .post(&url)
            .header(meridian_api::CLUSTER_SECRET_HEADER, &*self.net.secret)
            .timeout(option.hard_ttl().max(CONNECTING_GRACE))
            .json(req)
            .send();
        let resp = tokio::spawn(send)
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?
            .map_err(|e| {
                if e.is_connect() {
                    RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    RPCError::Network(NetworkError::new(&e))
                }
            })?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            let e = std::io::Error::other(format!("{url} answered {status}: {body}"));
            return Err(RPCError::Network(NetworkError::new(&e)));
        }
        let result: Result<Resp, RaftError<NodeId, E>> = resp
            .json()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        self.call(APPEND_PATH, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(SNAPSHOT_PATH, &SnapshotChunk::from_request(rpc), &option)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        self.call(VOTE_PATH, &rpc, &option).await
    }
}
