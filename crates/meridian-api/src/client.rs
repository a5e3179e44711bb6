//! A typed HTTP client for the Meridian API.

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::agent::{Assignments, HeartbeatAck, InstanceReports, RegisterNode};
use crate::apps::{AppBody, AppPatch, AppView};
use crate::cluster::ClusterStatus;
use crate::error::{ErrorBody, ErrorCode};
use crate::images::{BlobStored, ImageView, RegisterImage};
use crate::nodes::{AuditEntry, DeployBody, InstanceView, NodeView, PlanView, ReleaseView};
use crate::regions::{RegionBody, RegionPatch};
use crate::tokens::{BootstrapResponse, CreateToken, TokenCreated, TokenInfo};
use crate::Health;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error body.
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        /// HTTP status.
        status: u16,
        /// The error code from the body.
        code: ErrorCode,
        /// The error message from the body.
        message: String,
    },
    /// The server could not be reached or the exchange broke off. The message ends with the
    /// root cause ("Connection refused", "operation timed out"), and the reqwest error is not
    /// also returned as a `source`: its own chain repeats the URL at every level.
    #[error("cannot reach {url}: {}", root_cause(.error))]
    Transport {
        /// The URL called.
        url: String,
        /// The underlying error.
        error: reqwest::Error,
    },
    /// The server answered something that is not the expected JSON.
    #[error("unexpected answer from {url} ({status}): {detail}")]
    Decode {
        /// The URL called.
        url: String,
        /// HTTP status.
        status: u16,
        /// What could not be read.
        detail: String,
    },
}

/// The innermost error beneath `e`.
fn root_cause<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> &'a (dyn std::error::Error + 'static) {
    let mut root = e;
    while let Some(next) = root.source() {
        root = next;
    }
    root
}

impl ClientError {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } | Self::Decode { status, .. } => Some(*status),
            Self::Transport { .. } => None,
        }
    }

    /// The error code, when the server answered with an error body.
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            Self::Api { code, .. } => Some(code),
            Self::Decode { .. } | Self::Transport { .. } => None,
        }
    }
}

/// A client bound to one server address and, optionally, a token.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// A client for the server at `base` (e.g. `http://127.0.0.1:7001`).
    pub fn new(base: &str, token: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        Self {
            base: base.trim_end_matches('/').to_string(),
            token,
            http,
        }
    }

    /// The server address this client calls.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        self.call_within(method, path, body, None).await
    }

    async fn call_within<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: Option<std::time::Duration>,
    ) -> Result<T, ClientError> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.request(method, &url);
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = send(&url, req).await?;
        read_answer(url, resp).await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call::<(), T>(Method::GET, path, None).await
    }

    /// `GET /v1/health`.
    pub async fn health(&self) -> Result<Health, ClientError> {
        self.get("/v1/health").await
    }

    /// `POST /v1/auth/bootstrap`.
    pub async fn bootstrap(&self) -> Result<BootstrapResponse, ClientError> {
        self.call::<(), _>(Method::POST, "/v1/auth/bootstrap", None)
            .await
    }

    /// `POST /v1/tokens`.
    pub async fn create_token(&self, req: &CreateToken) -> Result<TokenCreated, ClientError> {
        self.call(Method::POST, "/v1/tokens", Some(req)).await
    }

    /// `GET /v1/tokens`.
    pub async fn tokens(&self) -> Result<Vec<TokenInfo>, ClientError> {
        self.get("/v1/tokens").await
    }

    /// `DELETE /v1/tokens/{id}`.
    pub async fn revoke_token(&self, id: &str) -> Result<(), ClientError> {
        self.call::<(), ()>(Method::DELETE, &format!("/v1/tokens/{id}"), None)
            .await
    }

    /// `GET /v1/cluster`.
    pub async fn cluster(&self) -> Result<ClusterStatus, ClientError> {
        self.get("/v1/cluster").await
    }

    /// `POST /v1/regions`.
    pub async fn create_region(&self, r: &RegionBody) -> Result<RegionBody, ClientError> {
        self.call(Method::POST, "/v1/regions", Some(r)).await
    }

    /// `GET /v1/regions`.
    pub async fn regions(&self) -> Result<Vec<RegionBody>, ClientError> {
        self.get("/v1/regions").await
    }

    /// `PATCH /v1/regions/{name}`.
    pub async fn patch_region(
        &self,
        name: &str,
        p: &RegionPatch,
    ) -> Result<RegionBody, ClientError> {
        self.call(Method::PATCH, &format!("/v1/regions/{name}"), Some(p))
            .await
    }

    /// `DELETE /v1/regions/{name}`.
    pub async fn delete_region(&self, name: &str) -> Result<(), ClientError> {
        self.call::<(), ()>(Method::DELETE, &format!("/v1/regions/{name}"), None)
            .await
    }

    /// `POST /v1/apps`.
    pub async fn create_app(&self, a: &AppBody) -> Result<AppView, ClientError> {
        self.call(Method::POST, "/v1/apps", Some(a)).await
    }

    /// `GET /v1/apps`.
    pub async fn apps(&self) -> Result<Vec<AppView>, ClientError> {
        self.get("/v1/apps").await
    }

    /// `GET /v1/apps/{name}`.
    pub async fn app(&self, name: &str) -> Result<AppView, ClientError> {
        self.get(&format!("/v1/apps/{name}")).await
    }

    /// `PATCH /v1/apps/{name}`.
    pub async fn patch_app(&self, name: &str, p: &AppPatch) -> Result<AppView, ClientError> {
        self.call(Method::PATCH, &format!("/v1/apps/{name}"), Some(p))
            .await
    }

    /// `DELETE /v1/apps/{name}`.
    pub async fn delete_app(&self, name: &str) -> Result<(), ClientError> {
        self.call::<(), ()>(Method::DELETE, &format!("/v1/apps/{name}"), None)
            .await
    }

    /// `POST /v1/apps/{name}/deploy`: starts a rolling deploy of `image`.
    pub async fn deploy(&self, app: &str, image: &str) -> Result<ReleaseView, ClientError> {
        let body = DeployBody {
            image: image.to_string(),
        };
        self.call(Method::POST, &format!("/v1/apps/{app}/deploy"), Some(&body))
            .await
    }

    /// `GET /v1/apps/{name}/releases`, newest first.
    pub async fn releases(&self, app: &str) -> Result<Vec<ReleaseView>, ClientError> {
        self.get(&format!("/v1/apps/{app}/releases")).await
    }

    /// `GET /v1/apps/{name}/instances`.
    pub async fn instances(&self, app: &str) -> Result<Vec<InstanceView>, ClientError> {
        self.get(&format!("/v1/apps/{app}/instances")).await
    }

    /// `GET /v1/apps/{name}/plan`.
    pub async fn plan(&self, app: &str) -> Result<PlanView, ClientError> {
        self.get(&format!("/v1/apps/{app}/plan")).await
    }

    /// `GET /v1/audit?app=NAME`.
    pub async fn audit(&self, app: Option<&str>) -> Result<Vec<AuditEntry>, ClientError> {
        match app {
            Some(a) => self.get(&format!("/v1/audit?app={a}")).await,
            None => self.get("/v1/audit").await,
        }
    }

    /// `GET /v1/nodes`.
    pub async fn nodes(&self) -> Result<Vec<NodeView>, ClientError> {
        self.get("/v1/nodes").await
    }

    /// `GET /v1/nodes/{name}`.
    pub async fn node(&self, name: &str) -> Result<NodeView, ClientError> {
        self.get(&format!("/v1/nodes/{name}")).await
    }

    /// `POST /v1/nodes/{name}/drain`.
    pub async fn drain_node(&self, name: &str) -> Result<NodeView, ClientError> {
        self.call::<(), _>(Method::POST, &format!("/v1/nodes/{name}/drain"), None)
            .await
    }

    /// `PUT /v1/agent/nodes/{name}`: registers (or re-registers) a node.
    pub async fn register_node(
        &self,
        name: &str,
        body: &RegisterNode,
    ) -> Result<NodeView, ClientError> {
        self.call(Method::PUT, &format!("/v1/agent/nodes/{name}"), Some(body))
            .await
    }

    /// `POST /v1/agent/nodes/{name}/heartbeat`.
    pub async fn heartbeat(&self, name: &str) -> Result<HeartbeatAck, ClientError> {
        self.call::<(), _>(
            Method::POST,
            &format!("/v1/agent/nodes/{name}/heartbeat"),
            None,
        )
        .await
    }

    /// `GET /v1/agent/nodes/{name}/assignments`: blocks until the generation is above `index`
    /// or `wait_ms` passes. Read from whichever server answers (`stale=true`); generations only
    /// grow, so an agent never acts on an older one.
    pub async fn assignments(
        &self,
        name: &str,
        index: u64,
        wait_ms: u64,
    ) -> Result<Assignments, ClientError> {
        let path = format!(
            "/v1/agent/nodes/{name}/assignments?index={index}&wait_ms={wait_ms}&stale=true"
        );
        let timeout = std::time::Duration::from_millis(wait_ms + 10_000);
        self.call_within::<(), _>(Method::GET, &path, None, Some(timeout))
            .await
    }

    /// `PUT /v1/agent/nodes/{name}/instances`.
    pub async fn report_instances(
        &self,
        name: &str,
        body: &InstanceReports,
    ) -> Result<(), ClientError> {
        self.call(
            Method::PUT,
            &format!("/v1/agent/nodes/{name}/instances"),
            Some(body),
        )
        .await
    }

    /// `GET /v1/agent/images?name=IMAGE`: the image as `docker save` wrote it, streamed. `Ok(None)` when the control plane has no such image (404).
    pub async fn fetch_image(&self, name: &str) -> Result<Option<reqwest::Response>, ClientError> {
        let url = format!("{}/v1/agent/images", self.base);
        // Hundreds of megabytes may take a while; the caller watches for a stalled transfer.
        let mut req = self
            .http
            .get(&url)
            .query(&[("name", name)])
            .timeout(std::time::Duration::from_secs(30 * 60));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = send(&url, req).await?;
        match resp.status() {
            s if s.is_success() => Ok(Some(resp)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => read_answer::<()>(url, resp).await.map(|()| None),
        }
    }

    /// `POST /v1/images/blobs`: streams a `docker save` tar to this server.
    pub async fn upload_image_blob(&self, tar: reqwest::Body) -> Result<BlobStored, ClientError> {
        let url = format!("{}/v1/images/blobs", self.base);
        let mut req = self
            .http
            .post(&url)
            .header("content-type", "application/x-tar")
            .timeout(std::time::Duration::from_secs(3600))
            .body(tar);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = send(&url, req).await?;
        read_answer(url, resp).await
    }

    /// `POST /v1/images`: names a stored blob.
    pub async fn register_image(&self, body: &RegisterImage) -> Result<ImageView, ClientError> {
        self.call(Method::POST, "/v1/images", Some(body)).await
    }

    /// `GET /v1/images`.
    pub async fn images(&self) -> Result<Vec<ImageView>, ClientError> {
        self.get("/v1/images").await
    }

    /// `GET /v1/cluster/settings`.
    pub async fn settings(&self) -> Result<crate::routing::ClusterSettings, ClientError> {
        self.get("/v1/cluster/settings").await
    }

    /// `PATCH /v1/cluster/settings`.
    pub async fn patch_settings(
        &self,
        s: &crate::routing::ClusterSettings,
    ) -> Result<crate::routing::ClusterSettings, ClientError> {
        self.call(Method::PATCH, "/v1/cluster/settings", Some(s))
            .await
    }

    /// `GET /v1/route?app=A&ip=ADDR[&region=R]`: which region serves a client, and why.
    pub async fn explain_route(
        &self,
        app: &str,
        ip: &str,
        region: Option<&str>,
    ) -> Result<crate::routing::RouteExplanation, ClientError> {
        let mut path = format!("/v1/route?app={}&ip={}", encode(app), encode(ip));
        if let Some(r) = region {
            path.push_str(&format!("&region={}", encode(r)));
        }
        self.get(&path).await
    }

    /// `GET /v1/router/table` once its version differs from `after`, waiting up to `wait_ms`.
    pub async fn route_table(
        &self,
        after: u64,
        wait_ms: u64,
    ) -> Result<crate::routing::RouteTable, ClientError> {
        self.get(&format!(
            "/v1/router/table?after={after}&wait_ms={wait_ms}&stale=true"
        ))
        .await
    }
}

/// Percent-encodes a query value.
fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn send(url: &str, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ClientError> {
    req.send().await.map_err(|error| ClientError::Transport {
        url: url.to_string(),
        error,
    })
}

/// Reads an answer: the JSON of a success (`null` for an empty one), or the error body.
async fn read_answer<T: DeserializeOwned>(
    url: String,
    resp: reqwest::Response,
) -> Result<T, ClientError> {
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(|error| ClientError::Transport {
        url: url.clone(),
        error,
    })?;
    if !status.is_success() {
        return Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) => ClientError::Api {
                status: status.as_u16(),
                code: b.error.code,
                message: b.error.message,
            },
            Err(_) => ClientError::Decode {
                url,
                status: status.as_u16(),
                detail: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            },
        });
    }
    let bytes = if status == StatusCode::NO_CONTENT || bytes.is_empty() {
        bytes::Bytes::from_static(b"null")
    } else {
        bytes
    };
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
        url,
        status: status.as_u16(),
        detail: e.to_string(),
    })
}
