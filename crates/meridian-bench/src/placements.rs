//! `meridian-bench placements`: how many instance placements a cluster commits through Raft per
//! second. Simulated nodes register through the agent API and heartbeat, but run nothing; apps
//! with many small replicas are created and the clock stops when `GET /v1/nodes` counts every
//! instance as assigned.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use meridian_api::agent::{RegisterNode, AGENT_PROTOCOL};
use meridian_api::apps::AppBody;
use meridian_api::regions::RegionBody;
use meridian_api::tokens::CreateToken;
use meridian_client::Client;
use serde::Serialize;

/// What the run is asked to do.
#[derive(Debug, Clone)]
pub struct Params {
    /// Any server.
    pub url: String,
    /// Admin token.
    pub token: String,
    /// Region the simulated nodes are in (created if missing).
    pub region: String,
    /// Its country.
    pub country: String,
    /// Simulated nodes.
    pub nodes: u32,
    /// Apps created.
    pub apps: u32,
    /// Replicas per app.
    pub replicas: u32,
    /// Give up after this long.
    pub timeout: Duration,
}

/// The figures of one run.
#[derive(Debug, Serialize)]
pub struct Outcome {
    /// Instances placed (assigned to a node and committed).
    pub placements: u64,
    /// From the first create until they were all counted.
    pub seconds: f64,
    /// `placements / seconds`.
    pub per_second: f64,
    /// Seconds spent sending the creates.
    pub create_seconds: f64,
    /// Simulated nodes.
    pub nodes: u32,
    /// Apps.
    pub apps: u32,
    /// Replicas per app.
    pub replicas: u32,
    /// Samples of (seconds since the first create, instances counted).
    pub progress: Vec<(f64, u64)>,
    /// Polls of `GET /v1/nodes` that failed, with when and why.
    pub failed_polls: Vec<String>,
}

/// A unique suffix so repeated runs against one cluster never collide.
fn run_tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:05x}", (nanos ^ std::process::id()) & 0xfffff)
}

/// Creates the region unless it exists.
async fn ensure_region(admin: &Client, name: &str, country: &str) -> anyhow::Result<()> {
    let regions = admin.regions().await.context("listing regions")?;
    if regions.iter().any(|r| r.name == name) {
        return Ok(());
    }
    admin
        .create_region(&RegionBody {
            name: name.to_string(),
            country: country.to_string(),
            latitude: 50.1,
            longitude: 8.7,
        })
        .await
        .with_context(|| format!("creating region {name}"))?;
    Ok(())
}

/// Sum of `instances` over every node.
async fn assigned(admin: &Client) -> anyhow::Result<u64> {
    let nodes = admin.nodes().await.context("GET /v1/nodes")?;
    Ok(nodes.iter().map(|n| u64::from(n.instances)).sum())
}

/// Runs the benchmark.
pub async fn run(p: Params) -> anyhow::Result<Outcome> {
    anyhow::ensure!(
        p.nodes > 0 && p.apps > 0 && p.replicas > 0,
        "nothing to place"
    );
    let admin = Client::new(&p.url, Some(p.token.clone()))?;
    ensure_region(&admin, &p.region, &p.country).await?;
    let agent_token = admin
        .create_token(&CreateToken {
            role: "agent".into(),
            ttl_seconds: None,
            apps: None,
        })
        .await
        .context("creating an agent token")?
        .token;
    let agent = Client::new(&p.url, Some(agent_token))?;
    let tag = run_tag();
    let names: Vec<String> = (0..p.nodes).map(|i| format!("sim{tag}-{i:04}")).collect();
    let body = RegisterNode {
        protocol: AGENT_PROTOCOL,
        region: p.region.clone(),
        cpu_millis: 1_000_000,
        memory_mb: 10_000_000,
        labels: BTreeMap::from([("simulated".to_string(), "true".to_string())]),
        advertise_host: "127.0.0.1".into(),
    };
    for name in &names {
        agent
            .register_node(name, &body)
            .await
            .with_context(|| format!("registering node {name}"))?;
    }
    let before = assigned(&admin).await?;
    eprintln!(
        "placements: {} simulated nodes registered in {} (they run nothing: no containers)",
        p.nodes, p.region
    );

    // Keep every node heartbeating, once a second.
    let beat = {
        let agent = agent.clone();
        let names = names.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                for name in &names {
                    if let Err(e) = agent.heartbeat(name).await {
                        eprintln!("placements: heartbeat of {name} failed: {e}");
                    }
                }
            }
        })
    };

    let target = before + u64::from(p.apps) * u64::from(p.replicas);
    let start = Instant::now();
    let mut creates = tokio::task::JoinSet::new();
    for i in 0..p.apps {
        let admin = admin.clone();
        let app = AppBody {
            name: format!("pl{tag}-{i:03}"),
            image: "meridian-hello:latest".into(),
            replicas: p.replicas,
            port: 8080,
            residency: Some(vec!["EU".into()]),
            regions: None,
            env: BTreeMap::new(),
            health: None,
            cpu_millis: Some(1),
            memory_mb: Some(6),
            origin_bound: Vec::new(),
            domains: Vec::new(),
        };
        creates.spawn(async move {
            admin
                .create_app(&app)
                .await
                .with_context(|| format!("creating app {}", app.name))
        });
    }
    while let Some(r) = creates.join_next().await {
        r.context("create task")??;
    }
    let create_seconds = start.elapsed().as_secs_f64();

    let mut progress = Vec::new();
    let mut last = before;
    let mut failed_polls = Vec::new();
    let result = loop {
        let n = match assigned(&admin).await {
            Ok(n) => n,
            Err(e) => {
                // A busy cluster may refuse a linearizable read (503 no_quorum): look again.
                failed_polls.push(format!("{:.2}s: {:#}", start.elapsed().as_secs_f64(), e));
                if start.elapsed() > p.timeout {
                    bail!("GET /v1/nodes kept failing: {e:#}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if n != last {
            progress.push((start.elapsed().as_secs_f64(), n - before));
            last = n;
        }
        if n >= target {
            break Ok(start.elapsed());
        }
        if start.elapsed() > p.timeout {
            break Err(n);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    beat.abort();
    let elapsed = match result {
        Ok(d) => d,
        Err(n) => bail!(
            "only {} of {} instances placed after {:?}",
            n - before,
            target - before,
            p.timeout
        ),
    };
    let placements = target - before;
    let seconds = elapsed.as_secs_f64();
    Ok(Outcome {
        placements,
        seconds,
        per_second: placements as f64 / seconds,
        create_seconds,
        nodes: p.nodes,
        apps: p.apps,
        replicas: p.replicas,
        progress,
        failed_polls,
    })
}

impl Outcome {
    /// Human-readable lines.
    pub fn text(&self) -> String {
        let mut s = format!(
            "placements: {} instances ({} apps x {} replicas) on {} simulated nodes \
             (no containers run)\n  committed in {:.3} s (creates sent in {:.3} s) => {:.0} placements/s\n",
            self.placements,
            self.apps,
            self.replicas,
            self.nodes,
            self.seconds,
            self.create_seconds,
            self.per_second
        );
        let steps: Vec<String> = self
            .progress
            .iter()
            .map(|(t, n)| format!("{t:.2}s:{n}"))
            .collect();
        s.push_str(&format!("  progress: {}\n", steps.join(" ")));
        if let Some(first) = self.failed_polls.first() {
            s.push_str(&format!(
                "  {} polls of GET /v1/nodes failed meanwhile (retried); first: {first}\n",
                self.failed_polls.len()
            ));
        }
        s
    }
}
