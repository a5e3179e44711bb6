//! `meridian nodes ...`

use clap::Subcommand;
use meridian_api::nodes::NodeView;
use meridian_client::Client;
use meridian_core::NodeStatus;

use crate::output::{Output, Table};

/// Node subcommands.
#[derive(Subcommand)]
pub enum NodesCommand {
    /// List worker nodes.
    List,
    /// Show one node.
    Show {
        /// Node name.
        name: String,
    },
    /// Drain a node: move its instances away (each stops once its replacement is healthy)
    /// and place nothing new on it, until it is undrained (restarts of its agent included).
    Drain {
        /// Node name.
        name: String,
    },
    /// Undrain a node: let it take new work again.
    Undrain {
        /// Node name.
        name: String,
    },
}

/// Runs a node subcommand.
pub async fn run(command: NodesCommand, client: &Client, out: &Output) -> anyhow::Result<()> {
    match command {
        NodesCommand::List => {
            let nodes = client.nodes().await?;
            out.show(&nodes, || render(&nodes))
        }
        NodesCommand::Show { name } => {
            let node = client.node(&name).await?;
            out.show(&node, || render(std::slice::from_ref(&node)))
        }
        NodesCommand::Drain { name } => {
            let node = client.drain_node(&name).await?;
            out.show(&node, || {
                format!(
                    "Draining node {}: {} instance(s) will move once their replacements are healthy\n",
                    node.name, node.instances
                )
            })
        }
        NodesCommand::Undrain { name } => {
            let node = client.undrain_node(&name).await?;
            out.show(&node, || {
                if is_down(&node) {
                    format!(
                        "Undrained node {}: it is down, and takes new work once it is back\n",
                        node.name
                    )
                } else {
                    format!("Undrained node {}: it takes new work again\n", node.name)
                }
            })
        }
    }
}

fn is_down(n: &NodeView) -> bool {
    NodeStatus::parse(&n.status) == Some(NodeStatus::Down)
}

/// The status column: a drained node that is down says it will come back drained.
fn status(n: &NodeView) -> String {
    if n.drain && is_down(n) {
        format!("{} (drained)", n.status)
    } else {
        n.status.clone()
    }
}

fn render(nodes: &[NodeView]) -> String {
    let mut t = Table::new(&[
        "NAME",
        "REGION",
        "COUNTRY",
        "STATUS",
        "INSTANCES",
        "CPU",
        "MEMORY",
        "ADDRESS",
    ]);
    for n in nodes {
        t.row(vec![
            n.name.clone(),
            n.region.clone(),
            n.country.clone(),
            status(n),
            n.instances.to_string(),
            format!("{}/{}m", n.cpu_used, n.cpu_millis),
            format!("{}/{} MiB", n.memory_used, n.memory_mb),
            n.advertise_host.clone(),
        ]);
    }
    t.render()
}
