//! What edge routers read: routable instances and registered routers, and router registration.

use meridian_core::Name;
use sqlx::SqliteConnection;

use crate::command::{Applied, CommandResult, Refusal};
use crate::sql::i;

// The route table's read; `query_plans` checks SQLite's plan for it.
pub(crate) const ROUTABLE: &str =
    "SELECT i.id, i.app, i.node, n.region, i.address FROM instances i \
     JOIN nodes n ON n.name = i.node \
     WHERE i.desired = 'run' AND i.state = 'healthy' AND i.address IS NOT NULL \
     AND n.status != 'down' ORDER BY i.app, i.id";

/// Instances a router may send requests to: wanted running, healthy, with an address, on a
/// node that is not down. Each with its node's region: (id, app, node, region, address).
pub async fn routable_instances(
    c: &mut SqliteConnection,
) -> Result<Vec<(String, String, String, String, String)>, sqlx::Error> {
    sqlx::query_as(ROUTABLE).fetch_all(c).await
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

/// `Command::RegisterRouter`.
pub(crate) async fn register_router(
    c: &mut SqliteConnection,
    name: &Name,
    region: &Name,
    url: &str,
    at: u64,
) -> Result<CommandResult, sqlx::Error> {
    if crate::regions::region(c, region.as_str()).await?.is_none() {
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
    .bind(i(at))
    .execute(&mut *c)
    .await?;
    Ok(Ok(Applied::Done))
}

/// Routers that last registered before `before` (unix seconds).
pub async fn routers_silent_since(
    c: &mut SqliteConnection,
    before: u64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM routers WHERE registered_at < ? ORDER BY name")
        .bind(i(before))
        .fetch_all(c)
        .await
}

/// Forgets `router` if it still last registered before `before`. Answers whether it went.
pub(crate) async fn forget_router(
    c: &mut SqliteConnection,
    router: &Name,
    before: u64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM routers WHERE name = ? AND registered_at < ?")
        .bind(router.as_str())
        .bind(i(before))
        .execute(c)
        .await?;
    Ok(done.rows_affected() > 0)
}
