//! Releases: what each release of an app runs, its rows, deploys, and status changes (promote, halt, supersede).

use std::collections::BTreeMap;

use meridian_core::{AppSpec, HealthCheck, Name, ReleaseStatus};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use crate::apps::AppRecord;
use crate::command::{Applied, CommandResult, Refusal};
use crate::sql::{corrupt, fetch_in, i, json, name, push_rows_of_apps, to_json, u};

/// The id of the app named by the next bound value, as a SQL expression: releases are keyed
/// by app id (migration 0007 says why), while commands and the API name apps.
macro_rules! app_id {
    () => {
        "(SELECT id FROM apps WHERE name = ?)"
    };
}

/// What every instance of one release runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseConfig {
    /// Image reference.
    pub image: String,
    /// Container port.
    pub port: u16,
    /// Environment.
    pub env: BTreeMap<String, String>,
    /// Health check.
    pub health: Option<HealthCheck>,
    /// CPU per instance.
    pub cpu_millis: u32,
    /// Memory per instance.
    pub memory_mb: u32,
}

impl ReleaseConfig {
    /// The runtime part of an app spec.
    pub fn of(spec: &AppSpec) -> Self {
        Self {
            image: spec.image.clone(),
            port: spec.port,
            env: spec.env.clone(),
            health: spec.health.clone(),
            cpu_millis: spec.cpu_millis,
            memory_mb: spec.memory_mb,
        }
    }

    /// Writes this config back into `spec`.
    pub fn apply_to(&self, spec: &mut AppSpec) {
        spec.image = self.image.clone();
        spec.port = self.port;
        spec.env = self.env.clone();
        spec.health = self.health.clone();
        spec.cpu_millis = self.cpu_millis;
        spec.memory_mb = self.memory_mb;
    }
}

/// A release as the state keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRecord {
    /// The app.
    pub app: Name,
    /// Its number, from 1.
    pub number: u64,
    /// What its instances run.
    pub config: ReleaseConfig,
    /// Status.
    pub status: ReleaseStatus,
    /// Why it halted.
    pub reason: Option<String>,
    /// Unix seconds by which a rolling release must be fully healthy.
    pub deadline_at: u64,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds.
    pub updated_at: u64,
}

/// A release status change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseUpdate {
    /// The app.
    pub app: Name,
    /// The release.
    pub number: u64,
    /// Its new status: `active` supersedes the other active and rolling releases; `halted`
    /// restores the app's config from the serving release.
    pub status: ReleaseStatus,
    /// Why.
    pub reason: Option<String>,
}

pub(crate) fn release_row(r: &SqliteRow) -> Result<ReleaseRecord, sqlx::Error> {
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

/// One release.
pub async fn release(
    c: &mut SqliteConnection,
    app: &str,
    number: u64,
) -> Result<Option<ReleaseRecord>, sqlx::Error> {
    let row = sqlx::query(concat!(
        "SELECT * FROM releases WHERE app_id = ",
        app_id!(),
        " AND number = ?"
    ))
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
            sqlx::query(concat!(
                "SELECT * FROM releases WHERE app_id = ",
                app_id!(),
                " ORDER BY number DESC"
            ))
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

/// What a rollout reads of a release: no environment or health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseState {
    /// The app.
    pub app: Name,
    /// Its number.
    pub number: u64,
    /// Status.
    pub status: ReleaseStatus,
    /// Unix seconds by which a rolling release must be fully healthy.
    pub deadline_at: u64,
    /// The image its instances run.
    pub image: String,
}

// The queries a reconcile round runs; `query_plans` checks SQLite's plan for each.
pub(crate) const LIVE_STATES_OF: (&str, &str) = (
    "SELECT app, number, status, deadline_at, json_extract(config, '$.image') AS image \
     FROM releases WHERE status IN ('rolling', 'active') AND app_id IN \
     (SELECT id FROM apps WHERE name IN (",
    ")) ORDER BY app, number DESC",
);
pub(crate) const ROLLING_PAST_DEADLINE: &str =
    "SELECT app FROM releases WHERE status = 'rolling' AND deadline_at < ?";

/// The releases of these apps that are rolling or active, newest first within each app.
pub async fn live_states_of(
    c: &mut SqliteConnection,
    apps: &[&str],
) -> Result<Vec<ReleaseState>, sqlx::Error> {
    let rows = fetch_in(c, LIVE_STATES_OF.0, apps, LIVE_STATES_OF.1).await?;
    rows.iter()
        .map(|r| {
            let status: String = r.try_get("status")?;
            Ok(ReleaseState {
                app: name("release app", r.try_get("app")?)?,
                number: u(r.try_get("number")?),
                status: ReleaseStatus::parse(&status)
                    .ok_or_else(|| corrupt("release status", &status))?,
                deadline_at: u(r.try_get("deadline_at")?),
                image: r.try_get::<Option<String>, _>("image")?.unwrap_or_default(),
            })
        })
        .collect()
}

/// Apps with a release still rolling out whose deadline is before `at`.
pub async fn rolling_past_deadline(
    c: &mut SqliteConnection,
    at: u64,
) -> Result<Vec<String>, sqlx::Error> {
    // Through the partial index `releases_rolling`; asking SQLite for DISTINCT ... ORDER BY
    // app instead makes it walk every release in app order.
    let apps: Vec<String> = sqlx::query_scalar(ROLLING_PAST_DEADLINE)
        .bind(i(at))
        .fetch_all(c)
        .await?;
    let apps: std::collections::BTreeSet<String> = apps.into_iter().collect();
    Ok(apps.into_iter().collect())
}

/// Adds release `number` of an app.
pub(crate) async fn insert_release(
    c: &mut SqliteConnection,
    r: &ReleaseRecord,
) -> Result<(), sqlx::Error> {
    let mut insert = sqlx::QueryBuilder::new("");
    push_insert_releases(&mut insert, std::slice::from_ref(r));
    insert.build().execute(&mut *c).await?;
    Ok(())
}

/// Appends to `q` the statements that add these releases, each ending in `;`.
pub(crate) fn push_insert_releases<'a>(
    q: &mut sqlx::QueryBuilder<'a, sqlx::Sqlite>,
    records: &'a [ReleaseRecord],
) {
    push_rows_of_apps(
        q,
        "INSERT OR FAIL INTO releases (app, app_id, number, config, status, reason, \
         deadline_at, created_at, updated_at)",
        8,
        records,
        |row, r| {
            row.push_bind(r.app.as_str())
                .push_bind(i(r.number))
                .push_bind(to_json(&r.config))
                .push_bind(r.status.as_str())
                .push_bind(r.reason.as_deref())
                .push_bind(i(r.deadline_at))
                .push_bind(i(r.created_at))
                .push_bind(i(r.updated_at));
        },
    );
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
    let existing = releases(c, Some(app.spec.name.as_str())).await?;
    let latest_live = existing
        .iter()
        .find(|r| matches!(r.status, ReleaseStatus::Active | ReleaseStatus::Rolling));
    if latest_live.is_some_and(|r| r.config == config) {
        return Ok(None);
    }
    let rec = new_release(c, &app.spec.name, config, &existing, deadline_s, at).await?;
    Ok(Some(rec))
}

/// A new app's first release, serving at once, for the caller to write. Deleting an app
/// forgets its releases, so a new app has none and its first release needs no reading.
pub(crate) fn first_release(app: &AppRecord, at: u64) -> ReleaseRecord {
    ReleaseRecord {
        app: app.spec.name.clone(),
        number: 1,
        config: ReleaseConfig::of(&app.spec),
        status: ReleaseStatus::Active,
        reason: None,
        deadline_at: at + DEFAULT_DEADLINE_S,
        created_at: at,
        updated_at: at,
    }
}

/// Writes the next release of an app after `existing` (newest first): serving at once when it
/// is the first, else rolling, superseding one still rolling out.
pub(crate) async fn new_release(
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
    sqlx::query(concat!(
        "UPDATE releases SET status = 'superseded', updated_at = ? WHERE app_id = ",
        app_id!(),
        " AND status = 'rolling'"
    ))
    .bind(i(at))
    .bind(app.as_str())
    .execute(&mut *c)
    .await?;
    insert_release(c, &rec).await?;
    Ok(rec)
}

/// `Command::Deploy`.
pub(crate) async fn deploy(
    c: &mut SqliteConnection,
    app: &Name,
    image: &str,
    deadline_s: u64,
    at: u64,
) -> Result<CommandResult, sqlx::Error> {
    let Some(mut rec) = crate::apps::app(c, app.as_str()).await? else {
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
    let existing = releases(c, Some(app.as_str())).await?;
    let config = ReleaseConfig::of(&rec.spec);
    let release = new_release(c, app, config, &existing, deadline_s, at).await?;
    Ok(Ok(Applied::Release(release)))
}

pub(crate) async fn update_release(
    c: &mut SqliteConnection,
    app: &Name,
    number: u64,
    status: ReleaseStatus,
    reason: Option<&str>,
    at: u64,
) -> Result<(), sqlx::Error> {
    let Some(release) = release(c, app.as_str(), number).await? else {
        return Ok(());
    };
    if status == ReleaseStatus::Active {
        sqlx::query(concat!(
            "UPDATE releases SET status = 'superseded', updated_at = ? WHERE app_id = ",
            app_id!(),
            " AND number != ? AND status IN ('active', 'rolling')"
        ))
        .bind(i(at))
        .bind(app.as_str())
        .bind(i(number))
        .execute(&mut *c)
        .await?;
    }
    sqlx::query(concat!(
        "UPDATE releases SET status = ?, reason = ?, updated_at = ? WHERE app_id = ",
        app_id!(),
        " AND number = ?"
    ))
    .bind(status.as_str())
    .bind(reason)
    .bind(i(at))
    .bind(app.as_str())
    .bind(i(number))
    .execute(&mut *c)
    .await?;
    if status == ReleaseStatus::Halted {
        // The app shows what still serves, not the release that failed.
        let serving = releases(c, Some(app.as_str()))
            .await?
            .into_iter()
            .find(|r| r.status == ReleaseStatus::Active);
        if let (Some(serving), Some(mut rec)) = (serving, crate::apps::app(c, app.as_str()).await?)
        {
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

/// Releases beyond each app's newest `keep` that neither serve nor roll out, at most `limit`:
/// (app, number).
pub async fn beyond_newest(
    c: &mut SqliteConnection,
    keep: u32,
    limit: u32,
) -> Result<Vec<(String, u64)>, sqlx::Error> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT r.app, r.number FROM releases r \
         WHERE r.status NOT IN ('active', 'rolling') AND r.number <= \
         (SELECT MAX(n.number) FROM releases n WHERE n.app_id = r.app_id) - ? \
         ORDER BY r.app_id, r.number LIMIT ?",
    )
    .bind(i64::from(keep))
    .bind(i64::from(limit))
    .fetch_all(c)
    .await?;
    Ok(rows.into_iter().map(|(a, n)| (a, u(n))).collect())
}

/// Forgets release `number` of `app` unless it serves or rolls out. Answers whether it went.
pub(crate) async fn forget(
    c: &mut SqliteConnection,
    app: &Name,
    number: u64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(concat!(
        "DELETE FROM releases WHERE app_id = ",
        app_id!(),
        " AND number = ? AND status NOT IN ('active', 'rolling')"
    ))
    .bind(app.as_str())
    .bind(i(number))
    .execute(c)
    .await?;
    Ok(done.rows_affected() > 0)
}
