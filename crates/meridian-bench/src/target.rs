//! Which servers the workers talk to: every given URL, or only the current leader.

use anyhow::{bail, Context};
use meridian_client::Client;
use serde::Deserialize;

/// Where requests go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// Only the server that leads now (found once, before the run).
    Leader,
    /// Worker `i` sends to URL `i mod n`, so followers forward to the leader.
    All,
}

/// The URL of the Meridian server that leads now, found through the client: the leader's id
/// from `GET /v1/cluster`, matched against each server's `GET /v1/health`.
pub async fn meridian_leader(client: &Client) -> anyhow::Result<String> {
    client
        .find_leader()
        .await
        .context("asking the cluster for its leader")?
        .with_context(|| format!("no server in {:?} leads right now", client.servers()))
}

/// The part of etcd's `Maintenance/Status` answer that names the leader. The JSON gateway
/// spells 64-bit ids as strings.
#[derive(Debug, Deserialize)]
struct EtcdStatus {
    header: EtcdHeader,
    leader: String,
}

#[derive(Debug, Deserialize)]
struct EtcdHeader {
    member_id: String,
}

/// The etcd client URL whose member is the leader.
pub async fn etcd_leader(http: &reqwest::Client, urls: &[String]) -> anyhow::Result<String> {
    for url in urls {
        let status: Option<EtcdStatus> = async {
            let resp = http
                .post(format!("{url}/v3/maintenance/status"))
                .body("{}")
                .send()
                .await
                .ok()?;
            resp.json().await.ok()
        }
        .await;
        if let Some(s) = status {
            if s.header.member_id == s.leader {
                return Ok(url.clone());
            }
        }
    }
    bail!("no etcd member in {urls:?} reports itself as leader")
}

/// Splits and trims a comma-separated URL list.
pub fn parse_urls(list: &str) -> anyhow::Result<Vec<String>> {
    let urls: Vec<String> = list
        .split(',')
        .map(|u| u.trim().trim_end_matches('/').to_string())
        .filter(|u| !u.is_empty())
        .collect();
    for u in &urls {
        if !u.starts_with("http://") && !u.starts_with("https://") {
            return Err(anyhow::anyhow!("{u:?} is not an http(s) URL")).context("--urls");
        }
    }
    if urls.is_empty() {
        bail!("--urls names no server");
    }
    Ok(urls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_split_and_checked() {
        let urls = parse_urls("http://127.0.0.1:1/, http://127.0.0.1:2").expect("valid");
        assert_eq!(urls, ["http://127.0.0.1:1", "http://127.0.0.1:2"]);
        assert!(parse_urls("127.0.0.1:1").is_err());
        assert!(parse_urls(" , ").is_err());
    }
}
