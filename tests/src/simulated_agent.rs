//! Agents simulated by plain calls of the agent protocol, for tests of the control plane's side
//! without Docker (the real agent is covered by `workers.rs`). Each simulated node calls with
//! the agent token and its own agent certificate, as a real agent does.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use meridian_api::agent::{RegisterNode, AGENT_PROTOCOL};
use meridian_client::Client;

use crate::Cluster;

/// The agents of any number of simulated nodes, all with one agent token.
pub struct Agents {
    url: String,
    token: String,
    clients: Mutex<HashMap<String, Client>>,
}

impl Agents {
    /// Agents calling server `i` of `c` with `token`.
    pub fn new(c: &Cluster, i: usize, token: String) -> Self {
        Self {
            url: c.url(i),
            token,
            clients: Default::default(),
        }
    }

    /// The client of node `name`'s agent in `region` (its certificate names both).
    pub fn node(&self, name: &str, region: &str) -> Client {
        let mut clients = self.clients.lock().unwrap();
        clients
            .entry(format!("{name}.{region}"))
            .or_insert_with(|| {
                Client::builder([self.url.as_str()])
                    .token(self.token.clone())
                    .tls_files(crate::pki().client_tls(meridian_tls::CertRole::Agent, region, name))
                    .build()
                    .expect("agent client")
            })
            .clone()
    }

    /// The client of node `name`, made by an earlier [`Agents::node`] or [`register`].
    pub fn of(&self, name: &str) -> Client {
        let clients = self.clients.lock().unwrap();
        let prefix = format!("{name}.");
        clients
            .iter()
            .find(|(k, _)| k.starts_with(&prefix))
            .map(|(_, c)| c.clone())
            .unwrap_or_else(|| panic!("no simulated agent for node {name}"))
    }
}

/// The registration body of a node in `region` offering 4 cores and 4 GiB.
pub fn body(region: &str) -> RegisterNode {
    RegisterNode {
        protocol: AGENT_PROTOCOL,
        region: region.into(),
        cpu_millis: 4000,
        memory_mb: 4096,
        labels: BTreeMap::new(),
        advertise_host: "127.0.0.1".into(),
    }
}

/// Registers node `name` in `region`, offering 4 cores and 4 GiB.
pub async fn register(agents: &Agents, name: &str, region: &str) {
    agents
        .node(name, region)
        .register_node(name, &body(region))
        .await
        .expect("register");
}

/// Heartbeats `nodes` (registered through `agents`) every 300 ms until the returned task is
/// aborted, as their agents would.
pub fn keep_beating(agents: &Agents, nodes: &[&str]) -> tokio::task::JoinHandle<()> {
    let nodes: Vec<(String, Client)> = nodes
        .iter()
        .map(|n| (n.to_string(), agents.of(n)))
        .collect();
    tokio::spawn(async move {
        loop {
            for (n, agent) in &nodes {
                let _ = agent.heartbeat(n).await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
    })
}
