//! `meridian deploy APP --image IMG`: starts a rolling deploy and follows it live until the
//! new release serves everywhere, halts, or the wait ends.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use meridian_api::nodes::{InstanceView, ReleaseView};
use meridian_client::Client;
use meridian_core::rollout::ReleaseStatus;
use meridian_core::InstanceState;

use crate::output::Output;

/// `meridian deploy`.
#[derive(Args)]
pub struct DeployArgs {
    /// App name.
    app: String,
    /// The image to roll out.
    #[arg(long, value_name = "IMAGE")]
    image: String,
    /// Return once the release is created, without following the rollout.
    #[arg(long)]
    detach: bool,
    /// Longest time to follow the rollout, e.g. 5m [default: 10m].
    #[arg(long, value_name = "DURATION", default_value = "10m")]
    wait: String,
}

/// How often the rollout is looked at.
const POLL: Duration = Duration::from_millis(250);

/// Runs `meridian deploy`.
pub async fn run(args: DeployArgs, client: &Client, out: &Output) -> anyhow::Result<()> {
    let Some(wait_ms) = meridian_core::app::parse_duration_ms(&args.wait) else {
        bail!(
            "--wait {:?} is not a duration such as 90s or 10m",
            args.wait
        );
    };
    let release = client.deploy(&args.app, &args.image).await?;
    if args.detach {
        return out.show(&release, || {
            format!(
                "Release {} of {} created ({}); rolling out\n",
                release.number, release.app, release.image
            )
        });
    }
    let live = !out.is_json() && std::io::stderr().is_terminal();
    eprintln!(
        "Deploying {} release {} ({})",
        release.app, release.number, release.image
    );
    let start = Instant::now();
    let mut last_line = String::new();
    loop {
        let releases = client.releases(&args.app).await?;
        let now = releases.iter().find(|r| r.number == release.number);
        let instances = client.instances(&args.app).await?;
        let line = progress(&release, &instances);
        if line != last_line {
            if live {
                eprint!("\r\x1b[2K{line}");
                let _ = std::io::stderr().flush();
            } else {
                eprintln!("{line}");
            }
            last_line = line;
        }
        // A release no longer listed, or in a status this client does not know, is not rolling.
        let rolling = now.and_then(ReleaseView::rollout_status) == Some(ReleaseStatus::Rolling);
        if !rolling || start.elapsed() > Duration::from_millis(wait_ms) {
            if live {
                eprintln!();
            }
            return finish(out, &release, now, start.elapsed());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One progress line: per region, new-release instances healthy / wanted and old ones left.
fn progress(release: &ReleaseView, instances: &[InstanceView]) -> String {
    let mut regions: BTreeMap<&str, (u32, u32, u32)> = BTreeMap::new();
    for i in instances.iter().filter(|i| i.is_wanted()) {
        let e = regions.entry(i.region.as_str()).or_default();
        if i.release == release.number {
            e.1 += 1;
            if i.observed() == Some(InstanceState::Healthy) {
                e.0 += 1;
            }
        } else {
            e.2 += 1;
        }
    }
    if regions.is_empty() {
        return "  waiting for placement".to_string();
    }
    let parts: Vec<String> = regions
        .iter()
        .map(|(r, (healthy, new, old))| format!("{r}: {healthy}/{new} new healthy, {old} old"))
        .collect();
    format!("  {}", parts.join("  |  "))
}

fn finish(
    out: &Output,
    release: &ReleaseView,
    now: Option<&ReleaseView>,
    took: Duration,
) -> anyhow::Result<()> {
    let status = now
        .map(|r| r.status.clone())
        .unwrap_or_else(|| "superseded".into());
    let secs = took.as_secs_f64();
    match status.as_str() {
        "active" => out.show(&now, || {
            format!(
                "Release {} of {} is live everywhere ({secs:.1}s)\n",
                release.number, release.app
            )
        }),
        "halted" => {
            let reason = now.and_then(|r| r.reason.clone()).unwrap_or_default();
            bail!(
                "release {} of {} halted: {reason}; the previous release keeps serving",
                release.number,
                release.app
            )
        }
        "rolling" => bail!(
            "release {} of {} is still rolling out after {secs:.0}s; follow it with `meridian apps instances {}`",
            release.number,
            release.app,
            release.app
        ),
        other => bail!(
            "release {} of {} is {other}: a newer deploy replaced it",
            release.number,
            release.app
        ),
    }
}
