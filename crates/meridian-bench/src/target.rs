//! Which servers the workers talk to: every given URL, or only the current leader.

use anyhow::{bail, Context};
use serde::Deserialize;

/// Where requests go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// Only the server that leads now (found once, before the run).
    Leader,
    /// Worker `i` sends to URL `i mod n`, so followers forward to the leader.
    All,
}

/// Whether a Prometheus text body says this Meridian server leads.
pub fn metrics_say_leader(text: &str) -> bool {
    text.lines().any(|l| {
        let mut parts = l.split_whitespace();
        parts.next() == Some("meridian_raft_is_leader") && parts.next() == Some("1")
    })
}

/// The Meridian URL whose `/metrics` has `meridian_raft_is_leader 1`.
pub async fn meridian_leader(http: &reqwest::Client, urls: &[String]) -> anyhow::Result<String> {
    for url in urls {
        let Ok(resp) = http.get(format!("{url}/metrics")).send().await else {
            continue;
        };
        let Ok(text) = resp.text().await else {
            continue;
        };
        if metrics_say_leader(&text) {
            return Ok(url.clone());
        }
    }
    bail!("no server in {urls:?} reports meridian_raft_is_leader 1")
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
    fn finds_the_leader_gauge() {
        let text = "# TYPE meridian_raft_is_leader gauge\nmeridian_raft_is_leader 1\n";
        assert!(metrics_say_leader(text));
        assert!(!metrics_say_leader("meridian_raft_is_leader 0\n"));
        assert!(!metrics_say_leader("meridian_raft_is_leader_x 1\n"));
    }

    #[test]
    fn urls_are_split_and_checked() {
        let urls = parse_urls("http://127.0.0.1:1/, http://127.0.0.1:2").expect("valid");
        assert_eq!(urls, ["http://127.0.0.1:1", "http://127.0.0.1:2"]);
        assert!(parse_urls("127.0.0.1:1").is_err());
        assert!(parse_urls(" , ").is_err());
    }
}
