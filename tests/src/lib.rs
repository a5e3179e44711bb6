//! A harness that runs real `meridian server` processes on loopback ports, each with its own
//! data directory in a temporary folder, and can SIGKILL and restart them. Servers speak TLS
//! with certificates of one CA per test process ([`pki`]), unless a test asks for plain HTTP.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use meridian_client::{Client, ClientTls};
use meridian_tls::issue::{create_ca, issue, CaOptions, CertAndKey, LeafOptions};
use meridian_tls::CertRole;
use serde_json::Value;

pub mod compose;
pub mod simulated_agent;
pub mod wire;
pub mod workers;

/// The `meridian` binary, built once per test process (a no-op when it is up to date).
pub fn meridian_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("MERIDIAN_BIN") {
            return PathBuf::from(p);
        }
        // target/<profile>/deps/<test-binary> -> target/<profile>/meridian
        let exe = std::env::current_exe().expect("test binary path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary lives in target/<profile>/deps");
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        // The same selection `cargo test --workspace` builds, so features unify the same way
        // and this is a no-op there; a narrower build would rebuild with other features.
        cmd.args(["build", "-q", "--workspace", "--all-targets"]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "building the meridian binary failed");
        profile_dir.join("meridian")
    })
    .clone()
}

/// The test process's certificate authority and the certificates it issued, in a folder that
/// lives as long as the process.
pub struct Pki {
    dir: PathBuf,
    ca: CertAndKey,
    issued: std::sync::Mutex<()>,
}

/// The test process's [`Pki`], made on first use.
pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("meridian-test-pki-")
            .tempdir()
            .expect("pki dir")
            .keep();
        let ca = create_ca(&CaOptions::default()).expect("test CA");
        meridian_tls::files::write_new(&dir.join("ca.pem"), &ca.cert_pem, false, true)
            .expect("write CA");
        Pki {
            dir,
            ca,
            issued: Default::default(),
        }
    })
}

impl Pki {
    /// The CA certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The certificate and key of `name`, a `role` in `region` (issued on first use; valid for
    /// `localhost` and 127.0.0.1 too).
    pub fn cert(&self, role: CertRole, region: &str, name: &str) -> (PathBuf, PathBuf) {
        let _one_at_a_time = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        let cert = self.dir.join(format!("{role}-{region}-{name}.pem"));
        let key = self.dir.join(format!("{role}-{region}-{name}-key.pem"));
        if !cert.exists() {
            let leaf = issue(
                &self.ca,
                &LeafOptions {
                    role,
                    region: region.into(),
                    name: name.into(),
                    sans: vec!["localhost".into(), "127.0.0.1".into()],
                    days: 30,
                },
            )
            .expect("issue test certificate");
            meridian_tls::files::write_new(&key, &leaf.key_pem, true, true).expect("key");
            meridian_tls::files::write_new(&cert, &leaf.cert_pem, false, true).expect("cert");
        }
        (cert, key)
    }

    /// A client's TLS files: the CA, and the certificate of `name` as a `role` in `region`.
    pub fn client_tls(&self, role: CertRole, region: &str, name: &str) -> ClientTls {
        let (cert, key) = self.cert(role, region, name);
        ClientTls {
            ca_file: Some(self.ca_file()),
            cert: Some(cert),
            key: Some(key),
        }
    }

    /// Flags giving a `meridian agent` or `meridian router` this CA and the certificate of
    /// `name` in `region`.
    pub fn part_flags(&self, role: CertRole, region: &str, name: &str) -> Vec<String> {
        let (cert, key) = self.cert(role, region, name);
        vec![
            "--ca-file".into(),
            self.ca_file().display().to_string(),
            "--tls-cert".into(),
            cert.display().to_string(),
            "--tls-key".into(),
            key.display().to_string(),
        ]
    }
}

/// A free loopback port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// One server process and its files.
pub struct Server {
    /// Raft node id.
    pub id: u64,
    /// Loopback port.
    pub port: u16,
    /// Its data directory.
    pub data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    scheme: &'static str,
}

impl Server {
    /// Its base URL.
    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.port)
    }

    /// Whether its process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

/// A cluster of servers in one temporary folder. Dropping it kills every process.
pub struct Cluster {
    /// The temporary folder holding data directories, logs and token files.
    pub dir: tempfile::TempDir,
    secret_file: PathBuf,
    extra_args: Vec<String>,
    /// The servers, index `i` has node id `i + 1`.
    pub servers: Vec<Server>,
    /// The admin token, once bootstrapped.
    pub admin: Option<String>,
}

impl Cluster {
    /// Starts `n` servers: the first forms the cluster, the others join it. Returns once every
    /// server sees `n` voters and a leader.
    pub async fn start(n: usize) -> Cluster {
        Self::start_with(n, &[]).await
    }

    /// Like [`Cluster::start`], passing `extra_args` to every `meridian server`.
    pub async fn start_with(n: usize, extra_args: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret_file = dir.path().join("cluster-secret");
        std::fs::write(&secret_file, "test-cluster-secret-0123456789\n").expect("write secret");
        let mut c = Cluster {
            dir,
            secret_file,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            servers: Vec::new(),
            admin: None,
        };
        for _ in 0..n {
            c.add_server();
        }
        c.wait_for_voters(n, Duration::from_secs(30)).await;
        c
    }

    /// Starts one more server that joins through the first.
    pub fn add_server(&mut self) -> usize {
        let i = self.servers.len();
        let id = i as u64 + 1;
        let data_dir = self.dir.path().join(format!("server-{id}"));
        let log = self.dir.path().join(format!("server-{id}.log"));
        let port = free_port();
        let plain = self.extra_args.iter().any(|a| a == "--insecure-plain-http");
        self.servers.push(Server {
            id,
            port,
            data_dir,
            log,
            child: None,
            scheme: if plain { "http" } else { "https" },
        });
        let start = if i == 0 {
            vec!["--bootstrap".to_string()]
        } else {
            vec!["--join".to_string(), self.servers[0].url()]
        };
        self.spawn(i, &start);
        i
    }

    fn spawn(&mut self, i: usize, start: &[String]) {
        let s = &self.servers[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&s.log)
            .expect("open server log");
        let tls: Vec<String> = if s.scheme == "https" {
            let (cert, key) = pki().cert(CertRole::Server, "test", &format!("server-{}", s.id));
            vec![
                "--tls-cert".into(),
                cert.display().to_string(),
                "--tls-key".into(),
                key.display().to_string(),
                "--tls-ca".into(),
                pki().ca_file().display().to_string(),
            ]
        } else {
            Vec::new()
        };
        // Tests send bad tokens on purpose, from one address: only a test of the limit on
        // failed authentication sets it.
        let limit: &[&str] = if self.extra_args.iter().any(|a| a == "--failed-auth-burst") {
            &[]
        } else {
            &["--failed-auth-burst", "0"]
        };
        let child = Command::new(meridian_bin())
            .arg("server")
            .args(&tls)
            .args(limit)
            .args(["--node-id", &s.id.to_string()])
            .args(["--listen", &format!("127.0.0.1:{}", s.port)])
            .arg("--data-dir")
            .arg(&s.data_dir)
            .arg("--cluster-secret-file")
            .arg(&self.secret_file)
            .args(start)
            .args(&self.extra_args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("spawn meridian server");
        self.servers[i].child = Some(child);
    }

    /// SIGKILLs server `i` (no clean shutdown).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.servers[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts server `i` again from its data directory, with neither `--bootstrap` nor `--join`.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i, &[]);
    }

    /// Sends SIGTERM to server `i` and waits for it to exit; answers its exit status.
    pub fn terminate(&mut self, i: usize) -> std::process::ExitStatus {
        let mut child = self.servers[i].child.take().expect("server running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        child.wait().expect("wait for server")
    }

    /// Base URL of server `i`.
    pub fn url(&self, i: usize) -> String {
        self.servers[i].url()
    }

    /// A client for server `i` with the admin token (once bootstrapped).
    pub fn client(&self, i: usize) -> Client {
        self.client_with(i, self.admin.clone())
    }

    /// Flags for a `meridian agent` or `meridian router` of this cluster: over TLS, the CA and
    /// the certificate of `name`, a `role` in `region`; nothing over plain HTTP.
    pub fn part_flags(&self, role: CertRole, region: &str, name: &str) -> Vec<String> {
        match self.servers.first() {
            Some(s) if s.scheme == "http" => Vec::new(),
            _ => pki().part_flags(role, region, name),
        }
    }

    /// A client for server `i` sending `token`, trusting the test CA.
    pub fn client_with(&self, i: usize, token: Option<String>) -> Client {
        client(&self.url(i), token)
    }

    /// A client for server `i` as the agent of node `node` in `region` would call: its token,
    /// and that node's agent certificate.
    pub fn agent_client(&self, i: usize, token: &str, node: &str, region: &str) -> Client {
        Client::builder([self.url(i)])
            .token(token.to_string())
            .tls_files(pki().client_tls(CertRole::Agent, region, node))
            .build()
            .expect("agent client")
    }

    /// Everything server `i` logged.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.servers[i].log).unwrap_or_default()
    }

    /// Prints every server's log (for failing tests).
    pub fn dump_logs(&self) {
        for (i, s) in self.servers.iter().enumerate() {
            eprintln!("===== server {} log =====\n{}", s.id, self.log(i));
        }
    }

    /// `GET /v1/cluster?stale=true` on server `i`, without auth checks beyond the admin token.
    pub async fn local_view(&self, i: usize) -> Option<Value> {
        let token = self.admin.clone().unwrap_or_default();
        let resp = http()
            .get(format!("{}/v1/cluster?stale=true", self.url(i)))
            .bearer_auth(token)
            .send()
            .await
            .ok()?;
        resp.json().await.ok()
    }

    /// The leader id as server `i`'s own Raft sees it, read from its metrics.
    pub async fn local_leader(&self, i: usize) -> Option<u64> {
        let is_leader = metric(&self.url(i), "meridian_raft_is_leader").await?;
        (is_leader == 1.0).then_some(self.servers[i].id)
    }

    /// Waits until one running server reports itself leader; answers its index.
    pub async fn wait_for_leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            for (i, s) in self.servers.iter().enumerate() {
                if s.is_running() && self.local_leader(i).await.is_some() {
                    return i;
                }
            }
            if Instant::now() > deadline {
                self.dump_logs();
                panic!("no leader within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every running server's metrics show `n` voters.
    pub async fn wait_for_voters(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let mut all = true;
            for (i, s) in self.servers.iter().enumerate() {
                if !s.is_running() {
                    continue;
                }
                let voters = metric(&self.url(i), "meridian_raft_voters").await;
                all &= voters == Some(n as f64);
            }
            if all {
                return;
            }
            if Instant::now() > deadline {
                self.dump_logs();
                panic!("servers did not reach {n} voters within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The index of the last entry server `i` has applied, from its metrics.
    pub async fn applied_index(&self, i: usize) -> Option<u64> {
        let index = metric(&self.url(i), "meridian_raft_applied_index").await?;
        Some(index as u64)
    }

    /// Waits until every running server has applied every entry that any of them had applied
    /// when this was called. A write acknowledged before the call is then in each server's
    /// own copy of the state, where `?stale=true` reads and token checks look.
    pub async fn wait_for_applied(&self, timeout: Duration) {
        let running: Vec<usize> = (0..self.servers.len())
            .filter(|&i| self.servers[i].is_running())
            .collect();
        let mut target = 0;
        for &i in &running {
            target = target.max(self.applied_index(i).await.unwrap_or(0));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let mut behind = Vec::new();
            for &i in &running {
                let applied = self.applied_index(i).await;
                if applied.is_none_or(|a| a < target) {
                    behind.push((self.servers[i].id, applied));
                }
            }
            if behind.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                self.dump_logs();
                panic!("servers still behind index {target} after {timeout:?}: {behind:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Bootstraps auth through server `i` and keeps the admin token.
    pub async fn bootstrap(&mut self) -> String {
        let resp = self
            .client_with(0, None)
            .bootstrap()
            .await
            .expect("bootstrap");
        self.admin = Some(resp.token.clone());
        resp.token
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            self.kill(i);
        }
    }
}

/// A client for the server at `url` sending
/// `token`, trusting the test CA.
pub fn client(url: &str, token: Option<String>) -> Client {
    Client::builder([url])
        .token(token)
        .ca_file(pki().ca_file())
        .build()
        .expect("client")
}

/// A raw HTTP client builder that trusts the test CA's servers (and checks nothing else of
/// plain `http://` targets).
pub fn http_builder() -> reqwest::ClientBuilder {
    let tls = meridian_tls::client_config(&pki().ca_file(), None).expect("test TLS set-up");
    reqwest::Client::builder().tls_backend_preconfigured(tls)
}

/// A raw HTTP client presenting the certificate of `name`, a `role` in `region`.
pub fn http_as(role: CertRole, region: &str, name: &str) -> reqwest::Client {
    let (cert, key) = pki().cert(role, region, name);
    let tls = meridian_tls::client_config(&pki().ca_file(), Some((&cert, &key)))
        .expect("test TLS set-up");
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client")
}

/// A raw HTTP client for requests by hand, to servers (over TLS) or anything over plain HTTP.
pub fn http() -> reqwest::Client {
    http_builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client")
}

/// One value from a server's `/metrics`.
pub async fn metric(base: &str, name: &str) -> Option<f64> {
    let text = http()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A minimal valid app body named `name`.
pub fn app_body(name: &str) -> meridian_api::apps::AppBody {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "image": "example/web:1",
        "port": 8080,
    }))
    .expect("app body")
}
