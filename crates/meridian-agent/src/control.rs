//! [`ControlPlane`]: the agent's side of the agent protocol, over several servers. A call goes
//! to the current server; when it cannot be reached or answers 5xx, the next call goes to the
//! next one. Retrying is the caller's business (see [`Backoff`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};
use meridian_api::agent::{Assignments, HeartbeatAck, InstanceReports, RegisterNode};
use meridian_api::nodes::NodeView;
use meridian_api::{Client, ClientError};

use crate::images::ImageSource;
use crate::runtime::ImageTar;

/// How long a server may take to start sending an image.
const FETCH_ANSWER: Duration = Duration::from_secs(60);

/// The control plane as one node's agent sees it.
#[derive(Debug)]
pub struct ControlPlane {
    node: String,
    clients: Vec<Client>,
    current: AtomicUsize,
}

impl ControlPlane {
    /// Clients for each of `servers`, all sending `token`, on behalf of `node`.
    pub fn new(node: &str, servers: &[String], token: &str) -> Self {
        Self {
            node: node.to_string(),
            clients: servers
                .iter()
                .map(|s| Client::new(s, Some(token.to_string())))
                .collect(),
            current: AtomicUsize::new(0),
        }
    }

    /// The server the next call goes to.
    pub fn server(&self) -> &str {
        self.pick().1.base()
    }

    fn pick(&self) -> (usize, &Client) {
        let i = self.current.load(Ordering::Relaxed) % self.clients.len().max(1);
        (i, &self.clients[i])
    }

    /// Moves on to the next server after a failure that another server may not have. Several
    /// tasks share the rotation; only the first to see server `i` fail moves it.
    fn judge<T>(&self, i: usize, result: Result<T, ClientError>) -> Result<T, ClientError> {
        if let Err(e) = &result {
            if should_fail_over(e) {
                self.fail_over(i, e);
            }
        }
        result
    }

    /// Moves on from server `i`, unless another task did already.
    fn fail_over(&self, i: usize, error: &dyn std::fmt::Display) {
        if self.clients.len() > 1 {
            let next = (i + 1) % self.clients.len();
            if self
                .current
                .compare_exchange(i, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                tracing::info!(
                    failed = self.clients[i].base(),
                    next = self.clients[next].base(),
                    error = %error,
                    "switching control-plane server"
                );
            }
        }
    }

    /// `PUT /v1/agent/nodes/{name}`.
    pub async fn register(&self, body: &RegisterNode) -> Result<NodeView, ClientError> {
        let (i, c) = self.pick();
        self.judge(i, c.register_node(&self.node, body).await)
    }

    /// `POST /v1/agent/nodes/{name}/heartbeat`.
    pub async fn heartbeat(&self) -> Result<HeartbeatAck, ClientError> {
        let (i, c) = self.pick();
        self.judge(i, c.heartbeat(&self.node).await)
    }

    /// The blocking watch: answers once the generation is above `index`, or after `wait`.
    pub async fn assignments(
        &self,
        index: u64,
        wait: Duration,
    ) -> Result<Assignments, ClientError> {
        let (i, c) = self.pick();
        let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        self.judge(i, c.assignments(&self.node, index, wait_ms).await)
    }

    /// `PUT /v1/agent/nodes/{name}/instances`.
    pub async fn report(&self, body: &InstanceReports) -> Result<(), ClientError> {
        let (i, c) = self.pick();
        self.judge(i, c.report_instances(&self.node, body).await)
    }

    /// `GET /v1/agent/images?name=IMAGE`, asking each server in turn from the current one
    /// until one sends the image. `Ok(None)` when none has it and at least one said so; the
    /// failures otherwise.
    pub async fn fetch_image(&self, image: &str) -> Result<Option<ImageTar>, String> {
        let (first, _) = self.pick();
        let n = self.clients.len();
        let mut said_missing = false;
        let mut failures = Vec::new();
        for k in 0..n {
            let i = (first + k) % n;
            let c = &self.clients[i];
            match tokio::time::timeout(FETCH_ANSWER, c.fetch_image(image)).await {
                Ok(Ok(Some(response))) => {
                    let tar = response.bytes_stream().map_err(std::io::Error::other);
                    return Ok(Some(tar.boxed()));
                }
                Ok(Ok(None)) => said_missing = true,
                Ok(Err(e)) => {
                    failures.push(format!("{}: {e}", c.base()));
                    let _ = self.judge::<()>(i, Err(e));
                }
                Err(_) => {
                    let why = format!("no answer within {FETCH_ANSWER:?}");
                    self.fail_over(i, &why);
                    failures.push(format!("{}: {why}", c.base()));
                }
            }
        }
        if said_missing {
            if !failures.is_empty() {
                tracing::debug!(%image, ?failures, "image not found on the servers that answered");
            }
            return Ok(None);
        }
        Err(failures.join("; "))
    }
}

impl ImageSource for ControlPlane {
    fn fetch<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Result<Option<ImageTar>, String>> {
        self.fetch_image(image).boxed()
    }
}

/// Unreachable servers, 5xx answers and garbled answers may be that server's problem alone.
pub fn should_fail_over(e: &ClientError) -> bool {
    match e.status() {
        None => true,
        Some(s) => s >= 500 || (matches!(e, ClientError::Decode { .. }) && s < 400),
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
        }
    }

    #[test]
    fn which_errors_move_to_another_server() {
        assert!(should_fail_over(&api(503)));
        assert!(should_fail_over(&api(500)));
        assert!(!should_fail_over(&api(404)));
        assert!(!should_fail_over(&api(422)));
        let garbled = ClientError::Decode {
            url: "u".into(),
            status: 200,
            detail: "d".into(),
        };
        assert!(should_fail_over(&garbled));
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
        );
        assert_eq!(cp.server(), "http://127.0.0.1:9");
        assert!(cp.heartbeat().await.is_err());
        assert_eq!(cp.server(), "http://127.0.0.2:9");
        assert!(cp.heartbeat().await.is_err());
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
