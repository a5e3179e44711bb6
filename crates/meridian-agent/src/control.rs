//! [`ControlPlane`]: the agent's side of the agent protocol, through one
//! [`meridian_client::Client`] over all the servers it was given. The client moves a call to
//! the next server when the first cannot have acted on it, or when the call may be repeated
//! (every call here may: registration, heartbeats and reports set values, the rest read).
//! Retrying later is the caller's business (see [`Backoff`]).

use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use meridian_api::agent::{Assignments, HeartbeatAck, InstanceReports, RegisterNode};
use meridian_api::nodes::NodeView;
use meridian_client::{BuildError, Client, ClientError};

use crate::images::ImageSource;
use crate::runtime::ImageTar;

/// The control plane as one node's agent sees it.
#[derive(Debug)]
pub struct ControlPlane {
    node: String,
    client: Client,
}

impl ControlPlane {
    /// A client for `servers`, sending `token`, on behalf of `node`.
    pub fn new(
        node: &str,
        servers: &[String],
        token: &str,
        tls: &meridian_client::ClientTls,
    ) -> Result<Self, BuildError> {
        let client = Client::builder(servers)
            .token(token.to_string())
            .tls_files(tls.clone())
            .build()?;
        Ok(Self {
            node: node.to_string(),
            client,
        })
    }

    /// The server the next call starts at.
    pub fn server(&self) -> &str {
        self.client.server()
    }

    /// `PUT /v1/agent/nodes/{name}`.
    pub async fn register(&self, body: &RegisterNode) -> Result<NodeView, ClientError> {
        self.client.register_node(&self.node, body).await
    }

    /// `POST /v1/agent/nodes/{name}/heartbeat`.
    pub async fn heartbeat(&self) -> Result<HeartbeatAck, ClientError> {
        self.client.heartbeat(&self.node).await
    }

    /// The blocking watch: answers once the generation is above `index`, or after `wait`.
    pub async fn assignments(
        &self,
        index: u64,
        wait: Duration,
    ) -> Result<Assignments, ClientError> {
        let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        self.client.assignments(&self.node, index, wait_ms).await
    }

    /// `PUT /v1/agent/nodes/{name}/instances`.
    pub async fn report(&self, body: &InstanceReports) -> Result<(), ClientError> {
        self.client.report_instances(&self.node, body).await
    }

    /// `GET /v1/agent/images?name=IMAGE` from whichever server sends it (one that does not
    /// start sending within the client's request timeout is passed over). `Ok(None)` when the
    /// control plane says it has no such image.
    pub async fn fetch_image(&self, image: &str) -> Result<Option<ImageTar>, String> {
        self.client
            .fetch_image(image)
            .await
            .map_err(|e| e.to_string())
    }
}

impl ImageSource for ControlPlane {
    fn fetch<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Result<Option<ImageTar>, String>> {
        self.fetch_image(image).boxed()
    }
}

/// A refusal that repeating will not change: 4xx other than 404 (handled by callers), 408 and
/// 429.
pub fn is_refusal(e: &ClientError) -> bool {
    matches!(e.status(), Some(s) if (400..500).contains(&s) && ![404, 408, 429].contains(&s))
}

/// Whether the server said the node is unknown.
pub fn is_not_found(e: &ClientError) -> bool {
    e.status() == Some(404)
}

/// Exponential backoff between retries: doubles from `min` up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// A backoff starting at `min`, capped at `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            next: min,
        }
    }

    /// The wait before the next attempt; each call doubles the one after.
    pub fn fail(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }

    /// Back to the shortest wait, after a success.
    pub fn reset(&mut self) {
        self.next = self.min;
    }

    /// Whether the last attempt succeeded (no failure since the last reset).
    pub fn is_fresh(&self) -> bool {
        self.next == self.min
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_api::ErrorCode;

    fn api(status: u16) -> ClientError {
        ClientError::Api {
            status,
            code: ErrorCode::Other("x".into()),
            message: "y".into(),
            hint: None,
        }
    }

    #[test]
    fn refusals_are_client_errors_worth_no_retry() {
        assert!(is_refusal(&api(422)));
        assert!(is_refusal(&api(401)));
        assert!(!is_refusal(&api(404)));
        assert!(!is_refusal(&api(429)));
        assert!(!is_refusal(&api(503)));
    }

    #[tokio::test]
    async fn unreachable_servers_rotate() {
        // Port 9 on loopback: nothing listens, the connection is refused at once.
        let cp = ControlPlane::new(
            "w1",
            &["http://127.0.0.1:9".into(), "http://127.0.0.2:9".into()],
            "t",
            &Default::default(),
        )
        .unwrap();
        assert_eq!(cp.server(), "http://127.0.0.1:9");
        let e = cp.heartbeat().await.unwrap_err();
        assert!(e.to_string().starts_with("tried 2 servers: "), "{e}");
        // Both failed: the next call starts after the last one tried.
        assert_eq!(cp.server(), "http://127.0.0.1:9");
    }

    #[test]
    fn backoff_doubles_to_its_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        assert_eq!(b.fail(), Duration::from_millis(100));
        assert_eq!(b.fail(), Duration::from_millis(200));
        assert_eq!(b.fail(), Duration::from_millis(350));
        assert!(!b.is_fresh());
        b.reset();
        assert_eq!(b.fail(), Duration::from_millis(100));
    }
}
