//! [`DockerRuntime`]: the [`ContainerRuntime`] over a Docker engine, through bollard.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerStateStatusEnum, ContainerSummary, ContainerSummaryStateEnum,
    EventMessage, HostConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, EventsOptionsBuilder,
    ImportImageOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use crate::runtime::{
    ContainerEvent, ContainerInfo, ContainerRuntime, ContainerSpec, ContainerStatus, ImageTar,
    RuntimeError, LABEL_CLUSTER, LABEL_INSTANCE, LABEL_NODE,
};

/// A Docker engine. Cheap to share; every call opens its own connection, so an engine restart
/// only fails the calls made while it is down.
#[derive(Debug)]
pub struct DockerRuntime {
    docker: Docker,
    host: String,
    stop_timeout: Duration,
    negotiated: AtomicBool,
    cluster: Option<String>,
}

impl DockerRuntime {
    /// A runtime for the engine at `host` (`unix:///var/run/docker.sock`, `tcp://h:p` or
    /// `http://h:p`); containers get `stop_timeout` to stop before they are killed. Nothing is
    /// sent yet; the API version is agreed on with the first call.
    pub fn connect(host: &str, stop_timeout: Duration) -> Result<Self, RuntimeError> {
        let docker = Docker::connect_with_host(host).map_err(|e| match e {
            BollardError::SocketNotFoundError(path) => {
                RuntimeError::Unavailable(format!("no socket at {path}"))
            }
            other => RuntimeError::BadAddress(other.to_string()),
        })?;
        Ok(Self {
            docker,
            host: host.to_string(),
            stop_timeout,
            negotiated: AtomicBool::new(false),
            cluster: None,
        })
    }

    /// Scopes this runtime to the containers of `cluster`: they are created with the
    /// `meridian.cluster` label, and listing skips every container whose label differs
    /// (unlabelled ones too). Unscoped (`None`), it sees only unlabelled containers.
    pub fn scoped_to(mut self, cluster: Option<String>) -> Self {
        self.cluster = cluster;
        self
    }

    fn in_scope(&self, labels: &BTreeMap<String, String>) -> bool {
        labels.get(LABEL_CLUSTER) == self.cluster.as_ref()
    }

    /// The engine address this runtime calls.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The engine, once its API version is agreed on. bollard speaks a newer API than older
    /// engines (Docker 20.10 tops out at 1.41) accept, so it steps down to the engine's.
    async fn engine(&self) -> Result<&Docker, RuntimeError> {
        if !self.negotiated.load(Ordering::Relaxed) {
            // The version lives behind an Arc shared by clones, so this updates `self.docker`.
            self.docker
                .clone()
                .negotiate_version()
                .await
                .map_err(|e| unavailable(&e))?;
            self.negotiated.store(true, Ordering::Relaxed);
        }
        Ok(&self.docker)
    }
}

impl ContainerRuntime for DockerRuntime {
    async fn list(&self, node: &str) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let filters = HashMap::from([("label", vec![format!("{LABEL_NODE}={node}")])]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let summaries = self
            .engine()
            .await?
            .list_containers(Some(options))
            .await
            .map_err(|e| classify("list containers", e))?;
        let mut out = Vec::with_capacity(summaries.len());
        for summary in summaries {
            let Some(mut info) = summary_to_info(summary) else {
                continue;
            };
            // The engine filtered by label already; checked again because removing another
            // agent's container would be far worse than a wasted comparison.
            if info.node() != Some(node) || !self.in_scope(&info.labels) {
                continue;
            }
            if matches!(info.status, ContainerStatus::Exited | ContainerStatus::Dead) {
                match self.state(&info.id).await {
                    Ok((_, code)) => info.exit_code = code,
                    // Removed between the list and the inspect.
                    Err(RuntimeError::NotFound(_)) => continue,
                    Err(e) => return Err(e),
                }
            }
            out.push(info);
        }
        Ok(out)
    }

    async fn state(&self, id: &str) -> Result<(ContainerStatus, Option<i64>), RuntimeError> {
        let inspect = self
            .engine()
            .await?
            .inspect_container(id, None)
            .await
            .map_err(|e| classify("inspect a container", e))?;
        let state = inspect.state.unwrap_or_default();
        let status = match state.status {
            Some(ContainerStateStatusEnum::CREATED) => ContainerStatus::Created,
            Some(ContainerStateStatusEnum::RUNNING) => ContainerStatus::Running,
            Some(ContainerStateStatusEnum::PAUSED) => ContainerStatus::Paused,
            Some(ContainerStateStatusEnum::RESTARTING) => ContainerStatus::Restarting,
            Some(ContainerStateStatusEnum::EXITED) => ContainerStatus::Exited,
            Some(ContainerStateStatusEnum::REMOVING) => ContainerStatus::Removing,
            Some(ContainerStateStatusEnum::DEAD) => ContainerStatus::Dead,
            _ => ContainerStatus::Unknown,
        };
        Ok((status, state.exit_code))
    }

    async fn ensure_image(&self, image: &str, pull: bool) -> Result<(), RuntimeError> {
        let engine = self.engine().await?;
        match engine.inspect_image(image).await {
            Ok(_) => return Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => return Err(classify("inspect an image", e)),
        }
        if !pull {
            return Err(RuntimeError::ImageMissing {
                image: image.to_string(),
                detail: "not on the engine, and pulling is off (start the agent with --registry \
                         to pull)"
                    .into(),
            });
        }
        let (from_image, tag) = split_reference(image);
        let mut options = CreateImageOptionsBuilder::new().from_image(from_image);
        if let Some(tag) = tag {
            options = options.tag(tag);
        }
        let pulled: Result<Vec<_>, _> = engine
            .create_image(Some(options.build()), None, None)
            .try_collect()
            .await;
        match pulled {
            Ok(_) => Ok(()),
            Err(e @ BollardError::DockerResponseServerError { .. })
            | Err(e @ BollardError::DockerStreamError { .. }) => Err(RuntimeError::ImageMissing {
                image: image.to_string(),
                detail: format!("pull failed: {e}"),
            }),
            Err(e) => Err(unavailable(&e)),
        }
    }

    async fn load_image(&self, tar: ImageTar) -> Result<(), RuntimeError> {
        let engine = self.engine().await?;
        let options = ImportImageOptionsBuilder::new().quiet(true).build();
        // `POST /images/load`: the engine reads the archive as it arrives and answers with a
        // JSON stream, "Loaded image: ..." lines or an error.
        let mut answer = engine.import_image_stream(options, tar, None);
        while let Some(item) = answer.next().await {
            match item {
                Ok(info) => {
                    if let Some(line) = info.stream.as_deref().map(str::trim) {
                        if !line.is_empty() {
                            tracing::debug!(%line, "docker load");
                        }
                    }
                }
                Err(BollardError::DockerStreamError { error }) => {
                    return Err(RuntimeError::LoadFailed(error))
                }
                Err(BollardError::DockerResponseServerError {
                    status_code,
                    message,
                }) => {
                    return Err(RuntimeError::LoadFailed(format!(
                        "{message} (HTTP {status_code})"
                    )))
                }
                Err(e) => return Err(unavailable(&e)),
            }
        }
        Ok(())
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        let port_key = format!("{}/tcp", spec.port);
        let binding = PortBinding {
            host_ip: Some("0.0.0.0".into()),
            // Empty: the engine picks a free ephemeral port.
            host_port: Some(String::new()),
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            env: Some(spec.env.clone()),
            labels: Some(
                spec.labels
                    .clone()
                    .into_iter()
                    .chain(self.cluster.clone().map(|c| (LABEL_CLUSTER.to_string(), c)))
                    .collect(),
            ),
            exposed_ports: Some(vec![port_key.clone()]),
            host_config: Some(HostConfig {
                port_bindings: Some(HashMap::from([(port_key, Some(vec![binding]))])),
                nano_cpus: (spec.nano_cpus > 0).then_some(spec.nano_cpus),
                memory: (spec.memory_bytes > 0).then_some(spec.memory_bytes),
                network_mode: spec.network.clone(),
                // A crashed instance stays down and is reported `exited`; the control plane
                // decides whether to replace it.
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::NO),
                    maximum_retry_count: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::new()
            .name(&spec.name)
            .build();
        match self
            .engine()
            .await?
            .create_container(Some(options), body)
            .await
        {
            Ok(created) => Ok(created.id),
            Err(BollardError::DockerResponseServerError {
                status_code: 404,
                message,
            }) => Err(RuntimeError::ImageMissing {
                image: spec.image.clone(),
                detail: message,
            }),
            Err(e) => Err(classify("create a container", e)),
        }
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.engine()
            .await?
            .start_container(id, None)
            .await
            .map_err(|e| classify("start a container", e))
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let engine = self.engine().await?;
        let secs = i32::try_from(self.stop_timeout.as_secs()).unwrap_or(i32::MAX);
        let stop = StopContainerOptionsBuilder::new().t(secs).build();
        match engine.stop_container(id, Some(stop)).await {
            Ok(()) => {}
            Err(e) => match classify("stop a container", e) {
                RuntimeError::NotFound(_) => return Ok(()),
                // Stopping can fail for a dead container; removing with force still works.
                RuntimeError::Engine { .. } => {}
                other => return Err(other),
            },
        }
        let remove = RemoveContainerOptionsBuilder::new().force(true).build();
        match engine.remove_container(id, Some(remove)).await {
            Ok(()) => Ok(()),
            Err(e) => match classify("remove a container", e) {
                RuntimeError::NotFound(_) => Ok(()),
                // "removal already in progress"
                RuntimeError::Conflict(_) => Ok(()),
                other => Err(other),
            },
        }
    }

    fn events(&self, node: &str) -> BoxStream<'static, Result<ContainerEvent, RuntimeError>> {
        let docker = self.docker.clone();
        let node = node.to_string();
        let negotiated = self.negotiated.load(Ordering::Relaxed);
        let cluster = self.cluster.clone();
        let stream = async move {
            let docker = if negotiated {
                docker
            } else {
                docker
                    .negotiate_version()
                    .await
                    .map_err(|e| unavailable(&e))?
            };
            let filters = HashMap::from([
                ("type", vec!["container".to_string()]),
                ("label", vec![format!("{LABEL_NODE}={node}")]),
            ]);
            let options = EventsOptionsBuilder::new().filters(&filters).build();
            Ok::<_, RuntimeError>(
                docker
                    .events(Some(options))
                    .try_filter(move |e| {
                        let label = e
                            .actor
                            .as_ref()
                            .and_then(|a| a.attributes.as_ref())
                            .and_then(|a| a.get(LABEL_CLUSTER));
                        std::future::ready(label == cluster.as_ref())
                    })
                    .map_ok(event_to_container_event)
                    .map_err(|e| unavailable(&e)),
            )
        };
        futures::stream::once(stream).try_flatten().boxed()
    }
}

fn event_to_container_event(e: EventMessage) -> ContainerEvent {
    let actor = e.actor.unwrap_or_default();
    ContainerEvent {
        action: e.action.unwrap_or_default(),
        instance: actor
            .attributes
            .as_ref()
            .and_then(|a| a.get(LABEL_INSTANCE).cloned()),
        container: actor.id.unwrap_or_default(),
    }
}

/// Reads what the agent needs from a list entry; `None` without an id.
fn summary_to_info(s: ContainerSummary) -> Option<ContainerInfo> {
    let id = s.id?;
    let name = s
        .names
        .and_then(|n| n.into_iter().next())
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_default();
    let status = match s.state {
        Some(ContainerSummaryStateEnum::CREATED) => ContainerStatus::Created,
        Some(ContainerSummaryStateEnum::RUNNING) => ContainerStatus::Running,
        Some(ContainerSummaryStateEnum::PAUSED) => ContainerStatus::Paused,
        Some(ContainerSummaryStateEnum::RESTARTING) => ContainerStatus::Restarting,
        Some(ContainerSummaryStateEnum::EXITED) => ContainerStatus::Exited,
        Some(ContainerSummaryStateEnum::REMOVING) => ContainerStatus::Removing,
        Some(ContainerSummaryStateEnum::DEAD) => ContainerStatus::Dead,
        _ => ContainerStatus::Unknown,
    };
    // IPv4 bindings first: the engine lists 0.0.0.0 and :: with the same port.
    let mut ports: Vec<_> = s.ports.unwrap_or_default();
    ports.sort_by_key(|p| p.ip.as_deref().is_some_and(|ip| ip.contains(':')));
    let host_port = ports.iter().find_map(|p| p.public_port);
    let ip = s
        .network_settings
        .and_then(|n| n.networks)
        .into_iter()
        .flatten()
        .collect::<BTreeMap<_, _>>()
        .into_values()
        .find_map(|net| net.ip_address.filter(|ip| !ip.is_empty()))
        .and_then(|ip| ip.parse().ok());
    Some(ContainerInfo {
        id,
        name,
        labels: s.labels.unwrap_or_default().into_iter().collect(),
        status,
        exit_code: None,
        host_port,
        ip,
    })
}

/// Splits `repo[:tag]` for a pull; a digest reference is passed whole.
fn split_reference(image: &str) -> (&str, Option<&str>) {
    if image.contains('@') {
        return (image, None);
    }
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].rfind(':') {
        Some(i) => (&image[..last_slash + i], Some(&image[last_slash + i + 1..])),
        None => (image, Some("latest")),
    }
}

/// An engine answer mapped by status; everything that is not an answer is `Unavailable`.
fn classify(action: &'static str, e: BollardError) -> RuntimeError {
    match e {
        BollardError::DockerResponseServerError {
            status_code: 404,
            message,
        } => RuntimeError::NotFound(message),
        BollardError::DockerResponseServerError {
            status_code: 409,
            message,
        } => RuntimeError::Conflict(message),
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => RuntimeError::Engine {
            action,
            status: status_code,
            message,
        },
        other => unavailable(&other),
    }
}

fn unavailable(e: &BollardError) -> RuntimeError {
    RuntimeError::Unavailable(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_repo_and_tag() {
        assert_eq!(split_reference("nginx"), ("nginx", Some("latest")));
        assert_eq!(split_reference("nginx:1.25"), ("nginx", Some("1.25")));
        assert_eq!(
            split_reference("reg.example:5000/team/web"),
            ("reg.example:5000/team/web", Some("latest"))
        );
        assert_eq!(
            split_reference("reg.example:5000/team/web:v2"),
            ("reg.example:5000/team/web", Some("v2"))
        );
        assert_eq!(split_reference("web@sha256:abc"), ("web@sha256:abc", None));
    }
}
