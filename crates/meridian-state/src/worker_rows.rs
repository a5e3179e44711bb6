//! Rows of the worker tables, read into records.

use meridian_core::schedule::Unplaced;
use meridian_core::{InstanceState, NodeStatus, ReleaseStatus};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use crate::rows::{corrupt, fetch_in, i, json, name, small, u};
use crate::worker_records::{
    AuditRecord, Desired, ImageRecord, InstanceRecord, NodeRecord, ReleaseRecord,
};

fn node_row(r: &SqliteRow) -> Result<NodeRecord, sqlx::Error> {
    let status: String = r.try_get("status")?;
    Ok(NodeRecord {
        name: name("node name", r.try_get("name")?)?,
        region: name("node region", r.try_get("region")?)?,
        cpu_millis: small("node cpu", r.try_get("cpu_millis")?)?,
        memory_mb: small("node memory", r.try_get("memory_mb")?)?,
        labels: json("node labels", r.try_get("labels")?)?,
        advertise_host: r.try_get("advertise_host")?,
        status: NodeStatus::parse(&status).ok_or_else(|| corrupt("node status", &status))?,
        generation: u(r.try_get("generation")?),
        registered_at: u(r.try_get("registered_at")?),
        updated_at: u(r.try_get("updated_at")?),
    })
}

fn release_row(r: &SqliteRow) -> Result<ReleaseRecord, sqlx::Error> {
    let status: String = r.try_get("status")?;
    Ok(ReleaseRecord {
        app: name("release app", r.try_get("app")?)?,
        number: u(r.try_get("number")?),
        config: json("release config", r.try_get("config")?)?,
        status: ReleaseStatus::parse(&status).ok_or_else(|| corrupt("release status", &status))?,
        reason: r.try_get("reason")?,
        deadline_at: u(r.try_get("deadline_at")?),
        created_at: u(r.try_get("created_at")?),
        updated_at: u(r.try_get("updated_at")?),
    })
}

fn instance_row(r: &SqliteRow) -> Result<InstanceRecord, sqlx::Error> {
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

fn audit_row(r: &SqliteRow) -> Result<AuditRecord, sqlx::Error> {
    Ok(AuditRecord {
        seq: u(r.try_get("seq")?),
        at: u(r.try_get("at")?),
        app: name("audit app", r.try_get("app")?)?,
        kind: r.try_get("kind")?,
        instance: r.try_get("instance")?,
        node: r.try_get("node")?,
        region: r.try_get("region")?,
        country: r.try_get("country")?,
        policy: r.try_get("policy")?,
        detail: r.try_get("detail")?,
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

/// One release.
pub async fn release(
    c: &mut SqliteConnection,
    app: &str,
    number: u64,
) -> Result<Option<ReleaseRecord>, sqlx::Error> {
    let row = sqlx::query("SELECT * FROM releases WHERE app = ? AND number = ?")
        .bind(app)
        .bind(i(number))
        .fetch_optional(c)
        .await?;
    row.as_ref().map(release_row).transpose()
}

/// Releases of one app (every app when `None`), newest first.
pub async fn releases(
    c: &mut SqliteConnection,
    app: Option<&str>,
) -> Result<Vec<ReleaseRecord>, sqlx::Error> {
    let rows = match app {
        Some(a) => {
            sqlx::query("SELECT * FROM releases WHERE app = ? ORDER BY number DESC")
                .bind(a)
                .fetch_all(c)
                .await?
        }
        None => {
            sqlx::query("SELECT * FROM releases ORDER BY app, number DESC")
                .fetch_all(c)
                .await?
        }
    };
    rows.iter().map(release_row).collect()
}

/// The releases of these apps that are rolling or active, newest first within each app.
pub async fn live_releases_of(
    c: &mut SqliteConnection,
    apps: &[&str],
) -> Result<Vec<ReleaseRecord>, sqlx::Error> {
    let rows = fetch_in(
        c,
        "SELECT * FROM releases WHERE status IN ('rolling', 'active') AND app IN (",
        apps,
        ") ORDER BY app, number DESC",
    )
    .await?;
    rows.iter().map(release_row).collect()
}

/// Apps with a release still rolling out whose deadline is before `at`.
pub async fn rolling_past_deadline(
    c: &mut SqliteConnection,
    at: u64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT app FROM releases WHERE status = 'rolling' AND deadline_at < ? \
         ORDER BY app",
    )
    .bind(i(at))
    .fetch_all(c)
    .await
}

/// Instances wanted running of these apps, by app and id.
pub async fn running_instances_of(
    c: &mut SqliteConnection,
    apps: &[&str],
) -> Result<Vec<InstanceRecord>, sqlx::Error> {
    let rows = fetch_in(
        c,
        "SELECT * FROM instances WHERE desired = 'run' AND app IN (",
        apps,
        ") ORDER BY app, id",
    )
    .await?;
    rows.iter().map(instance_row).collect()
}

/// Apps with an instance wanted running on `node`.
pub async fn apps_on_node(
    c: &mut SqliteConnection,
    node: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT app FROM instances WHERE node = ? AND desired = 'run' ORDER BY app",
    )
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
    let rows = sqlx::query(
        "SELECT i.app AS app, i.node AS node, COUNT(*) AS n, a.cpu_millis AS cpu, \
         a.memory_mb AS mem FROM instances i JOIN apps a ON a.name = i.app \
         WHERE i.desired = 'run' GROUP BY i.app, i.node",
    )
    .fetch_all(c)
    .await?;
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

/// Instances.
pub async fn instances(
    c: &mut SqliteConnection,
    which: Which<'_>,
) -> Result<Vec<InstanceRecord>, sqlx::Error> {
    let rows = match which {
        Which::Running => {
            sqlx::query("SELECT * FROM instances WHERE desired = 'run' ORDER BY app, id")
                .fetch_all(c)
                .await?
        }
        Which::OnNode(n) => {
            sqlx::query("SELECT * FROM instances WHERE node = ? AND desired = 'run' ORDER BY id")
                .bind(n)
                .fetch_all(c)
                .await?
        }
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

/// What could not be placed, per app.
pub async fn unplaced(
    c: &mut SqliteConnection,
) -> Result<Vec<(String, Vec<Unplaced>)>, sqlx::Error> {
    let rows = sqlx::query("SELECT app, unplaced FROM app_status ORDER BY app")
        .fetch_all(c)
        .await?;
    rows.iter()
        .map(|r| {
            let app: String = r.try_get("app")?;
            let list = json("app unplaced", r.try_get("unplaced")?)?;
            Ok((app, list))
        })
        .collect()
}

/// What could not be placed, of these apps.
pub async fn unplaced_of(
    c: &mut SqliteConnection,
    apps: &[&str],
) -> Result<Vec<(String, Vec<Unplaced>)>, sqlx::Error> {
    let rows = fetch_in(
        c,
        "SELECT app, unplaced FROM app_status WHERE app IN (",
        apps,
        ")",
    )
    .await?;
    rows.iter()
        .map(|r| {
            let app: String = r.try_get("app")?;
            let list = json("app unplaced", r.try_get("unplaced")?)?;
            Ok((app, list))
        })
        .collect()
}

/// Apps with something unplaced, by name.
pub async fn pending_apps(c: &mut SqliteConnection) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT app FROM app_status ORDER BY app")
        .fetch_all(c)
        .await
}

/// Audit entries after `after`, oldest first, at most `limit`, of one app or all.
pub async fn audit(
    c: &mut SqliteConnection,
    app: Option<&str>,
    after: u64,
    limit: u32,
) -> Result<Vec<AuditRecord>, sqlx::Error> {
    let rows = match app {
        Some(a) => {
            sqlx::query("SELECT * FROM audit WHERE app = ? AND seq > ? ORDER BY seq LIMIT ?")
                .bind(a)
                .bind(i(after))
                .bind(i64::from(limit))
                .fetch_all(c)
                .await?
        }
        None => {
            sqlx::query("SELECT * FROM audit WHERE seq > ? ORDER BY seq LIMIT ?")
                .bind(i(after))
                .bind(i64::from(limit))
                .fetch_all(c)
                .await?
        }
    };
    rows.iter().map(audit_row).collect()
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

fn image_row(r: &SqliteRow) -> Result<ImageRecord, sqlx::Error> {
    Ok(ImageRecord {
        name: r.try_get("name")?,
        digest: r.try_get("digest")?,
        size: u(r.try_get("size")?),
        holders: json("image holders", r.try_get("holders")?)?,
        pushed_at: u(r.try_get("pushed_at")?),
    })
}

/// One pushed image by reference.
pub async fn image(
    c: &mut SqliteConnection,
    name: &str,
) -> Result<Option<ImageRecord>, sqlx::Error> {
    let row = sqlx::query("SELECT * FROM images WHERE name = ?")
        .bind(name)
        .fetch_optional(c)
        .await?;
    row.as_ref().map(image_row).transpose()
}

/// Every pushed image, by name.
pub async fn images(c: &mut SqliteConnection) -> Result<Vec<ImageRecord>, sqlx::Error> {
    let rows = sqlx::query("SELECT * FROM images ORDER BY name")
        .fetch_all(c)
        .await?;
    rows.iter().map(image_row).collect()
}

/// Instances a router may send requests to: wanted running, healthy, with an address, on a
/// node that is not down. Each with its node's region: (id, app, node, region, address).
pub async fn routable_instances(
    c: &mut SqliteConnection,
) -> Result<Vec<(String, String, String, String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT i.id, i.app, i.node, n.region, i.address FROM instances i \
         JOIN nodes n ON n.name = i.node \
         WHERE i.desired = 'run' AND i.state = 'healthy' AND i.address IS NOT NULL \
         AND n.status != 'down' ORDER BY i.app, i.id",
    )
    .fetch_all(c)
    .await
}

/// Registered routers whose region still exists: (name, region, url).
pub async fn routers(
    c: &mut SqliteConnection,
) -> Result<Vec<(String, String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT r.name, r.region, r.url FROM routers r \
         JOIN regions g ON g.name = r.region ORDER BY r.region, r.name",
    )
    .fetch_all(c)
    .await
}
