//! The container engine as the agent sees it: a [`ContainerRuntime`] trait, the container it
//! asks for ([`ContainerSpec`]) and what it observes ([`ContainerInfo`]).
//!
//! API Boundary: the reconcile logic only talks to this trait; [`crate::DockerRuntime`] is the
//! real implementation, and the unit tests use an in-memory fake.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;

use bytes::Bytes;
use futures::stream::BoxStream;
use meridian_api::agent::Assignment;

/// Label naming the node (agent) that owns a container.
pub const LABEL_NODE: &str = "meridian.node";
/// Label naming the cluster an agent belongs to, when it is given one (`--cluster`): agents
/// of different clusters on one engine then never touch each other's containers.
pub const LABEL_CLUSTER: &str = "meridian.cluster";
/// Label naming the app a container runs.
pub const LABEL_APP: &str = "meridian.app";
/// Label holding the release number.
pub const LABEL_RELEASE: &str = "meridian.release";
/// Label holding the instance id.
pub const LABEL_INSTANCE: &str = "meridian.instance";

/// The container name for an instance on a node. Deterministic, so a create repeated after an
/// agent restart collides (409) instead of starting a duplicate.
pub fn container_name(node: &str, instance: &str) -> String {
    format!("meridian-{node}-{instance}")
}

/// An image archive as `docker save` writes it, arriving in chunks.
pub type ImageTar = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// A container to create for one assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    /// Container name, see [`container_name`].
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Labels, including the four `meridian.*` ones.
    pub labels: BTreeMap<String, String>,
    /// Environment as `KEY=VALUE`, sorted by key.
    pub env: Vec<String>,
    /// Port the app listens on inside; published on an ephemeral host port.
    pub port: u16,
    /// CPU limit in billionths of a core (0: none).
    pub nano_cpus: i64,
    /// Memory limit in bytes (0: none).
    pub memory_bytes: i64,
    /// Docker network to join instead of the default bridge.
    pub network: Option<String>,
}

impl ContainerSpec {
    /// The container for `assignment` on `node`: its environment plus `PORT`,
    /// `MERIDIAN_INSTANCE`, `MERIDIAN_APP` and `MERIDIAN_RELEASE`, which win over the app's own.
    pub fn for_assignment(node: &str, assignment: &Assignment) -> Self {
        let a = assignment;
        let mut env = a.env.clone();
        env.insert("PORT".into(), a.port.to_string());
        env.insert("MERIDIAN_INSTANCE".into(), a.id.clone());
        env.insert("MERIDIAN_APP".into(), a.app.clone());
        env.insert("MERIDIAN_RELEASE".into(), a.release.to_string());
        let labels = BTreeMap::from([
            (LABEL_NODE.to_string(), node.to_string()),
            (LABEL_APP.to_string(), a.app.clone()),
            (LABEL_RELEASE.to_string(), a.release.to_string()),
            (LABEL_INSTANCE.to_string(), a.id.clone()),
        ]);
        Self {
            name: container_name(node, &a.id),
            image: a.image.clone(),
            labels,
            env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
            port: a.port,
            nano_cpus: i64::from(a.cpu_millis) * 1_000_000,
            memory_bytes: i64::from(a.memory_mb) * 1024 * 1024,
            network: None,
        }
    }
}

/// A container's lifecycle state, as the engine names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerStatus {
    /// Created, never started.
    Created,
    /// Running.
    Running,
    /// Paused.
    Paused,
    /// Being restarted by the engine.
    Restarting,
    /// Stopped; see the exit code.
    Exited,
    /// Being removed.
    Removing,
    /// Dead (removal failed half-way).
    Dead,
    /// Anything else the engine may report.
    Unknown,
}

/// One container labelled with this agent's node, as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    /// Engine id.
    pub id: String,
    /// Name, without Docker's leading `/`.
    pub name: String,
    /// All labels.
    pub labels: BTreeMap<String, String>,
    /// Lifecycle state.
    pub status: ContainerStatus,
    /// Exit code, once exited.
    pub exit_code: Option<i64>,
    /// Host port the app port is published on.
    pub host_port: Option<u16>,
    /// Address of the container on its first network that has one.
    pub ip: Option<IpAddr>,
}

impl ContainerInfo {
    /// The `meridian.node` label.
    pub fn node(&self) -> Option<&str> {
        self.labels.get(LABEL_NODE).map(String::as_str)
    }

    /// The `meridian.instance` label.
    pub fn instance(&self) -> Option<&str> {
        self.labels.get(LABEL_INSTANCE).map(String::as_str)
    }

    /// The `meridian.release` label, when it is a number.
    pub fn release(&self) -> Option<u64> {
        self.labels.get(LABEL_RELEASE).and_then(|r| r.parse().ok())
    }
}

/// Something happened to one of this node's containers (start, die, destroy, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    /// The engine's action name, e.g. `die`.
    pub action: String,
    /// Container id.
    pub container: String,
    /// The `meridian.instance` label, when the event carries it.
    pub instance: Option<String>,
}

/// Why a runtime call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// The image is not on the engine and could not be obtained.
    #[error("image {image} is missing: {detail}")]
    ImageMissing {
        /// Image reference.
        image: String,
        /// Why it could not be obtained.
        detail: String,
    },
    /// No such container.
    #[error("no such container: {0}")]
    NotFound(String),
    /// A container with that name exists already.
    #[error("container name taken: {0}")]
    Conflict(String),
    /// The engine would not load an image archive.
    #[error("docker could not load the image: {0}")]
    LoadFailed(String),
    /// The engine address is not one the runtime can use.
    #[error("unusable docker address: {0}")]
    BadAddress(String),
    /// The engine could not be reached or the exchange broke off.
    #[error("docker engine unreachable: {0}")]
    Unavailable(String),
    /// The engine refused the request.
    #[error("docker refused to {action}: {message} (HTTP {status})")]
    Engine {
        /// What was asked.
        action: &'static str,
        /// HTTP status.
        status: u16,
        /// The engine's message.
        message: String,
    },
}

/// A container engine. Implementations must only ever return or touch containers labelled
/// with the node they are asked about.
pub trait ContainerRuntime: Send + Sync + 'static {
    /// Every container labelled `meridian.node=<node>`, running or not.
    fn list(
        &self,
        node: &str,
    ) -> impl Future<Output = Result<Vec<ContainerInfo>, RuntimeError>> + Send;

    /// One container's lifecycle state and exit code from the engine's own record. Unlike
    /// [`ContainerRuntime::list`], which may lag an exit by a moment, this is up to date when
    /// the exit event arrives.
    fn state(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<(ContainerStatus, Option<i64>), RuntimeError>> + Send;

    /// Makes sure `image` is on the engine, pulling it when `pull` is set;
    /// [`RuntimeError::ImageMissing`] when it is not and cannot be.
    fn ensure_image(
        &self,
        image: &str,
        pull: bool,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Loads the images in `tar` (as `docker save` wrote it) into the engine, reading it as it
    /// arrives. [`RuntimeError::LoadFailed`] when the engine refuses it; when `tar` yields an
    /// error the load fails too, as whatever the engine makes of the cut-off upload.
    fn load_image(&self, tar: ImageTar) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Creates (does not start) a container and returns its id;
    /// [`RuntimeError::Conflict`] when the name is taken.
    fn create(
        &self,
        spec: &ContainerSpec,
    ) -> impl Future<Output = Result<String, RuntimeError>> + Send;

    /// Starts a created container; starting a running one is not an error.
    fn start(&self, id: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Stops a container (giving it the configured time) and removes it; a container that is
    /// already gone is not an error.
    fn remove(&self, id: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Events about `node`'s containers. The stream ends or yields an error when the
    /// connection to the engine breaks; the caller subscribes again.
    fn events(&self, node: &str) -> BoxStream<'static, Result<ContainerEvent, RuntimeError>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_core::app::Probe;
    use meridian_core::HealthCheck;

    fn assignment() -> Assignment {
        Assignment {
            id: "i-1".into(),
            app: "web".into(),
            release: 3,
            image: "meridian-hello:latest".into(),
            port: 8080,
            env: BTreeMap::from([
                ("GREETING".into(), "hi".into()),
                ("PORT".into(), "1".into()),
            ]),
            cpu_millis: 250,
            memory_mb: 64,
            health: Some(HealthCheck {
                probe: Probe::Tcp,
                interval_ms: 1000,
                timeout_ms: 500,
                grace_ms: 0,
            }),
        }
    }

    #[test]
    fn spec_carries_labels_env_and_limits() {
        let s = ContainerSpec::for_assignment("w1", &assignment());
        assert_eq!(s.name, "meridian-w1-i-1");
        assert_eq!(s.labels[LABEL_NODE], "w1");
        assert_eq!(s.labels[LABEL_APP], "web");
        assert_eq!(s.labels[LABEL_RELEASE], "3");
        assert_eq!(s.labels[LABEL_INSTANCE], "i-1");
        assert_eq!(
            s.env,
            [
                "GREETING=hi",
                "MERIDIAN_APP=web",
                "MERIDIAN_INSTANCE=i-1",
                "MERIDIAN_RELEASE=3",
                "PORT=8080",
            ]
        );
        assert_eq!(s.nano_cpus, 250_000_000);
        assert_eq!(s.memory_bytes, 64 * 1024 * 1024);
    }
}
