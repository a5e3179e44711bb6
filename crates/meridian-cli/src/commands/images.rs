//! `meridian images ...`: images for clusters without a registry.

use std::process::Stdio;

use anyhow::{bail, Context};
use clap::Subcommand;
use meridian_api::images::{ImageView, RegisterImage};
use meridian_client::Client;
use tokio::io::AsyncReadExt;

use crate::output::{Output, Table};
use crate::timestamp::format_unix;

/// Image subcommands.
#[derive(Subcommand)]
pub enum ImagesCommand {
    /// Upload an image from the local Docker engine (`docker save`) to the control plane;
    /// agents without a registry fetch it from there.
    Push {
        /// Image reference, e.g. web:1.4.
        image: String,
    },
    /// List images pushed to the control plane.
    List,
}

/// Runs an image subcommand.
pub async fn run(command: ImagesCommand, client: &Client, out: &Output) -> anyhow::Result<()> {
    match command {
        ImagesCommand::Push { image } => push(client, out, &image).await,
        ImagesCommand::List => {
            let list = client.images().await?;
            out.show(&list, || render(&list))
        }
    }
}

async fn push(client: &Client, out: &Output, image: &str) -> anyhow::Result<()> {
    meridian_core::app::validate_image(image)
        .map_err(|e| anyhow::anyhow!("{image:?} is not an image reference: {}", e.problem))?;
    let mut save = tokio::process::Command::new("docker")
        .args(["save", image])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot run `docker save` (is the docker CLI installed?)")?;
    let stdout = save.stdout.take().context("docker save has no stdout")?;
    let mut stderr = save.stderr.take().context("docker save has no stderr")?;
    let tar = tokio_util::io::ReaderStream::new(stdout);
    let started = std::time::Instant::now();
    let uploaded = client.upload_image_blob(tar).await;
    let status = save.wait().await.context("waiting for docker save")?;
    if !status.success() {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        bail!("docker save {image} failed: {}", text.trim());
    }
    let blob = uploaded?;
    let view = client
        .register_image(&RegisterImage {
            name: image.to_string(),
            digest: blob.digest.clone(),
            server: blob.server,
        })
        .await?;
    let secs = started.elapsed().as_secs_f64();
    out.show(&view, || {
        format!(
            "Pushed {image} ({}, {:.1} MB in {secs:.1}s) to server {}\n",
            view.digest,
            view.size as f64 / 1e6,
            blob.server
        )
    })
}

fn render(list: &[ImageView]) -> String {
    let mut t = Table::new(&["NAME", "DIGEST", "SIZE", "SERVERS", "PUSHED"]);
    for i in list {
        let holders: Vec<String> = i.holders.iter().map(u64::to_string).collect();
        t.row(vec![
            i.name.clone(),
            i.digest.chars().take(19).collect(),
            format!("{:.1} MB", i.size as f64 / 1e6),
            holders.join(","),
            format_unix(i.pushed_at),
        ]);
    }
    t.render()
}
