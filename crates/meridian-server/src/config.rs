//! The server's one typed configuration. Built by the CLI from a TOML file, `MERIDIAN_*`
//! environment variables and flags, in rising order of precedence.

use std::net::SocketAddr;
use std::path::PathBuf;

use meridian_state::RaftSettings;
use serde::{Deserialize, Serialize};

/// How a server starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// This server's Raft node id; stable for the life of its data directory.
    pub node_id: u64,
    /// Address the HTTP API and Raft RPCs listen on.
    pub listen: SocketAddr,
    /// Base URL other servers and forwarded requests use to reach this one. Defaults to
    /// `https://<listen>` (`http://` without TLS).
    #[serde(default)]
    pub advertise_url: Option<String>,
    /// Where the Raft log, state and snapshots live.
    pub data_dir: PathBuf,
    /// File holding the cluster secret every server shares.
    pub cluster_secret_file: PathBuf,
    /// The region this server runs in, shown in the member list.
    #[serde(default)]
    pub region: Option<String>,
    /// How this server joins a cluster on start.
    #[serde(default)]
    pub start: StartMode,
    /// Largest request body accepted on the public API, in bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Raft timing and compaction.
    #[serde(default)]
    pub raft: RaftSettings,
    /// How long a worker node may miss heartbeats before it is marked down and its instances
    /// are replaced, in milliseconds.
    #[serde(default = "default_node_grace_ms")]
    pub node_grace_ms: u64,
    /// MaxMind-format GeoIP database used to explain routing decisions (`GET /v1/route`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geoip_db: Option<PathBuf>,
    /// CSV map `cidr,latitude,longitude,country` used when the GeoIP database has no answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geo_map: Option<PathBuf>,
    /// CSV of measured round trips between regions `from,to,ms`, overriding distance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_table: Option<PathBuf>,
    /// What the leader lets go of, and when.
    #[serde(default)]
    pub retention: RetentionSettings,
    /// This server's certificate and key and the cluster's CA: the API listens with TLS, and
    /// calls to other servers use mutual TLS. Required unless `insecure_plain_http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<meridian_tls::TlsFiles>,
    /// Failed authentications a client address (or a token) may have in a row before its
    /// requests are answered 429 for a while (one more every 6 s); 0 turns the limit off.
    #[serde(default = "default_failed_auth_burst")]
    pub failed_auth_burst: u32,
    /// Serve and call plain HTTP: for a private network or loopback only. Logged as a warning
    /// at start.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_plain_http: bool,
}

/// What the state keeps, so it (and every snapshot) stops growing without bound. The leader
/// applies these through replicated commands; a `0` age keeps that kind of thing forever.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSettings {
    /// Releases kept per app, newest first; the serving and rolling-out ones always stay.
    pub releases_per_app: u32,
    /// Audit entries older than this many seconds are exported, then forgotten.
    pub audit_max_age_s: u64,
    /// Where the leader writes audit entries (JSON lines) before they are forgotten.
    /// Defaults to `<data_dir>/audit-export`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_export_dir: Option<PathBuf>,
    /// Nodes down, and routers not registered again, for longer than this many seconds are
    /// forgotten.
    pub forget_gone_after_s: u64,
    /// Tokens expired or revoked for longer than this many seconds are forgotten.
    pub forget_tokens_after_s: u64,
    /// How often the leader looks, in milliseconds.
    pub every_ms: u64,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            releases_per_app: 20,
            audit_max_age_s: 90 * 24 * 3600,
            audit_export_dir: None,
            forget_gone_after_s: 24 * 3600,
            forget_tokens_after_s: 7 * 24 * 3600,
            every_ms: 60_000,
        }
    }
}

/// Default failed-authentication burst.
pub fn default_failed_auth_burst() -> u32 {
    crate::auth_limit::BURST
}

/// Default node grace: 10 s.
pub fn default_node_grace_ms() -> u64 {
    10_000
}

/// What a server does about cluster membership when it starts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode", content = "urls")]
pub enum StartMode {
    /// Resume from the data directory (a restart).
    #[default]
    Resume,
    /// Form a new one-server cluster unless the data directory already holds one.
    Bootstrap,
    /// Ask a member at one of these URLs to add this server as a voter.
    Join(Vec<String>),
}

/// Default request body limit: 1 MiB.
pub fn default_max_body() -> usize {
    1024 * 1024
}

impl ServerConfig {
    /// Where audit entries go before they are forgotten.
    pub fn audit_export_dir(&self) -> PathBuf {
        self.retention
            .audit_export_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("audit-export"))
    }

    /// `https`, or `http` without TLS.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// The URL other servers reach this one at.
    pub fn advertise(&self) -> String {
        self.advertise_url
            .clone()
            .unwrap_or_else(|| format!("{}://{}", self.scheme(), self.listen))
            .trim_end_matches('/')
            .to_string()
    }
}
