//! Scheduling rounds: the round the leader commits, checked against the state before it lands, and each app's unplaced record.

use std::collections::{BTreeMap, BTreeSet};

use meridian_core::schedule::Unplaced;
use meridian_core::{InstanceState, Name, NodeStatus};
use serde::{Deserialize, Serialize};
use sqlx::{Row, SqliteConnection};

use crate::apps::AppPlacement;
use crate::audit::{insert_audit, AuditRecord};
use crate::changes::Touched;
use crate::command::{Applied, CommandResult, Refusal};
use crate::instances::{prune_stopped, NewInstance, StopInstance};
use crate::nodes::{bump_generations, NodeRecord};
use crate::releases::{update_release, ReleaseUpdate};
use crate::sql::{
    fetch_in, i, json, json_list, keep_prepared, push_rows, to_json, ROWS_PER_STATEMENT,
};

/// The unplaced instances of one app, replacing what was recorded before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppUnplaced {
    /// The app.
    pub app: Name,
    /// What is missing; empty when everything is placed.
    pub unplaced: Vec<Unplaced>,
}

/// One scheduling round of the leader's reconcile loop, committed as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Schedule {
    /// New instances.
    pub place: Vec<NewInstance>,
    /// Instances to stop.
    pub stop: Vec<StopInstance>,
    /// Release status changes.
    pub releases: Vec<ReleaseUpdate>,
    /// Unplaced instances per app, for apps whose record changed.
    pub unplaced: Vec<AppUnplaced>,
    /// Audit entries.
    pub audit: Vec<AuditRecord>,
    /// The applied index of the state the round was planned from.
    #[serde(default)]
    pub planned_at: u64,
}

impl Schedule {
    /// Whether the round changes nothing.
    pub fn is_empty(&self) -> bool {
        self.place.is_empty()
            && self.stop.is_empty()
            && self.releases.is_empty()
            && self.unplaced.is_empty()
            && self.audit.is_empty()
    }
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
    if !round.place.is_empty() {
        let mut insert = sqlx::QueryBuilder::new("");
        push_rows(
            &mut insert,
            "INSERT OR FAIL INTO instances (id, app, release, node, desired, state, created_at, \
             updated_at)",
            8,
            &round.place,
            |row, p| {
                row.push_bind(&p.id)
                    .push_bind(p.app.as_str())
                    .push_bind(i(p.release))
                    .push_bind(p.node.as_str())
                    .push_bind("run")
                    .push_bind(InstanceState::Starting.as_str())
                    .push_bind(i(at))
                    .push_bind(i(at));
            },
        );
        insert
            .build()
            .persistent(keep_prepared(round.place.len()))
            .execute(&mut *c)
            .await?;
        touched.extend(round.place.iter().map(|p| p.node.to_string()));
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
    // The last word on each app counts.
    let status: BTreeMap<&str, &AppUnplaced> =
        round.unplaced.iter().map(|u| (u.app.as_str(), u)).collect();
    let unplaced: Vec<&AppUnplaced> = status
        .values()
        .filter(|u| !u.unplaced.is_empty())
        .copied()
        .collect();
    // Every app in the round loses its old status row; those still unplaced get a new one.
    // (Not `INSERT OR REPLACE`: a multi-row statement that may abort half-way makes SQLite
    // copy each page it changes aside first, to undo just that statement.)
    let apps: Vec<&str> = status.keys().copied().collect();
    if !apps.is_empty() {
        sqlx::query(
            "DELETE FROM app_status WHERE app_id IN \
             (SELECT id FROM apps WHERE name IN (SELECT value FROM json_each(?)))",
        )
        .bind(json_list(&apps))
        .execute(&mut *c)
        .await?;
    }
    for chunk in unplaced.chunks(ROWS_PER_STATEMENT) {
        // Only for apps that still exist: a round planned before an app was deleted may be
        // committed after it.
        let mut insert = sqlx::QueryBuilder::new(
            "INSERT OR FAIL INTO app_status (app_id, app, unplaced) \
             SELECT apps.id, v.column1, v.column2 FROM (",
        );
        insert.push_values(chunk, |mut row, u| {
            row.push_bind(u.app.as_str())
                .push_bind(to_json(&u.unplaced));
        });
        insert.push(") AS v JOIN apps ON apps.name = v.column1");
        insert.build().persistent(false).execute(&mut *c).await?;
    }
    insert_audit(c, &round.audit).await?;
    Ok(Ok(Applied::Done))
}

/// Refuses a round that would place an instance anywhere its app's policy does not allow, on
/// a node that is not ready, or of an app or release that is gone.
pub(crate) async fn check_round(
    c: &mut SqliteConnection,
    round: &Schedule,
) -> Result<Option<Refusal>, sqlx::Error> {
    if round.place.is_empty() {
        return Ok(None);
    }
    let catalog = crate::regions::catalog(c).await?;
    let countries: BTreeMap<Name, meridian_core::CountryCode> = crate::regions::regions(c)
        .await?
        .into_iter()
        .map(|r| (r.region.name, r.region.country))
        .collect();
    let named = distinct(round.place.iter().map(|p| p.node.as_str()));
    let nodes: BTreeMap<Name, NodeRecord> = crate::nodes::nodes_named(c, &named)
        .await?
        .into_iter()
        .map(|n| (n.name.clone(), n))
        .collect();
    let app_names = distinct(round.place.iter().map(|p| p.app.as_str()));
    let apps: BTreeMap<Name, AppPlacement> = crate::apps::placements_of(c, &app_names)
        .await?
        .into_iter()
        .map(|a| (a.name.clone(), a))
        .collect();
    let live_releases: BTreeSet<(Name, u64)> = crate::releases::live_states_of(c, &app_names)
        .await?
        .into_iter()
        .map(|r| (r.app, r.number))
        .collect();
    for p in &round.place {
        let conflict = |message: String| Ok(Some(Refusal::Conflict { message }));
        let (Some(app), Some(node)) = (apps.get(&p.app), nodes.get(&p.node)) else {
            return conflict(format!("app {} or node {} is gone", p.app, p.node));
        };
        if node.status != NodeStatus::Ready {
            return conflict(format!("node {} is {}", node.name, node.status.as_str()));
        }
        let Some(country) = countries.get(&node.region).copied() else {
            return conflict(format!("region {} is gone", node.region));
        };
        let pinned_ok = app
            .regions
            .as_ref()
            .is_none_or(|r| r.contains(&node.region));
        if !pinned_ok || !catalog.allows(&app.residency, country) {
            return conflict(format!(
                "placing {} on {} in {} ({country}) is outside its policy",
                p.app, node.name, node.region
            ));
        }
        if !live_releases.contains(&(p.app.clone(), p.release)) {
            return conflict(format!("release {} of {} is not live", p.release, p.app));
        }
    }
    Ok(None)
}

/// Each name once, in order.
fn distinct<'a>(names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    names.collect::<BTreeSet<_>>().into_iter().collect()
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

// A reconcile round's read; `query_plans` checks SQLite's plan for it.
pub(crate) const UNPLACED_OF: (&str, &str) = (
    "SELECT app, unplaced FROM app_status WHERE app_id IN (SELECT id FROM apps WHERE name IN (",
    "))",
);

/// What could not be placed, of these apps.
pub async fn unplaced_of(
    c: &mut SqliteConnection,
    apps: &[&str],
) -> Result<Vec<(String, Vec<Unplaced>)>, sqlx::Error> {
    let rows = fetch_in(c, UNPLACED_OF.0, apps, UNPLACED_OF.1).await?;
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
