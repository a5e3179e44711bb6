//! The agent's one typed config, with the defaults `meridian agent` falls back to.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use meridian_core::Name;

use crate::error::AgentError;

/// Docker engine address used when none is given.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// Host written into instance addresses when none is given.
pub const DEFAULT_ADVERTISE_HOST: &str = "127.0.0.1";

/// Everything an agent needs to run. Build one with [`AgentConfig::new`] and adjust fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// Node name, a DNS label unique in the cluster; also part of every container name.
    pub name: String,
    /// Region the node is in; it must exist on the control plane.
    pub region: String,
    /// Base URLs of control-plane servers, tried in turn when one fails.
    pub servers: Vec<String>,
    /// Bearer token for the agent endpoints.
    pub token: String,
    /// The cluster's CA, and this node's agent certificate and key, for calls to the servers.
    pub tls: meridian_client::ClientTls,
    /// Docker engine address: `unix:///path`, `tcp://host:port` or `http://host:port`.
    pub docker_host: String,
    /// CPU offered to instances, in thousandths of a core.
    pub cpu_millis: u32,
    /// Memory offered to instances, in MiB.
    pub memory_mb: u32,
    /// Host name or address where published instance ports are reachable.
    pub advertise_host: String,
    /// Free-form node labels sent on registration.
    pub labels: BTreeMap<String, String>,
    /// Time between heartbeats.
    pub heartbeat: Duration,
    /// Pull missing images from a registry (`--registry`). Without it, or when the pull fails,
    /// a missing image is fetched from the control plane (`meridian images push`); one it does
    /// not have either is reported as `image_missing`.
    pub pull_images: bool,
    /// Time between full resyncs with the engine, besides reacting to its events.
    pub resync_interval: Duration,
    /// Longest time between two reports while something is assigned.
    pub report_interval: Duration,
    /// How long one assignments watch may block on the server.
    pub watch_wait: Duration,
    /// How long a container may take to stop before it is killed.
    pub stop_timeout: Duration,
    /// Docker network instance containers join (`--network`); the engine's default bridge
    /// when `None`. With it, the agent reaches instances by their address on that network.
    pub network: Option<String>,
    /// Name of the cluster this agent belongs to (`--cluster`), for engines shared by several
    /// clusters: the agent labels its containers `meridian.cluster=<name>` and touches no
    /// container labelled otherwise. `None`: only unlabelled containers are its own.
    pub cluster: Option<String>,
}

impl AgentConfig {
    /// A config with the defaults for everything but identity, servers and token: CPU and
    /// memory from this machine, Docker at [`DEFAULT_DOCKER_HOST`], 2 s heartbeats, 5 s
    /// resyncs, reports at least every 15 s, 30 s watches.
    pub fn new(name: &str, region: &str, servers: Vec<String>, token: &str) -> Self {
        Self {
            name: name.to_string(),
            region: region.to_string(),
            servers,
            token: token.to_string(),
            tls: meridian_client::ClientTls::default(),
            docker_host: DEFAULT_DOCKER_HOST.to_string(),
            cpu_millis: default_cpu_millis(),
            memory_mb: default_memory_mb(),
            advertise_host: DEFAULT_ADVERTISE_HOST.to_string(),
            labels: BTreeMap::new(),
            heartbeat: Duration::from_millis(2_000),
            pull_images: false,
            resync_interval: Duration::from_secs(5),
            report_interval: Duration::from_secs(15),
            watch_wait: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(5),
            network: None,
            cluster: None,
        }
    }

    /// Checks what can be checked without the network.
    pub fn validate(&self) -> Result<(), AgentError> {
        let bad = |field: &'static str, problem: String| Err(AgentError::Config { field, problem });
        if let Err(p) = Name::parse(&self.name) {
            return bad("name", p.to_string());
        }
        if self.region.trim().is_empty() {
            return bad("region", "must not be empty".into());
        }
        if let Some(c) = &self.cluster {
            if let Err(p) = Name::parse(c) {
                return bad("cluster", p.to_string());
            }
        }
        if self.servers.is_empty() {
            return bad("server", "at least one control-plane URL is needed".into());
        }
        // The client checks the addresses it is given; building one is cheap.
        // Only the shape of the addresses here: the TLS files are read when the agent starts.
        if let Err(e @ meridian_client::BuildError::BadAddress { .. }) =
            meridian_client::Client::builder(&self.servers).build()
        {
            return bad("server", e.to_string());
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return bad(
                "tls_cert",
                "a certificate and its key go together: give both --tls-cert and --tls-key".into(),
            );
        }
        if self.tls.cert.is_some() && self.tls.ca_file.is_none() {
            return bad(
                "ca_file",
                "a client certificate needs the cluster's CA (--ca-file) to check servers".into(),
            );
        }
        if self.token.trim().is_empty() {
            return bad("token", "must not be empty".into());
        }
        let schemes = ["unix://", "tcp://", "http://"];
        if !schemes.iter().any(|s| self.docker_host.starts_with(s)) {
            return bad(
                "docker",
                format!(
                    "{:?} is not a Docker address: use unix:///path/docker.sock or \
                     tcp://host:port",
                    self.docker_host
                ),
            );
        }
        if self.advertise_host.trim().is_empty() || self.advertise_host.contains('/') {
            return bad(
                "advertise_host",
                format!("{:?} is not a host name or address", self.advertise_host),
            );
        }
        for (field, d, min) in [
            ("heartbeat", self.heartbeat, Duration::from_millis(100)),
            (
                "resync_interval",
                self.resync_interval,
                Duration::from_millis(100),
            ),
            (
                "report_interval",
                self.report_interval,
                Duration::from_millis(100),
            ),
            ("stop_timeout", self.stop_timeout, Duration::ZERO),
        ] {
            if d < min || d > Duration::from_secs(3600) {
                return bad(field, format!("{d:?} is out of range ({min:?} to 1h)"));
            }
        }
        if self.watch_wait.as_millis() > u128::from(meridian_api::agent::MAX_WATCH_MS) {
            return bad(
                "watch_wait",
                format!(
                    "{:?} is longer than the protocol allows ({} ms)",
                    self.watch_wait,
                    meridian_api::agent::MAX_WATCH_MS
                ),
            );
        }
        Ok(())
    }
}

/// All available cores, in thousandths of a core.
pub fn default_cpu_millis() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    u32::try_from(cores)
        .unwrap_or(u32::MAX / 1000)
        .saturating_mul(1000)
}

/// Total memory from `/proc/meminfo`, in MiB; 1024 where that file cannot be read.
pub fn default_memory_mb() -> u32 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| parse_meminfo_total_mb(&text))
        .unwrap_or(1024)
}

fn parse_meminfo_total_mb(text: &str) -> Option<u32> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    u32::try_from(kib / 1024).ok().filter(|mb| *mb > 0)
}

/// Reads a token from `path`, trimmed; a missing or empty file is an error naming the path.
pub fn read_token_file(path: &Path) -> Result<String, AgentError> {
    let text = std::fs::read_to_string(path).map_err(|source| AgentError::TokenFile {
        path: path.to_path_buf(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(AgentError::EmptyToken {
            path: path.to_path_buf(),
        });
    }
    Ok(token.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AgentConfig {
        AgentConfig::new("w1", "eu-fra", vec!["http://127.0.0.1:7001".into()], "t")
    }

    #[test]
    fn defaults_validate() {
        assert!(config().validate().is_ok());
        assert!(config().cpu_millis >= 1000);
        assert!(config().memory_mb > 0);
    }

    #[test]
    fn bad_fields_are_named() {
        let mut c = config();
        c.name = "W_1".into();
        assert!(matches!(
            c.validate(),
            Err(AgentError::Config { field: "name", .. })
        ));
        let mut c = config();
        c.servers = vec!["127.0.0.1:7001".into()];
        assert!(matches!(
            c.validate(),
            Err(AgentError::Config {
                field: "server",
                ..
            })
        ));
        let mut c = config();
        c.servers.clear();
        assert!(matches!(
            c.validate(),
            Err(AgentError::Config {
                field: "server",
                ..
            })
        ));
        let mut c = config();
        c.heartbeat = Duration::from_millis(1);
        assert!(matches!(
            c.validate(),
            Err(AgentError::Config {
                field: "heartbeat",
                ..
            })
        ));
    }

    #[test]
    fn meminfo_total_is_read_in_mib() {
        let text = "MemTotal:       24684248 kB\nMemFree:        23450000 kB\n";
        assert_eq!(parse_meminfo_total_mb(text), Some(24105));
        assert_eq!(parse_meminfo_total_mb("nothing here"), None);
    }

    #[test]
    fn token_files_must_hold_a_token() {
        let dir = std::env::temp_dir().join(format!("meridian-agent-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty");
        std::fs::write(&empty, " \n").unwrap();
        assert!(matches!(
            read_token_file(&empty),
            Err(AgentError::EmptyToken { .. })
        ));
        let missing = dir.join("missing");
        assert!(matches!(
            read_token_file(&missing),
            Err(AgentError::TokenFile { .. })
        ));
        let good = dir.join("good");
        std::fs::write(&good, "abc\n").unwrap();
        assert_eq!(read_token_file(&good).unwrap(), "abc");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
