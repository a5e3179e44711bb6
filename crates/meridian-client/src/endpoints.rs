//! One method per API operation. Each says which servers may serve it and whether it may be
//! repeated; everything else is the same loop in `client.rs`.

use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use meridian_api::agent::{Assignments, HeartbeatAck, InstanceReports, RegisterNode};
use meridian_api::apps::{AppBody, AppPatch, AppView};
use meridian_api::cluster::ClusterStatus;
use meridian_api::images::{BlobStored, ImageView, RegisterImage};
use meridian_api::nodes::{
    AuditEntry, AuditQuery, DeployBody, InstanceView, NodeView, PlanView, ReleaseView,
};
use meridian_api::regions::{RegionBody, RegionPatch};
use meridian_api::routing::{
    ClusterSettings, RegisterRouter, RouteExplanation, RouteTable, RouterEntry,
};
use meridian_api::tokens::{BootstrapResponse, CreateToken, TokenCreated, TokenInfo};
use meridian_api::Health;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::client::{Call, Client, Repeat, Served};
use crate::error::ClientError;

/// An image archive as `docker save` wrote it, streamed.
pub type ByteStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

impl Call {
    /// Any server may answer.
    fn any(mut self) -> Self {
        self.served = Served::Any;
        self
    }

    /// Only server `i` may answer.
    fn only(mut self, i: usize) -> Self {
        self.served = Served::Only(i);
        self
    }

    /// Sending it twice does what sending it once did.
    fn repeatable(mut self) -> Self {
        self.repeat = Repeat::Safe;
        self
    }

    /// The whole request may take `timeout` at one server.
    fn within(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A server that has not started answering after `limit` is given up for the next.
    fn answering_within(mut self, limit: Duration) -> Self {
        self.first_answer = Some(limit);
        self
    }
}

impl Client {
    fn get_call(&self, path: String) -> Result<Call, ClientError> {
        self.call::<()>(Method::GET, path, None)
    }

    async fn get<T: DeserializeOwned>(&self, path: String) -> Result<T, ClientError> {
        self.json(self.get_call(path)?).await
    }

    async fn write<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: String,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        self.json(self.call(method, path, body)?).await
    }

    /// A long poll's deadline: the wait it asks for, plus the grace.
    fn long_poll(&self, wait_ms: u64) -> Duration {
        Duration::from_millis(wait_ms) + self.timeouts().long_poll_grace
    }

    /// `GET /v1/health` of whichever server answers.
    pub async fn health(&self) -> Result<Health, ClientError> {
        self.json(self.get_call("/v1/health".into())?.any()).await
    }

    /// The URL of the configured server that leads now: the leader's id from
    /// `GET /v1/cluster`, matched against each server's `GET /v1/health`. `Ok(None)` when
    /// there is no leader or it is none of the configured servers. Later leader-bound calls
    /// start there.
    pub async fn find_leader(&self) -> Result<Option<String>, ClientError> {
        let Some(leader) = self.cluster().await?.leader else {
            return Ok(None);
        };
        for (i, url) in self.servers().iter().enumerate() {
            let call = self.get_call("/v1/health".into())?.only(i);
            if let Ok(h) = self.json::<Health>(call).await {
                if h.node_id == leader {
                    self.servers_state().answered(i, None, true);
                    return Ok(Some(url.clone()));
                }
            }
        }
        Ok(None)
    }

    /// `POST /v1/auth/bootstrap`.
    pub async fn bootstrap(&self) -> Result<BootstrapResponse, ClientError> {
        self.write::<(), _>(Method::POST, "/v1/auth/bootstrap".into(), None)
            .await
    }

    /// `POST /v1/tokens`.
    pub async fn create_token(&self, req: &CreateToken) -> Result<TokenCreated, ClientError> {
        self.write(Method::POST, "/v1/tokens".into(), Some(req))
            .await
    }

    /// `GET /v1/tokens`.
    pub async fn tokens(&self) -> Result<Vec<TokenInfo>, ClientError> {
        self.get("/v1/tokens".into()).await
    }

    /// `DELETE /v1/tokens/{id}`.
    pub async fn revoke_token(&self, id: &str) -> Result<(), ClientError> {
        self.write::<(), _>(Method::DELETE, format!("/v1/tokens/{}", encode(id)), None)
            .await
    }

    /// `GET /v1/cluster`.
    pub async fn cluster(&self) -> Result<ClusterStatus, ClientError> {
        self.get("/v1/cluster".into()).await
    }

    /// `POST /v1/regions`.
    pub async fn create_region(&self, r: &RegionBody) -> Result<RegionBody, ClientError> {
        self.write(Method::POST, "/v1/regions".into(), Some(r))
            .await
    }

    /// `GET /v1/regions`.
    pub async fn regions(&self) -> Result<Vec<RegionBody>, ClientError> {
        self.get("/v1/regions".into()).await
    }

    /// `PATCH /v1/regions/{name}`.
    pub async fn patch_region(
        &self,
        name: &str,
        p: &RegionPatch,
    ) -> Result<RegionBody, ClientError> {
        self.write(
            Method::PATCH,
            format!("/v1/regions/{}", encode(name)),
            Some(p),
        )
        .await
    }

    /// `DELETE /v1/regions/{name}`.
    pub async fn delete_region(&self, name: &str) -> Result<(), ClientError> {
        self.write::<(), _>(
            Method::DELETE,
            format!("/v1/regions/{}", encode(name)),
            None,
        )
        .await
    }

    /// `POST /v1/apps`.
    pub async fn create_app(&self, a: &AppBody) -> Result<AppView, ClientError> {
        self.write(Method::POST, "/v1/apps".into(), Some(a)).await
    }

    /// `GET /v1/apps`.
    pub async fn apps(&self) -> Result<Vec<AppView>, ClientError> {
        self.get("/v1/apps".into()).await
    }

    /// `GET /v1/apps/{name}`.
    pub async fn app(&self, name: &str) -> Result<AppView, ClientError> {
        self.get(format!("/v1/apps/{}", encode(name))).await
    }

    /// `PATCH /v1/apps/{name}`.
    pub async fn patch_app(&self, name: &str, p: &AppPatch) -> Result<AppView, ClientError> {
        self.write(Method::PATCH, format!("/v1/apps/{}", encode(name)), Some(p))
            .await
    }

    /// `DELETE /v1/apps/{name}`.
    pub async fn delete_app(&self, name: &str) -> Result<(), ClientError> {
        self.write::<(), _>(Method::DELETE, format!("/v1/apps/{}", encode(name)), None)
            .await
    }

    /// `POST /v1/apps/{name}/deploy`: starts a rolling deploy of `image`.
    pub async fn deploy(&self, app: &str, image: &str) -> Result<ReleaseView, ClientError> {
        let body = DeployBody {
            image: image.to_string(),
        };
        let path = format!("/v1/apps/{}/deploy", encode(app));
        self.write(Method::POST, path, Some(&body)).await
    }

    /// `GET /v1/apps/{name}/releases`, newest first.
    pub async fn releases(&self, app: &str) -> Result<Vec<ReleaseView>, ClientError> {
        self.get(format!("/v1/apps/{}/releases", encode(app))).await
    }

    /// `GET /v1/apps/{name}/instances`.
    pub async fn instances(&self, app: &str) -> Result<Vec<InstanceView>, ClientError> {
        self.get(format!("/v1/apps/{}/instances", encode(app)))
            .await
    }

    /// `GET /v1/apps/{name}/plan`.
    pub async fn plan(&self, app: &str) -> Result<PlanView, ClientError> {
        self.get(format!("/v1/apps/{}/plan", encode(app))).await
    }

    /// `GET /v1/audit?app=NAME`.
    pub async fn audit(&self, app: Option<&str>) -> Result<Vec<AuditEntry>, ClientError> {
        let query = AuditQuery {
            app: app.map(str::to_string),
            ..AuditQuery::default()
        };
        self.audit_entries(&query).await
    }

    /// `GET /v1/audit` with every filter `query` sets.
    pub async fn audit_entries(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, ClientError> {
        let mut params = Vec::new();
        if let Some(a) = &query.app {
            params.push(format!("app={}", encode(a)));
        }
        for (key, value) in [
            ("since", query.since),
            ("after", query.after),
            ("limit", query.limit),
        ] {
            if let Some(v) = value {
                params.push(format!("{key}={v}"));
            }
        }
        if query.newest {
            params.push("newest=true".into());
        }
        let mut path = "/v1/audit".to_string();
        if !params.is_empty() {
            path = format!("{path}?{}", params.join("&"));
        }
        self.get(path).await
    }

    /// `GET /v1/nodes`.
    pub async fn nodes(&self) -> Result<Vec<NodeView>, ClientError> {
        self.get("/v1/nodes".into()).await
    }

    /// `GET /v1/nodes/{name}`.
    pub async fn node(&self, name: &str) -> Result<NodeView, ClientError> {
        self.get(format!("/v1/nodes/{}", encode(name))).await
    }

    /// `POST /v1/nodes/{name}/drain`.
    pub async fn drain_node(&self, name: &str) -> Result<NodeView, ClientError> {
        let path = format!("/v1/nodes/{}/drain", encode(name));
        self.write::<(), _>(Method::POST, path, None).await
    }

    /// `POST /v1/nodes/{name}/undrain`.
    pub async fn undrain_node(&self, name: &str) -> Result<NodeView, ClientError> {
        let path = format!("/v1/nodes/{}/undrain", encode(name));
        self.write::<(), _>(Method::POST, path, None).await
    }

    /// `PUT /v1/agent/nodes/{name}`: registers (or re-registers) a node. Repeatable: a second
    /// registration with the same body leaves the node as the first did.
    pub async fn register_node(
        &self,
        name: &str,
        body: &RegisterNode,
    ) -> Result<NodeView, ClientError> {
        let path = format!("/v1/agent/nodes/{}", encode(name));
        let call = self.call(Method::PUT, path, Some(body))?.repeatable();
        self.json(call).await
    }

    /// `POST /v1/agent/nodes/{name}/heartbeat`. Repeatable: it only says the node is alive.
    pub async fn heartbeat(&self, name: &str) -> Result<HeartbeatAck, ClientError> {
        let path = format!("/v1/agent/nodes/{}/heartbeat", encode(name));
        let call = self.call::<()>(Method::POST, path, None)?.repeatable();
        self.json(call).await
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
            "/v1/agent/nodes/{}/assignments?index={index}&wait_ms={wait_ms}&stale=true",
            encode(name)
        );
        let call = self.get_call(path)?.any().within(self.long_poll(wait_ms));
        self.json(call).await
    }

    /// `PUT /v1/agent/nodes/{name}/instances`. Repeatable: each report states every instance.
    pub async fn report_instances(
        &self,
        name: &str,
        body: &InstanceReports,
    ) -> Result<(), ClientError> {
        let path = format!("/v1/agent/nodes/{}/instances", encode(name));
        let call = self.call(Method::PUT, path, Some(body))?.repeatable();
        self.json(call).await
    }

    /// `GET /v1/agent/images?name=IMAGE`: the image as `docker save` wrote it, streamed from
    /// whichever server has it to give; a server that has not started sending within the
    /// request timeout is passed over. `Ok(None)` when the control plane has no such image
    /// (404).
    pub async fn fetch_image(&self, name: &str) -> Result<Option<ByteStream>, ClientError> {
        let path = format!("/v1/agent/images?name={}", encode(name));
        let call = self
            .get_call(path)?
            .any()
            .within(self.timeouts().transfer)
            .answering_within(self.timeouts().request);
        let fetched = self
            .send(call, |_, resp| async move {
                let stream = resp.bytes_stream().map_err(std::io::Error::other);
                Ok::<ByteStream, ClientError>(stream.boxed())
            })
            .await;
        match fetched {
            Ok(stream) => Ok(Some(stream)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /v1/images/blobs`: streams a `docker save` tar to one server (the preferred one),
    /// which keeps it. A stream is sent once: a failure is returned, not tried elsewhere.
    pub async fn upload_image_blob<S>(&self, tar: S) -> Result<BlobStored, ClientError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    {
        let body = reqwest::Body::wrap_stream(tar);
        self.send_once("/v1/images/blobs", "application/x-tar", body)
            .await
    }

    /// `POST /v1/images`: names a stored blob.
    pub async fn register_image(&self, body: &RegisterImage) -> Result<ImageView, ClientError> {
        self.write(Method::POST, "/v1/images".into(), Some(body))
            .await
    }

    /// `GET /v1/images`.
    pub async fn images(&self) -> Result<Vec<ImageView>, ClientError> {
        self.get("/v1/images".into()).await
    }

    /// `GET /v1/cluster/settings`.
    pub async fn settings(&self) -> Result<ClusterSettings, ClientError> {
        self.get("/v1/cluster/settings".into()).await
    }

    /// `PATCH /v1/cluster/settings`.
    pub async fn patch_settings(
        &self,
        s: &ClusterSettings,
    ) -> Result<ClusterSettings, ClientError> {
        self.write(Method::PATCH, "/v1/cluster/settings".into(), Some(s))
            .await
    }

    /// `GET /v1/route?app=A&ip=ADDR[&region=R]`: which region serves a client, and why.
    pub async fn explain_route(
        &self,
        app: &str,
        ip: &str,
        region: Option<&str>,
    ) -> Result<RouteExplanation, ClientError> {
        let mut path = format!("/v1/route?app={}&ip={}", encode(app), encode(ip));
        if let Some(r) = region {
            path.push_str(&format!("&region={}", encode(r)));
        }
        self.get(path).await
    }

    /// `POST /v1/router/register`: registers (or re-registers) an edge router. Repeatable:
    /// the same router registered twice is registered once.
    pub async fn register_router(&self, body: &RegisterRouter) -> Result<RouterEntry, ClientError> {
        let call = self
            .call(Method::POST, "/v1/router/register".into(), Some(body))?
            .repeatable();
        self.json(call).await
    }

    /// `GET /v1/router/table` once its version differs from `after`, waiting up to `wait_ms`;
    /// from whichever server answers (`stale=true`).
    pub async fn route_table(&self, after: u64, wait_ms: u64) -> Result<RouteTable, ClientError> {
        let path = format!("/v1/router/table?after={after}&wait_ms={wait_ms}&stale=true");
        let call = self.get_call(path)?.any().within(self.long_poll(wait_ms));
        self.json(call).await
    }
}

/// Percent-encodes a path segment or query value.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_percent_encoded() {
        assert_eq!(encode("web-1.a_b~c"), "web-1.a_b~c");
        assert_eq!(encode("2001:db8::1"), "2001:db8::1");
        assert_eq!(encode("a b&c/d"), "a%20b%26c%2Fd");
    }
}
