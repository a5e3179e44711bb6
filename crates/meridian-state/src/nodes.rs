//! Worker nodes: the record, its rows, registration, status changes and assignment generations.

use std::collections::{BTreeMap, BTreeSet};

use meridian_core::{Name, NodeStatus};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use crate::command::{Applied, CommandResult, Refusal};
use crate::sql::{corrupt, fetch_in, i, json, json_list, name, small, to_json, u};

/// A worker node as the state keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Unique name.
    pub name: Name,
    /// Its region.
    pub region: Name,
    /// CPU offered, in thousandths of a core.
    pub cpu_millis: u32,
    /// Memory offered, in MiB.
    pub memory_mb: u32,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Where instance ports are published.
    pub advertise_host: String,
    /// Status, as the scheduler reads it: `down` while silent, else `draining` while
    /// drained, else `ready`.
    pub status: NodeStatus,
    /// Whether an operator drained it: it takes no new work, through restarts and silences,
    /// until it is undrained.
    #[serde(default)]
    pub drain: bool,
    /// Bumped on every change to its assignments.
    pub generation: u64,
    /// Unix seconds.
    pub registered_at: u64,
    /// Unix seconds.
    pub updated_at: u64,
}

pub(crate) fn node_row(r: &SqliteRow) -> Result<NodeRecord, sqlx::Error> {
    let status: String = r.try_get("status")?;
    Ok(NodeRecord {
        name: name("node name", r.try_get("name")?)?,
        region: name("node region", r.try_get("region")?)?,
        cpu_millis: small("node cpu", r.try_get("cpu_millis")?)?,
        memory_mb: small("node memory", r.try_get("memory_mb")?)?,
        labels: json("node labels", r.try_get("labels")?)?,
        advertise_host: r.try_get("advertise_host")?,
        status: NodeStatus::parse(&status).ok_or_else(|| corrupt("node status", &status))?,
        drain: r.try_get::<i64, _>("drain")? != 0,
        generation: u(r.try_get("generation")?),
        registered_at: u(r.try_get("registered_at")?),
        updated_at: u(r.try_get("updated_at")?),
    })
}

/// One node by name.
pub async fn node(c: &mut SqliteConnection, n: &str) -> Result<Option<NodeRecord>, sqlx::Error> {
    let row = sqlx::query("SELECT * FROM nodes WHERE name = ?")
        .bind(n)
        .fetch_optional(c)
        .await?;
    row.as_ref().map(node_row).transpose()
}

/// Every node, by name.
pub async fn nodes(c: &mut SqliteConnection) -> Result<Vec<NodeRecord>, sqlx::Error> {
    let rows = sqlx::query("SELECT * FROM nodes ORDER BY name")
        .fetch_all(c)
        .await?;
    rows.iter().map(node_row).collect()
}

/// The nodes with these names that exist.
pub async fn nodes_named(
    c: &mut SqliteConnection,
    names: &[&str],
) -> Result<Vec<NodeRecord>, sqlx::Error> {
    let rows = fetch_in(c, "SELECT * FROM nodes WHERE name IN (", names, ")").await?;
    rows.iter().map(node_row).collect()
}

/// `Command::RegisterNode`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn register_node(
    c: &mut SqliteConnection,
    name: &Name,
    region: &Name,
    cpu_millis: u32,
    memory_mb: u32,
    labels: &BTreeMap<String, String>,
    advertise_host: &str,
    at: u64,
) -> Result<CommandResult, sqlx::Error> {
    if crate::regions::region(c, region.as_str()).await?.is_none() {
        return Ok(Err(Refusal::Invalid {
            field: "region".into(),
            message: format!("region {region} does not exist"),
        }));
    }
    let old = node(c, name.as_str()).await?;
    // A drain outlives a restart of the agent, and a silence; a down node is back.
    let drain = old.as_ref().is_some_and(|o| o.drain);
    let rec = NodeRecord {
        name: name.clone(),
        region: region.clone(),
        cpu_millis,
        memory_mb,
        labels: labels.clone(),
        advertise_host: advertise_host.to_string(),
        status: answering(drain),
        drain,
        generation: old.as_ref().map_or(0, |o| o.generation),
        registered_at: old.as_ref().map_or(at, |o| o.registered_at),
        updated_at: at,
    };
    sqlx::query(
        "INSERT OR REPLACE INTO nodes (name, region, cpu_millis, memory_mb, labels, \
         advertise_host, status, drain, generation, registered_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(rec.name.as_str())
    .bind(rec.region.as_str())
    .bind(i64::from(rec.cpu_millis))
    .bind(i64::from(rec.memory_mb))
    .bind(to_json(&rec.labels))
    .bind(&rec.advertise_host)
    .bind(rec.status.as_str())
    .bind(rec.drain)
    .bind(i(rec.generation))
    .bind(i(rec.registered_at))
    .bind(i(rec.updated_at))
    .execute(&mut *c)
    .await?;
    Ok(Ok(Applied::Node(rec)))
}

/// The status of a node that answers: `draining` when drained, else `ready`.
fn answering(drain: bool) -> NodeStatus {
    if drain {
        NodeStatus::Draining
    } else {
        NodeStatus::Ready
    }
}

/// `Command::SetNodeStatus`: the node fell silent (`down`) or answers again (`ready`, which
/// is `draining` for a drained node). `draining`, which only entries written before
/// `Command::SetNodeDrain` existed carry, drains it.
pub(crate) async fn set_node_status(
    c: &mut SqliteConnection,
    name: &Name,
    status: NodeStatus,
    at: u64,
) -> Result<CommandResult, sqlx::Error> {
    update_status(c, name, at, |rec| {
        let drain = rec.drain || status == NodeStatus::Draining;
        match status {
            NodeStatus::Down => (NodeStatus::Down, drain),
            NodeStatus::Ready | NodeStatus::Draining => (answering(drain), drain),
        }
    })
    .await
}

/// `Command::SetNodeDrain`: drains or undrains a node. A down node stays down; it comes back
/// draining or ready accordingly.
pub(crate) async fn set_node_drain(
    c: &mut SqliteConnection,
    name: &Name,
    drain: bool,
    at: u64,
) -> Result<CommandResult, sqlx::Error> {
    update_status(c, name, at, |rec| match rec.status {
        NodeStatus::Down => (NodeStatus::Down, drain),
        NodeStatus::Ready | NodeStatus::Draining => (answering(drain), drain),
    })
    .await
}

/// Sets the status and drain `decide` picks for the node as it is.
async fn update_status(
    c: &mut SqliteConnection,
    name: &Name,
    at: u64,
    decide: impl FnOnce(&NodeRecord) -> (NodeStatus, bool),
) -> Result<CommandResult, sqlx::Error> {
    let Some(mut rec) = node(c, name.as_str()).await? else {
        return Ok(Err(Refusal::not_found("node", name)));
    };
    let (status, drain) = decide(&rec);
    if rec.status != status || rec.drain != drain {
        sqlx::query("UPDATE nodes SET status = ?, drain = ?, updated_at = ? WHERE name = ?")
            .bind(status.as_str())
            .bind(drain)
            .bind(i(at))
            .bind(name.as_str())
            .execute(&mut *c)
            .await?;
        rec.status = status;
        rec.drain = drain;
        rec.updated_at = at;
    }
    Ok(Ok(Applied::Node(rec)))
}

pub(crate) async fn bump_generations(
    c: &mut SqliteConnection,
    nodes: &BTreeSet<&str>,
) -> Result<(), sqlx::Error> {
    if nodes.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = nodes.iter().copied().collect();
    sqlx::query(
        "UPDATE nodes SET generation = generation + 1 \
         WHERE name IN (SELECT value FROM json_each(?))",
    )
    .bind(json_list(&names))
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Nodes down since before `before` (unix seconds) with no instance wanted running.
pub async fn gone_since(c: &mut SqliteConnection, before: u64) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT n.name FROM nodes n WHERE n.status = 'down' AND n.updated_at < ? \
         AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.node = n.name AND i.desired = 'run') \
         ORDER BY n.name",
    )
    .bind(i(before))
    .fetch_all(c)
    .await
}

/// Forgets `node` if it is still down since before `before` with nothing wanted running on
/// it. Answers whether it went.
pub(crate) async fn forget(
    c: &mut SqliteConnection,
    node: &Name,
    before: u64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM nodes WHERE name = ? AND status = 'down' AND updated_at < ? \
         AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.node = ? AND i.desired = 'run')",
    )
    .bind(node.as_str())
    .bind(i(before))
    .bind(node.as_str())
    .execute(c)
    .await?;
    Ok(done.rows_affected() > 0)
}
