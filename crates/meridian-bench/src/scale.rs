//! `meridian-bench scale`: whether the control plane's cost per write grows with what it
//! holds. Simulated nodes register through the agent API and heartbeat but run nothing. The
//! cluster is grown in steps (say 100 apps, then 10,000, each with 10 replicas) and at every
//! step the same three figures are taken: app creates per second in a closed loop, the time
//! from a deploy being accepted until the first instance of the new release is assigned (one
//! reconcile round), and the leader's resident memory.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use meridian_api::agent::{RegisterNode, AGENT_PROTOCOL};
use meridian_api::apps::AppBody;
use meridian_api::regions::RegionBody;
use meridian_api::tokens::CreateToken;
use meridian_client::Client;
use serde::Serialize;

use crate::load::{self, Plan};
use crate::report::Summary;
use crate::target;
use crate::workload::{run_id, Workload};

/// What the run is asked to do.
#[derive(Debug, Clone)]
pub struct Params {
    /// Every server.
    pub urls: Vec<String>,
    /// Admin token.
    pub token: String,
    /// Simulated nodes, spread over five regions.
    pub nodes: u32,
    /// Apps the cluster holds at each step, ascending.
    pub steps: Vec<u32>,
    /// Replicas of each app grown into the cluster.
    pub replicas: u32,
    /// Closed-loop workers for the measured creates.
    pub concurrency: usize,
    /// Seconds of measured creates at each step.
    pub seconds: u64,
    /// Deploys timed at each step.
    pub deploys: u32,
    /// Seconds between heartbeats of each node (the servers' node grace must exceed it).
    pub heartbeat_s: u64,
    /// Process ids of the servers by URL, for reading memory from `/proc` when a server does
    /// not report it in `/metrics`.
    pub pids: BTreeMap<String, u32>,
}

/// The figures taken at one step.
#[derive(Debug, Serialize)]
pub struct Step {
    /// Apps grown into the cluster (the measured creates come on top).
    pub apps: u32,
    /// Instances assigned when the step's measurements began.
    pub instances: u64,
    /// Seconds it took to place this step's new instances.
    pub grow_seconds: f64,
    /// Measured app creates.
    pub creates: Summary,
    /// Deploy accepted to first new-release instance assigned, milliseconds, each deploy.
    pub deploy_round_ms: Vec<f64>,
    /// Resident memory of the leader after the step, MB.
    pub leader_rss_mb: f64,
}

/// The figures of a run.
#[derive(Debug, Serialize)]
pub struct Outcome {
    /// Simulated nodes.
    pub nodes: u32,
    /// Replicas per grown app.
    pub replicas: u32,
    /// Each step.
    pub steps: Vec<Step>,
}

const REGIONS: [(&str, &str, f64, f64); 5] = [
    ("sc-fra", "DE", 50.1, 8.7),
    ("sc-par", "FR", 48.9, 2.4),
    ("sc-ams", "NL", 52.4, 4.9),
    ("sc-iad", "US", 38.9, -77.0),
    ("sc-nrt", "JP", 35.7, 139.7),
];

/// Runs the benchmark.
pub async fn run(p: Params) -> anyhow::Result<Outcome> {
    anyhow::ensure!(p.nodes > 0 && p.replicas > 0, "nothing to place");
    anyhow::ensure!(p.steps.windows(2).all(|w| w[0] < w[1]), "steps must ascend");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(p.concurrency.max(64))
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(2))
        .build()
        .context("building the HTTP client")?;
    // Setup calls go through one client over every server; once the leader is found, the
    // calls it serves start there.
    let admin = Client::builder(&p.urls).token(p.token.clone()).build()?;
    let leader = target::meridian_leader(&admin).await?;
    let known: Vec<String> = admin.regions().await?.into_iter().map(|r| r.name).collect();
    for (name, country, latitude, longitude) in REGIONS {
        if !known.iter().any(|k| k == name) {
            admin
                .create_region(&RegionBody {
                    name: name.into(),
                    country: country.into(),
                    latitude,
                    longitude,
                })
                .await
                .with_context(|| format!("creating region {name}"))?;
        }
    }
    let agent_token = admin
        .create_token(&CreateToken {
            role: "agent".into(),
            ttl_seconds: None,
            apps: None,
        })
        .await
        .context("creating an agent token")?
        .token;
    let agent = Client::new(&leader, Some(agent_token))?;
    let tag = run_id();
    let nodes: Vec<(String, &str)> = (0..p.nodes)
        .map(|i| {
            let region = REGIONS[i as usize % REGIONS.len()].0;
            (format!("sc{tag}-n{i:04}"), region)
        })
        .collect();
    for chunk in nodes.chunks(64) {
        let mut joins = tokio::task::JoinSet::new();
        for (name, region) in chunk {
            let (agent, name) = (agent.clone(), name.clone());
            let body = RegisterNode {
                protocol: AGENT_PROTOCOL,
                region: region.to_string(),
                cpu_millis: 1_000_000,
                memory_mb: 10_000_000,
                labels: BTreeMap::new(),
                advertise_host: "127.0.0.1".into(),
            };
            joins.spawn(async move {
                agent
                    .register_node(&name, &body)
                    .await
                    .with_context(|| format!("registering node {name}"))
            });
        }
        while let Some(r) = joins.join_next().await {
            r.context("register task")??;
        }
    }
    eprintln!("scale: {} simulated nodes registered", p.nodes);
    let beat = {
        let (agent, names) = (agent.clone(), nodes.clone());
        let every = Duration::from_secs(p.heartbeat_s.max(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                for (name, _) in &names {
                    if let Err(e) = agent.heartbeat(name).await {
                        eprintln!("scale: heartbeat of {name} failed: {e}");
                    }
                }
            }
        })
    };
    let result = steps(&p, &http, &leader, &admin, &tag).await;
    beat.abort();
    Ok(Outcome {
        nodes: p.nodes,
        replicas: p.replicas,
        steps: result?,
    })
}

async fn steps(
    p: &Params,
    http: &reqwest::Client,
    leader: &str,
    admin: &Client,
    tag: &str,
) -> anyhow::Result<Vec<Step>> {
    let mut out = Vec::new();
    let mut grown = 0u32;
    for &apps in &p.steps {
        let started = Instant::now();
        grow(admin, tag, grown, apps, p.replicas).await?;
        let instances = wait_placed(admin, Duration::from_secs(600)).await?;
        let grow_seconds = started.elapsed().as_secs_f64();
        grown = apps;
        eprintln!(
            "scale: {apps} apps, {instances} instances assigned ({grow_seconds:.1} s to grow)"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        let workload = Workload::Creates {
            token: p.token.clone(),
            run: run_id(),
        };
        let plan = Plan {
            urls: vec![leader.to_string()],
            concurrency: p.concurrency,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(p.seconds),
            max_requests: 2_000_000,
            request_timeout: Duration::from_secs(15),
        };
        let outcome = load::run(http.clone(), workload, plan).await;
        let creates = Summary::new("meridian", "leader", p.concurrency, &outcome);
        eprintln!("scale: {apps} apps: {:.0} creates/s", creates.throughput);
        wait_placed(admin, Duration::from_secs(600)).await?;
        let mut deploy_round_ms = Vec::new();
        for d in 0..p.deploys {
            let app = format!("sc{tag}-a{:05}", (d * 7919) % apps);
            deploy_round_ms.push(deploy_round(admin, &app, d).await?);
        }
        let leader_rss_mb = match rss_mb(http, leader).await {
            Ok(mb) => mb,
            Err(e) => p
                .pids
                .get(leader)
                .and_then(|pid| proc_rss_mb(*pid))
                .with_context(|| format!("{e:#}, and no process id given for {leader}"))?,
        };
        out.push(Step {
            apps,
            instances,
            grow_seconds,
            creates,
            deploy_round_ms,
            leader_rss_mb,
        });
    }
    Ok(out)
}

/// Creates apps `from..to`, 64 at a time.
async fn grow(admin: &Client, tag: &str, from: u32, to: u32, replicas: u32) -> anyhow::Result<()> {
    let mut joins = tokio::task::JoinSet::new();
    for i in from..to {
        if joins.len() >= 64 {
            joins
                .join_next()
                .await
                .expect("not empty")
                .context("create task")??;
        }
        let admin = admin.clone();
        let body = AppBody {
            name: format!("sc{tag}-a{i:05}"),
            image: "bench/app:1".into(),
            replicas,
            port: 8080,
            residency: None,
            regions: None,
            env: BTreeMap::new(),
            health: None,
            cpu_millis: Some(1),
            memory_mb: Some(6),
            origin_bound: Vec::new(),
            domains: Vec::new(),
        };
        joins.spawn(async move {
            admin
                .create_app(&body)
                .await
                .map(|_| ())
                .with_context(|| format!("creating app {}", body.name))
        });
    }
    while let Some(r) = joins.join_next().await {
        r.context("create task")??;
    }
    Ok(())
}

/// Waits until every app is fully placed (nothing unplaced, the count of assigned instances
/// steady) and answers the count.
async fn wait_placed(admin: &Client, timeout: Duration) -> anyhow::Result<u64> {
    let start = Instant::now();
    let mut last = None;
    loop {
        let polled = async {
            let nodes = admin.nodes().await?;
            let pending = admin
                .apps()
                .await?
                .iter()
                .filter(|a| !a.unplaced.is_empty())
                .count();
            anyhow::Ok((
                nodes.iter().map(|n| u64::from(n.instances)).sum::<u64>(),
                pending,
            ))
        }
        .await;
        match polled {
            Ok((n, 0)) if last == Some(n) => return Ok(n),
            Ok((n, _)) => last = Some(n),
            // A busy leader may refuse a linearizable read (503): look again.
            Err(e) => eprintln!("scale: poll failed (retrying): {e:#}"),
        }
        if start.elapsed() > timeout {
            bail!("instances still being placed after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Deploys `app` to a new image and answers the milliseconds until the new release has an
/// assigned instance.
async fn deploy_round(admin: &Client, app: &str, n: u32) -> anyhow::Result<f64> {
    let start = Instant::now();
    let release = admin
        .deploy(app, &format!("bench/app:{}", n + 2))
        .await
        .with_context(|| format!("deploying {app}"))?
        .number;
    loop {
        let instances = admin.instances(app).await?;
        if instances
            .iter()
            .any(|i| i.release == release && i.desired == "run")
        {
            return Ok(start.elapsed().as_secs_f64() * 1000.0);
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!("release {release} of {app} had no instance after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The resident memory the server at `url` reports, MB.
async fn rss_mb(http: &reqwest::Client, url: &str) -> anyhow::Result<f64> {
    let text = http
        .get(format!("{url}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let bytes = text
        .lines()
        .find_map(|l| l.strip_prefix("meridian_process_resident_memory_bytes "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .context("no meridian_process_resident_memory_bytes in /metrics")?;
    Ok(bytes / 1_000_000.0)
}

/// VmRSS of a local process, MB.
fn proc_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024.0 / 1_000_000.0)
}

/// Reads `URL=PID` lines.
pub fn read_pids(path: &std::path::Path) -> anyhow::Result<BTreeMap<String, u32>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (url, pid) = l
                .split_once('=')
                .with_context(|| format!("{}: {l:?} is not URL=PID", path.display()))?;
            let pid = pid
                .trim()
                .parse()
                .with_context(|| format!("{}: {pid:?} is not a process id", path.display()))?;
            Ok((url.trim().trim_end_matches('/').to_string(), pid))
        })
        .collect()
}

impl Outcome {
    /// Human-readable lines.
    pub fn text(&self) -> String {
        let mut s = format!(
            "scale: {} simulated nodes (no containers), grown apps of {} replicas\n\
             {:>7} {:>9} {:>9} {:>10} {:>8} {:>8} {:>14} {:>9}\n",
            self.nodes,
            self.replicas,
            "apps",
            "instances",
            "grow s",
            "creates/s",
            "p50 ms",
            "p99 ms",
            "deploy ms p50",
            "RSS MB"
        );
        for st in &self.steps {
            let mut d = st.deploy_round_ms.clone();
            d.sort_by(f64::total_cmp);
            let median = d.get(d.len() / 2).copied().unwrap_or(f64::NAN);
            s.push_str(&format!(
                "{:>7} {:>9} {:>9.1} {:>10.0} {:>8.2} {:>8.2} {:>14.1} {:>9.1}\n",
                st.apps,
                st.instances,
                st.grow_seconds,
                st.creates.throughput,
                st.creates.p50_ms,
                st.creates.p99_ms,
                median,
                st.leader_rss_mb
            ));
        }
        if let (Some(first), Some(last)) = (self.steps.first(), self.steps.last()) {
            if first.creates.throughput > 0.0 {
                s.push_str(&format!(
                    "creates/s at {} apps / at {} apps: {:.2}x\n",
                    last.apps,
                    first.apps,
                    last.creates.throughput / first.creates.throughput
                ));
            }
        }
        s
    }
}
