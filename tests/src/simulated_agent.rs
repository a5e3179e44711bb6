//! Agents simulated by plain calls of the agent protocol with an agent token, for tests of the
//! control plane's side without Docker (the real agent is covered by `workers.rs`).

use std::collections::BTreeMap;

use meridian_api::agent::{RegisterNode, AGENT_PROTOCOL};
use meridian_client::Client;

/// Registers node `name` in `region`, offering 4 cores and 4 GiB.
pub async fn register(agent: &Client, name: &str, region: &str) {
    agent
        .register_node(
            name,
            &RegisterNode {
                protocol: AGENT_PROTOCOL,
                region: region.into(),
                cpu_millis: 4000,
                memory_mb: 4096,
                labels: BTreeMap::new(),
                advertise_host: "127.0.0.1".into(),
            },
        )
        .await
        .expect("register");
}

/// Heartbeats `nodes` every 300 ms until the returned task is aborted, as their agents would.
pub fn keep_beating(agent: &Client, nodes: &[&str]) -> tokio::task::JoinHandle<()> {
    let agent = agent.clone();
    let nodes: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
    tokio::spawn(async move {
        loop {
            for n in &nodes {
                let _ = agent.heartbeat(n).await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
    })
}
