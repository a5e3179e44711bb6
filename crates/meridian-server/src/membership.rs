//! Forming or joining a cluster at start.

use std::time::Duration;

use meridian_api::cluster::JoinRequest;
use meridian_state::{MemberNode, Raft};

use crate::config::ServerConfig;

/// `--bootstrap`: forms a one-server cluster, only if this data directory never belonged to
/// one. Initialising twice would split the cluster.
pub async fn bootstrap(raft: &Raft, config: &ServerConfig) -> Result<(), String> {
    if raft.is_initialized().await.map_err(|e| e.to_string())? {
        tracing::info!("data directory already holds a cluster; resuming");
        return Ok(());
    }
    let node = MemberNode {
        addr: config.advertise(),
        region: config.region.clone(),
    };
    raft.initialize(
        [(config.node_id, node)]
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>(),
    )
    .await
    .map_err(|e| e.to_string())?;
    tracing::info!(node = config.node_id, "formed a new cluster");
    Ok(())
}

/// The HTTP client [`join`] calls members with: one request may take 30 s (the leader adds a
/// learner and waits for it to catch up before answering).
pub fn join_client(tls: &rustls::ClientConfig) -> Result<reqwest::Client, reqwest::Error> {
    crate::peer_http(tls)
        .timeout(Duration::from_secs(30))
        .build()
}

/// `--join`: asks the given members, in turn and until one accepts, to add this server as a
/// voter. Runs in the background while the server already answers Raft RPCs.
pub async fn join(
    http: reqwest::Client,
    raft: Raft,
    config: ServerConfig,
    urls: Vec<String>,
    secret: String,
) {
    let req = JoinRequest {
        node_id: config.node_id,
        addr: config.advertise(),
        region: config.region.clone(),
    };
    let mut delay = Duration::from_millis(200);
    loop {
        // Already a voter (say, restarted with --join again): nothing to ask.
        let voter = raft
            .metrics()
            .borrow()
            .membership_config
            .voter_ids()
            .any(|id| id == config.node_id);
        if voter {
            return;
        }
        for url in &urls {
            let endpoint = format!("{}/v1/cluster/join", url.trim_end_matches('/'));
            let sent = http
                .post(&endpoint)
                .header(meridian_api::CLUSTER_SECRET_HEADER, &secret)
                .json(&req)
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => {
                    tracing::info!(via = %url, "joined the cluster");
                    return;
                }
                Ok(r) => {
                    let status = r.status();
                    let body = r.text().await.unwrap_or_default();
                    tracing::warn!(via = %url, %status, %body, "join refused; will retry");
                }
                Err(e) => {
                    let error = meridian_core::ErrorChain(&e);
                    tracing::warn!(via = %url, %error, "join failed; will retry");
                }
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
