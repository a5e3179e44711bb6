//! A Unix-socket proxy in front of the real Docker socket that a test can take down and bring
//! back: to the agent behind it, that is an engine restart (connections cut, socket gone),
//! without restarting the machine's engine.

use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};
use tokio::task::{JoinHandle, JoinSet};

/// The machine's engine.
pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// A proxy listening on `path` while up.
pub struct EngineProxy {
    path: PathBuf,
    task: Option<JoinHandle<()>>,
}

impl EngineProxy {
    /// A proxy for `path`, not yet listening.
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            task: None,
        }
    }

    /// `unix://<path>`, for the agent's config.
    pub fn url(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// Starts listening (again).
    pub fn up(&mut self) {
        self.down();
        let _ = std::fs::remove_file(&self.path);
        let listener = UnixListener::bind(&self.path).expect("bind the proxy socket");
        self.task = Some(tokio::spawn(async move {
            // Dropping the set with the task aborts every connection, as an engine exit would.
            let mut connections = JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut engine) = UnixStream::connect(DOCKER_SOCKET).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
                    }
                });
                while connections.try_join_next().is_some() {}
            }
        }));
    }

    /// Cuts every connection and removes the socket.
    pub fn down(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for EngineProxy {
    fn drop(&mut self) {
        self.down();
    }
}
