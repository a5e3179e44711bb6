//! Bootstrap and token management.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use base64::Engine;
use meridian_api::tokens::{BootstrapResponse, CreateToken, TokenCreated, TokenInfo};
use meridian_api::ErrorBody;
use meridian_core::{Action, Name, Role};
use meridian_state::{Applied, Command, TokenRecord};
use rand::Rng;

use crate::auth::{sign, Caller};
use crate::ctx::{now, Ctx};
use crate::error::ApiError;
use crate::json::JsonBody;

/// Lifetime of the bootstrap admin token: one year.
pub const BOOTSTRAP_TTL: u64 = 365 * 24 * 3600;
/// Lifetime of a token created without `ttl_seconds`: 90 days.
pub const DEFAULT_TTL: u64 = 90 * 24 * 3600;
/// Longest lifetime a token may ask for: 10 years.
pub const MAX_TTL: u64 = 10 * 365 * 24 * 3600;

fn new_token_id() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn token_created(ctx_key: &str, applied: Applied) -> Result<TokenCreated, ApiError> {
    match applied {
        Applied::Token(t) => Ok(TokenCreated {
            token: sign(ctx_key, &t)?,
            id: t.id,
        }),
        other => Err(ApiError::storage(format!(
            "unexpected apply result {other:?}"
        ))),
    }
}

fn signing_key(ctx: &Ctx) -> Result<String, ApiError> {
    ctx.reader()
        .auth()
        .signing_key
        .clone()
        .ok_or_else(|| ApiError::storage("signing key missing after bootstrap"))
}

/// Creates the cluster's signing key and first admin token. Works once; concurrent calls are
/// decided by Raft order, so exactly one wins.
#[utoipa::path(post, path = "/v1/auth/bootstrap", tag = "auth",
    responses(
        (status = 201, description = "The first admin token", body = BootstrapResponse),
        (status = 409, description = "Already bootstrapped", body = ErrorBody)))]
pub async fn bootstrap(
    State(ctx): State<Ctx>,
) -> Result<(StatusCode, Json<BootstrapResponse>), ApiError> {
    let key: [u8; 32] = rand::rng().random();
    let at = now();
    let admin = TokenRecord {
        id: new_token_id(),
        role: Role::Admin,
        apps: None,
        created_at: at,
        expires_at: at + BOOTSTRAP_TTL,
        revoked_at: None,
    };
    let signing_key = base64::engine::general_purpose::STANDARD.encode(key);
    let applied = ctx
        .propose(Command::Bootstrap {
            signing_key: signing_key.clone(),
            admin,
        })
        .await?;
    let created = token_created(&signing_key, applied)?;
    Ok((
        StatusCode::CREATED,
        Json(BootstrapResponse {
            id: created.id,
            token: created.token,
        }),
    ))
}

/// Issues a token.
#[utoipa::path(post, path = "/v1/tokens", tag = "auth", request_body = CreateToken,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created; the JWT is shown only now", body = TokenCreated),
        (status = 422, description = "Bad role, lifetime or app list", body = ErrorBody)))]
pub async fn create(
    State(ctx): State<Ctx>,
    caller: Caller,
    req: JsonBody<CreateToken>,
) -> Result<(StatusCode, Json<TokenCreated>), ApiError> {
    caller.require(Action::ManageTokens)?;
    let req = req.parse()?;
    let role = Role::parse(&req.role).ok_or_else(|| {
        ApiError::invalid(
            "role",
            format!(
                "{:?} is not a role (admin, deployer, viewer, agent, router)",
                req.role
            ),
        )
    })?;
    let ttl = req.ttl_seconds.unwrap_or(DEFAULT_TTL);
    if !(1..=MAX_TTL).contains(&ttl) {
        return Err(ApiError::invalid(
            "ttl_seconds",
            format!("must be between 1 and {MAX_TTL} seconds"),
        ));
    }
    let apps = match req.apps {
        None => None,
        Some(_) if role != Role::Deployer => {
            return Err(ApiError::invalid(
                "apps",
                "only deployer tokens can be limited to apps",
            ))
        }
        Some(list) => Some(
            list.iter()
                .enumerate()
                .map(|(i, a)| Name::parse_field(&format!("apps[{i}]"), a))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let at = now();
    let token = TokenRecord {
        id: new_token_id(),
        role,
        apps,
        created_at: at,
        expires_at: at + ttl,
        revoked_at: None,
    };
    let applied = ctx.propose(Command::CreateToken { token }).await?;
    let key = signing_key(&ctx)?;
    Ok((StatusCode::CREATED, Json(token_created(&key, applied)?)))
}

/// Lists tokens (never the JWTs).
#[utoipa::path(get, path = "/v1/tokens", tag = "auth", security(("bearer" = [])),
    responses((status = 200, description = "Every token", body = [TokenInfo])))]
pub async fn list(
    State(ctx): State<Ctx>,
    caller: Caller,
) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    caller.require(Action::ManageTokens)?;
    let tokens = ctx.reader().tokens().await.map_err(ApiError::storage)?;
    Ok(Json(
        tokens
            .into_iter()
            .map(|t| TokenInfo {
                id: t.id,
                role: t.role.to_string(),
                apps: t.apps.map(|a| a.iter().map(ToString::to_string).collect()),
                created_at: t.created_at,
                expires_at: t.expires_at,
                revoked_at: t.revoked_at,
            })
            .collect(),
    ))
}

/// Revokes a token on every server.
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "auth", security(("bearer" = [])),
    params(("id" = String, Path, description = "Token id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such token", body = ErrorBody)))]
pub async fn revoke(
    State(ctx): State<Ctx>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Action::ManageTokens)?;
    ctx.propose(Command::RevokeToken { id, at: now() }).await?;
    Ok(StatusCode::NO_CONTENT)
}
