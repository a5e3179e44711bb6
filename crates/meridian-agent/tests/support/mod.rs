//! Helpers for the tests against the real Docker engine: the test image, a guard that removes
//! every container of a test node, and a fake control plane serving the agent protocol.

#![allow(dead_code)]

pub mod control_plane;
pub mod engine_proxy;

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The image every test runs.
pub const IMAGE: &str = "meridian-hello:latest";

/// The repository root, from this crate's manifest directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds the `meridian-hello` images with `deploy/images/hello-image.sh` unless they exist
/// (or always, with `MERIDIAN_HELLO_REBUILD=1`, after changing the app).
pub fn ensure_hello_images() {
    static BUILT: Mutex<bool> = Mutex::new(false);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if *built {
        return;
    }
    let present = ["latest", "unhealthy", "v2"].iter().all(|tag| {
        Command::new("docker")
            .args(["image", "inspect", &format!("meridian-hello:{tag}")])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let rebuild = std::env::var("MERIDIAN_HELLO_REBUILD").is_ok_and(|v| v == "1");
    if !present || rebuild {
        let script = repo_root().join("deploy/images/hello-image.sh");
        let status = Command::new("bash")
            .arg(&script)
            .args(rebuild.then_some("--force"))
            .current_dir(repo_root())
            .status()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(status.success(), "{} failed", script.display());
    }
    *built = true;
}

/// Sends the agent's logs to the test output (shown with `--nocapture` or on failure);
/// `RUST_LOG` picks the level, default `info`.
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// A node name unique to this process and call, e.g. `t4242-3`.
pub fn unique_node(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "t{}-{tag}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Ids of every container labelled with `node`, running or not.
pub fn containers_of(node: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-aq", "--no-trunc", "--filter"])
        .arg(format!("label=meridian.node={node}"))
        .output()
        .expect("docker ps runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Removes every container of its nodes when dropped, also when the test panics.
pub struct Cleanup(pub Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for node in &self.0 {
            let ids = containers_of(node);
            if !ids.is_empty() {
                let _ = Command::new("docker")
                    .args(["rm", "-f"])
                    .args(&ids)
                    .output();
            }
        }
    }
}

/// GETs `http://{addr}{path}` with a plain HTTP/1.1 request; `(status, body)`.
pub async fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Ok((status, body))
}

/// Retries `http_get` until it answers or `limit` passes.
pub async fn http_get_soon(addr: &str, path: &str, limit: Duration) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match http_get(addr, path).await {
            Ok(answer) if answer.0 != 0 => return answer,
            other if tokio::time::Instant::now() > deadline => {
                panic!("no HTTP answer from {addr}{path} within {limit:?}: {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
