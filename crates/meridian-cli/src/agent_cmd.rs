//! `meridian agent`: gathers the agent's settings from flags and `MERIDIAN_AGENT_*` variables,
//! then runs it until SIGTERM or Ctrl-C.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::builder::BoolishValueParser;
use clap::Args;
use meridian_agent::config::{DEFAULT_ADVERTISE_HOST, DEFAULT_DOCKER_HOST};
use meridian_agent::AgentConfig;

use crate::output::write_stdout;

/// Settings for `meridian agent`. Each flag can also come from its `MERIDIAN_AGENT_*` variable.
#[derive(Args)]
pub struct AgentArgs {
    /// Node name: a DNS label, unique in the cluster; part of every container name.
    #[arg(long, env = "MERIDIAN_AGENT_NAME", value_name = "NAME")]
    name: String,

    /// Region the node is in (it must exist on the control plane).
    #[arg(long, env = "MERIDIAN_AGENT_REGION", value_name = "REGION")]
    region: String,

    /// Control-plane URLs (comma-separated or repeated); the next one is used when one fails.
    #[arg(
        long = "server",
        env = "MERIDIAN_AGENT_SERVER",
        value_delimiter = ',',
        value_name = "URL",
        required = true
    )]
    servers: Vec<String>,

    /// File holding the agent's API token.
    #[arg(long, env = "MERIDIAN_AGENT_TOKEN_FILE", value_name = "FILE")]
    token_file: PathBuf,

    /// Docker engine address (unix:///path, tcp://host:port).
    #[arg(long, env = "MERIDIAN_AGENT_DOCKER", value_name = "URL", default_value = DEFAULT_DOCKER_HOST)]
    docker: String,

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

    /// Host or address where published instance ports are reachable.
    #[arg(
        long,
        env = "MERIDIAN_AGENT_ADVERTISE_HOST",
        value_name = "HOST",
        default_value = DEFAULT_ADVERTISE_HOST
    )]
    advertise_host: String,

    /// A node label KEY=VALUE (repeat the flag; comma-separated in the variable).
    #[arg(
        long = "label",
        env = "MERIDIAN_AGENT_LABELS",
        value_name = "KEY=VALUE",
        value_delimiter = ',',
        value_parser = parse_label
    )]
    labels: Vec<(String, String)>,

    /// Milliseconds between heartbeats.
    #[arg(
        long,
        env = "MERIDIAN_AGENT_HEARTBEAT_MS",
        value_name = "MS",
        default_value_t = 2000,
        value_parser = clap::value_parser!(u64).range(100..=60_000)
    )]
    heartbeat_ms: u64,

    /// Pull missing images from their registry first (else, or when the pull fails, they are
    /// fetched from the control plane: `meridian images push`).
    #[arg(long, env = "MERIDIAN_AGENT_REGISTRY", value_parser = BoolishValueParser::new())]
    registry: bool,

    /// Docker network instance containers join (default: the engine's bridge).
    #[arg(long, env = "MERIDIAN_AGENT_NETWORK", value_name = "NETWORK")]
    network: Option<String>,

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

impl AgentArgs {
    /// The finished config; reads the token file.
    fn resolve(&self) -> anyhow::Result<AgentConfig> {
        let token = meridian_agent::read_token_file(&self.token_file)?;
        let mut c = AgentConfig::new(&self.name, &self.region, self.servers.clone(), &token);
        c.docker_host = self.docker.clone();
        if let Some(cpu) = self.cpu_millis {
            c.cpu_millis = cpu;
        }
        if let Some(mem) = self.memory_mb {
            c.memory_mb = mem;
        }
        c.advertise_host = self.advertise_host.clone();
        c.labels = self.labels.iter().cloned().collect();
        c.heartbeat = Duration::from_millis(self.heartbeat_ms);
        c.pull_images = self.registry;
        c.network = self.network.clone();
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
    format!(
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
    )
}
