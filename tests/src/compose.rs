//! The local multi-region cluster (`docker-compose.yml`, driven by `deploy/local-cluster`) as
//! the end-to-end suite sees it: containers to kill, pause and cut off, and an API to check.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meridian_client::Client;

use crate::workers::repo_root;

/// This checkout's cluster as `deploy/local-cluster` named it (`.meridian/compose/cluster.env`).
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// The compose project.
    pub project: String,
    /// The prefix of its Docker networks (`<prefix>-eu-fra`, `<prefix>-backbone`, ...).
    pub networks: String,
    /// The `meridian.cluster` label on its app containers.
    pub cluster: String,
    /// Ports of the three servers on the host, by node id - 1.
    pub api_ports: [u16; 3],
    /// Ports of the routers of eu-fra, eu-ams and us-iad on the host.
    pub router_ports: [u16; 3],
}

impl ClusterSettings {
    /// Reads the settings `deploy/local-cluster up` wrote; `None` before the first `up`.
    pub fn read() -> Option<ClusterSettings> {
        Self::read_from(&repo_root().join(".meridian"))
    }

    /// The same for the cluster whose state directory is `state`
    /// (`MERIDIAN_LOCAL_CLUSTER_STATE`).
    pub fn read_from(state: &std::path::Path) -> Option<ClusterSettings> {
        let text = std::fs::read_to_string(state.join("compose/cluster.env")).ok()?;
        let get = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_string)
        };
        let port = |key: &str| get(key)?.parse::<u16>().ok();
        Some(ClusterSettings {
            project: get("MERIDIAN_PROJECT")?,
            networks: get("MERIDIAN_NETWORKS")?,
            cluster: get("MERIDIAN_CLUSTER")?,
            api_ports: [
                port("MERIDIAN_API_PORT_1")?,
                port("MERIDIAN_API_PORT_2")?,
                port("MERIDIAN_API_PORT_3")?,
            ],
            router_ports: [
                port("MERIDIAN_ROUTER_PORT_1")?,
                port("MERIDIAN_ROUTER_PORT_2")?,
                port("MERIDIAN_ROUTER_PORT_3")?,
            ],
        })
    }

    /// The Docker network `name` (`eu-fra`, `backbone`, ...).
    pub fn network(&self, name: &str) -> String {
        format!("{}-{name}", self.networks)
    }

    /// The `docker ps --filter` value selecting this cluster's app containers.
    pub fn app_containers(&self) -> String {
        format!("label=meridian.cluster={}", self.cluster)
    }
}

/// The cluster, brought up by this process or found running.
pub struct ComposeCluster {
    /// The admin token.
    pub token: String,
    /// Whether this process started it (and so stops it when dropped).
    pub started_here: bool,
    /// Its names and ports.
    pub settings: ClusterSettings,
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("run a command");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `docker ARGS`, answering success and output.
pub fn docker(args: &[&str]) -> (bool, String) {
    run(Command::new("docker").args(args))
}

/// The local cluster's CA (`deploy/local-cluster up` mints it).
pub fn ca_file() -> std::path::PathBuf {
    repo_root().join(".meridian/tls/ca.pem")
}

/// A raw HTTP client that checks the local cluster's servers against its CA.
pub fn http_builder() -> reqwest::ClientBuilder {
    let tls = meridian_tls::client_config(&ca_file(), None).expect("the local cluster's CA");
    reqwest::Client::builder().tls_backend_preconfigured(tls)
}

impl ComposeCluster {
    /// Reuses a healthy local cluster, or runs `deploy/local-cluster up`.
    pub async fn up() -> ComposeCluster {
        let token_file = repo_root().join(".meridian/admin.token");
        let healthy = |token: &str, port: u16| {
            let token = token.to_string();
            async move {
                let Ok(client) = Client::builder([format!("https://127.0.0.1:{port}")])
                    .token(token)
                    .ca_file(ca_file())
                    .build()
                else {
                    // No CA yet: no cluster this checkout can use.
                    return false;
                };
                client
                    .nodes()
                    .await
                    .is_ok_and(|n| n.iter().filter(|n| n.status == "ready").count() >= 3)
            }
        };
        if let (Ok(token), Some(settings)) = (
            std::fs::read_to_string(&token_file),
            ClusterSettings::read(),
        ) {
            if healthy(token.trim(), settings.api_ports[0]).await {
                println!("reusing the running local cluster");
                return ComposeCluster {
                    token: token.trim().to_string(),
                    started_here: false,
                    settings,
                };
            }
        }
        // Without the admin token, data left by an earlier cluster cannot be used: start clean.
        if !token_file.exists() {
            local_cluster("clean");
        }
        assert!(local_cluster("up"), "deploy/local-cluster up failed");
        let token = std::fs::read_to_string(&token_file).expect("admin token");
        ComposeCluster {
            token: token.trim().to_string(),
            started_here: true,
            settings: ClusterSettings::read().expect("local-cluster up wrote cluster.env"),
        }
    }

    /// A client for server `id` (1-3).
    pub fn client(&self, id: u64) -> Client {
        let port = self.settings.api_ports[(id - 1) as usize];
        Client::builder([format!("https://127.0.0.1:{port}")])
            .token(self.token.clone())
            .ca_file(ca_file())
            .build()
            .expect("client")
    }

    /// The container id of a compose service (`server-1`, `agent-fra-1`, ...).
    pub fn container(&self, service: &str) -> String {
        let (_, out) = docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.settings.project),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ]);
        out.split_whitespace()
            .next()
            .unwrap_or_else(|| panic!("no container for service {service}"))
            .to_string()
    }

    /// The leader's node id, as any answering server reports it.
    pub async fn leader(&self) -> Option<u64> {
        for id in 1..=3 {
            if let Ok(s) = self.client(id).cluster().await {
                if let Some(l) = s.leader {
                    return Some(l);
                }
            }
        }
        None
    }

    /// Waits until all three servers answer and agree on a leader with 3 voters.
    pub async fn wait_healthy(&self, timeout: Duration) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            let mut leaders = Vec::new();
            for id in 1..=3 {
                if let Ok(s) = self.client(id).cluster().await {
                    if s.members.iter().filter(|m| m.voter).count() == 3 {
                        leaders.extend(s.leader);
                    }
                }
            }
            if leaders.len() == 3 && leaders.windows(2).all(|w| w[0] == w[1]) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("the cluster did not become healthy within {timeout:?}");
    }

    /// Waits until the three agents' nodes are ready.
    pub async fn wait_nodes_ready(&self, timeout: Duration) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(l) = self.leader().await {
                let ready = self.client(l).nodes().await.map_or(0, |n| {
                    n.iter()
                        .filter(|n| {
                            n.status == "ready"
                                && ["fra-1", "ams-1", "iad-1"].contains(&n.name.as_str())
                        })
                        .count()
                });
                if ready == 3 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("the three agents were not ready within {timeout:?}");
    }
}

fn local_cluster(verb: &str) -> bool {
    Command::new(repo_root().join("deploy/local-cluster"))
        .arg(verb)
        .stdin(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Drop for ComposeCluster {
    /// A cluster this suite started is removed with its data (`MERIDIAN_E2E_KEEP=1` keeps it).
    fn drop(&mut self) {
        if self.started_here && std::env::var_os("MERIDIAN_E2E_KEEP").is_none() {
            local_cluster("clean");
        }
    }
}
