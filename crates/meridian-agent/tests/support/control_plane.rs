//! A fake control plane on `127.0.0.1:0` serving the four agent endpoints and image fetches,
//! with knobs for tests: assign instances, forget a node, read what agents reported, serve an
//! image archive.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use meridian_api::agent::{
    Assignment, Assignments, HeartbeatAck, InstanceReports, RegisterNode, AGENT_PROTOCOL,
};
use meridian_api::nodes::NodeView;
use meridian_api::{ErrorBody, ErrorCode, ErrorDetail};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The only region the fake knows.
pub const REGION: &str = "test-region";

#[derive(Debug, Default, Clone)]
struct NodeState {
    known: bool,
    registrations: usize,
    heartbeats: usize,
    generation: u64,
    instances: Vec<Assignment>,
    reports: Option<InstanceReports>,
    report_count: usize,
}

struct Shared {
    token: String,
    nodes: Mutex<HashMap<String, NodeState>>,
    /// Image archives (`docker save` output) by image name.
    images: Mutex<HashMap<String, PathBuf>>,
    /// Fetches answered with an archive, by image name.
    image_fetches: Mutex<HashMap<String, usize>>,
    /// Bumped on every change, to wake watches and test waiters.
    changes: watch::Sender<u64>,
}

impl Shared {
    fn with<T>(&self, node: &str, f: impl FnOnce(&mut NodeState) -> T) -> T {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        let out = f(nodes.entry(node.to_string()).or_default());
        drop(nodes);
        self.changes.send_modify(|v| *v += 1);
        out
    }

    fn read<T>(&self, node: &str, f: impl FnOnce(&NodeState) -> T) -> T {
        let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        f(nodes.get(node).unwrap_or(&NodeState::default()))
    }
}

/// A running fake control plane; stops when dropped.
pub struct FakeControlPlane {
    /// Its base URL.
    pub url: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FakeControlPlane {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn error(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code,
            message: message.into(),
            field: None,
            hint: None,
        },
    };
    (status, Json(body)).into_response()
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {}", shared.token))
}

async fn register(
    State(s): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(body): Json<RegisterNode>,
) -> Response {
    if !authorized(&s, &headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "bad token",
        );
    }
    if body.protocol != AGENT_PROTOCOL {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::Invalid,
            "unknown protocol",
        );
    }
    if body.region != REGION {
        return error(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            &format!("no region {}", body.region),
        );
    }
    let generation = s.with(&name, |n| {
        n.known = true;
        n.registrations += 1;
        n.generation
    });
    let view = NodeView {
        name,
        region: body.region,
        country: "DE".into(),
        status: "ready".into(),
        drain: false,
        cpu_millis: body.cpu_millis,
        memory_mb: body.memory_mb,
        cpu_used: 0,
        memory_used: 0,
        labels: body.labels,
        advertise_host: body.advertise_host,
        instances: 0,
        generation,
        registered_at: 0,
        updated_at: 0,
        heartbeat_ms_ago: None,
    };
    Json(view).into_response()
}

async fn heartbeat(State(s): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    let known = s.read(&name, |n| n.known);
    if !known {
        return error(StatusCode::NOT_FOUND, ErrorCode::NotFound, "node unknown");
    }
    let generation = s.with(&name, |n| {
        n.heartbeats += 1;
        n.generation
    });
    Json(HeartbeatAck {
        status: "ready".into(),
        generation,
    })
    .into_response()
}

async fn assignments(
    State(s): State<Arc<Shared>>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let index: u64 = q.get("index").and_then(|v| v.parse().ok()).unwrap_or(0);
    let wait_ms: u64 = q.get("wait_ms").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut changes = s.changes.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
    loop {
        let (generation, instances) = s.read(&name, |n| (n.generation, n.instances.clone()));
        if generation > index || tokio::time::Instant::now() >= deadline {
            return Json(Assignments {
                node: name,
                generation,
                instances,
            })
            .into_response();
        }
        let _ = tokio::time::timeout_at(deadline, changes.changed()).await;
    }
}

async fn instances(
    State(s): State<Arc<Shared>>,
    Path(name): Path<String>,
    Json(body): Json<InstanceReports>,
) -> Response {
    s.with(&name, |n| {
        n.reports = Some(body);
        n.report_count += 1;
    });
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /v1/agent/images?name=IMAGE`: the archive, read from its file as it is sent.
async fn image(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !authorized(&s, &headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "bad token",
        );
    }
    let name = q.get("name").cloned().unwrap_or_default();
    let path = s
        .images
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&name)
        .cloned();
    let Some(path) = path else {
        return error(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            &format!("no image {name}"),
        );
    };
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Other("internal".into()),
                &e.to_string(),
            )
        }
    };
    *s.image_fetches
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(name)
        .or_default() += 1;
    let chunks = futures::stream::try_unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0; 64 * 1024];
        let n = file.read(&mut buf).await?;
        buf.truncate(n);
        Ok::<_, std::io::Error>((n > 0).then(|| (Bytes::from(buf), file)))
    });
    (
        [("content-type", "application/x-tar")],
        Body::from_stream(chunks),
    )
        .into_response()
}

impl FakeControlPlane {
    /// Starts one on a free loopback port, accepting `token`.
    pub async fn start(token: &str) -> Self {
        let (changes, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            token: token.into(),
            nodes: Mutex::new(HashMap::new()),
            images: Mutex::new(HashMap::new()),
            image_fetches: Mutex::new(HashMap::new()),
            changes,
        });
        let app = Router::new()
            .route("/v1/agent/nodes/{name}", put(register))
            .route("/v1/agent/nodes/{name}/heartbeat", post(heartbeat))
            .route("/v1/agent/nodes/{name}/assignments", get(assignments))
            .route("/v1/agent/nodes/{name}/instances", put(instances))
            .route("/v1/agent/images", get(image))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, shared, task }
    }

    /// Replaces `node`'s assignments; returns the new generation.
    pub fn assign(&self, node: &str, instances: Vec<Assignment>) -> u64 {
        self.shared.with(node, |n| {
            n.generation += 1;
            n.instances = instances;
            n.generation
        })
    }

    /// Serves the archive at `path` (as `docker save` wrote it) as image `name`.
    pub fn serve_image(&self, name: &str, path: &std::path::Path) {
        self.shared
            .images
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), path.to_path_buf());
    }

    /// How often image `name` was sent.
    pub fn image_fetches(&self, name: &str) -> usize {
        self.shared
            .image_fetches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .copied()
            .unwrap_or(0)
    }

    /// Forgets `node`: its heartbeats answer 404 until it registers again.
    pub fn forget(&self, node: &str) {
        self.shared.with(node, |n| n.known = false);
    }

    /// How often `node` registered.
    pub fn registrations(&self, node: &str) -> usize {
        self.shared.read(node, |n| n.registrations)
    }

    /// How many heartbeats `node` sent.
    pub fn heartbeats(&self, node: &str) -> usize {
        self.shared.read(node, |n| n.heartbeats)
    }

    /// The last reports of `node`.
    pub fn reports(&self, node: &str) -> Option<InstanceReports> {
        self.shared.read(node, |n| n.reports.clone())
    }

    /// Waits until `check` holds for `node`'s state (its last reports, if any), or panics
    /// after `limit` with what was last seen.
    pub async fn wait_for<T>(
        &self,
        node: &str,
        limit: Duration,
        what: &str,
        check: impl Fn(Option<&InstanceReports>) -> Option<T>,
    ) -> T {
        let mut changes = self.shared.changes.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let reports = self.reports(node);
            if let Some(v) = check(reports.as_ref()) {
                return v;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("{what}: not within {limit:?}; last reports of {node}: {reports:#?}");
            }
            let _ = tokio::time::timeout_at(deadline, changes.changed()).await;
        }
    }
}

/// An assignment of app `web` running `image`, with `env`, on port 8080.
pub fn assignment(id: &str, image: &str, env: &[(&str, &str)]) -> Assignment {
    Assignment {
        id: id.into(),
        app: "web".into(),
        release: 1,
        image: image.into(),
        port: 8080,
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        cpu_millis: 100,
        memory_mb: 32,
        health: None,
    }
}
