//! Cluster-wide settings (`cluster_settings`): the signing key's presence, the apps domain,
//! the default residency.

use meridian_core::domain::DEFAULT_APPS_DOMAIN;
use meridian_core::{DomainName, Jurisdiction};
use sqlx::SqliteConnection;

use crate::command::{Applied, CommandResult, Refusal};
use crate::sql::corrupt;

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

/// `Command::SetAppsDomain`.
pub(crate) async fn set_apps_domain(
    c: &mut SqliteConnection,
    domain: &DomainName,
) -> Result<CommandResult, sqlx::Error> {
    let inside: Vec<(String, String)> =
        sqlx::query_as("SELECT domain, app FROM app_domains ORDER BY domain")
            .fetch_all(&mut *c)
            .await?;
    let clash = inside
        .iter()
        .find(|(d, _)| meridian_core::DomainName::parse(d).is_ok_and(|d| d.is_within(domain)));
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

/// The residency apps created without one get: the `default_residency` setting (stored as
/// `EU,CH`), or none until one is set.
pub async fn default_residency(c: &mut SqliteConnection) -> Result<Vec<Jurisdiction>, sqlx::Error> {
    parse_default_residency(setting(c, "default_residency").await?.as_deref())
}

/// The default residency from its stored text (`None` when never set).
pub(crate) fn parse_default_residency(
    text: Option<&str>,
) -> Result<Vec<Jurisdiction>, sqlx::Error> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    text.split(',')
        .map(|j| Jurisdiction::parse(j).map_err(|e| corrupt("default_residency", e)))
        .collect()
}

/// `Command::SetDefaultResidency`: refused, like an app's residency, if it names a
/// jurisdiction twice or a group the cluster does not know.
pub(crate) async fn set_default_residency(
    c: &mut SqliteConnection,
    residency: &[Jurisdiction],
) -> Result<CommandResult, sqlx::Error> {
    let catalog = crate::regions::catalog_for(c, residency.iter()).await?;
    if let Err(e) = meridian_core::residency::check_default(residency, &catalog) {
        return Ok(Err(Refusal::Invalid {
            field: e.field,
            message: e.problem.to_string(),
        }));
    }
    if residency.is_empty() {
        sqlx::query("DELETE FROM cluster_settings WHERE key = 'default_residency'")
            .execute(&mut *c)
            .await?;
    } else {
        let text: Vec<String> = residency.iter().map(ToString::to_string).collect();
        sqlx::query(
            "INSERT INTO cluster_settings (key, value) VALUES ('default_residency', ?) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(text.join(","))
        .execute(&mut *c)
        .await?;
    }
    Ok(Ok(Applied::Done))
}
