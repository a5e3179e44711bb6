//! Applying one committed command to the state tables. Deterministic: the outcome depends only
//! on the command and the rows already there, so every server reaches the same state.

use std::collections::BTreeMap;

use meridian_core::{CountryCode, Jurisdiction, JurisdictionCatalog, Name};
use sqlx::SqliteConnection;

use crate::apply_workers;
use crate::changes::Touched;
use crate::command::{
    AppRecord, Applied, Command, CommandResult, Refusal, RegionRecord, TokenRecord,
};
use crate::rows::{self, i, to_json};

/// Applies `cmd` inside the caller's transaction, a `Command::Batch` one command at a time.
pub async fn apply(c: &mut SqliteConnection, cmd: &Command) -> Result<CommandResult, sqlx::Error> {
    apply_tracked(c, cmd, &mut Touched::default()).await
}

/// As [`apply`], adding to `touched` what the command changed (nothing when refused).
pub async fn apply_tracked(
    c: &mut SqliteConnection,
    cmd: &Command,
    touched: &mut Touched,
) -> Result<CommandResult, sqlx::Error> {
    let Command::Batch { commands } = cmd else {
        return apply_marked(c, cmd, touched).await;
    };
    let mut results = Vec::with_capacity(commands.len());
    for sub in commands {
        results.push(apply_marked(c, sub, touched).await?);
    }
    Ok(Ok(Applied::Batch(results)))
}

/// Applies one command and marks what it changed.
async fn apply_marked(
    c: &mut SqliteConnection,
    cmd: &Command,
    t: &mut Touched,
) -> Result<CommandResult, sqlx::Error> {
    let result = apply_one(c, cmd, t).await?;
    if result.is_err() {
        return Ok(result);
    }
    match cmd {
        Command::CreateApp { spec, .. } | Command::UpdateApp { spec, .. } => t.app(&spec.name),
        Command::DeleteApp { name, .. } => t.app(name),
        Command::Deploy { app, .. } => t.app(app),
        Command::RegisterNode { name, .. } | Command::SetNodeStatus { name, .. } => t.node(name),
        Command::CreateRegion { .. }
        | Command::UpdateRegion { .. }
        | Command::DeleteRegion { .. } => t.regions = true,
        Command::RegisterRouter { .. } | Command::SetAppsDomain { .. } => t.routing = true,
        // Reports and rounds mark the apps whose rows they changed as they write them.
        Command::ReportInstances { .. } | Command::Schedule { .. } => {}
        Command::Bootstrap { .. }
        | Command::CreateToken { .. }
        | Command::RevokeToken { .. }
        | Command::RegisterImage { .. }
        | Command::Batch { .. } => {}
    }
    Ok(result)
}

/// Applies one command.
///
/// Every command decides whether to refuse before its first write, so a refusal leaves the
/// tables untouched without a savepoint. An `Err` means the database failed and the whole
/// entry must be abandoned.
async fn apply_one(
    c: &mut SqliteConnection,
    cmd: &Command,
    t: &mut Touched,
) -> Result<CommandResult, sqlx::Error> {
    match cmd {
        Command::Bootstrap { signing_key, admin } => {
            if rows::setting(c, "signing_key").await?.is_some() {
                return Ok(Err(Refusal::AlreadyBootstrapped));
            }
            if rows::token(c, &admin.id).await?.is_some() {
                return Ok(Err(Refusal::exists("token", &admin.id)));
            }
            for (k, v) in [
                ("signing_key", signing_key.clone()),
                ("bootstrapped_at", admin.created_at.to_string()),
            ] {
                sqlx::query("INSERT INTO cluster_settings (key, value) VALUES (?, ?)")
                    .bind(k)
                    .bind(v)
                    .execute(&mut *c)
                    .await?;
            }
            insert_token(c, admin).await
        }
        Command::CreateToken { token } => insert_token(c, token).await,
        Command::RevokeToken { id, at } => {
            let Some(t) = rows::token(c, id).await? else {
                return Ok(Err(Refusal::not_found("token", id)));
            };
            if t.revoked_at.is_none() {
                sqlx::query("UPDATE tokens SET revoked_at = ? WHERE id = ?")
                    .bind(i(*at))
                    .bind(id)
                    .execute(&mut *c)
                    .await?;
            }
            Ok(Ok(Applied::Done))
        }
        Command::CreateRegion { region, at } => {
            if rows::region(c, region.name.as_str()).await?.is_some() {
                return Ok(Err(Refusal::exists("region", &region.name)));
            }
            sqlx::query(
                "INSERT INTO regions (name, country, latitude, longitude, version, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, 1, ?, ?)",
            )
            .bind(region.name.as_str())
            .bind(region.country.as_str())
            .bind(region.latitude)
            .bind(region.longitude)
            .bind(i(*at))
            .bind(i(*at))
            .execute(&mut *c)
            .await?;
            let rec = RegionRecord {
                region: region.clone(),
                version: 1,
                created_at: *at,
                updated_at: *at,
            };
            Ok(Ok(Applied::Region(rec)))
        }
        Command::UpdateRegion {
            region,
            expected_version,
            at,
        } => {
            let Some(old) = rows::region(c, region.name.as_str()).await? else {
                return Ok(Err(Refusal::not_found("region", &region.name)));
            };
            if old.version != *expected_version {
                return Ok(Err(Refusal::stale("region", &region.name)));
            }
            if old.region.country != region.country {
                if let Some(refusal) = apps_left_outside(c, &region.name, region.country).await? {
                    return Ok(Err(refusal));
                }
            }
            sqlx::query(
                "UPDATE regions SET country = ?, latitude = ?, longitude = ?, version = version + 1, \
                 updated_at = ? WHERE name = ?",
            )
            .bind(region.country.as_str())
            .bind(region.latitude)
            .bind(region.longitude)
            .bind(i(*at))
            .bind(region.name.as_str())
            .execute(&mut *c)
            .await?;
            let rec = RegionRecord {
                region: region.clone(),
                version: old.version + 1,
                created_at: old.created_at,
                updated_at: *at,
            };
            Ok(Ok(Applied::Region(rec)))
        }
        Command::DeleteRegion { name } => {
            if rows::region(c, name.as_str()).await?.is_none() {
                return Ok(Err(Refusal::not_found("region", name)));
            }
            let pinned = apps_pinned_to(c, name).await?;
            if !pinned.is_empty() {
                return Ok(Err(Refusal::Conflict {
                    message: format!("region {name} is still pinned by apps: {}", names(&pinned)),
                }));
            }
            sqlx::query("DELETE FROM regions WHERE name = ?")
                .bind(name.as_str())
                .execute(&mut *c)
                .await?;
            Ok(Ok(Applied::Done))
        }
        Command::RegisterRouter {
            name,
            region,
            url,
            at,
        } => {
            if rows::region(c, region.as_str()).await?.is_none() {
                return Ok(Err(Refusal::Invalid {
                    field: "region".into(),
                    message: format!("region {region} does not exist"),
                }));
            }
            sqlx::query(
                "INSERT OR REPLACE INTO routers (name, region, url, registered_at) \
                 VALUES (?, ?, ?, ?)",
            )
            .bind(name.as_str())
            .bind(region.as_str())
            .bind(url)
            .bind(i(*at))
            .execute(&mut *c)
            .await?;
            Ok(Ok(Applied::Done))
        }
        Command::SetAppsDomain { domain } => {
            let inside: Vec<(String, String)> =
                sqlx::query_as("SELECT domain, app FROM app_domains ORDER BY domain")
                    .fetch_all(&mut *c)
                    .await?;
            let clash = inside.iter().find(|(d, _)| {
                meridian_core::DomainName::parse(d).is_ok_and(|d| d.is_within(domain))
            });
            if let Some((d, app)) = clash {
                return Ok(Err(Refusal::Conflict {
                    message: format!(
                        "app {app} has the custom domain {d}, which lies under {domain}; \
                         detach it first"
                    ),
                }));
            }
            sqlx::query(
                "INSERT INTO cluster_settings (key, value) VALUES ('apps_domain', ?) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(domain.as_str())
            .execute(&mut *c)
            .await?;
            Ok(Ok(Applied::Done))
        }
        Command::CreateApp { spec, at } => {
            if let Some(refusal) = check_places(c, spec).await? {
                return Ok(Err(refusal));
            }
            if let Some(refusal) = check_domains(c, spec).await? {
                return Ok(Err(refusal));
            }
            let rec = AppRecord {
                spec: spec.clone(),
                version: 1,
                created_at: *at,
                updated_at: *at,
            };
            // The insert is the existence check: creating apps is the hot path.
            if !write_app(c, &rec, Write::Create).await? {
                return Ok(Err(Refusal::exists("app", &spec.name)));
            }
            apply_workers::release_app(c, &rec, apply_workers::DEFAULT_DEADLINE_S, *at).await?;
            Ok(Ok(Applied::App(rec)))
        }
        Command::UpdateApp {
            spec,
            expected_version,
            at,
        } => {
            let Some(old) = rows::app(c, spec.name.as_str()).await? else {
                return Ok(Err(Refusal::not_found("app", &spec.name)));
            };
            if old.version != *expected_version {
                return Ok(Err(Refusal::stale("app", &spec.name)));
            }
            if let Some(refusal) = check_places(c, spec).await? {
                return Ok(Err(refusal));
            }
            if let Some(refusal) = check_domains(c, spec).await? {
                return Ok(Err(refusal));
            }
            let rec = AppRecord {
                spec: spec.clone(),
                version: old.version + 1,
                created_at: old.created_at,
                updated_at: *at,
            };
            write_app(c, &rec, Write::Replace).await?;
            apply_workers::release_app(c, &rec, apply_workers::DEFAULT_DEADLINE_S, *at).await?;
            Ok(Ok(Applied::App(rec)))
        }
        Command::Batch { .. } => Ok(Err(Refusal::Conflict {
            message: "batches cannot be nested".into(),
        })),
        Command::DeleteApp { name, at } => {
            let done = sqlx::query("DELETE FROM apps WHERE name = ?")
                .bind(name.as_str())
                .execute(&mut *c)
                .await?;
            if done.rows_affected() == 0 {
                return Ok(Err(Refusal::not_found("app", name)));
            }
            set_domains(c, name, &[]).await?;
            apply_workers::forget_app(c, name, *at).await?;
            Ok(Ok(Applied::Done))
        }
        Command::RegisterNode {
            name,
            region,
            cpu_millis,
            memory_mb,
            labels,
            advertise_host,
            at,
        } => {
            apply_workers::register_node(
                c,
                name,
                region,
                *cpu_millis,
                *memory_mb,
                labels,
                advertise_host,
                *at,
            )
            .await
        }
        Command::SetNodeStatus { name, status, at } => {
            apply_workers::set_node_status(c, name, *status, *at).await
        }
        Command::ReportInstances { node, reports, at } => {
            apply_workers::report_instances(c, node, reports, *at, t).await
        }
        Command::Deploy {
            app,
            image,
            deadline_s,
            at,
        } => apply_workers::deploy(c, app, image, *deadline_s, *at).await,
        Command::Schedule { round, at } => apply_workers::schedule(c, round, *at, t).await,
        Command::RegisterImage {
            name,
            digest,
            size,
            holder,
            at,
        } => apply_workers::register_image(c, name, digest, *size, *holder, *at).await,
    }
}

async fn insert_token(
    c: &mut SqliteConnection,
    t: &TokenRecord,
) -> Result<CommandResult, sqlx::Error> {
    if rows::token(c, &t.id).await?.is_some() {
        return Ok(Err(Refusal::exists("token", &t.id)));
    }
    sqlx::query(
        "INSERT INTO tokens (id, role, apps, created_at, expires_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(&t.id)
    .bind(t.role.as_str())
    .bind(t.apps.as_ref().map(to_json))
    .bind(i(t.created_at))
    .bind(i(t.expires_at))
    .bind(t.revoked_at.map(i))
    .execute(&mut *c)
    .await?;
    Ok(Ok(Applied::Token(t.clone())))
}

/// How `write_app` treats an existing row of the same name.
enum Write {
    /// Leave it and write nothing.
    Create,
    /// Replace it.
    Replace,
}

/// Writes an app row; answers whether a row was written.
async fn write_app(
    c: &mut SqliteConnection,
    rec: &AppRecord,
    how: Write,
) -> Result<bool, sqlx::Error> {
    let s = &rec.spec;
    let sql = match how {
        Write::Create => {
            "INSERT INTO apps (cpu_millis, memory_mb, name, image, replicas, port, residency, \
             regions, env, health, origin_bound, domains, version, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING"
        }
        Write::Replace => {
            "INSERT OR REPLACE INTO apps (cpu_millis, memory_mb, name, image, replicas, port, \
             residency, regions, env, health, origin_bound, domains, version, created_at, \
             updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        }
    };
    let done = sqlx::query(sql)
        .bind(i64::from(s.cpu_millis))
        .bind(i64::from(s.memory_mb))
        .bind(s.name.as_str())
        .bind(&s.image)
        .bind(i64::from(s.replicas))
        .bind(i64::from(s.port))
        .bind(to_json(&s.residency))
        .bind(s.regions.as_ref().map(to_json))
        .bind(to_json(&s.env))
        .bind(s.health.as_ref().map(to_json))
        .bind(to_json(&s.origin_bound))
        .bind(to_json(&s.domains))
        .bind(i(rec.version))
        .bind(i(rec.created_at))
        .bind(i(rec.updated_at))
        .execute(&mut *c)
        .await?;
    let written = done.rows_affected() == 1;
    if written {
        set_domains(c, &s.name, &s.domains).await?;
    }
    Ok(written)
}

/// Makes `app_domains` hold exactly `domains` for `app`.
async fn set_domains(
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
async fn check_domains(
    c: &mut SqliteConnection,
    spec: &meridian_core::AppSpec,
) -> Result<Option<Refusal>, sqlx::Error> {
    if spec.domains.is_empty() {
        return Ok(None);
    }
    let apps_domain = rows::apps_domain(c).await?;
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
async fn check_places(
    c: &mut SqliteConnection,
    spec: &meridian_core::AppSpec,
) -> Result<Option<Refusal>, sqlx::Error> {
    // Only read what the check needs: most apps pin no region and name built-in groups.
    let custom_groups = spec.residency.iter().chain(&spec.origin_bound).any(|j| {
        matches!(j, Jurisdiction::Group(g) if !JurisdictionCatalog::BUILT_IN.contains(&g.as_str()))
    });
    let catalog = if custom_groups {
        rows::catalog(c).await?
    } else {
        JurisdictionCatalog::built_in()
    };
    let countries: BTreeMap<Name, CountryCode> = if spec.regions.is_some() {
        rows::regions(c)
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

/// Apps pinned to `region`.
async fn apps_pinned_to(
    c: &mut SqliteConnection,
    region: &Name,
) -> Result<Vec<AppRecord>, sqlx::Error> {
    Ok(rows::apps(c)
        .await?
        .into_iter()
        .filter(|a| a.spec.regions.iter().flatten().any(|r| r == region))
        .collect())
}

fn names(apps: &[AppRecord]) -> String {
    let names: Vec<&str> = apps.iter().map(|a| a.spec.name.as_str()).collect();
    names.join(", ")
}

/// Refuses moving a region to `country` when an app pinned to it would then lie outside its
/// residency.
async fn apps_left_outside(
    c: &mut SqliteConnection,
    region: &Name,
    country: CountryCode,
) -> Result<Option<Refusal>, sqlx::Error> {
    let catalog = rows::catalog(c).await?;
    let mut outside = apps_pinned_to(c, region).await?;
    outside.retain(|a| !catalog.allows(&a.spec.residency, country));
    Ok((!outside.is_empty()).then(|| Refusal::Conflict {
        message: format!(
            "moving region {region} to {country} would put pinned apps outside their residency: {}",
            names(&outside)
        ),
    }))
}
