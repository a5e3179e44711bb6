//! Regions and jurisdiction groups: the record, its rows, and creating, changing and deleting regions without leaving a pinned app outside its residency.

use std::collections::BTreeSet;

use meridian_core::{CountryCode, Jurisdiction, JurisdictionCatalog, Name, Region};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use crate::apps::AppRecord;
use crate::command::{Applied, CommandResult, Refusal};
use crate::sql::{corrupt, i, json, name, u};

/// A region with its bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionRecord {
    /// The region.
    pub region: Region,
    /// Bumped on every change.
    pub version: u64,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds.
    pub updated_at: u64,
}

pub(crate) fn region_row(r: &SqliteRow) -> Result<RegionRecord, sqlx::Error> {
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

/// The catalog `jurisdictions` are checked against: the built-in one unless they name a
/// group of this cluster's own, which only then is read.
pub(crate) async fn catalog_for<'a>(
    c: &mut SqliteConnection,
    mut jurisdictions: impl Iterator<Item = &'a Jurisdiction>,
) -> Result<JurisdictionCatalog, sqlx::Error> {
    let custom = jurisdictions.any(|j| {
        matches!(j, Jurisdiction::Group(g) if !JurisdictionCatalog::BUILT_IN.contains(&g.as_str()))
    });
    if custom {
        catalog(c).await
    } else {
        Ok(JurisdictionCatalog::built_in())
    }
}

/// Apps pinned to `region`.
pub(crate) async fn apps_pinned_to(
    c: &mut SqliteConnection,
    region: &Name,
) -> Result<Vec<AppRecord>, sqlx::Error> {
    Ok(crate::apps::apps(c)
        .await?
        .into_iter()
        .filter(|a| a.spec.regions.iter().flatten().any(|r| r == region))
        .collect())
}

pub(crate) fn names(apps: &[AppRecord]) -> String {
    let names: Vec<&str> = apps.iter().map(|a| a.spec.name.as_str()).collect();
    names.join(", ")
}

/// Refuses moving a region to `country` when an app pinned to it would then lie outside its
/// residency.
pub(crate) async fn apps_left_outside(
    c: &mut SqliteConnection,
    region: &Name,
    country: CountryCode,
) -> Result<Option<Refusal>, sqlx::Error> {
    let catalog = catalog(c).await?;
    let mut outside = apps_pinned_to(c, region).await?;
    outside.retain(|a| !catalog.allows(&a.spec.residency, country));
    Ok((!outside.is_empty()).then(|| Refusal::Conflict {
        message: format!(
            "moving region {region} to {country} would put pinned apps outside their residency: {}",
            names(&outside)
        ),
    }))
}

/// `Command::CreateRegion`.
pub(crate) async fn create(
    c: &mut SqliteConnection,
    region: &Region,
    at: u64,
) -> Result<CommandResult, sqlx::Error> {
    if self::region(c, region.name.as_str()).await?.is_some() {
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
    .bind(i(at))
    .bind(i(at))
    .execute(&mut *c)
    .await?;
    let rec = RegionRecord {
        region: region.clone(),
        version: 1,
        created_at: at,
        updated_at: at,
    };
    Ok(Ok(Applied::Region(rec)))
}

/// `Command::UpdateRegion`.
pub(crate) async fn update(
    c: &mut SqliteConnection,
    region: &Region,
    expected_version: u64,
    at: u64,
) -> Result<CommandResult, sqlx::Error> {
    let Some(old) = self::region(c, region.name.as_str()).await? else {
        return Ok(Err(Refusal::not_found("region", &region.name)));
    };
    if old.version != expected_version {
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
    .bind(i(at))
    .bind(region.name.as_str())
    .execute(&mut *c)
    .await?;
    let rec = RegionRecord {
        region: region.clone(),
        version: old.version + 1,
        created_at: old.created_at,
        updated_at: at,
    };
    Ok(Ok(Applied::Region(rec)))
}

/// `Command::DeleteRegion`.
pub(crate) async fn delete(
    c: &mut SqliteConnection,
    name: &Name,
) -> Result<CommandResult, sqlx::Error> {
    if region(c, name.as_str()).await?.is_none() {
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
