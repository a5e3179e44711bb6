//! `meridian-bench`: a closed-loop load generator for Meridian's replicated writes, with an
//! etcd mode that drives etcd the same way (HTTP/JSON, one fresh key per request) so the two
//! can be compared side by side. `deploy/bench/control-plane.sh` runs both.
//!
//! `scale` grows a cluster of simulated nodes to thousands of apps and takes the same figures
//! at every size (creates/s, one deploy's reconcile round, the leader's memory), so any growth
//! of the per-write cost with what the cluster holds shows. `deploy/bench/scale.sh` runs it.
//!
//! Two worker benchmarks as well: `placements` (instances placed and committed through Raft per
//! second, on simulated nodes) and `deploy-latency` (API accept to a container answering HTTP,
//! beside a bare `docker run`). `deploy/bench/workers.sh` runs them.

mod deploy_latency;
mod load;
mod percentile;
mod placements;
mod report;
mod scale;
mod target;
mod workload;

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::load::Plan;
use crate::report::Summary;
use crate::target::Target;
use crate::workload::{run_id, Workload};

#[derive(Debug, Parser)]
#[command(
    name = "meridian-bench",
    about = "Load generator for Meridian (and etcd, to compare)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// POST /v1/apps with unique names in a closed loop.
    Creates {
        /// Admin (or deployer) token.
        #[arg(long, env = "MERIDIAN_TOKEN", hide_env_values = true)]
        token: String,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// PUT unique keys through etcd's gRPC-JSON gateway (POST /v3/kv/put) in a closed loop.
    EtcdPut {
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Placements committed through Raft per second, on simulated nodes (no containers run).
    Placements {
        /// Any server's URL.
        #[arg(long)]
        url: String,
        /// Admin token.
        #[arg(long, env = "MERIDIAN_TOKEN", hide_env_values = true)]
        token: String,
        /// Region of the simulated nodes (created if missing).
        #[arg(long, default_value = "eu-fra")]
        region: String,
        /// Country of the region, if it is created.
        #[arg(long, default_value = "DE")]
        country: String,
        /// Simulated nodes to register.
        #[arg(long, default_value_t = 100)]
        nodes: u32,
        /// Apps to create.
        #[arg(long, default_value_t = 20)]
        apps: u32,
        /// Replicas per app.
        #[arg(long, default_value_t = 1000)]
        replicas: u32,
        /// Seconds before giving up.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        /// Print one JSON line instead of text.
        #[arg(long)]
        json: bool,
    },
    /// API accept to the container answering HTTP, beside a bare `docker run` (needs a
    /// region with a running `meridian agent` on the local Docker engine).
    DeployLatency {
        /// Any server's URL.
        #[arg(long)]
        url: String,
        /// Admin (or deployer) token.
        #[arg(long, env = "MERIDIAN_TOKEN", hide_env_values = true)]
        token: String,
        /// Image both kinds start.
        #[arg(long, default_value = "meridian-hello:latest")]
        image: String,
        /// Port the image listens on.
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Measured runs of each kind.
        #[arg(long, default_value_t = 5)]
        runs: u32,
        /// Unmeasured runs of each kind first.
        #[arg(long, default_value_t = 1)]
        warmup: u32,
        /// Seconds one step may take before the run fails.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        /// Print one JSON line instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Creates/s, a deploy's round time and the leader's memory as the cluster grows, on
    /// simulated nodes (no containers run).
    Scale {
        /// Every server's URL, comma-separated.
        #[arg(long)]
        urls: String,
        /// Admin token.
        #[arg(long, env = "MERIDIAN_TOKEN", hide_env_values = true)]
        token: String,
        /// Simulated nodes, spread over five regions.
        #[arg(long, default_value_t = 1000)]
        nodes: u32,
        /// Apps held at each step, comma-separated and ascending.
        #[arg(long, default_value = "100,10000")]
        steps: String,
        /// Replicas of each app grown into the cluster.
        #[arg(long, default_value_t = 10)]
        replicas: u32,
        /// Closed-loop workers for the measured creates.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Seconds of measured creates at each step.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Deploys timed at each step.
        #[arg(long, default_value_t = 5)]
        deploys: u32,
        /// Seconds between heartbeats of each simulated node.
        #[arg(long, default_value_t = 10)]
        heartbeat: u64,
        /// File of `URL=PID` lines: read a server's memory from /proc when its /metrics has
        /// none.
        #[arg(long)]
        pids: Option<std::path::PathBuf>,
        /// Print one JSON line instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print a side-by-side table from a file of `--json` lines.
    Table {
        /// File with one JSON summary per line.
        file: std::path::PathBuf,
    },
}

#[derive(Debug, Args)]
struct LoadArgs {
    /// Comma-separated server URLs, e.g. http://127.0.0.1:7001,http://127.0.0.1:7002.
    #[arg(long)]
    urls: String,
    /// Workers, each with one request in flight.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds measured (after the warm-up); a hard stop.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds run before measuring.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Send to the leader only, or spread workers over all URLs.
    #[arg(long, value_enum, default_value_t = Target::Leader)]
    target: Target,
    /// Requests allowed in all (warm-up included): the run stops when they are spent.
    #[arg(long, default_value_t = 2_000_000)]
    max_requests: u64,
    /// Seconds one request may take before it counts as an error.
    #[arg(long, default_value_t = 15)]
    request_timeout: u64,
    /// Print one JSON line instead of text.
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    meridian_tls::install_default_provider();
    let cli = Cli::parse();
    match cli.command {
        Command::Creates { token, load } => {
            bench(
                Workload::Creates {
                    token,
                    run: run_id(),
                },
                load,
            )
            .await
        }
        Command::EtcdPut { load } => bench(Workload::EtcdPut { run: run_id() }, load).await,
        Command::Placements {
            url,
            token,
            region,
            country,
            nodes,
            apps,
            replicas,
            timeout,
            json,
        } => {
            let outcome = placements::run(placements::Params {
                url,
                token,
                region,
                country,
                nodes,
                apps,
                replicas,
                timeout: Duration::from_secs(timeout),
            })
            .await?;
            show(json, &outcome, || outcome.text())
        }
        Command::DeployLatency {
            url,
            token,
            image,
            port,
            runs,
            warmup,
            timeout,
            json,
        } => {
            let outcome = deploy_latency::run(deploy_latency::Params {
                url,
                token,
                image,
                port,
                runs,
                warmup,
                timeout: Duration::from_secs(timeout),
            })
            .await?;
            show(json, &outcome, || outcome.text())
        }
        Command::Scale {
            urls,
            token,
            nodes,
            steps,
            replicas,
            concurrency,
            seconds,
            deploys,
            heartbeat,
            pids,
            json,
        } => {
            let steps = steps
                .split(',')
                .map(|s| s.trim().parse::<u32>())
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("--steps {steps:?}: give numbers like 100,10000"))?;
            let outcome = scale::run(scale::Params {
                urls: target::parse_urls(&urls)?,
                token,
                nodes,
                steps,
                replicas,
                concurrency,
                seconds,
                deploys,
                heartbeat_s: heartbeat,
                pids: match pids {
                    Some(path) => scale::read_pids(&path)?,
                    None => Default::default(),
                },
            })
            .await?;
            show(json, &outcome, || outcome.text())
        }
        Command::Table { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            print!("{}", report::side_by_side(&text));
            Ok(())
        }
    }
}

async fn bench(workload: Workload, args: LoadArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    anyhow::ensure!(args.duration > 0, "--duration must be at least 1 second");
    let urls = target::parse_urls(&args.urls)?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(2))
        .build()
        .context("building the HTTP client")?;
    let urls = match args.target {
        Target::All => urls,
        Target::Leader => vec![match &workload {
            Workload::Creates { token, .. } => {
                let client = meridian_client::Client::builder(&urls)
                    .token(token.clone())
                    .build()?;
                target::meridian_leader(&client).await?
            }
            Workload::EtcdPut { .. } => target::etcd_leader(&http, &urls).await?,
        }],
    };
    let plan = Plan {
        urls,
        concurrency: args.concurrency,
        warmup: Duration::from_secs(args.warmup),
        duration: Duration::from_secs(args.duration),
        max_requests: args.max_requests,
        request_timeout: Duration::from_secs(args.request_timeout),
    };
    let system = workload.system();
    let outcome = load::run(http, workload, plan).await;
    for e in &outcome.error_samples {
        eprintln!("{system}: error: {e}");
    }
    if outcome.cut_off > 0 {
        eprintln!(
            "{system}: {} requests still in flight at the hard stop were not counted",
            outcome.cut_off
        );
    }
    let target = match args.target {
        Target::Leader => "leader",
        Target::All => "all",
    };
    let summary = Summary::new(system, target, args.concurrency, &outcome);
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        print!("{}", summary.text());
    }
    Ok(())
}

/// Prints an outcome as one JSON line, or as its text for people.
fn show<T: serde::Serialize>(
    json: bool,
    outcome: &T,
    text: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(outcome)?);
    } else {
        print!("{}", text());
    }
    Ok(())
}
