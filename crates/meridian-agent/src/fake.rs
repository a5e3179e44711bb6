//! An in-memory [`ContainerRuntime`] for unit tests, plus builders for test data.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, TryStreamExt};
use meridian_api::agent::Assignment;

use crate::images::ImageSource;
use crate::runtime::{
    container_name, ContainerEvent, ContainerInfo, ContainerRuntime, ContainerSpec,
    ContainerStatus, ImageTar, RuntimeError, LABEL_APP, LABEL_INSTANCE, LABEL_NODE, LABEL_RELEASE,
};

/// What the fake engine holds, shared so a test can look and meddle.
#[derive(Debug, Default)]
pub struct FakeEngine {
    /// Containers by id, of every node.
    pub containers: BTreeMap<String, ContainerInfo>,
    /// Images present.
    pub images: HashSet<String>,
    /// Images a pull finds.
    pub registry: HashSet<String>,
    /// Pulls that found their image.
    pub pulls: usize,
    /// Loads attempted. A fake archive is the names of the images it holds, one a line.
    pub loads: usize,
    /// When set, every load fails with this engine message.
    pub fail_loads: Option<String>,
    /// When set, every call fails as if the engine were down.
    pub down: bool,
    /// Containers the list still shows running although they exited (the engine's list lags
    /// its events by a moment).
    pub list_lags: HashSet<String>,
    /// When set, every start fails with this engine message.
    pub fail_starts: Option<String>,
    /// Ids removed so far, in order.
    pub removed: Vec<String>,
    /// Creates attempted, including refused ones.
    pub creates: usize,
    next_id: u64,
    next_port: u16,
}

/// A [`ContainerRuntime`] over a [`FakeEngine`].
#[derive(Debug, Clone, Default)]
pub struct FakeRuntime {
    engine: Arc<Mutex<FakeEngine>>,
}

impl FakeRuntime {
    /// A fake engine holding `images`.
    pub fn with_images(images: &[&str]) -> Self {
        let rt = Self::default();
        rt.engine().images = images.iter().map(|s| s.to_string()).collect();
        rt
    }

    /// The engine's state.
    pub fn engine(&self) -> MutexGuard<'_, FakeEngine> {
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a container as if made by someone else (another agent, an earlier run).
    pub fn insert(&self, c: ContainerInfo) {
        self.engine().containers.insert(c.id.clone(), c);
    }

    fn check_up(&self) -> Result<MutexGuard<'_, FakeEngine>, RuntimeError> {
        let e = self.engine();
        if e.down {
            return Err(RuntimeError::Unavailable("fake engine is down".into()));
        }
        Ok(e)
    }
}

impl ContainerRuntime for FakeRuntime {
    async fn list(&self, node: &str) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let e = self.check_up()?;
        Ok(e.containers
            .values()
            .filter(|c| c.node() == Some(node))
            .map(|c| {
                let mut c = c.clone();
                if e.list_lags.contains(&c.id) {
                    c.status = ContainerStatus::Running;
                    c.exit_code = None;
                }
                c
            })
            .collect())
    }

    async fn state(&self, id: &str) -> Result<(ContainerStatus, Option<i64>), RuntimeError> {
        let e = self.check_up()?;
        let c = e
            .containers
            .get(id)
            .ok_or_else(|| RuntimeError::NotFound(id.into()))?;
        Ok((c.status, c.exit_code))
    }

    async fn ensure_image(&self, image: &str, pull: bool) -> Result<(), RuntimeError> {
        let mut e = self.check_up()?;
        if e.images.contains(image) {
            Ok(())
        } else if pull && e.registry.contains(image) {
            e.pulls += 1;
            e.images.insert(image.into());
            Ok(())
        } else {
            Err(RuntimeError::ImageMissing {
                image: image.into(),
                detail: if pull {
                    "pull failed: not in the fake registry".into()
                } else {
                    "not in the fake engine".into()
                },
            })
        }
    }

    async fn load_image(&self, tar: ImageTar) -> Result<(), RuntimeError> {
        self.check_up()?.loads += 1;
        let chunks: Result<Vec<Bytes>, _> = tar.try_collect().await;
        let chunks = chunks.map_err(|e| RuntimeError::Unavailable(format!("upload cut: {e}")))?;
        let mut e = self.check_up()?;
        if let Some(message) = &e.fail_loads {
            return Err(RuntimeError::LoadFailed(message.clone()));
        }
        let text = String::from_utf8_lossy(&chunks.concat()).to_string();
        e.images.extend(text.lines().map(str::to_string));
        Ok(())
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        let mut e = self.check_up()?;
        e.creates += 1;
        if e.containers.values().any(|c| c.name == spec.name) {
            return Err(RuntimeError::Conflict(spec.name.clone()));
        }
        e.next_id += 1;
        let id = format!("fake-{}", e.next_id);
        let c = ContainerInfo {
            id: id.clone(),
            name: spec.name.clone(),
            labels: spec.labels.clone(),
            status: ContainerStatus::Created,
            exit_code: None,
            host_port: None,
            ip: None,
        };
        e.containers.insert(id.clone(), c);
        Ok(id)
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        let mut e = self.check_up()?;
        if let Some(message) = &e.fail_starts {
            return Err(RuntimeError::Engine {
                action: "start a container",
                status: 500,
                message: message.clone(),
            });
        }
        e.next_port += 1;
        let port = 40000 + e.next_port;
        let c = e
            .containers
            .get_mut(id)
            .ok_or_else(|| RuntimeError::NotFound(id.into()))?;
        c.status = ContainerStatus::Running;
        c.host_port = Some(port);
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let mut e = self.check_up()?;
        if e.containers.remove(id).is_some() {
            e.removed.push(id.to_string());
        }
        Ok(())
    }

    fn events(&self, _node: &str) -> BoxStream<'static, Result<ContainerEvent, RuntimeError>> {
        futures::stream::pending().boxed()
    }
}

/// An assignment of app `web` running `meridian-hello:latest` on port 8080, no health check.
pub fn assignment(id: &str, release: u64) -> Assignment {
    Assignment {
        id: id.into(),
        app: "web".into(),
        release,
        image: "meridian-hello:latest".into(),
        port: 8080,
        env: BTreeMap::new(),
        cpu_millis: 100,
        memory_mb: 64,
        health: None,
    }
}

/// A container of `instance` on `node`, labelled and named as the agent would.
pub fn container(
    node: &str,
    instance: &str,
    release: u64,
    status: ContainerStatus,
) -> ContainerInfo {
    ContainerInfo {
        id: format!("c-{node}-{instance}-{release}"),
        name: container_name(node, instance),
        labels: BTreeMap::from([
            (LABEL_NODE.into(), node.into()),
            (LABEL_APP.into(), "web".into()),
            (LABEL_RELEASE.into(), release.to_string()),
            (LABEL_INSTANCE.into(), instance.into()),
        ]),
        status,
        exit_code: None,
        host_port: Some(32768),
        ip: None,
    }
}

/// An [`ImageSource`] holding fake archives (see [`FakeEngine::loads`]). Each fetch takes a
/// moment, so that concurrent creates overlap.
#[derive(Debug, Default)]
pub struct FakeImages {
    state: Mutex<FakeImagesState>,
}

/// What a [`FakeImages`] holds and was asked.
#[derive(Debug, Default)]
pub struct FakeImagesState {
    /// Images it has.
    pub images: HashSet<String>,
    /// Fetches asked for, in order, including those of images it lacks.
    pub fetches: Vec<String>,
    /// When set, fetches fail with this.
    pub down: Option<String>,
    /// When set, transfers break off after their first chunk.
    pub break_transfers: bool,
}

impl FakeImages {
    /// A source holding `images`.
    pub fn with_images(images: &[&str]) -> Arc<Self> {
        let source = Self::default();
        source.state().images = images.iter().map(|s| s.to_string()).collect();
        Arc::new(source)
    }

    /// Its state.
    pub fn state(&self) -> MutexGuard<'_, FakeImagesState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ImageSource for FakeImages {
    fn fetch<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Result<Option<ImageTar>, String>> {
        async move {
            let (has, down, breaks) = {
                let mut s = self.state();
                s.fetches.push(image.to_string());
                (s.images.contains(image), s.down.clone(), s.break_transfers)
            };
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Some(why) = down {
                return Err(why);
            }
            if !has {
                return Ok(None);
            }
            let name = Bytes::from(format!("{image}\n"));
            let (head, tail) = (name.slice(..1), name.slice(1..));
            let tail = if breaks {
                Err(std::io::Error::other("connection reset"))
            } else {
                Ok(tail)
            };
            let chunks = futures::stream::iter([Ok(head), tail]).then(|chunk| async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                chunk
            });
            Ok(Some(chunks.boxed()))
        }
        .boxed()
    }
}
