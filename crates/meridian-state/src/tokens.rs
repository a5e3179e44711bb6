//! API tokens: the record, its rows, and bootstrapping, creating and revoking them.

use meridian_core::{Name, Role};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use crate::command::{Applied, CommandResult, Refusal};
use crate::sql::{corrupt, i, json, to_json, u};

/// A token as the state keeps it. The JWT itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Random id, the JWT's `jti`.
    pub id: String,
    /// Its role.
    pub role: Role,
    /// Apps a deployer token is limited to.
    pub apps: Option<Vec<Name>>,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds.
    pub expires_at: u64,
    /// Unix seconds, once revoked.
    pub revoked_at: Option<u64>,
}

pub(crate) fn token_row(r: &SqliteRow) -> Result<TokenRecord, sqlx::Error> {
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

pub(crate) async fn insert_token(
    c: &mut SqliteConnection,
    t: &TokenRecord,
) -> Result<CommandResult, sqlx::Error> {
    if token(c, &t.id).await?.is_some() {
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

/// `Command::Bootstrap`: the signing key and the first admin token, once.
pub(crate) async fn bootstrap(
    c: &mut SqliteConnection,
    signing_key: &str,
    admin: &TokenRecord,
) -> Result<CommandResult, sqlx::Error> {
    if crate::settings::setting(c, "signing_key").await?.is_some() {
        return Ok(Err(Refusal::AlreadyBootstrapped));
    }
    if token(c, &admin.id).await?.is_some() {
        return Ok(Err(Refusal::exists("token", &admin.id)));
    }
    for (k, v) in [
        ("signing_key", signing_key.to_string()),
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

/// `Command::RevokeToken` (idempotent).
pub(crate) async fn revoke(
    c: &mut SqliteConnection,
    id: &str,
    at: u64,
) -> Result<CommandResult, sqlx::Error> {
    let Some(t) = token(c, id).await? else {
        return Ok(Err(Refusal::not_found("token", id)));
    };
    if t.revoked_at.is_none() {
        sqlx::query("UPDATE tokens SET revoked_at = ? WHERE id = ?")
            .bind(i(at))
            .bind(id)
            .execute(&mut *c)
            .await?;
    }
    Ok(Ok(Applied::Done))
}

/// Tokens that expired, or were revoked, before `before` (unix seconds).
pub async fn done_since(c: &mut SqliteConnection, before: u64) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM tokens WHERE expires_at < ? OR revoked_at < ? ORDER BY id")
        .bind(i(before))
        .bind(i(before))
        .fetch_all(c)
        .await
}

/// Forgets token `id` if it expired or was revoked before `before`. Answers whether it went.
pub(crate) async fn forget(
    c: &mut SqliteConnection,
    id: &str,
    before: u64,
) -> Result<bool, sqlx::Error> {
    let done =
        sqlx::query("DELETE FROM tokens WHERE id = ? AND (expires_at < ? OR revoked_at < ?)")
            .bind(id)
            .bind(i(before))
            .bind(i(before))
            .execute(c)
            .await?;
    Ok(done.rows_affected() > 0)
}
