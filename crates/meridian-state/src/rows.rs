//! Rows of the state tables, read into records. Shared by `apply` (inside its transaction) and
//! the read side.

use std::collections::BTreeSet;

use meridian_core::domain::DEFAULT_APPS_DOMAIN;
use meridian_core::{AppSpec, CountryCode, DomainName, JurisdictionCatalog, Name, Region, Role};
use serde::de::DeserializeOwned;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use crate::command::{AppRecord, RegionRecord, TokenRecord};

pub(crate) fn corrupt(what: &str, detail: impl std::fmt::Display) -> sqlx::Error {
    sqlx::Error::Decode(format!("stored {what} cannot be read: {detail}").into())
}

pub(crate) fn json<T: DeserializeOwned>(what: &str, text: &str) -> Result<T, sqlx::Error> {
    serde_json::from_str(text).map_err(|e| corrupt(what, e))
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> String {
    // Serialising plain data structs into a String cannot fail.
    serde_json::to_string(v).unwrap_or_default()
}

pub(crate) fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(crate) fn small(what: &str, v: i64) -> Result<u32, sqlx::Error> {
    u32::try_from(v).map_err(|e| corrupt(what, e))
}

pub(crate) fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn name(what: &str, s: &str) -> Result<Name, sqlx::Error> {
    Name::parse(s).map_err(|e| corrupt(what, e))
}

fn token_row(r: &SqliteRow) -> Result<TokenRecord, sqlx::Error> {
    let role: String = r.try_get("role")?;
    let apps: Option<String> = r.try_get("apps")?;
    Ok(TokenRecord {
        id: r.try_get("id")?,
        role: Role::parse(&role).ok_or_else(|| corrupt("token role", &role))?,
        apps: apps.map(|a| json("token apps", &a)).transpose()?,
        created_at: u(r.try_get("created_at")?),
        expires_at: u(r.try_get("expires_at")?),
        revoked_at: r.try_get::<Option<i64>, _>("revoked_at")?.map(u),
    })
}

fn region_row(r: &SqliteRow) -> Result<RegionRecord, sqlx::Error> {
    let country: String = r.try_get("country")?;
    Ok(RegionRecord {
        region: Region {
            name: name("region name", r.try_get("name")?)?,
            country: CountryCode::parse(&country).map_err(|e| corrupt("region country", e))?,
            latitude: r.try_get("latitude")?,
            longitude: r.try_get("longitude")?,
        },
        version: u(r.try_get("version")?),
        created_at: u(r.try_get("created_at")?),
        updated_at: u(r.try_get("updated_at")?),
    })
}

fn app_row(r: &SqliteRow) -> Result<AppRecord, sqlx::Error> {
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

/// One token by id.
pub async fn token(c: &mut SqliteConnection, id: &str) -> Result<Option<TokenRecord>, sqlx::Error> {
    let row = sqlx::query("SELECT * FROM tokens WHERE id = ?")
        .bind(id)
        .fetch_optional(c)
        .await?;
    row.as_ref().map(token_row).transpose()
}

/// Every token, oldest first.
pub async fn tokens(c: &mut SqliteConnection) -> Result<Vec<TokenRecord>, sqlx::Error> {
    let rows = sqlx::query("SELECT * FROM tokens ORDER BY created_at, id")
        .fetch_all(c)
        .await?;
    rows.iter().map(token_row).collect()
}

/// One region by name.
pub async fn region(
    c: &mut SqliteConnection,
    n: &str,
) -> Result<Option<RegionRecord>, sqlx::Error> {
    let row = sqlx::query("SELECT * FROM regions WHERE name = ?")
        .bind(n)
        .fetch_optional(c)
        .await?;
    row.as_ref().map(region_row).transpose()
}

/// Every region, by name.
pub async fn regions(c: &mut SqliteConnection) -> Result<Vec<RegionRecord>, sqlx::Error> {
    let rows = sqlx::query("SELECT * FROM regions ORDER BY name")
        .fetch_all(c)
        .await?;
    rows.iter().map(region_row).collect()
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

/// The built-in jurisdiction groups plus those defined in this cluster.
pub async fn catalog(c: &mut SqliteConnection) -> Result<JurisdictionCatalog, sqlx::Error> {
    let mut cat = JurisdictionCatalog::built_in();
    let rows = sqlx::query("SELECT name, countries FROM jurisdiction_groups")
        .fetch_all(c)
        .await?;
    for r in rows {
        let name: String = r.try_get("name")?;
        let countries: BTreeSet<CountryCode> = json("group countries", r.try_get("countries")?)?;
        cat.define(&name, countries)
            .map_err(|e| corrupt("jurisdiction group", e))?;
    }
    Ok(cat)
}

/// A cluster setting (`signing_key`, `bootstrapped_at`).
pub async fn setting(c: &mut SqliteConnection, key: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT value FROM cluster_settings WHERE key = ?")
        .bind(key)
        .fetch_optional(c)
        .await
}

/// The domain apps are served under as `<app>.<domain>`: the `apps_domain` setting, or
/// `meridian.localhost` until one is set.
pub async fn apps_domain(c: &mut SqliteConnection) -> Result<DomainName, sqlx::Error> {
    match setting(c, "apps_domain").await? {
        Some(d) => DomainName::parse(&d).map_err(|e| corrupt("apps_domain", e)),
        None => Ok(DomainName::parse(DEFAULT_APPS_DOMAIN).expect("the default is a domain")),
    }
}

/// Names per `IN (...)` list: well under SQLite's limit of 32,766 bound values.
pub(crate) const NAMES_PER_STATEMENT: usize = 500;

/// Rows of `select` (which ends in `IN (`) for every name in `names`, one statement per
/// [`NAMES_PER_STATEMENT`] names, each followed by `tail` (which starts with `)`).
pub(crate) async fn fetch_in(
    c: &mut SqliteConnection,
    select: &str,
    names: &[&str],
    tail: &str,
) -> Result<Vec<SqliteRow>, sqlx::Error> {
    let mut out = Vec::new();
    for chunk in names.chunks(NAMES_PER_STATEMENT) {
        let mut q = sqlx::QueryBuilder::new(select);
        let mut list = q.separated(", ");
        for n in chunk {
            list.push_bind(*n);
        }
        q.push(tail);
        out.extend(q.build().fetch_all(&mut *c).await?);
    }
    Ok(out)
}

/// The apps with these names that exist.
pub async fn apps_named(
    c: &mut SqliteConnection,
    names: &[&str],
) -> Result<Vec<AppRecord>, sqlx::Error> {
    let rows = fetch_in(c, "SELECT * FROM apps WHERE name IN (", names, ")").await?;
    rows.iter().map(app_row).collect()
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
