//! `meridian server`: gathers the server's settings from file, environment and flags, then runs
//! it until SIGTERM or Ctrl-C.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::builder::BoolishValueParser;
use clap::Args;
use meridian_server::ServerConfig;

use crate::output::write_stdout;
use crate::server_file::{RaftFile, RetentionFile, ServerFile, TlsFile};

/// Settings for `meridian server`. Each flag can also come from its `MERIDIAN_*` variable;
/// anything given neither way is read from `--config`.
#[derive(Args)]
pub struct ServerArgs {
    /// TOML file with any of the settings below, under their snake_case names.
    #[arg(long, env = "MERIDIAN_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Raft node id, stable for the life of the data directory [required].
    #[arg(long, env = "MERIDIAN_NODE_ID", value_name = "N")]
    node_id: Option<u64>,

    /// Address for the API and Raft RPCs, e.g. 0.0.0.0:7001 [required].
    #[arg(long, env = "MERIDIAN_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,

    /// URL other servers reach this one at [default: http://<listen>].
    #[arg(long, env = "MERIDIAN_ADVERTISE_URL", value_name = "URL")]
    advertise_url: Option<String>,

    /// Directory for the Raft log, state and snapshots [required].
    #[arg(long, env = "MERIDIAN_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// File holding the secret every server of the cluster shares [required].
    #[arg(long, env = "MERIDIAN_CLUSTER_SECRET_FILE", value_name = "FILE")]
    cluster_secret_file: Option<PathBuf>,

    /// Region this server runs in, shown in the member list.
    #[arg(long, env = "MERIDIAN_REGION", value_name = "REGION")]
    region: Option<String>,

    /// Form a new one-server cluster (a no-op when the data directory already holds one).
    #[arg(
        long,
        env = "MERIDIAN_BOOTSTRAP",
        value_parser = BoolishValueParser::new()
    )]
    bootstrap: bool,

    /// Join the cluster through a member at one of these URLs (comma-separated or repeated).
    /// Without --bootstrap or --join the server resumes from its data directory.
    #[arg(long, env = "MERIDIAN_JOIN", value_delimiter = ',', value_name = "URL")]
    join: Vec<String>,

    /// Largest request body the API accepts, in bytes [default: 1 MiB].
    #[arg(long, env = "MERIDIAN_MAX_BODY_BYTES", value_name = "BYTES")]
    max_body_bytes: Option<usize>,

    /// Milliseconds a worker node may miss heartbeats before it is marked down and its
    /// instances are replaced [default: 10000].
    #[arg(long, env = "MERIDIAN_NODE_GRACE_MS", value_name = "MS")]
    node_grace_ms: Option<u64>,

    /// MaxMind-format GeoIP database (.mmdb) for explaining routing (GET /v1/route).
    #[arg(long, env = "MERIDIAN_GEOIP_DB", value_name = "FILE")]
    geoip_db: Option<PathBuf>,

    /// CSV map `cidr,latitude,longitude,country` for explaining routing.
    #[arg(long, env = "MERIDIAN_GEO_MAP", value_name = "FILE")]
    geo_map: Option<PathBuf>,

    /// CSV `from,to,ms` of measured round trips between regions, overriding distance.
    #[arg(long, env = "MERIDIAN_RTT_TABLE", value_name = "FILE")]
    rtt_table: Option<PathBuf>,

    /// Raft leader heartbeat in milliseconds [default: 100].
    #[arg(long, env = "MERIDIAN_RAFT_HEARTBEAT_MS", value_name = "MS")]
    raft_heartbeat_ms: Option<u64>,

    /// Shortest Raft election timeout in milliseconds [default: 300].
    #[arg(long, env = "MERIDIAN_RAFT_ELECTION_MIN_MS", value_name = "MS")]
    raft_election_min_ms: Option<u64>,

    /// Longest Raft election timeout in milliseconds [default: 600].
    #[arg(long, env = "MERIDIAN_RAFT_ELECTION_MAX_MS", value_name = "MS")]
    raft_election_max_ms: Option<u64>,

    /// Log entries between snapshots [default: 10000].
    #[arg(long, env = "MERIDIAN_RAFT_SNAPSHOT_AFTER_ENTRIES", value_name = "N")]
    raft_snapshot_after_entries: Option<u64>,

    /// Log entries kept behind a snapshot for slightly lagging followers [default: 1000].
    #[arg(long, env = "MERIDIAN_RAFT_KEEP_ENTRIES", value_name = "N")]
    raft_keep_entries: Option<u64>,

    /// Releases kept per app, newest first; serving and rolling-out ones always stay
    /// [default: 20; 0 keeps all].
    #[arg(long, env = "MERIDIAN_KEEP_RELEASES", value_name = "N")]
    keep_releases: Option<u32>,

    /// Seconds audit entries are kept before they are exported and forgotten
    /// [default: 7776000 (90 days); 0 keeps all].
    #[arg(long, env = "MERIDIAN_AUDIT_MAX_AGE_S", value_name = "SECONDS")]
    audit_max_age_s: Option<u64>,

    /// Directory audit entries are written to (JSON lines) before they are forgotten
    /// [default: <data dir>/audit-export].
    #[arg(long, env = "MERIDIAN_AUDIT_EXPORT_DIR", value_name = "DIR")]
    audit_export_dir: Option<PathBuf>,

    /// Seconds a node may stay down, or a router unregistered, before it is forgotten
    /// [default: 86400; 0 never].
    #[arg(long, env = "MERIDIAN_FORGET_GONE_AFTER_S", value_name = "SECONDS")]
    forget_gone_after_s: Option<u64>,

    /// Seconds expired or revoked tokens are still listed before they are forgotten
    /// [default: 604800; 0 never].
    #[arg(long, env = "MERIDIAN_FORGET_TOKENS_AFTER_S", value_name = "SECONDS")]
    forget_tokens_after_s: Option<u64>,

    /// Milliseconds between the leader's retention passes [default: 60000].
    #[arg(long, env = "MERIDIAN_RETENTION_EVERY_MS", value_name = "MS")]
    retention_every_ms: Option<u64>,

    /// Failed authentications a client address or a token may have in a row before its
    /// requests get 429 for a while (one more every 6 s); 0 turns the limit off [default: 10].
    #[arg(long, env = "MERIDIAN_FAILED_AUTH_BURST", value_name = "N")]
    failed_auth_burst: Option<u32>,

    /// This server's certificate (PEM), issued by `meridian tls cert create --role server`.
    #[arg(long, env = "MERIDIAN_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "MERIDIAN_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,

    /// The cluster's CA certificate (PEM): other servers, agents and routers must present a
    /// certificate it issued.
    #[arg(long, env = "MERIDIAN_TLS_CA", value_name = "FILE")]
    tls_ca: Option<PathBuf>,

    /// Serve and call plain HTTP instead of TLS: every token, the cluster secret and app
    /// settings then cross the network in clear. For loopback or a private test network.
    #[arg(
        long,
        env = "MERIDIAN_INSECURE_PLAIN_HTTP",
        value_parser = BoolishValueParser::new()
    )]
    insecure_plain_http: bool,

    /// Print the resolved settings as TOML and exit without starting.
    #[arg(long)]
    print_config: bool,
}

impl ServerArgs {
    /// What the environment and flags gave, as a layer to put over the file.
    fn overrides(&self) -> ServerFile {
        ServerFile {
            node_id: self.node_id,
            listen: self.listen,
            advertise_url: self.advertise_url.clone(),
            data_dir: self.data_dir.clone(),
            cluster_secret_file: self.cluster_secret_file.clone(),
            region: self.region.clone(),
            // `false` means "not given": it must not hide `bootstrap = true` in the file.
            bootstrap: self.bootstrap.then_some(true),
            join: (!self.join.is_empty()).then(|| self.join.clone()),
            start: None,
            max_body_bytes: self.max_body_bytes,
            node_grace_ms: self.node_grace_ms,
            geoip_db: self.geoip_db.clone(),
            geo_map: self.geo_map.clone(),
            rtt_table: self.rtt_table.clone(),
            raft: RaftFile {
                heartbeat_ms: self.raft_heartbeat_ms,
                election_min_ms: self.raft_election_min_ms,
                election_max_ms: self.raft_election_max_ms,
                snapshot_after_entries: self.raft_snapshot_after_entries,
                keep_entries_behind_snapshot: self.raft_keep_entries,
            },
            retention: RetentionFile {
                releases_per_app: self.keep_releases,
                audit_max_age_s: self.audit_max_age_s,
                audit_export_dir: self.audit_export_dir.clone(),
                forget_gone_after_s: self.forget_gone_after_s,
                forget_tokens_after_s: self.forget_tokens_after_s,
                every_ms: self.retention_every_ms,
            },
            tls: TlsFile {
                cert: self.tls_cert.clone(),
                key: self.tls_key.clone(),
                ca: self.tls_ca.clone(),
            },
            // `false` means "not given", as for --bootstrap.
            insecure_plain_http: self.insecure_plain_http.then_some(true),
            failed_auth_burst: self.failed_auth_burst,
        }
    }

    /// The finished config: flags and environment over the file over defaults.
    fn resolve(&self) -> anyhow::Result<ServerConfig> {
        // Checked here rather than with clap's `conflicts_with`, which would also fire for
        // MERIDIAN_BOOTSTRAP=false.
        if self.bootstrap && !self.join.is_empty() {
            bail!(
                "--bootstrap (MERIDIAN_BOOTSTRAP) and --join (MERIDIAN_JOIN) cannot both be \
                 given: bootstrap forms a new cluster, join enters an existing one"
            );
        }
        let file = match &self.config {
            Some(path) => ServerFile::load(path)?,
            None => ServerFile::default(),
        };
        self.overrides().over(file)?.into_config()
    }
}

/// Runs `meridian server`.
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let config = args.resolve()?;
    if args.print_config {
        let text = toml::to_string(&config).context("cannot encode the config as TOML")?;
        return write_stdout(&text);
    }
    let shutdown = shutdown_signal()?;
    tracing::info!(
        node_id = config.node_id,
        listen = %config.listen,
        advertise = %config.advertise(),
        start = ?config.start,
        "starting meridian server"
    );
    meridian_server::run(config, shutdown).await?;
    tracing::info!("server stopped");
    Ok(())
}

/// A future that resolves on the first SIGTERM or Ctrl-C. SIGTERM is hooked here, before the
/// server starts, so one sent during start-up is not lost.
pub(crate) fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    Ok(async move {
        let ctrl_c = async {
            match tokio::signal::ctrl_c().await {
                Ok(()) => "Ctrl-C",
                Err(e) => {
                    // Without the handler Ctrl-C still kills the process; just keep running.
                    tracing::warn!(error = %e, "cannot listen for Ctrl-C");
                    std::future::pending().await
                }
            }
        };
        #[cfg(unix)]
        let term = async move {
            match terminate.recv().await {
                Some(()) => "SIGTERM",
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<&str>();
        let signal = tokio::select! {
            s = ctrl_c => s,
            s = term => s,
        };
        tracing::info!(signal, "shutting down; press Ctrl-C again to stop at once");
        // Once hooked, Ctrl-C no longer kills the process, so a stuck shutdown would need
        // SIGKILL. A second Ctrl-C exits at once instead. The task ends with the runtime.
        tokio::spawn(async {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("error: interrupted again; exiting without a clean shutdown");
                std::process::exit(130);
            }
        });
    })
}
