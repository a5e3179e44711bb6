//! `meridian agent`: gathers the agent's settings from a TOML file (`--config`), then
//! `MERIDIAN_AGENT_*` variables, then flags (each layer over the one before), and runs it until
//! SIGTERM or Ctrl-C.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::builder::BoolishValueParser;
use clap::Args;
use meridian_agent::config::{DEFAULT_ADVERTISE_HOST, DEFAULT_DOCKER_HOST};
use meridian_agent::AgentConfig;

use crate::output::write_stdout;
use crate::settings_file::{missing, read_toml, servers};

/// Settings for `meridian agent`. Each flag can also come from its `MERIDIAN_AGENT_*` variable
/// or, under both, from the `--config` file (same names, `servers` a list, `labels` a table).
#[derive(Args)]
pub struct AgentArgs {
    /// TOML file with any of the settings below.
    #[arg(long, env = "MERIDIAN_AGENT_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Node name: a DNS label, unique in the cluster; part of every container name.
    #[arg(long, env = "MERIDIAN_AGENT_NAME", value_name = "NAME")]
    name: Option<String>,

    /// Region the node is in (it must exist on the control plane).
    #[arg(long, env = "MERIDIAN_AGENT_REGION", value_name = "REGION")]
    region: Option<String>,

    /// Control-plane URLs (comma-separated or repeated); the next one is used when one fails.
    #[arg(
        long = "server",
        env = "MERIDIAN_AGENT_SERVER",
        value_delimiter = ',',
        value_name = "URL"
    )]
    servers: Vec<String>,

    /// File holding the agent's API token.
    #[arg(long, env = "MERIDIAN_AGENT_TOKEN_FILE", value_name = "FILE")]
    token_file: Option<PathBuf>,

    /// The cluster's CA certificate (PEM): servers must present a certificate it issued
    /// [default: the system's trusted roots].
    #[arg(long, env = "MERIDIAN_AGENT_CA_FILE", value_name = "FILE")]
    ca_file: Option<PathBuf>,

    /// This agent's certificate (PEM), from `meridian tls cert create --role agent`.
    #[arg(long, env = "MERIDIAN_AGENT_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "MERIDIAN_AGENT_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,

    /// Docker engine address (unix:///path, tcp://host:port) [default: unix:///var/run/docker.sock].
    #[arg(long, env = "MERIDIAN_AGENT_DOCKER", value_name = "URL")]
    docker: Option<String>,

    /// CPU offered to instances, in thousandths of a core [default: cores x 1000].
    #[arg(
        long,
        env = "MERIDIAN_AGENT_CPU_MILLIS",
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    cpu_millis: Option<u32>,

    /// Memory offered to instances, in MiB [default: total memory, else 1024].
    #[arg(
        long,
        env = "MERIDIAN_AGENT_MEMORY_MB",
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    memory_mb: Option<u32>,

    /// Host or address where published instance ports are reachable [default: 127.0.0.1].
    #[arg(long, env = "MERIDIAN_AGENT_ADVERTISE_HOST", value_name = "HOST")]
    advertise_host: Option<String>,

    /// A node label KEY=VALUE (repeat the flag; comma-separated in the variable).
    #[arg(
        long = "label",
        env = "MERIDIAN_AGENT_LABELS",
        value_name = "KEY=VALUE",
        value_delimiter = ',',
        value_parser = parse_label
    )]
    labels: Vec<(String, String)>,

    /// Milliseconds between heartbeats [default: 2000].
    #[arg(
        long,
        env = "MERIDIAN_AGENT_HEARTBEAT_MS",
        value_name = "MS",
        value_parser = clap::value_parser!(u64).range(100..=60_000)
    )]
    heartbeat_ms: Option<u64>,

    /// Pull missing images from their registry first (else, or when the pull fails, they are
    /// fetched from the control plane: `meridian images push`).
    #[arg(
        long,
        env = "MERIDIAN_AGENT_REGISTRY",
        value_parser = BoolishValueParser::new(),
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    registry: Option<bool>,

    /// Docker network instance containers join (default: the engine's bridge).
    #[arg(long, env = "MERIDIAN_AGENT_NETWORK", value_name = "NETWORK")]
    network: Option<String>,

    /// Name of this agent's cluster, when agents of several clusters share one Docker engine:
    /// containers are labelled with it, and the agent touches no container of another cluster,
    /// even one with its node name.
    #[arg(long, env = "MERIDIAN_AGENT_CLUSTER", value_name = "NAME")]
    cluster: Option<String>,

    /// Print the resolved settings (without the token) and exit without starting.
    #[arg(long)]
    print_config: bool,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// The `--config` file: any subset of the settings.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentFile {
    name: Option<String>,
    region: Option<String>,
    servers: Option<Vec<String>>,
    token_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    docker: Option<String>,
    cpu_millis: Option<u32>,
    memory_mb: Option<u32>,
    advertise_host: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    heartbeat_ms: Option<u64>,
    registry: Option<bool>,
    network: Option<String>,
    cluster: Option<String>,
}

impl AgentArgs {
    /// The finished config; reads the file and the token file.
    fn resolve(&self) -> anyhow::Result<AgentConfig> {
        let file: AgentFile = read_toml(self.config.as_deref())?;
        let missing =
            |what: &str, flag: &str, env: &str, key: &str| missing("agent", what, flag, env, key);
        let name = self
            .name
            .clone()
            .or(file.name)
            .ok_or_else(|| missing("node name", "--name", "MERIDIAN_AGENT_NAME", "name"))?;
        let region = self
            .region
            .clone()
            .or(file.region)
            .ok_or_else(|| missing("region", "--region", "MERIDIAN_AGENT_REGION", "region"))?;
        let servers = servers(
            "agent",
            "MERIDIAN_AGENT_SERVER",
            &self.servers,
            file.servers,
        )?;
        let token_file = self.token_file.clone().or(file.token_file).ok_or_else(|| {
            missing(
                "token file",
                "--token-file",
                "MERIDIAN_AGENT_TOKEN_FILE",
                "token_file",
            )
        })?;
        let heartbeat_ms = self.heartbeat_ms.or(file.heartbeat_ms).unwrap_or(2000);
        if !(100..=60_000).contains(&heartbeat_ms) {
            anyhow::bail!(
                "--heartbeat-ms / heartbeat_ms {heartbeat_ms} is out of range (100 to 60000)"
            );
        }
        let token = meridian_agent::read_token_file(&token_file)?;
        let mut c = AgentConfig::new(&name, &region, servers, &token);
        c.tls = meridian_client::ClientTls {
            ca_file: self.ca_file.clone().or(file.ca_file),
            cert: self.tls_cert.clone().or(file.tls_cert),
            key: self.tls_key.clone().or(file.tls_key),
        };
        c.docker_host = self
            .docker
            .clone()
            .or(file.docker)
            .unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_string());
        if let Some(cpu) = self.cpu_millis.or(file.cpu_millis) {
            c.cpu_millis = cpu;
        }
        if let Some(mem) = self.memory_mb.or(file.memory_mb) {
            c.memory_mb = mem;
        }
        c.advertise_host = self
            .advertise_host
            .clone()
            .or(file.advertise_host)
            .unwrap_or_else(|| DEFAULT_ADVERTISE_HOST.to_string());
        c.labels = if self.labels.is_empty() {
            file.labels.unwrap_or_default()
        } else {
            self.labels.iter().cloned().collect()
        };
        c.heartbeat = Duration::from_millis(heartbeat_ms);
        c.pull_images = self.registry.or(file.registry).unwrap_or(false);
        c.network = self.network.clone().or(file.network);
        c.cluster = self.cluster.clone().or(file.cluster);
        c.validate()?;
        Ok(c)
    }
}

/// A small runtime: an agent runs a handful of mostly idle loops, and every thread costs
/// memory on each worker node.
pub fn runtime_builder() -> tokio::runtime::Builder {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.worker_threads(1).max_blocking_threads(4);
    b
}

/// Runs `meridian agent`.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let config = args.resolve()?;
    if args.print_config {
        return write_stdout(&describe(&config));
    }
    let shutdown = crate::server_cmd::shutdown_signal()?;
    meridian_agent::run(config, shutdown)
        .await
        .context("the agent stopped")?;
    tracing::info!("agent stopped");
    Ok(())
}

/// The settings as `key = value` lines (TOML), the token left out.
fn describe(c: &AgentConfig) -> String {
    let labels: Vec<String> = c
        .labels
        .iter()
        .map(|(k, v)| format!("{k:?} = {v:?}"))
        .collect();
    let labels = if labels.is_empty() {
        "{}".to_string()
    } else {
        format!("{{ {} }}", labels.join(", "))
    };
    let mut out = format!(
        "name = {:?}\nregion = {:?}\nservers = {:?}\ndocker_host = {:?}\ncpu_millis = {}\n\
         memory_mb = {}\nadvertise_host = {:?}\nheartbeat_ms = {}\npull_images = {}\n\
         labels = {}\n",
        c.name,
        c.region,
        c.servers,
        c.docker_host,
        c.cpu_millis,
        c.memory_mb,
        c.advertise_host,
        c.heartbeat.as_millis(),
        c.pull_images,
        labels
    );
    for (key, value) in [("network", &c.network), ("cluster", &c.cluster)] {
        if let Some(v) = value {
            out.push_str(&format!("{key} = {v:?}\n"));
        }
    }
    out
}
