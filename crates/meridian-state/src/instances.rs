//! Instances: desired placement and observed state, their rows, agents' reports, and pruning stopped ones.

use std::collections::BTreeSet;

pub use meridian_core::instance::Desired;
use meridian_core::{InstanceState, Name};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use crate::changes::Touched;
use crate::command::{Applied, CommandResult};
use crate::sql::{corrupt, fetch_in, i, name, small, u};

/// An instance: desired placement plus the last observed state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// Unique id.
    pub id: String,
    /// The app.
    pub app: Name,
    /// The release it runs.
    pub release: u64,
    /// Its node.
    pub node: Name,
    /// Run or stop.
    pub desired: Desired,
    /// Last observed state.
    pub state: InstanceState,
    /// Exit code, once exited.
    pub exit_code: Option<i64>,
    /// `host:port`, once running.
    pub address: Option<String>,
    /// Last detail from the agent or the reason it was stopped.
    pub detail: Option<String>,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds.
    pub updated_at: u64,
}

/// What an agent observed of one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    /// Instance id.
    pub id: String,
    /// State.
    pub state: InstanceState,
    /// Exit code.
    pub exit_code: Option<i64>,
    /// Address.
    pub address: Option<String>,
    /// Detail.
    pub detail: Option<String>,
}

/// A new instance decided by the scheduler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewInstance {
    /// Its id, chosen by the leader.
    pub id: String,
    /// The app.
    pub app: Name,
    /// The release.
    pub release: u64,
    /// The node.
    pub node: Name,
}

/// An instance to stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopInstance {
    /// Its id.
    pub id: String,
    /// Why.
    pub reason: String,
}

pub(crate) fn instance_row(r: &SqliteRow) -> Result<InstanceRecord, sqlx::Error> {
    let desired: String = r.try_get("desired")?;
    let state: String = r.try_get("state")?;
    Ok(InstanceRecord {
        id: r.try_get("id")?,
        app: name("instance app", r.try_get("app")?)?,
        release: u(r.try_get("release")?),
        node: name("instance node", r.try_get("node")?)?,
        desired: match desired.as_str() {
            "run" => Desired::Run,
            "stop" => Desired::Stop,
            other => return Err(corrupt("instance desired", other)),
        },
        state: InstanceState::parse(&state).ok_or_else(|| corrupt("instance state", &state))?,
        exit_code: r.try_get("exit_code")?,
        address: r.try_get("address")?,
        detail: r.try_get("detail")?,
        created_at: u(r.try_get("created_at")?),
        updated_at: u(r.try_get("updated_at")?),
    })
}

/// Which instances to read.
#[derive(Debug, Clone, Copy)]
pub enum Which<'a> {
    /// Instances wanted running, of every app.
    Running,
    /// Instances wanted running on one node.
    OnNode(&'a str),
    /// Every instance of one app, running ones first, newest first.
    OfApp(&'a str),
}

// The queries a reconcile round or a world load runs; `query_plans` checks SQLite's plan for
// each.
pub(crate) const RUNNING: &str = "SELECT * FROM instances WHERE desired = 'run' ORDER BY app, id";
pub(crate) const ON_NODE: &str =
    "SELECT * FROM instances WHERE node = ? AND desired = 'run' ORDER BY id";
pub(crate) const RUNNING_OF: (&str, &str) = (
    "SELECT * FROM instances WHERE desired = 'run' AND app IN (",
    ") ORDER BY app, id",
);
pub(crate) const APPS_ON_NODE: &str =
    "SELECT DISTINCT app FROM instances WHERE node = ? AND desired = 'run' ORDER BY app";
pub(crate) const FOOTPRINTS: &str =
    "SELECT i.app AS app, i.node AS node, COUNT(*) AS n, a.cpu_millis AS cpu, \
     a.memory_mb AS mem FROM instances i JOIN apps a ON a.name = i.app \
     WHERE i.desired = 'run' GROUP BY i.app, i.node";

/// Instances.
pub async fn instances(
    c: &mut SqliteConnection,
    which: Which<'_>,
) -> Result<Vec<InstanceRecord>, sqlx::Error> {
    let rows = match which {
        Which::Running => sqlx::query(RUNNING).fetch_all(c).await?,
        Which::OnNode(n) => sqlx::query(ON_NODE).bind(n).fetch_all(c).await?,
        Which::OfApp(a) => {
            sqlx::query(
                "SELECT * FROM instances WHERE app = ? \
                 ORDER BY desired = 'stop', created_at DESC, id",
            )
            .bind(a)
            .fetch_all(c)
            .await?
        }
    };
    rows.iter().map(instance_row).collect()
}

/// Instances wanted running of these apps, by app and id.
pub async fn running_instances_of(
    c: &mut SqliteConnection,
    apps: &[&str],
) -> Result<Vec<InstanceRecord>, sqlx::Error> {
    let rows = fetch_in(c, RUNNING_OF.0, apps, RUNNING_OF.1).await?;
    rows.iter().map(instance_row).collect()
}

/// Apps with an instance wanted running on `node`.
pub async fn apps_on_node(
    c: &mut SqliteConnection,
    node: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(APPS_ON_NODE)
        .bind(node)
        .fetch_all(c)
        .await
}

/// How many instances of one app are wanted running on one node, and what each takes (sized
/// by the app's current spec, as the scheduler sizes them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footprint {
    /// The app.
    pub app: String,
    /// The node.
    pub node: String,
    /// Instances of the app wanted running there.
    pub count: u32,
    /// CPU per instance, in thousandths of a core.
    pub cpu_millis: u32,
    /// Memory per instance, in MiB.
    pub memory_mb: u32,
}

/// Every app's footprint on every node it has instances on.
pub async fn footprints(c: &mut SqliteConnection) -> Result<Vec<Footprint>, sqlx::Error> {
    let rows = sqlx::query(FOOTPRINTS).fetch_all(c).await?;
    rows.iter()
        .map(|r| {
            Ok(Footprint {
                app: r.try_get("app")?,
                node: r.try_get("node")?,
                count: small("footprint count", r.try_get("n")?)?,
                cpu_millis: small("app cpu_millis", r.try_get("cpu")?)?,
                memory_mb: small("app memory_mb", r.try_get("mem")?)?,
            })
        })
        .collect()
}

/// What the instances wanted running on each node take: count, CPU and memory (sized by their
/// app's current spec). Nodes without instances are absent.
pub async fn node_usage(
    c: &mut SqliteConnection,
) -> Result<Vec<(String, u32, u32, u32)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT i.node AS node, COUNT(*) AS n, COALESCE(SUM(a.cpu_millis), 0) AS cpu, \
         COALESCE(SUM(a.memory_mb), 0) AS mem \
         FROM instances i LEFT JOIN apps a ON a.name = i.app \
         WHERE i.desired = 'run' GROUP BY i.node",
    )
    .fetch_all(c)
    .await?;
    rows.iter()
        .map(|r| {
            let sat = |v: i64| u32::try_from(v).unwrap_or(u32::MAX);
            Ok((
                r.try_get("node")?,
                sat(r.try_get("n")?),
                sat(r.try_get("cpu")?),
                sat(r.try_get("mem")?),
            ))
        })
        .collect()
}

/// `Command::ReportInstances`: writes only what changed, and marks the apps it changed.
pub(crate) async fn report_instances(
    c: &mut SqliteConnection,
    node: &Name,
    reports: &[Observed],
    at: u64,
    t: &mut Touched,
) -> Result<CommandResult, sqlx::Error> {
    for r in reports {
        let app: Option<String> = sqlx::query_scalar(
            "UPDATE instances SET state = ?, exit_code = ?, address = ?, detail = ?, updated_at = ? \
             WHERE id = ? AND node = ? AND desired = 'run' AND (state IS NOT ? OR exit_code IS NOT ? \
             OR address IS NOT ? OR detail IS NOT ?) RETURNING app",
        )
        .bind(r.state.as_str())
        .bind(r.exit_code)
        .bind(&r.address)
        .bind(&r.detail)
        .bind(i(at))
        .bind(&r.id)
        .bind(node.as_str())
        .bind(r.state.as_str())
        .bind(r.exit_code)
        .bind(&r.address)
        .bind(&r.detail)
        .fetch_optional(&mut *c)
        .await?;
        if let Some(app) = app {
            t.app_str(&app);
        }
    }
    Ok(Ok(Applied::Done))
}

/// Stopped instances kept per app, newest first, for `apps instances --all` and debugging.
pub(crate) const KEEP_STOPPED: i64 = 100;

/// Forgets all but the newest stopped instances of `apps` beyond that many.
pub(crate) async fn prune_stopped(
    c: &mut SqliteConnection,
    apps: &BTreeSet<String>,
) -> Result<(), sqlx::Error> {
    for app in apps {
        sqlx::query(
            "DELETE FROM instances WHERE app = ? AND desired = 'stop' AND id IN \
             (SELECT id FROM instances WHERE app = ? AND desired = 'stop' \
              ORDER BY updated_at DESC, id LIMIT -1 OFFSET ?)",
        )
        .bind(app)
        .bind(app)
        .bind(KEEP_STOPPED)
        .execute(&mut *c)
        .await?;
    }
    Ok(())
}
