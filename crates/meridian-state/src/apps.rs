//! Apps: the record, its rows, custom domains, and creating, changing and deleting apps.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use meridian_core::residency::policy_text;
use meridian_core::{AppSpec, CountryCode, Jurisdiction, Name, ResidencySource};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use crate::audit::AuditRecord;
use crate::command::{Applied, CommandResult, Refusal};
use crate::instances::{prune_stopped, Which};
use crate::nodes::bump_generations;
use crate::sql::{corrupt, fetch_in, i, json, name, push_rows, small, to_json, u, Separated};

/// An app with its bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppRecord {
    /// The app.
    pub spec: AppSpec,
    /// Bumped on every change.
    pub version: u64,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds.
    pub updated_at: u64,
}

pub(crate) fn app_row(r: &SqliteRow) -> Result<AppRecord, sqlx::Error> {
    let regions: Option<String> = r.try_get("regions")?;
    let health: Option<String> = r.try_get("health")?;
    let port: i64 = r.try_get("port")?;
    let replicas: i64 = r.try_get("replicas")?;
    Ok(AppRecord {
        spec: AppSpec {
            name: name("app name", r.try_get("name")?)?,
            image: r.try_get("image")?,
            replicas: u32::try_from(replicas).map_err(|e| corrupt("app replicas", e))?,
            port: u16::try_from(port).map_err(|e| corrupt("app port", e))?,
            residency: json("app residency", r.try_get("residency")?)?,
            regions: regions.map(|s| json("app regions", &s)).transpose()?,
            env: json("app env", r.try_get("env")?)?,
            health: health.map(|s| json("app health", &s)).transpose()?,
            cpu_millis: small("app cpu_millis", r.try_get("cpu_millis")?)?,
            memory_mb: small("app memory_mb", r.try_get("memory_mb")?)?,
            origin_bound: json("app origin_bound", r.try_get("origin_bound")?)?,
            domains: json("app domains", r.try_get("domains")?)?,
        },
        version: u(r.try_get("version")?),
        created_at: u(r.try_get("created_at")?),
        updated_at: u(r.try_get("updated_at")?),
    })
}

/// One app by name.
pub async fn app(c: &mut SqliteConnection, n: &str) -> Result<Option<AppRecord>, sqlx::Error> {
    let row = sqlx::query("SELECT * FROM apps WHERE name = ?")
        .bind(n)
        .fetch_optional(c)
        .await?;
    row.as_ref().map(app_row).transpose()
}

/// Every app, by name.
pub async fn apps(c: &mut SqliteConnection) -> Result<Vec<AppRecord>, sqlx::Error> {
    let rows = sqlx::query("SELECT * FROM apps ORDER BY name")
        .fetch_all(c)
        .await?;
    rows.iter().map(app_row).collect()
}

/// What scheduling reads of an app: its image, size and where it may run — not its
/// environment, health check or domains, which the scheduler never looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPlacement {
    /// Name.
    pub name: Name,
    /// Image of its current spec.
    pub image: String,
    /// Instances wanted.
    pub replicas: u32,
    /// Jurisdictions it may run in; empty means anywhere.
    pub residency: Vec<Jurisdiction>,
    /// Regions it is pinned to, if any.
    pub regions: Option<Vec<Name>>,
    /// CPU per instance.
    pub cpu_millis: u32,
    /// Memory per instance.
    pub memory_mb: u32,
}

// A reconcile round's read; `query_plans` checks SQLite's plan for it.
pub(crate) const PLACEMENTS_OF: (&str, &str) = (
    "SELECT name, image, replicas, residency, regions, cpu_millis, memory_mb FROM apps \
     WHERE name IN (",
    ")",
);

/// What scheduling reads of the apps with these names (those that exist).
pub async fn placements_of(
    c: &mut SqliteConnection,
    names: &[&str],
) -> Result<Vec<AppPlacement>, sqlx::Error> {
    let rows = fetch_in(c, PLACEMENTS_OF.0, names, PLACEMENTS_OF.1).await?;
    rows.iter()
        .map(|r| {
            let regions: Option<String> = r.try_get("regions")?;
            Ok(AppPlacement {
                name: name("app name", r.try_get("name")?)?,
                image: r.try_get("image")?,
                replicas: small("app replicas", r.try_get("replicas")?)?,
                residency: json("app residency", r.try_get("residency")?)?,
                regions: regions.map(|s| json("app regions", &s)).transpose()?,
                cpu_millis: small("app cpu_millis", r.try_get("cpu_millis")?)?,
                memory_mb: small("app memory_mb", r.try_get("memory_mb")?)?,
            })
        })
        .collect()
}

/// Every app's name, in order.
pub async fn app_names(c: &mut SqliteConnection) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM apps ORDER BY name")
        .fetch_all(c)
        .await
}

/// Up to `limit` app names after `after` (from the first when `None`), in order.
pub async fn app_names_after(
    c: &mut SqliteConnection,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM apps WHERE name > ? ORDER BY name LIMIT ?")
        .bind(after.unwrap_or(""))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(c)
        .await
}

/// How `write_app` treats an existing row of the same name.
pub(crate) enum Write {
    /// Leave it and write nothing.
    Create,
    /// Replace it.
    Replace,
}

/// The columns of an app row, in the order [`push_app_row`] binds them.
const APP_COLUMNS: &str = "(cpu_millis, memory_mb, name, image, replicas, port, residency, \
     regions, env, health, origin_bound, domains, version, created_at, updated_at) ";

/// What replacing an app row sets: every column of [`APP_COLUMNS`] but the name, so the row
/// is updated in place and keeps its id, which other tables are keyed by.
static APP_UPSERT: LazyLock<String> = LazyLock::new(|| {
    let set: Vec<String> = APP_COLUMNS
        .trim()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .split(',')
        .map(str::trim)
        .filter(|c| *c != "name")
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    format!(" ON CONFLICT (name) DO UPDATE SET {}", set.join(", "))
});

/// Binds one app row's values, in the order of [`APP_COLUMNS`].
fn push_app_row<'a>(row: &mut Separated<'_, 'a>, rec: &'a AppRecord) {
    let s = &rec.spec;
    row.push_bind(i64::from(s.cpu_millis))
        .push_bind(i64::from(s.memory_mb))
        .push_bind(s.name.as_str())
        .push_bind(s.image.as_str())
        .push_bind(i64::from(s.replicas))
        .push_bind(i64::from(s.port))
        .push_bind(to_json(&s.residency))
        .push_bind(s.regions.as_ref().map(to_json))
        .push_bind(to_json(&s.env))
        .push_bind(s.health.as_ref().map(to_json))
        .push_bind(to_json(&s.origin_bound))
        .push_bind(to_json(&s.domains))
        .push_bind(i(rec.version))
        .push_bind(i(rec.created_at))
        .push_bind(i(rec.updated_at));
}

/// Writes an app row; answers whether a row was written.
pub(crate) async fn write_app(
    c: &mut SqliteConnection,
    rec: &AppRecord,
    how: Write,
) -> Result<bool, sqlx::Error> {
    let s = &rec.spec;
    let mut q = sqlx::QueryBuilder::new("INSERT INTO apps ");
    q.push(APP_COLUMNS);
    q.push_values([rec], |mut row, rec| push_app_row(&mut row, rec));
    q.push(match how {
        Write::Create => " ON CONFLICT (name) DO NOTHING",
        Write::Replace => APP_UPSERT.as_str(),
    });
    let done = q.build().execute(&mut *c).await?;
    let written = done.rows_affected() == 1;
    // A new app has no domain rows yet (deleting an app removes its rows), so creating one
    // writes only the domains it has.
    let fresh = matches!(how, Write::Create);
    if written && !(fresh && s.domains.is_empty()) {
        set_domains(c, &s.name, &s.domains).await?;
    }
    Ok(written)
}

/// Writes a run of creates holds back, to go in as a few multi-row statements instead of a
/// statement per create: creating apps is the hot path, and on a loaded server each
/// statement's round trip to SQLite's worker thread costs more than the row it writes.
#[derive(Debug, Default)]
pub(crate) struct HeldCreates {
    /// New apps whose rows are not written yet (none with custom domains, none whose name
    /// exists).
    apps: Vec<AppRecord>,
    /// First releases not written yet, of these apps and of apps already written.
    releases: Vec<crate::releases::ReleaseRecord>,
    /// Audit entries of these creates not written yet.
    audit: Vec<AuditRecord>,
    /// The cluster's default residency, once a create without a residency read it.
    default_residency: Option<Vec<Jurisdiction>>,
    /// Which of the names the run may create are taken, when known without asking the
    /// table: those that existed when the run began (read in one query) and those created
    /// since. `None` once a command other than a create has run, or when never read.
    taken: Option<BTreeSet<String>>,
}

impl HeldCreates {
    /// Reads which of `names` exist, so that creating them holds their rows back, and the
    /// cluster's default residency with them: one round trip to SQLite for both.
    pub(crate) async fn expect(
        &mut self,
        c: &mut SqliteConnection,
        names: &[&str],
    ) -> Result<(), sqlx::Error> {
        let rows = fetch_in(
            c,
            "SELECT 1 AS taken, name AS value FROM apps WHERE name IN (",
            names,
            ") UNION ALL SELECT 0, value FROM cluster_settings WHERE key = 'default_residency'",
        )
        .await?;
        let mut taken = BTreeSet::new();
        let mut default = None;
        for r in &rows {
            let value: String = r.try_get("value")?;
            if r.try_get::<bool, _>("taken")? {
                taken.insert(value);
            } else {
                default = Some(value);
            }
        }
        self.taken = Some(taken);
        self.default_residency = Some(crate::settings::parse_default_residency(
            default.as_deref(),
        )?);
        Ok(())
    }

    /// Assumes that none of the names the run may create is taken and that the cluster's
    /// default residency is `default`, instead of reading them. Creating a name that is
    /// taken then fails when the held-back rows are written, with a unique-constraint
    /// violation; the caller rolls back and applies again with [`HeldCreates::expect`].
    pub(crate) fn assume(&mut self, default: Vec<Jurisdiction>) {
        self.taken = Some(BTreeSet::new());
        self.default_residency = Some(default);
    }

    /// The default residency this run knows (read or assumed), until a command that might
    /// change it ends the run.
    pub(crate) fn known_default_residency(&self) -> Option<&[Jurisdiction]> {
        self.default_residency.as_deref()
    }

    /// The cluster's default residency, read once per run of creates (a command that might
    /// change it ends the run).
    async fn default_residency(
        &mut self,
        c: &mut SqliteConnection,
    ) -> Result<Vec<Jurisdiction>, sqlx::Error> {
        if let Some(d) = &self.default_residency {
            return Ok(d.clone());
        }
        let d = crate::settings::default_residency(c).await?;
        self.default_residency = Some(d.clone());
        Ok(d)
    }

    /// Rows of the largest statement that writes what is held back (see
    /// [`crate::sql::keep_prepared`]).
    pub(crate) fn most_rows(&self) -> usize {
        self.apps
            .len()
            .max(self.releases.len())
            .max(self.audit.len())
    }

    /// Writes what is held back; from here on, creates ask the tables.
    pub(crate) async fn write(&mut self, c: &mut SqliteConnection) -> Result<(), sqlx::Error> {
        self.taken = None;
        self.default_residency = None;
        if self.apps.is_empty() && self.releases.is_empty() && self.audit.is_empty() {
            return Ok(());
        }
        let mut q = sqlx::QueryBuilder::new("");
        self.push(&mut q);
        q.build()
            .persistent(crate::sql::keep_prepared(self.most_rows()))
            .execute(&mut *c)
            .await?;
        self.apps.clear();
        self.releases.clear();
        self.audit.clear();
        Ok(())
    }

    /// Appends to `q` the statements that write what is held back, each ending in `;`.
    ///
    /// `OR FAIL` here and in the other multi-row writes of an apply: a multi-row statement
    /// that may abort half-way makes SQLite copy every page it changes into a statement
    /// journal first, to undo just that statement, and that copying was a thirtieth of the
    /// cluster's CPU under load. Nothing needs it: a taken name makes the caller roll the
    /// whole transaction back, and any other failure stops the apply.
    pub(crate) fn push<'a>(&'a self, q: &mut sqlx::QueryBuilder<'a, sqlx::Sqlite>) {
        let insert = format!("INSERT OR FAIL INTO apps {APP_COLUMNS}");
        push_rows(q, &insert, 15, &self.apps, push_app_row);
        crate::releases::push_insert_releases(q, &self.releases);
        crate::audit::push_insert_audit(q, &self.audit);
    }
}

/// Makes `app_domains` hold exactly `domains` for `app`.
pub(crate) async fn set_domains(
    c: &mut SqliteConnection,
    app: &Name,
    domains: &[meridian_core::DomainName],
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM app_domains WHERE app = ?")
        .bind(app.as_str())
        .execute(&mut *c)
        .await?;
    for d in domains {
        sqlx::query("INSERT INTO app_domains (domain, app) VALUES (?, ?)")
            .bind(d.as_str())
            .bind(app.as_str())
            .execute(&mut *c)
            .await?;
    }
    Ok(())
}

/// Refuses custom domains another app holds or that lie under the apps domain (where
/// `<app>.<apps domain>` names apps).
pub(crate) async fn check_domains(
    c: &mut SqliteConnection,
    spec: &meridian_core::AppSpec,
) -> Result<Option<Refusal>, sqlx::Error> {
    if spec.domains.is_empty() {
        return Ok(None);
    }
    let apps_domain = crate::settings::apps_domain(c).await?;
    for (i, d) in spec.domains.iter().enumerate() {
        if d.is_within(&apps_domain) {
            return Ok(Some(Refusal::Invalid {
                field: format!("domains[{i}]"),
                message: format!(
                    "{d} lies under the apps domain {apps_domain}, where every app already has \
                     <name>.{apps_domain}"
                ),
            }));
        }
        let holder: Option<String> =
            sqlx::query_scalar("SELECT app FROM app_domains WHERE domain = ? AND app != ?")
                .bind(d.as_str())
                .bind(spec.name.as_str())
                .fetch_optional(&mut *c)
                .await?;
        if let Some(holder) = holder {
            return Ok(Some(Refusal::Conflict {
                message: format!("domain {d} is already attached to app {holder}"),
            }));
        }
    }
    Ok(None)
}

/// Refuses an app whose residency names an unknown group or whose pinned regions are missing
/// or outside its residency.
pub(crate) async fn check_places(
    c: &mut SqliteConnection,
    spec: &meridian_core::AppSpec,
) -> Result<Option<Refusal>, sqlx::Error> {
    // Only read what the check needs: most apps pin no region and name built-in groups.
    let catalog =
        crate::regions::catalog_for(c, spec.residency.iter().chain(&spec.origin_bound)).await?;
    let countries: BTreeMap<Name, CountryCode> = if spec.regions.is_some() {
        crate::regions::regions(c)
            .await?
            .into_iter()
            .map(|r| (r.region.name, r.region.country))
            .collect()
    } else {
        BTreeMap::new()
    };
    Ok(spec
        .check_places(&catalog, |n| countries.get(n).copied())
        .err()
        .map(|e| Refusal::Invalid {
            field: e.field,
            message: e.problem.to_string(),
        }))
}

/// After app `app` (whose id was `id`) is deleted: stop its instances, forget its releases
/// and status, and keep its id among the name's former ones, for its audit.
async fn forget_app(
    c: &mut SqliteConnection,
    app: &Name,
    id: i64,
    at: u64,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO deleted_apps (name, id, deleted_at) VALUES (?, ?, ?)")
        .bind(app.as_str())
        .bind(id)
        .bind(i(at))
        .execute(&mut *c)
        .await?;
    let live = crate::instances::instances(c, Which::OfApp(app.as_str())).await?;
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
        "DELETE FROM releases WHERE app_id = ?",
        "DELETE FROM app_status WHERE app_id = ?",
    ] {
        sqlx::query(sql).bind(id).execute(&mut *c).await?;
    }
    Ok(())
}

/// Refuses a spec whose places or domains the state does not allow.
async fn check_spec(
    c: &mut SqliteConnection,
    spec: &AppSpec,
) -> Result<Option<Refusal>, sqlx::Error> {
    if let Some(refusal) = check_places(c, spec).await? {
        return Ok(Some(refusal));
    }
    check_domains(c, spec).await
}

/// `Command::CreateApp`: the app, its first release, and an audit entry saying which
/// residency applies and where it came from. With `default_residency`, the app gets the
/// cluster's default residency.
///
/// The first release and the audit entry are held back in `held`, for the caller to write
/// before anything reads them; so is the app's row when `held` knows which names are taken
/// and the app has no custom domains (whose checks read the rows of other apps).
pub(crate) async fn create(
    c: &mut SqliteConnection,
    spec: &AppSpec,
    at: u64,
    default_residency: bool,
    held: &mut HeldCreates,
) -> Result<CommandResult, sqlx::Error> {
    let with_default;
    let spec = if default_residency {
        with_default = AppSpec {
            residency: held.default_residency(c).await?,
            ..spec.clone()
        };
        &with_default
    } else {
        spec
    };
    let source = ResidencySource::of(!default_residency, &spec.residency);
    if let Some(refusal) = check_spec(c, spec).await? {
        return Ok(Err(from_default(refusal, source)));
    }
    let rec = AppRecord {
        spec: spec.clone(),
        version: 1,
        created_at: at,
        updated_at: at,
    };
    let exists = || Ok(Err(Refusal::exists("app", &spec.name)));
    match held.taken.as_mut() {
        Some(taken) if taken.contains(spec.name.as_str()) => return exists(),
        Some(taken) if spec.domains.is_empty() => {
            taken.insert(spec.name.to_string());
            held.apps.push(rec.clone());
        }
        // The insert is the existence check.
        _ => {
            if !write_app(c, &rec, Write::Create).await? {
                return exists();
            }
            if let Some(taken) = held.taken.as_mut() {
                taken.insert(spec.name.to_string());
            }
        }
    }
    held.releases.push(crate::releases::first_release(&rec, at));
    held.audit.push(AuditRecord {
        seq: 0,
        at,
        app: spec.name.clone(),
        kind: "created".into(),
        instance: None,
        node: None,
        region: None,
        country: None,
        policy: policy_text(&spec.residency, spec.regions.as_deref()),
        detail: source.explain(&spec.residency),
    });
    Ok(Ok(Applied::App(rec)))
}

/// A refusal of pinned regions outside a residency the app did not choose itself says so.
fn from_default(refusal: Refusal, source: ResidencySource) -> Refusal {
    match refusal {
        Refusal::Invalid { field, message }
            if source == ResidencySource::ClusterDefault && field.starts_with("regions") =>
        {
            Refusal::Invalid {
                field,
                message: format!(
                    "{message}, the cluster's default residency; give the app a residency of \
                     its own to pin it there"
                ),
            }
        }
        other => other,
    }
}

/// `Command::UpdateApp`: the new spec, and a new release when what instances run changed.
pub(crate) async fn update(
    c: &mut SqliteConnection,
    spec: &AppSpec,
    expected_version: u64,
    at: u64,
) -> Result<CommandResult, sqlx::Error> {
    let Some(old) = app(c, spec.name.as_str()).await? else {
        return Ok(Err(Refusal::not_found("app", &spec.name)));
    };
    if old.version != expected_version {
        return Ok(Err(Refusal::stale("app", &spec.name)));
    }
    if let Some(refusal) = check_spec(c, spec).await? {
        return Ok(Err(refusal));
    }
    let rec = AppRecord {
        spec: spec.clone(),
        version: old.version + 1,
        created_at: old.created_at,
        updated_at: at,
    };
    write_app(c, &rec, Write::Replace).await?;
    crate::releases::release_app(c, &rec, crate::releases::DEFAULT_DEADLINE_S, at).await?;
    Ok(Ok(Applied::App(rec)))
}

/// `Command::DeleteApp`: the app goes, its instances are stopped.
pub(crate) async fn delete(
    c: &mut SqliteConnection,
    name: &Name,
    at: u64,
) -> Result<CommandResult, sqlx::Error> {
    let id: Option<i64> = sqlx::query_scalar("DELETE FROM apps WHERE name = ? RETURNING id")
        .bind(name.as_str())
        .fetch_optional(&mut *c)
        .await?;
    let Some(id) = id else {
        return Ok(Err(Refusal::not_found("app", name)));
    };
    set_domains(c, name, &[]).await?;
    forget_app(c, name, id, at).await?;
    Ok(Ok(Applied::Done))
}
