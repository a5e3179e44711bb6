//! Real `meridian agent` processes on the real Docker engine, next to a [`crate::Cluster`].

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use meridian_api::regions::RegionBody;
use meridian_api::tokens::CreateToken;

use crate::{meridian_bin, Cluster};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository")
        .to_path_buf()
}

/// Builds the `meridian-hello` images offline when they are missing or older than the app.
pub fn hello_images() {
    let status = Command::new(repo_root().join("deploy/images/hello-image.sh"))
        .stdout(Stdio::null())
        .status()
        .expect("run deploy/images/hello-image.sh");
    assert!(
        status.success(),
        "building the meridian-hello images failed"
    );
}

/// One agent process.
pub struct Agent {
    /// Node name.
    pub name: String,
    log: PathBuf,
    child: Option<Child>,
}

impl Agent {
    /// SIGKILLs the agent (its containers keep running).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// What it logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
        remove_containers(&self.name);
    }
}

/// Removes every container labelled with node `node`.
pub fn remove_containers(node: &str) {
    remove_labelled(&[("meridian.node", node)]);
}

/// Removes every container carrying all of `labels` (key, value).
pub fn remove_labelled(labels: &[(&str, &str)]) {
    let mut ps = Command::new("docker");
    ps.args(["ps", "-aq"]);
    for (k, v) in labels {
        ps.args(["--filter", &format!("label={k}={v}")]);
    }
    let out = ps.output().expect("docker ps");
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    if !ids.is_empty() {
        let _ = Command::new("docker")
            .args(["rm", "-f"])
            .args(&ids)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Containers labelled with node `node`, running or not.
pub fn containers_of(node: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--format",
            "{{.Names}}",
            "--filter",
            &format!("label=meridian.node={node}"),
        ])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

/// A unique prefix for node names, so concurrent tests and leftovers never collide.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", std::process::id() % 100_000)
}

impl Cluster {
    /// Creates the regions eu-fra (DE), eu-ams (NL) and us-iad (US).
    pub async fn three_regions(&self) {
        for (name, country, lat, lon) in [
            ("eu-fra", "DE", 50.1, 8.7),
            ("eu-ams", "NL", 52.4, 4.9),
            ("us-iad", "US", 38.9, -77.4),
        ] {
            let body: RegionBody = serde_json::from_value(serde_json::json!({
                "name": name, "country": country, "latitude": lat, "longitude": lon
            }))
            .expect("region body");
            self.client(0)
                .create_region(&body)
                .await
                .expect("create region");
        }
    }

    /// A fresh token of `role` (admin, deployer, viewer, agent, router), made by the admin.
    pub async fn token(&self, role: &str) -> String {
        self.client(0)
            .create_token(&CreateToken {
                role: role.into(),
                ttl_seconds: None,
                apps: None,
            })
            .await
            .unwrap_or_else(|e| panic!("{role} token: {e}"))
            .token
    }

    /// Waits until `n` nodes are ready.
    pub async fn wait_nodes_ready(&self, n: usize) {
        let admin = self.client(0);
        eventually(
            &format!("{n} nodes ready"),
            Duration::from_secs(30),
            || async {
                admin
                    .nodes()
                    .await
                    .is_ok_and(|nodes| nodes.iter().filter(|x| x.status == "ready").count() == n)
            },
        )
        .await;
    }

    /// Writes a fresh agent token to a file and answers its path.
    pub async fn agent_token_file(&self) -> PathBuf {
        let token = self.token("agent").await;
        let path = self.dir.path().join("agent.token");
        std::fs::write(&path, token).expect("write agent token");
        path
    }

    /// Starts `meridian agent --name name --region region` against every server.
    pub fn start_agent(&self, name: &str, region: &str, token_file: &Path) -> Agent {
        let log = self.dir.path().join(format!("agent-{name}.log"));
        let file = std::fs::File::create(&log).expect("agent log");
        let servers: Vec<String> = (0..self.servers.len()).map(|i| self.url(i)).collect();
        let child = Command::new(meridian_bin())
            .arg("agent")
            .args(["--name", name, "--region", region])
            .args(["--server", &servers.join(",")])
            .args(self.part_flags(meridian_tls::CertRole::Agent, region, name))
            .arg("--token-file")
            .arg(token_file)
            .args(["--advertise-host", "127.0.0.1", "--heartbeat-ms", "500"])
            .args(["--cpu-millis", "2000", "--memory-mb", "2048"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone log"))
            .stderr(file)
            .spawn()
            .expect("spawn meridian agent");
        Agent {
            name: name.to_string(),
            log,
            child: Some(child),
        }
    }
}

/// Polls `f` every 200 ms until it holds or `timeout` passes; answers the time it took.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if f().await {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out after {timeout:?} waiting for: {what}");
}

impl Cluster {
    /// Runs the `meridian` CLI against server 0 with the admin token; answers the exit code,
    /// stdout and stderr.
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(meridian_bin())
            .args(args)
            .env("MERIDIAN_ADDR", self.url(0))
            .env("MERIDIAN_CA_FILE", crate::pki().ca_file())
            .env("MERIDIAN_TOKEN", self.admin.clone().unwrap_or_default())
            .env("MERIDIAN_CONFIG_DIR", self.dir.path().join("cli-config"))
            .env("RUST_LOG", "warn")
            .output()
            .expect("run meridian");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!stderr.contains("panicked"), "meridian panicked: {stderr}");
        (out.status.code().unwrap_or(-1), stdout, stderr)
    }
}

/// The arguments of `meridian apps create NAME --image web:1 --port 80`, then `extra`.
pub fn create_app_args<'a>(name: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["apps", "create", name, "--image", "web:1", "--port", "80"];
    args.extend_from_slice(extra);
    args
}

/// One `meridian router` process.
pub struct RouterProcess {
    /// Its region.
    pub region: String,
    /// Base URL it serves apps on.
    pub url: String,
    /// Base URL of its `/metrics` and `/health`.
    pub metrics_url: String,
    log: PathBuf,
    child: Option<Child>,
}

impl RouterProcess {
    /// What it logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for RouterProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Cluster {
    /// Writes a fresh router token to a file and answers its path.
    pub async fn router_token_file(&self) -> PathBuf {
        let token = self.token("router").await;
        let path = self.dir.path().join("router.token");
        std::fs::write(&path, token).expect("write router token");
        path
    }

    /// Starts `meridian router` for `region` on a free loopback port, with `extra` flags.
    pub fn start_router(&self, region: &str, token_file: &Path, extra: &[&str]) -> RouterProcess {
        let port = crate::free_port();
        let metrics_port = crate::free_port();
        let log = self.dir.path().join(format!("router-{region}.log"));
        let file = std::fs::File::create(&log).expect("router log");
        let servers: Vec<String> = (0..self.servers.len()).map(|i| self.url(i)).collect();
        let default_name = format!("router-{region}");
        let name = extra
            .windows(2)
            .find(|w| w[0] == "--name")
            .map_or(default_name.as_str(), |w| w[1]);
        let child = Command::new(meridian_bin())
            .arg("router")
            .args(["--region", region, "--name", &default_name])
            .args(["--server", &servers.join(",")])
            .args(self.part_flags(meridian_tls::CertRole::Router, region, name))
            .arg("--token-file")
            .arg(token_file)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone log"))
            .stderr(file)
            .spawn()
            .expect("spawn meridian router");
        RouterProcess {
            region: region.to_string(),
            url: format!("http://127.0.0.1:{port}"),
            metrics_url: format!("http://127.0.0.1:{metrics_port}"),
            log,
            child: Some(child),
        }
    }
}
