//! The server's TOML file, and the layering that turns file, environment and flags into one
//! `ServerConfig`.
//!
//! Every setting is optional here so that layers can be stacked: [`ServerFile::over`] keeps the
//! upper layer's values and fills the gaps from the lower one; [`ServerFile::into_config`] then
//! applies defaults and names whatever required setting is still missing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use meridian_server::config::default_max_body;
use meridian_server::{RetentionSettings, ServerConfig, StartMode};
use meridian_state::RaftSettings;
use meridian_tls::TlsFiles;
use serde::Deserialize;

/// Any subset of the server's settings. This is the TOML file's shape — the keys are
/// `ServerConfig`'s, with `bootstrap = true` or `join = ["url", ...]` as short forms of
/// `start` — and also the shape of what the environment and flags gave.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    /// Raft node id.
    pub node_id: Option<u64>,
    /// API and Raft listen address.
    pub listen: Option<SocketAddr>,
    /// URL other servers use to reach this one.
    pub advertise_url: Option<String>,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// File holding the cluster secret.
    pub cluster_secret_file: Option<PathBuf>,
    /// Region this server runs in.
    pub region: Option<String>,
    /// `true` to form a new cluster.
    pub bootstrap: Option<bool>,
    /// Members to ask for admission.
    pub join: Option<Vec<String>>,
    /// The long form of `bootstrap`/`join`, as `ServerConfig` serialises it.
    pub start: Option<StartMode>,
    /// Request body limit in bytes.
    pub max_body_bytes: Option<usize>,
    /// Milliseconds a worker node may miss heartbeats before it is marked down.
    pub node_grace_ms: Option<u64>,
    /// GeoIP database for routing explanations.
    pub geoip_db: Option<PathBuf>,
    /// CSV geo map for routing explanations.
    pub geo_map: Option<PathBuf>,
    /// CSV of round trips between regions.
    pub rtt_table: Option<PathBuf>,
    /// Raft timing and compaction.
    #[serde(default)]
    pub raft: RaftFile,
    /// What the state keeps.
    #[serde(default)]
    pub retention: RetentionFile,
    /// This server's certificate and key and the cluster's CA.
    #[serde(default)]
    pub tls: TlsFile,
    /// `true` to serve and call plain HTTP instead of TLS.
    pub insecure_plain_http: Option<bool>,
    /// Failed authentications allowed in a row per address or token.
    pub failed_auth_burst: Option<u32>,
}

/// Any subset of the TLS files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// Certificate, PEM.
    pub cert: Option<PathBuf>,
    /// Private key, PEM.
    pub key: Option<PathBuf>,
    /// The cluster's CA certificate, PEM.
    pub ca: Option<PathBuf>,
}

impl TlsFile {
    fn over(self, lower: TlsFile) -> TlsFile {
        TlsFile {
            cert: self.cert.or(lower.cert),
            key: self.key.or(lower.key),
            ca: self.ca.or(lower.ca),
        }
    }

    /// The three files, none of them, or an error naming those missing; `plain` says whether
    /// plain HTTP was asked for instead.
    fn into_files(self, plain: bool) -> anyhow::Result<Option<TlsFiles>> {
        let missing: Vec<String> = [
            (self.cert.is_none(), &TLS_CERT),
            (self.key.is_none(), &TLS_KEY),
            (self.ca.is_none(), &TLS_CA),
        ]
        .into_iter()
        .filter(|(gone, _)| *gone)
        .map(|(_, r)| r.describe())
        .collect();
        match (self.cert, self.key, self.ca, plain) {
            (Some(cert), Some(key), Some(ca), false) => Ok(Some(TlsFiles { cert, key, ca })),
            (None, None, None, true) => Ok(None),
            (_, _, _, true) => bail!(
                "--insecure-plain-http (MERIDIAN_INSECURE_PLAIN_HTTP) and TLS files were both \
                 given: choose one"
            ),
            (None, None, None, false) => bail!(
                "a server speaks TLS: give its certificate, key and the cluster's CA:\n  {}\n\
                 (`meridian tls ca create` and `meridian tls cert create --role server` make \
                 them), or --insecure-plain-http (MERIDIAN_INSECURE_PLAIN_HTTP, \
                 `insecure_plain_http = true`) to serve plain HTTP on a private network",
                missing.join("\n  ")
            ),
            _ => bail!("missing TLS settings:\n  {}", missing.join("\n  ")),
        }
    }
}

/// Any subset of `RetentionSettings`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionFile {
    /// Releases kept per app.
    pub releases_per_app: Option<u32>,
    /// Seconds audit entries are kept.
    pub audit_max_age_s: Option<u64>,
    /// Where audit entries are exported before they are forgotten.
    pub audit_export_dir: Option<PathBuf>,
    /// Seconds before down nodes and silent routers are forgotten.
    pub forget_gone_after_s: Option<u64>,
    /// Seconds before expired or revoked tokens are forgotten.
    pub forget_tokens_after_s: Option<u64>,
    /// Milliseconds between the leader's looks.
    pub every_ms: Option<u64>,
}

impl RetentionFile {
    fn over(self, lower: RetentionFile) -> RetentionFile {
        RetentionFile {
            releases_per_app: self.releases_per_app.or(lower.releases_per_app),
            audit_max_age_s: self.audit_max_age_s.or(lower.audit_max_age_s),
            audit_export_dir: self.audit_export_dir.or(lower.audit_export_dir),
            forget_gone_after_s: self.forget_gone_after_s.or(lower.forget_gone_after_s),
            forget_tokens_after_s: self.forget_tokens_after_s.or(lower.forget_tokens_after_s),
            every_ms: self.every_ms.or(lower.every_ms),
        }
    }

    fn into_settings(self) -> RetentionSettings {
        let d = RetentionSettings::default();
        RetentionSettings {
            releases_per_app: self.releases_per_app.unwrap_or(d.releases_per_app),
            audit_max_age_s: self.audit_max_age_s.unwrap_or(d.audit_max_age_s),
            audit_export_dir: self.audit_export_dir.or(d.audit_export_dir),
            forget_gone_after_s: self.forget_gone_after_s.unwrap_or(d.forget_gone_after_s),
            forget_tokens_after_s: self
                .forget_tokens_after_s
                .unwrap_or(d.forget_tokens_after_s),
            every_ms: self.every_ms.unwrap_or(d.every_ms),
        }
    }
}

/// Any subset of `RaftSettings`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaftFile {
    /// Leader heartbeat, milliseconds.
    pub heartbeat_ms: Option<u64>,
    /// Shortest election timeout, milliseconds.
    pub election_min_ms: Option<u64>,
    /// Longest election timeout, milliseconds.
    pub election_max_ms: Option<u64>,
    /// Entries between snapshots.
    pub snapshot_after_entries: Option<u64>,
    /// Entries kept behind a snapshot.
    pub keep_entries_behind_snapshot: Option<u64>,
}

/// A required setting: how people call it, and its flag, variable and TOML key.
struct Required {
    what: &'static str,
    flag: &'static str,
    env: &'static str,
    key: &'static str,
}

impl Required {
    fn describe(&self) -> String {
        format!(
            "{} (flag {}, env {}, or `{}` in the --config file)",
            self.what, self.flag, self.env, self.key
        )
    }
}

const NODE_ID: Required = Required {
    what: "node id",
    flag: "--node-id",
    env: "MERIDIAN_NODE_ID",
    key: "node_id",
};
const LISTEN: Required = Required {
    what: "listen address",
    flag: "--listen",
    env: "MERIDIAN_LISTEN",
    key: "listen",
};
const DATA_DIR: Required = Required {
    what: "data directory",
    flag: "--data-dir",
    env: "MERIDIAN_DATA_DIR",
    key: "data_dir",
};
const TLS_CERT: Required = Required {
    what: "certificate",
    flag: "--tls-cert",
    env: "MERIDIAN_TLS_CERT",
    key: "tls.cert",
};
const TLS_KEY: Required = Required {
    what: "private key",
    flag: "--tls-key",
    env: "MERIDIAN_TLS_KEY",
    key: "tls.key",
};
const TLS_CA: Required = Required {
    what: "cluster CA certificate",
    flag: "--tls-ca",
    env: "MERIDIAN_TLS_CA",
    key: "tls.ca",
};
const SECRET_FILE: Required = Required {
    what: "cluster secret file",
    flag: "--cluster-secret-file",
    env: "MERIDIAN_CLUSTER_SECRET_FILE",
    key: "cluster_secret_file",
};

impl ServerFile {
    /// Reads and checks a TOML file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("config file {}", path.display()))
    }

    /// Parses and checks TOML text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let file: Self = toml::from_str(text)?;
        file.start_mode()?;
        Ok(file)
    }

    /// This layer's start mode, if it chose one; at most one of `start`, `bootstrap = true` and
    /// `join` may be given.
    fn start_mode(&self) -> anyhow::Result<Option<StartMode>> {
        let mut chosen = Vec::new();
        if let Some(start) = &self.start {
            chosen.push(("start", start.clone()));
        }
        if self.bootstrap == Some(true) {
            chosen.push(("bootstrap", StartMode::Bootstrap));
        }
        if let Some(urls) = &self.join {
            chosen.push(("join", StartMode::Join(urls.clone())));
        }
        for (_, mode) in &chosen {
            if let StartMode::Join(urls) = mode {
                check_join_urls(urls)?;
            }
        }
        match chosen.as_slice() {
            [] => Ok(None),
            [(_, mode)] => Ok(Some(mode.clone())),
            many => {
                let names: Vec<&str> = many.iter().map(|(name, _)| *name).collect();
                bail!(
                    "give only one way to start, not {}: bootstrap (--bootstrap), join (--join) or neither to resume",
                    names.join(" and ")
                )
            }
        }
    }

    /// This layer on top of `lower`: every setting this layer has wins; the rest come from
    /// `lower`. The start mode is taken as a whole from the upper layer when it chose one, so
    /// `--join` on the command line replaces `bootstrap = true` in the file.
    pub fn over(self, lower: ServerFile) -> anyhow::Result<ServerFile> {
        let (bootstrap, join, start) = if self.start_mode()?.is_some() {
            (self.bootstrap, self.join, self.start)
        } else {
            (lower.bootstrap, lower.join, lower.start)
        };
        Ok(ServerFile {
            node_id: self.node_id.or(lower.node_id),
            listen: self.listen.or(lower.listen),
            advertise_url: self.advertise_url.or(lower.advertise_url),
            data_dir: self.data_dir.or(lower.data_dir),
            cluster_secret_file: self.cluster_secret_file.or(lower.cluster_secret_file),
            region: self.region.or(lower.region),
            bootstrap,
            join,
            start,
            max_body_bytes: self.max_body_bytes.or(lower.max_body_bytes),
            node_grace_ms: self.node_grace_ms.or(lower.node_grace_ms),
            geoip_db: self.geoip_db.or(lower.geoip_db),
            geo_map: self.geo_map.or(lower.geo_map),
            rtt_table: self.rtt_table.or(lower.rtt_table),
            raft: RaftFile {
                heartbeat_ms: self.raft.heartbeat_ms.or(lower.raft.heartbeat_ms),
                election_min_ms: self.raft.election_min_ms.or(lower.raft.election_min_ms),
                election_max_ms: self.raft.election_max_ms.or(lower.raft.election_max_ms),
                snapshot_after_entries: self
                    .raft
                    .snapshot_after_entries
                    .or(lower.raft.snapshot_after_entries),
                keep_entries_behind_snapshot: self
                    .raft
                    .keep_entries_behind_snapshot
                    .or(lower.raft.keep_entries_behind_snapshot),
            },
            retention: self.retention.over(lower.retention),
            tls: self.tls.over(lower.tls),
            insecure_plain_http: self.insecure_plain_http.or(lower.insecure_plain_http),
            failed_auth_burst: self.failed_auth_burst.or(lower.failed_auth_burst),
        })
    }

    /// The finished config: defaults for optional settings, and one error naming every
    /// required setting still missing.
    pub fn into_config(self) -> anyhow::Result<ServerConfig> {
        let start = self.start_mode()?.unwrap_or(StartMode::Resume);
        let mut missing = Vec::new();
        if self.node_id.is_none() {
            missing.push(NODE_ID.describe());
        }
        if self.listen.is_none() {
            missing.push(LISTEN.describe());
        }
        if self.data_dir.is_none() {
            missing.push(DATA_DIR.describe());
        }
        if self.cluster_secret_file.is_none() {
            missing.push(SECRET_FILE.describe());
        }
        let (Some(node_id), Some(listen), Some(data_dir), Some(cluster_secret_file)) = (
            self.node_id,
            self.listen,
            self.data_dir,
            self.cluster_secret_file,
        ) else {
            bail!("missing server settings:\n  {}", missing.join("\n  "));
        };
        let plain = self.insecure_plain_http.unwrap_or(false);
        let tls = self.tls.into_files(plain)?;
        let defaults = RaftSettings::default();
        let raft = RaftSettings {
            heartbeat_ms: self.raft.heartbeat_ms.unwrap_or(defaults.heartbeat_ms),
            election_min_ms: self
                .raft
                .election_min_ms
                .unwrap_or(defaults.election_min_ms),
            election_max_ms: self
                .raft
                .election_max_ms
                .unwrap_or(defaults.election_max_ms),
            snapshot_after_entries: self
                .raft
                .snapshot_after_entries
                .unwrap_or(defaults.snapshot_after_entries),
            keep_entries_behind_snapshot: self
                .raft
                .keep_entries_behind_snapshot
                .unwrap_or(defaults.keep_entries_behind_snapshot),
        };
        if raft.election_min_ms > raft.election_max_ms {
            bail!(
                "raft election_min_ms ({}) is larger than election_max_ms ({})",
                raft.election_min_ms,
                raft.election_max_ms
            );
        }
        Ok(ServerConfig {
            node_id,
            listen,
            advertise_url: self.advertise_url,
            data_dir,
            cluster_secret_file,
            region: self.region,
            start,
            max_body_bytes: self.max_body_bytes.unwrap_or_else(default_max_body),
            node_grace_ms: self
                .node_grace_ms
                .unwrap_or_else(meridian_server::config::default_node_grace_ms),
            geoip_db: self.geoip_db,
            geo_map: self.geo_map,
            rtt_table: self.rtt_table,
            raft,
            retention: self.retention.into_settings(),
            tls,
            insecure_plain_http: plain,
            failed_auth_burst: self
                .failed_auth_burst
                .unwrap_or_else(meridian_server::config::default_failed_auth_burst),
        })
    }
}

fn check_join_urls(urls: &[String]) -> anyhow::Result<()> {
    if urls.is_empty() {
        bail!("join needs at least one member URL");
    }
    for url in urls {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("join URL `{url}` must start with http:// or https://");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL_FILE: &str = r#"
        node_id = 1
        listen = "127.0.0.1:7001"
        advertise_url = "http://10.0.0.1:7001"
        data_dir = "/var/lib/meridian"
        cluster_secret_file = "/etc/meridian/secret"
        region = "eu-fra"
        bootstrap = true
        max_body_bytes = 2048

        [raft]
        heartbeat_ms = 150
        election_min_ms = 300

        [tls]
        cert = "/etc/meridian/server.pem"
        key = "/etc/meridian/server-key.pem"
        ca = "/etc/meridian/ca.pem"
    "#;

    fn file() -> ServerFile {
        ServerFile::parse(FULL_FILE).unwrap()
    }

    #[test]
    fn file_alone_gives_a_config_with_defaults() {
        let config = ServerFile::default()
            .over(file())
            .unwrap()
            .into_config()
            .unwrap();
        assert_eq!(config.node_id, 1);
        assert_eq!(config.listen, "127.0.0.1:7001".parse().unwrap());
        assert_eq!(config.region.as_deref(), Some("eu-fra"));
        assert_eq!(config.start, StartMode::Bootstrap);
        assert_eq!(config.max_body_bytes, 2048);
        assert_eq!(config.raft.heartbeat_ms, 150);
        assert_eq!(config.raft.election_min_ms, 300);
        assert_eq!(
            config.raft.election_max_ms,
            RaftSettings::default().election_max_ms
        );
    }

    #[test]
    fn upper_layer_beats_file_setting_by_setting() {
        // What clap gathers from MERIDIAN_* variables and flags arrives as one upper layer.
        let upper = ServerFile {
            node_id: Some(7),
            data_dir: Some("/data".into()),
            raft: RaftFile {
                heartbeat_ms: Some(50),
                ..RaftFile::default()
            },
            ..ServerFile::default()
        };
        let config = upper.over(file()).unwrap().into_config().unwrap();
        assert_eq!(config.node_id, 7);
        assert_eq!(config.data_dir, PathBuf::from("/data"));
        assert_eq!(config.raft.heartbeat_ms, 50);
        // Untouched settings still come from the file.
        assert_eq!(config.listen, "127.0.0.1:7001".parse().unwrap());
        assert_eq!(config.raft.election_min_ms, 300);
        assert_eq!(config.start, StartMode::Bootstrap);
    }

    #[test]
    fn three_layers_stack_in_order() {
        let file = file();
        let env = ServerFile {
            node_id: Some(2),
            region: Some("us-east".into()),
            ..ServerFile::default()
        };
        let flags = ServerFile {
            node_id: Some(3),
            ..ServerFile::default()
        };
        let config = flags
            .over(env.over(file).unwrap())
            .unwrap()
            .into_config()
            .unwrap();
        assert_eq!(config.node_id, 3);
        assert_eq!(config.region.as_deref(), Some("us-east"));
        assert_eq!(
            config.advertise_url.as_deref(),
            Some("http://10.0.0.1:7001")
        );
    }

    #[test]
    fn upper_join_replaces_file_bootstrap() {
        let upper = ServerFile {
            join: Some(vec!["http://10.0.0.1:7001".into()]),
            ..ServerFile::default()
        };
        let config = upper.over(file()).unwrap().into_config().unwrap();
        assert_eq!(
            config.start,
            StartMode::Join(vec!["http://10.0.0.1:7001".into()])
        );
    }

    #[test]
    fn no_start_choice_means_resume() {
        let mut file = file();
        file.bootstrap = None;
        assert_eq!(file.into_config().unwrap().start, StartMode::Resume);
    }

    #[test]
    fn missing_settings_are_all_named_with_flag_env_and_key() {
        let err = ServerFile {
            listen: Some("127.0.0.1:1".parse().unwrap()),
            ..ServerFile::default()
        }
        .into_config()
        .unwrap_err()
        .to_string();
        for needle in [
            "--node-id",
            "MERIDIAN_NODE_ID",
            "`node_id`",
            "--data-dir",
            "MERIDIAN_DATA_DIR",
            "--cluster-secret-file",
            "cluster_secret_file",
        ] {
            assert!(err.contains(needle), "{needle} not in: {err}");
        }
        assert!(!err.contains("--listen"), "{err}");
    }

    #[test]
    fn bootstrap_and_join_together_are_refused() {
        let err = ServerFile::parse("bootstrap = true\njoin = [\"http://a:1\"]").unwrap_err();
        assert!(err.to_string().contains("bootstrap and join"), "{err}");
    }

    #[test]
    fn join_urls_are_checked() {
        assert!(ServerFile::parse("join = []").is_err());
        assert!(ServerFile::parse("join = [\"10.0.0.1:7001\"]").is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = format!("{:#}", ServerFile::parse("node = 1").unwrap_err());
        assert!(err.contains("unknown field"), "{err}");
        assert!(ServerFile::parse("[raft]\nheartbeat = 1").is_err());
    }

    #[test]
    fn long_start_form_is_accepted() {
        let file = ServerFile::parse("[start]\nmode = \"join\"\nurls = [\"http://10.0.0.2:7001\"]")
            .unwrap();
        assert_eq!(
            file.start_mode().unwrap(),
            Some(StartMode::Join(vec!["http://10.0.0.2:7001".into()]))
        );
    }

    #[test]
    fn a_printed_config_reads_back_the_same() {
        let config = file().into_config().unwrap();
        let text = toml::to_string(&config).unwrap();
        let again = ServerFile::parse(&text).unwrap().into_config().unwrap();
        assert_eq!(again, config);
    }

    #[test]
    fn a_server_speaks_tls_unless_told_plainly_not_to() {
        let mut f = file();
        f.tls = TlsFile::default();
        let e = f.clone().into_config().unwrap_err().to_string();
        for name in [
            "--tls-cert",
            "MERIDIAN_TLS_KEY",
            "tls.ca",
            "--insecure-plain-http",
        ] {
            assert!(e.contains(name), "{e}");
        }
        f.tls.cert = Some("/c.pem".into());
        let e = f.clone().into_config().unwrap_err().to_string();
        assert!(
            e.contains("missing TLS settings") && e.contains("--tls-key"),
            "{e}"
        );
        assert!(!e.contains("--tls-cert"), "{e}");
        f.insecure_plain_http = Some(true);
        let e = f.clone().into_config().unwrap_err().to_string();
        assert!(e.contains("choose one"), "{e}");
        f.tls = TlsFile::default();
        let config = f.into_config().unwrap();
        assert!(config.insecure_plain_http && config.tls.is_none());
        assert_eq!(config.scheme(), "http");
        let config = file().into_config().unwrap();
        assert_eq!(
            config.tls.as_ref().map(|t| t.ca.clone()),
            Some("/etc/meridian/ca.pem".into())
        );
        assert!(!config.insecure_plain_http);
    }

    #[test]
    fn election_bounds_must_be_ordered() {
        let mut file = file();
        file.raft.election_min_ms = Some(900);
        file.raft.election_max_ms = Some(800);
        assert!(file.into_config().is_err());
    }
}
