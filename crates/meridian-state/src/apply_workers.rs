//! Applying the worker commands: nodes, reports, deploys and scheduling rounds. Same rule as
//! `apply`: every command decides whether to refuse before its first write.

use std::collections::{BTreeMap, BTreeSet};

use meridian_core::{InstanceState, Name, NodeStatus, ReleaseStatus};
use sqlx::SqliteConnection;

use crate::changes::Touched;
use crate::command::{AppRecord, Applied, CommandResult, Refusal};
use crate::rows::{self, i, to_json};
use crate::worker_records::{
    AuditRecord, ImageRecord, NodeRecord, Observed, ReleaseConfig, ReleaseRecord, Schedule,
};
use crate::worker_rows::{self, Which};

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
    if rows::region(c, region.as_str()).await?.is_none() {
        return Ok(Err(Refusal::Invalid {
            field: "region".into(),
            message: format!("region {region} does not exist"),
        }));
    }
    let old = worker_rows::node(c, name.as_str()).await?;
    let rec = NodeRecord {
        name: name.clone(),
        region: region.clone(),
        cpu_millis,
        memory_mb,
        labels: labels.clone(),
        advertise_host: advertise_host.to_string(),
        // A drain outlives a restart of the agent; a down node is back.
        status: match old.as_ref().map(|o| o.status) {
            Some(NodeStatus::Draining) => NodeStatus::Draining,
            _ => NodeStatus::Ready,
        },
        generation: old.as_ref().map_or(0, |o| o.generation),
        registered_at: old.as_ref().map_or(at, |o| o.registered_at),
        updated_at: at,
    };
    sqlx::query(
        "INSERT OR REPLACE INTO nodes (name, region, cpu_millis, memory_mb, labels, \
         advertise_host, status, generation, registered_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(rec.name.as_str())
    .bind(rec.region.as_str())
    .bind(i64::from(rec.cpu_millis))
    .bind(i64::from(rec.memory_mb))
    .bind(to_json(&rec.labels))
    .bind(&rec.advertise_host)
    .bind(rec.status.as_str())
    .bind(i(rec.generation))
    .bind(i(rec.registered_at))
    .bind(i(rec.updated_at))
    .execute(&mut *c)
    .await?;
    Ok(Ok(Applied::Node(rec)))
}

/// `Command::SetNodeStatus`.
pub(crate) async fn set_node_status(
    c: &mut SqliteConnection,
    name: &Name,
    status: NodeStatus,
    at: u64,
) -> Result<CommandResult, sqlx::Error> {
    let Some(mut rec) = worker_rows::node(c, name.as_str()).await? else {
        return Ok(Err(Refusal::not_found("node", name)));
    };
    if rec.status != status {
        sqlx::query("UPDATE nodes SET status = ?, updated_at = ? WHERE name = ?")
            .bind(status.as_str())
            .bind(i(at))
            .bind(name.as_str())
            .execute(&mut *c)
            .await?;
        rec.status = status;
        rec.updated_at = at;
    }
    Ok(Ok(Applied::Node(rec)))
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

/// Adds release `number` of an app.
async fn insert_release(c: &mut SqliteConnection, r: &ReleaseRecord) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO releases (app, number, config, status, reason, deadline_at, created_at, \
         updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(r.app.as_str())
    .bind(i(r.number))
    .bind(to_json(&r.config))
    .bind(r.status.as_str())
    .bind(&r.reason)
    .bind(i(r.deadline_at))
    .bind(i(r.created_at))
    .bind(i(r.updated_at))
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Seconds a release made by an app change has to become healthy.
pub const DEFAULT_DEADLINE_S: u64 = 300;

/// After an app is created or changed: its first release (serving at once), or a new rolling
/// release when what its instances run changed. Answers the release written, if any.
pub(crate) async fn release_app(
    c: &mut SqliteConnection,
    app: &AppRecord,
    deadline_s: u64,
    at: u64,
) -> Result<Option<ReleaseRecord>, sqlx::Error> {
    let config = ReleaseConfig::of(&app.spec);
    let existing = worker_rows::releases(c, Some(app.spec.name.as_str())).await?;
    let latest_live = existing
        .iter()
        .find(|r| matches!(r.status, ReleaseStatus::Active | ReleaseStatus::Rolling));
    if latest_live.is_some_and(|r| r.config == config) {
        return Ok(None);
    }
    let rec = new_release(c, &app.spec.name, config, &existing, deadline_s, at).await?;
    Ok(Some(rec))
}

/// Writes the next release of an app after `existing` (newest first): serving at once when it
/// is the first, else rolling, superseding one still rolling out.
async fn new_release(
    c: &mut SqliteConnection,
    app: &Name,
    config: ReleaseConfig,
    existing: &[ReleaseRecord],
    deadline_s: u64,
    at: u64,
) -> Result<ReleaseRecord, sqlx::Error> {
    let rec = ReleaseRecord {
        app: app.clone(),
        number: existing.first().map_or(1, |r| r.number + 1),
        config,
        status: if existing.is_empty() {
            ReleaseStatus::Active
        } else {
            ReleaseStatus::Rolling
        },
        reason: None,
        deadline_at: at + deadline_s,
        created_at: at,
        updated_at: at,
    };
    sqlx::query(
        "UPDATE releases SET status = 'superseded', updated_at = ? WHERE app = ? AND status = 'rolling'",
    )
    .bind(i(at))
    .bind(app.as_str())
    .execute(&mut *c)
    .await?;
    insert_release(c, &rec).await?;
    Ok(rec)
}

/// After an app is deleted: stop its instances, forget its releases and status.
pub(crate) async fn forget_app(
    c: &mut SqliteConnection,
    app: &Name,
    at: u64,
) -> Result<(), sqlx::Error> {
    let live = worker_rows::instances(c, Which::OfApp(app.as_str())).await?;
    let nodes: BTreeSet<&str> = live
        .iter()
        .filter(|r| r.desired == crate::Desired::Run)
        .map(|r| r.node.as_str())
        .collect();
    bump_generations(c, &nodes).await?;
    sqlx::query(
        "UPDATE instances SET desired = 'stop', detail = 'app deleted', updated_at = ? \
         WHERE app = ? AND desired = 'run'",
    )
    .bind(i(at))
    .bind(app.as_str())
    .execute(&mut *c)
    .await?;
    prune_stopped(c, &BTreeSet::from([app.to_string()])).await?;
    for sql in [
        "DELETE FROM releases WHERE app = ?",
        "DELETE FROM app_status WHERE app = ?",
    ] {
        sqlx::query(sql).bind(app.as_str()).execute(&mut *c).await?;
    }
    Ok(())
}

async fn bump_generations(
    c: &mut SqliteConnection,
    nodes: &BTreeSet<&str>,
) -> Result<(), sqlx::Error> {
    let names: Vec<&str> = nodes.iter().copied().collect();
    for chunk in names.chunks(ROWS_PER_STATEMENT) {
        let mut update =
            sqlx::QueryBuilder::new("UPDATE nodes SET generation = generation + 1 WHERE name IN (");
        let mut list = update.separated(", ");
        for n in chunk {
            list.push_bind(*n);
        }
        update.push(")");
        update.build().execute(&mut *c).await?;
    }
    Ok(())
}

/// Stopped instances kept per app, newest first, for `apps instances --all` and debugging.
const KEEP_STOPPED: i64 = 100;

/// Forgets all but the newest stopped instances of `apps` beyond that many.
async fn prune_stopped(
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

/// Rows per multi-row statement: well under SQLite's limit of 32,766 bound values.
const ROWS_PER_STATEMENT: usize = 500;

/// `Command::Deploy`.
pub(crate) async fn deploy(
    c: &mut SqliteConnection,
    app: &Name,
    image: &str,
    deadline_s: u64,
    at: u64,
) -> Result<CommandResult, sqlx::Error> {
    let Some(mut rec) = rows::app(c, app.as_str()).await? else {
        return Ok(Err(Refusal::not_found("app", app)));
    };
    rec.spec.image = image.to_string();
    rec.version += 1;
    rec.updated_at = at;
    sqlx::query("UPDATE apps SET image = ?, version = ?, updated_at = ? WHERE name = ?")
        .bind(image)
        .bind(i(rec.version))
        .bind(i(at))
        .bind(app.as_str())
        .execute(&mut *c)
        .await?;
    // A deploy of what already runs still makes a release: the user asked for a rollout.
    let existing = worker_rows::releases(c, Some(app.as_str())).await?;
    let config = ReleaseConfig::of(&rec.spec);
    let release = new_release(c, app, config, &existing, deadline_s, at).await?;
    Ok(Ok(Applied::Release(release)))
}

/// `Command::Schedule`.
pub(crate) async fn schedule(
    c: &mut SqliteConnection,
    round: &Schedule,
    at: u64,
    t: &mut Touched,
) -> Result<CommandResult, sqlx::Error> {
    if let Some(refusal) = check_round(c, round).await? {
        return Ok(Err(refusal));
    }
    let mut touched: BTreeSet<String> = BTreeSet::new();
    // Multi-row statements: a round may hold hundreds of placements and audit entries.
    for chunk in round.place.chunks(ROWS_PER_STATEMENT) {
        let mut insert = sqlx::QueryBuilder::new(
            "INSERT INTO instances (id, app, release, node, desired, state, created_at, updated_at) ",
        );
        insert.push_values(chunk, |mut row, p| {
            row.push_bind(&p.id)
                .push_bind(p.app.as_str())
                .push_bind(i(p.release))
                .push_bind(p.node.as_str())
                .push_bind("run")
                .push_bind(InstanceState::Starting.as_str())
                .push_bind(i(at))
                .push_bind(i(at));
        });
        insert.build().execute(&mut *c).await?;
        touched.extend(chunk.iter().map(|p| p.node.to_string()));
    }
    for p in &round.place {
        t.app(&p.app);
    }
    let mut stopped_apps: BTreeSet<String> = BTreeSet::new();
    for s in &round.stop {
        let row: Option<(String, String)> = sqlx::query_as(
            "UPDATE instances SET desired = 'stop', detail = ?, updated_at = ? \
             WHERE id = ? AND desired = 'run' RETURNING node, app",
        )
        .bind(&s.reason)
        .bind(i(at))
        .bind(&s.id)
        .fetch_optional(&mut *c)
        .await?;
        if let Some((node, app)) = row {
            touched.insert(node);
            t.app_str(&app);
            stopped_apps.insert(app);
        }
    }
    let touched: BTreeSet<&str> = touched.iter().map(String::as_str).collect();
    bump_generations(c, &touched).await?;
    prune_stopped(c, &stopped_apps).await?;
    for r in &round.releases {
        t.app(&r.app);
        update_release(c, &r.app, r.number, r.status, r.reason.as_deref(), at).await?;
    }
    for u in &round.unplaced {
        if u.unplaced.is_empty() {
            sqlx::query("DELETE FROM app_status WHERE app = ?")
                .bind(u.app.as_str())
                .execute(&mut *c)
                .await?;
        } else {
            sqlx::query("INSERT OR REPLACE INTO app_status (app, unplaced) VALUES (?, ?)")
                .bind(u.app.as_str())
                .bind(to_json(&u.unplaced))
                .execute(&mut *c)
                .await?;
        }
    }
    for chunk in round.audit.chunks(ROWS_PER_STATEMENT) {
        insert_audit(c, chunk).await?;
    }
    Ok(Ok(Applied::Done))
}

/// Refuses a round that would place an instance anywhere its app's policy does not allow, on
/// a node that is not ready, or of an app or release that is gone.
async fn check_round(
    c: &mut SqliteConnection,
    round: &Schedule,
) -> Result<Option<Refusal>, sqlx::Error> {
    if round.place.is_empty() {
        return Ok(None);
    }
    let catalog = rows::catalog(c).await?;
    let countries: BTreeMap<Name, meridian_core::CountryCode> = rows::regions(c)
        .await?
        .into_iter()
        .map(|r| (r.region.name, r.region.country))
        .collect();
    let mut apps: BTreeMap<Name, Option<AppRecord>> = BTreeMap::new();
    let named: BTreeSet<&str> = round.place.iter().map(|p| p.node.as_str()).collect();
    let named: Vec<&str> = named.into_iter().collect();
    let nodes: BTreeMap<Name, NodeRecord> = worker_rows::nodes_named(c, &named)
        .await?
        .into_iter()
        .map(|n| (n.name.clone(), n))
        .collect();
    let mut live_releases: BTreeSet<(Name, u64)> = BTreeSet::new();
    for p in &round.place {
        let conflict = |message: String| Ok(Some(Refusal::Conflict { message }));
        if !apps.contains_key(&p.app) {
            apps.insert(p.app.clone(), rows::app(c, p.app.as_str()).await?);
        }
        let (Some(Some(app)), Some(node)) = (apps.get(&p.app), nodes.get(&p.node)) else {
            return conflict(format!("app {} or node {} is gone", p.app, p.node));
        };
        if node.status != NodeStatus::Ready {
            return conflict(format!("node {} is {}", node.name, node.status.as_str()));
        }
        let Some(country) = countries.get(&node.region).copied() else {
            return conflict(format!("region {} is gone", node.region));
        };
        let pinned_ok = app
            .spec
            .regions
            .as_ref()
            .is_none_or(|r| r.contains(&node.region));
        if !pinned_ok || !catalog.allows(&app.spec.residency, country) {
            return conflict(format!(
                "placing {} on {} in {} ({country}) is outside its policy",
                p.app, node.name, node.region
            ));
        }
        if live_releases.contains(&(p.app.clone(), p.release)) {
            continue;
        }
        let release = worker_rows::release(c, p.app.as_str(), p.release).await?;
        if !release
            .is_some_and(|r| matches!(r.status, ReleaseStatus::Active | ReleaseStatus::Rolling))
        {
            return conflict(format!("release {} of {} is not live", p.release, p.app));
        }
        live_releases.insert((p.app.clone(), p.release));
    }
    Ok(None)
}

async fn update_release(
    c: &mut SqliteConnection,
    app: &Name,
    number: u64,
    status: ReleaseStatus,
    reason: Option<&str>,
    at: u64,
) -> Result<(), sqlx::Error> {
    let Some(release) = worker_rows::release(c, app.as_str(), number).await? else {
        return Ok(());
    };
    if status == ReleaseStatus::Active {
        sqlx::query(
            "UPDATE releases SET status = 'superseded', updated_at = ? \
             WHERE app = ? AND number != ? AND status IN ('active', 'rolling')",
        )
        .bind(i(at))
        .bind(app.as_str())
        .bind(i(number))
        .execute(&mut *c)
        .await?;
    }
    sqlx::query(
        "UPDATE releases SET status = ?, reason = ?, updated_at = ? WHERE app = ? AND number = ?",
    )
    .bind(status.as_str())
    .bind(reason)
    .bind(i(at))
    .bind(app.as_str())
    .bind(i(number))
    .execute(&mut *c)
    .await?;
    if status == ReleaseStatus::Halted {
        // The app shows what still serves, not the release that failed.
        let serving = worker_rows::releases(c, Some(app.as_str()))
            .await?
            .into_iter()
            .find(|r| r.status == ReleaseStatus::Active);
        if let (Some(serving), Some(mut rec)) = (serving, rows::app(c, app.as_str()).await?) {
            if ReleaseConfig::of(&rec.spec) == release.config {
                serving.config.apply_to(&mut rec.spec);
                sqlx::query(
                    "UPDATE apps SET image = ?, port = ?, env = ?, health = ?, cpu_millis = ?, \
                     memory_mb = ?, version = version + 1, updated_at = ? WHERE name = ?",
                )
                .bind(&rec.spec.image)
                .bind(i64::from(rec.spec.port))
                .bind(to_json(&rec.spec.env))
                .bind(rec.spec.health.as_ref().map(to_json))
                .bind(i64::from(rec.spec.cpu_millis))
                .bind(i64::from(rec.spec.memory_mb))
                .bind(i(at))
                .bind(app.as_str())
                .execute(&mut *c)
                .await?;
            }
        }
    }
    Ok(())
}

async fn insert_audit(c: &mut SqliteConnection, rows: &[AuditRecord]) -> Result<(), sqlx::Error> {
    let mut insert = sqlx::QueryBuilder::new(
        "INSERT INTO audit (at, app, kind, instance, node, region, country, policy, detail) ",
    );
    insert.push_values(rows, |mut row, a| {
        row.push_bind(i(a.at))
            .push_bind(a.app.as_str())
            .push_bind(&a.kind)
            .push_bind(&a.instance)
            .push_bind(&a.node)
            .push_bind(&a.region)
            .push_bind(&a.country)
            .push_bind(&a.policy)
            .push_bind(&a.detail);
    });
    insert.build().execute(&mut *c).await?;
    Ok(())
}

/// `Command::RegisterImage`.
pub(crate) async fn register_image(
    c: &mut SqliteConnection,
    name: &str,
    digest: &str,
    size: u64,
    holder: u64,
    at: u64,
) -> Result<CommandResult, sqlx::Error> {
    let old = worker_rows::image(c, name).await?;
    let mut holders = match old {
        Some(o) if o.digest == digest => o.holders,
        _ => Vec::new(),
    };
    if !holders.contains(&holder) {
        holders.push(holder);
    }
    let rec = ImageRecord {
        name: name.to_string(),
        digest: digest.to_string(),
        size,
        holders,
        pushed_at: at,
    };
    sqlx::query(
        "INSERT OR REPLACE INTO images (name, digest, size, holders, pushed_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&rec.name)
    .bind(&rec.digest)
    .bind(i(rec.size))
    .bind(to_json(&rec.holders))
    .bind(i(rec.pushed_at))
    .execute(&mut *c)
    .await?;
    Ok(Ok(Applied::Image(rec)))
}
