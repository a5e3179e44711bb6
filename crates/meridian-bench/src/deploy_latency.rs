//! `meridian-bench deploy-latency`: from the API accepting an app to its container answering
//! HTTP, next to a bare `docker run` of the same image, alternated run by run so both kinds
//! share the machine's noise.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use meridian_api::apps::AppBody;
use meridian_client::Client;
use serde::Serialize;

/// What the run is asked to do.
#[derive(Debug, Clone)]
pub struct Params {
    /// Any server.
    pub url: String,
    /// Admin (or deployer) token.
    pub token: String,
    /// Image both kinds start.
    pub image: String,
    /// Port the image listens on.
    pub port: u16,
    /// Measured runs of each kind.
    pub runs: u32,
    /// Unmeasured runs of each kind first.
    pub warmup: u32,
    /// One step may take this long before the run fails.
    pub timeout: Duration,
}

/// One Meridian run.
#[derive(Debug, Clone, Serialize)]
pub struct MeridianRun {
    /// `POST /v1/apps` round trip, ms.
    pub create_ms: f64,
    /// From the create's answer until the instance had an address, ms.
    pub address_ms: f64,
    /// From the create's answer until the first HTTP 200, ms (the figure).
    pub total_ms: f64,
}

/// One bare `docker run`.
#[derive(Debug, Clone, Serialize)]
pub struct BareRun {
    /// `docker run -d` until it returned the id, ms.
    pub run_ms: f64,
    /// Until `docker port` gave the host port, ms.
    pub port_ms: f64,
    /// Until the first HTTP 200, ms (the figure).
    pub total_ms: f64,
}

/// The figures of all runs.
#[derive(Debug, Serialize)]
pub struct Outcome {
    /// Meridian runs in order.
    pub meridian: Vec<MeridianRun>,
    /// Bare runs in order.
    pub bare: Vec<BareRun>,
    /// Median Meridian total, ms.
    pub meridian_median_ms: f64,
    /// Median bare total, ms.
    pub bare_median_ms: f64,
    /// Meridian median / bare median.
    pub ratio: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// A client that opens a fresh connection for every probe (a pooled connection to
/// docker-proxy could be accepted before the app listens).
fn probe_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(1))
        .build()
        .context("building the probe client")
}

/// Polls `GET http://address/` every 10 ms until it answers 200.
async fn until_200(http: &reqwest::Client, address: &str, deadline: Instant) -> anyhow::Result<()> {
    let url = format!("http://{address}/");
    loop {
        if let Ok(resp) = http.get(&url).send().await {
            if resp.status() == reqwest::StatusCode::OK {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{url} did not answer 200 in time");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn meridian_once(
    client: &Client,
    http: &reqwest::Client,
    p: &Params,
    name: &str,
) -> anyhow::Result<MeridianRun> {
    let body = AppBody {
        name: name.to_string(),
        image: p.image.clone(),
        replicas: 1,
        port: p.port,
        residency: None,
        regions: None,
        env: BTreeMap::new(),
        health: None,
        cpu_millis: None,
        memory_mb: None,
        origin_bound: Vec::new(),
        domains: Vec::new(),
    };
    let sent = Instant::now();
    client
        .create_app(&body)
        .await
        .with_context(|| format!("creating app {name}"))?;
    let accepted = Instant::now();
    let deadline = accepted + p.timeout;
    let address = loop {
        let instances = client
            .instances(name)
            .await
            .with_context(|| format!("listing instances of {name}"))?;
        if let Some(a) = instances.iter().find_map(|i| i.address.clone()) {
            break a;
        }
        if Instant::now() > deadline {
            bail!("app {name} got no instance address in time");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let addressed = Instant::now();
    until_200(http, &address, deadline).await?;
    let answered = Instant::now();
    Ok(MeridianRun {
        create_ms: ms(accepted - sent),
        address_ms: ms(addressed - accepted),
        total_ms: ms(answered - accepted),
    })
}

/// Deletes the app and waits until its instances are gone, so the next run starts clean.
async fn meridian_cleanup(client: &Client, name: &str, timeout: Duration) -> anyhow::Result<()> {
    client
        .delete_app(name)
        .await
        .with_context(|| format!("deleting app {name}"))?;
    let start = Instant::now();
    while start.elapsed() < timeout {
        let out = tokio::process::Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=meridian.app={name}"),
            ])
            .output()
            .await
            .context("docker ps")?;
        if String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("deploy-latency: containers of {name} still present after {timeout:?}");
    Ok(())
}

async fn docker(args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new("docker")
        .args(args)
        .output()
        .await
        .context("running docker")?;
    if !out.status.success() {
        bail!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The host port from `docker port` output such as `0.0.0.0:32768\n[::]:32768`.
fn host_port(out: &str) -> Option<u16> {
    out.lines()
        .find_map(|l| l.rsplit_once(':').and_then(|(_, p)| p.trim().parse().ok()))
}

async fn bare_once(http: &reqwest::Client, p: &Params) -> anyhow::Result<BareRun> {
    let started = Instant::now();
    let deadline = started + p.timeout;
    let publish = format!("0:{}", p.port);
    let id = docker(&[
        "run",
        "-d",
        "--rm",
        "--label",
        "meridian.bench=bare",
        "-p",
        &publish,
        &p.image,
    ])
    .await?;
    let ran = Instant::now();
    let result = async {
        let out = docker(&["port", &id, &format!("{}/tcp", p.port)]).await?;
        let port = host_port(&out).with_context(|| format!("no host port in {out:?}"))?;
        let ported = Instant::now();
        until_200(http, &format!("127.0.0.1:{port}"), deadline).await?;
        Ok::<_, anyhow::Error>((ported, Instant::now()))
    }
    .await;
    let _ = docker(&["rm", "-f", &id]).await;
    let (ported, answered) = result?;
    Ok(BareRun {
        run_ms: ms(ran - started),
        port_ms: ms(ported - started),
        total_ms: ms(answered - started),
    })
}

/// Runs the benchmark: `warmup` unmeasured pairs, then `runs` measured ones, alternating
/// Meridian and bare (and which goes first).
pub async fn run(p: Params) -> anyhow::Result<Outcome> {
    anyhow::ensure!(p.runs > 0, "--runs must be at least 1");
    let client = Client::new(&p.url, Some(p.token.clone()))?;
    let http = probe_client()?;
    let tag = std::process::id() % 100_000;
    let mut meridian = Vec::new();
    let mut bare = Vec::new();
    for i in 0..(p.warmup + p.runs) {
        let measured = i >= p.warmup;
        let name = format!("lat-{tag}-{i}");
        let meridian_first = i % 2 == 0;
        for kind in [meridian_first, !meridian_first] {
            if kind {
                let r = meridian_once(&client, &http, &p, &name).await;
                meridian_cleanup(&client, &name, p.timeout).await?;
                let r = r?;
                eprintln!(
                    "deploy-latency: {} meridian {name}: create {:.1} ms, address after {:.1} ms, 200 after {:.1} ms",
                    if measured { "run" } else { "warm-up" },
                    r.create_ms,
                    r.address_ms,
                    r.total_ms
                );
                if measured {
                    meridian.push(r);
                }
            } else {
                let r = bare_once(&http, &p).await?;
                eprintln!(
                    "deploy-latency: {} bare docker run: run {:.1} ms, port {:.1} ms, 200 after {:.1} ms",
                    if measured { "run" } else { "warm-up" },
                    r.run_ms,
                    r.port_ms,
                    r.total_ms
                );
                if measured {
                    bare.push(r);
                }
            }
        }
    }
    let meridian_median_ms = median(meridian.iter().map(|r| r.total_ms).collect());
    let bare_median_ms = median(bare.iter().map(|r| r.total_ms).collect());
    Ok(Outcome {
        meridian,
        bare,
        meridian_median_ms,
        bare_median_ms,
        ratio: meridian_median_ms / bare_median_ms,
    })
}

impl Outcome {
    /// Human-readable lines.
    pub fn text(&self) -> String {
        let list = |v: Vec<f64>| {
            v.iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut s = String::new();
        s.push_str(&format!(
            "deploy latency (ms): meridian median {:.0} [runs: {}]\n",
            self.meridian_median_ms,
            list(self.meridian.iter().map(|r| r.total_ms).collect())
        ));
        s.push_str(&format!(
            "  meridian: create round trip [{}], instance address after accept [{}]\n",
            list(self.meridian.iter().map(|r| r.create_ms).collect()),
            list(self.meridian.iter().map(|r| r.address_ms).collect())
        ));
        s.push_str(&format!(
            "deploy latency (ms): bare docker run median {:.0} [runs: {}]\n",
            self.bare_median_ms,
            list(self.bare.iter().map(|r| r.total_ms).collect())
        ));
        s.push_str(&format!(
            "  bare: docker run -d returned [{}], docker port returned [{}]\n",
            list(self.bare.iter().map(|r| r.run_ms).collect()),
            list(self.bare.iter().map(|r| r.port_ms).collect())
        ));
        s.push_str(&format!(
            "ratio meridian / bare (medians): {:.2}x\n",
            self.ratio
        ));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_reads_docker_port_output() {
        assert_eq!(host_port("0.0.0.0:32768\n[::]:32768\n"), Some(32768));
        assert_eq!(host_port("[::]:49153"), Some(49153));
        assert_eq!(host_port(""), None);
    }

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
