//! The [`Reconciler`]: one pass lists the node's containers, plans ([`crate::plan`]), carries
//! the plan out, keeps a health monitor per running instance, and derives the reports.
//!
//! Creates (which may pull) and removals (which wait for a stop) run as tasks of their own,
//! so a pass never waits on them; their end wakes the next pass.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use meridian_api::agent::{Assignment, Assignments, InstanceReports};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::health::{HealthVerdict, Monitor, Targets};
use crate::images::{ImageSource, Images};
use crate::observe::{self, CreateFailure, Observed};
use crate::plan::plan;
use crate::runtime::{
    ContainerEvent, ContainerInfo, ContainerRuntime, ContainerSpec, ContainerStatus, RuntimeError,
};

/// Least time between two create attempts for an instance whose create failed.
pub const CREATE_RETRY: Duration = Duration::from_secs(5);

/// Settings a [`Reconciler`] needs.
#[derive(Debug, Clone)]
pub struct ReconcilerConfig {
    /// This node's name.
    pub node: String,
    /// Host written into instance addresses and used as the fallback probe target.
    pub advertise_host: String,
    /// Pull missing images (before fetching them from the control plane, when the reconciler
    /// has an image source).
    pub pull_images: bool,
    /// Docker network instance containers join, if not the default bridge.
    pub network: Option<String>,
}

/// Keeps one node's containers matching its assignments.
pub struct Reconciler<R: ContainerRuntime> {
    runtime: Arc<R>,
    config: ReconcilerConfig,
    wake: Arc<Notify>,
    images: Arc<Images>,
    creating: HashMap<String, JoinHandle<Result<(), RuntimeError>>>,
    removing: HashMap<String, JoinHandle<()>>,
    failures: HashMap<String, (CreateFailure, Instant)>,
    monitors: HashMap<String, Monitor>,
    /// Containers an event said exited, to be checked against the engine's own record.
    exited: HashSet<String>,
}

impl<R: ContainerRuntime> Reconciler<R> {
    /// A reconciler over `runtime`. `wake` is notified whenever a pass would see something new
    /// (a create or removal ended, a health verdict changed). Missing images are pulled (if
    /// `config.pull_images`) or reported missing; see [`Reconciler::with_image_source`].
    pub fn new(runtime: Arc<R>, config: ReconcilerConfig, wake: Arc<Notify>) -> Self {
        Self {
            runtime,
            config,
            wake,
            images: Arc::new(Images::engine_only()),
            creating: HashMap::new(),
            removing: HashMap::new(),
            failures: HashMap::new(),
            monitors: HashMap::new(),
            exited: HashSet::new(),
        }
    }

    /// Fetches images the engine lacks and cannot pull from `source` (the control plane).
    pub fn with_image_source(mut self, source: Arc<dyn ImageSource>) -> Self {
        self.images = Arc::new(Images::with_source(source));
        self
    }

    /// Takes note of an engine event. An exit (`die`) reaches the event stream a moment
    /// before the engine's container list shows it; the next pass asks the engine about that
    /// container directly instead of trusting the list.
    pub fn note_event(&mut self, event: &ContainerEvent) {
        if event.action == "die" || event.action == "oom" {
            self.exited.insert(event.container.clone());
        }
    }

    /// One pass toward `desired`; returns the reports for every assigned instance. Fails only
    /// when the engine cannot be listed, and then changes nothing.
    pub async fn pass(&mut self, desired: &Assignments) -> Result<InstanceReports, RuntimeError> {
        self.reap().await;
        let node = self.config.node.clone();
        let mut observed = self.runtime.list(&node).await?;
        for c in observed.iter_mut() {
            if c.status == ContainerStatus::Running && self.exited.contains(&c.id) {
                match self.runtime.state(&c.id).await {
                    Ok((status, exit_code)) => (c.status, c.exit_code) = (status, exit_code),
                    Err(e) => tracing::debug!(container = %c.name, error = %e, "cannot inspect"),
                }
            }
        }
        self.exited.clear();
        let in_flight: HashSet<String> = self.creating.keys().cloned().collect();
        let p = plan(&node, &desired.instances, &observed, &in_flight);

        for c in p.remove {
            self.spawn_remove(c);
        }
        for (instance, c) in &p.keep {
            if c.status != ContainerStatus::Created {
                self.failures.remove(instance);
            } else if p.start.contains(&c.id) {
                match self.runtime.start(&c.id).await {
                    // The next pass sees it running.
                    Ok(()) => self.wake.notify_one(),
                    Err(e) => {
                        self.record_failure(instance.clone(), CreateFailure::Other(e.to_string()))
                    }
                }
            }
        }
        for a in p.create {
            let retry_later = self
                .failures
                .get(&a.id)
                .is_some_and(|(_, at)| at.elapsed() < CREATE_RETRY);
            if !retry_later {
                self.spawn_create(a);
            }
        }
        let assigned: HashSet<&str> = desired.instances.iter().map(|a| a.id.as_str()).collect();
        self.failures.retain(|id, _| assigned.contains(id.as_str()));
        self.update_monitors(&desired.instances, &p.keep);

        let instances = desired
            .instances
            .iter()
            .map(|a| {
                let container = p.keep.get(&a.id);
                let health = self.monitors.get(&a.id).map(Monitor::verdict);
                let seen = Observed {
                    container,
                    failure: self.failures.get(&a.id).map(|(f, _)| f),
                    health: health.as_ref(),
                };
                observe::report(a, seen, &self.config.advertise_host)
            })
            .collect();
        Ok(InstanceReports {
            generation: desired.generation,
            instances,
        })
    }

    /// Waits for creates and removals in flight, then stops the health monitors. Containers
    /// keep running: an agent restart must not interrupt the apps.
    pub async fn shutdown(mut self) {
        for (_, task) in self.creating.drain() {
            let _ = task.await;
        }
        for (_, task) in self.removing.drain() {
            let _ = task.await;
        }
        self.monitors.clear();
    }

    /// Collects the outcome of creates and removals that ended.
    async fn reap(&mut self) {
        let done: Vec<String> = self
            .creating
            .iter()
            .filter(|(_, t)| t.is_finished())
            .map(|(id, _)| id.clone())
            .collect();
        for id in done {
            let Some(task) = self.creating.remove(&id) else {
                continue;
            };
            let failure = match task.await {
                Ok(Ok(())) | Ok(Err(RuntimeError::Conflict(_))) => None,
                Ok(Err(RuntimeError::ImageMissing { detail, .. })) => {
                    Some(CreateFailure::ImageMissing(detail))
                }
                Ok(Err(e)) => Some(CreateFailure::Other(e.to_string())),
                Err(e) => Some(CreateFailure::Other(format!("create task failed: {e}"))),
            };
            match failure {
                Some(f) => self.record_failure(id, f),
                None => {
                    self.failures.remove(&id);
                }
            }
        }
        self.removing.retain(|_, t| !t.is_finished());
    }

    /// Keeps the last failure of an instance for its report; logged once per kind, not on
    /// every retry.
    fn record_failure(&mut self, id: String, f: CreateFailure) {
        if self.failures.get(&id).is_some_and(|(old, _)| *old == f) {
            tracing::debug!(instance = %id, failure = ?f, "still cannot run instance");
        } else {
            tracing::warn!(instance = %id, failure = ?f, "cannot run instance");
        }
        self.failures.insert(id, (f, Instant::now()));
    }

    fn spawn_create(&mut self, a: Assignment) {
        let runtime = self.runtime.clone();
        let wake = self.wake.clone();
        let images = self.images.clone();
        let mut spec = ContainerSpec::for_assignment(&self.config.node, &a);
        spec.network = self.config.network.clone();
        let pull = self.config.pull_images;
        if self.failures.contains_key(&a.id) {
            tracing::debug!(instance = %a.id, "retrying the create");
        } else {
            tracing::info!(instance = %a.id, app = %a.app, release = a.release, image = %a.image,
                container = %spec.name, "creating container");
        }
        let task = tokio::spawn(async move {
            let result = async {
                images.ensure(runtime.as_ref(), &spec.image, pull).await?;
                let id = runtime.create(&spec).await?;
                runtime.start(&id).await
            }
            .await;
            wake.notify_one();
            result
        });
        self.creating.insert(a.id, task);
    }

    fn spawn_remove(&mut self, c: ContainerInfo) {
        if self.removing.contains_key(&c.id) {
            return;
        }
        tracing::info!(container = %c.name, instance = ?c.instance(), "removing unassigned container");
        let runtime = self.runtime.clone();
        let wake = self.wake.clone();
        let id = c.id.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = runtime.remove(&id).await {
                tracing::warn!(container = %c.name, error = %e, "cannot remove container; retrying");
            }
            wake.notify_one();
        });
        self.removing.insert(c.id, task);
    }

    /// One monitor per running container of an instance with a health check; restarted when
    /// the container changes.
    fn update_monitors(
        &mut self,
        desired: &[Assignment],
        keep: &std::collections::BTreeMap<String, ContainerInfo>,
    ) {
        let mut wanted = HashSet::new();
        for a in desired {
            let (Some(check), Some(c)) = (&a.health, keep.get(&a.id)) else {
                continue;
            };
            if c.status != ContainerStatus::Running {
                continue;
            }
            wanted.insert(a.id.clone());
            if self
                .monitors
                .get(&a.id)
                .is_some_and(|m| m.container() == c.id)
            {
                continue;
            }
            let targets = self.targets(a, c);
            let monitor = Monitor::spawn(&c.id, check.clone(), targets, self.wake.clone());
            self.monitors.insert(a.id.clone(), monitor);
        }
        self.monitors.retain(|id, _| wanted.contains(id));
    }

    /// The container's own address first, then the published one.
    fn targets(&self, a: &Assignment, c: &ContainerInfo) -> Targets {
        let mut t = Vec::new();
        if let Some(ip) = c.ip {
            t.push((ip.to_string(), a.port));
        }
        if let Some(port) = c.host_port {
            t.push((self.config.advertise_host.clone(), port));
        }
        t
    }

    /// The verdict of an instance's monitor, if it has one (for tests and logs).
    pub fn health(&self, instance: &str) -> Option<HealthVerdict> {
        self.monitors.get(instance).map(Monitor::verdict)
    }

    /// Waits until no create or removal is in flight (for tests).
    pub async fn settle(&mut self) {
        while !self.creating.is_empty() || !self.removing.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.reap().await;
        }
    }
}

impl<R: ContainerRuntime> Drop for Reconciler<R> {
    fn drop(&mut self) {
        // Reached without `shutdown` only when the agent stops on a fatal error.
        for task in self.creating.values() {
            task.abort();
        }
        for task in self.removing.values() {
            task.abort();
        }
    }
}
