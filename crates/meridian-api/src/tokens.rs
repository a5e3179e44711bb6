//! Tokens: bootstrap, create, list, revoke.

use serde::{Deserialize, Serialize};

/// `POST /v1/auth/bootstrap` answer: the first admin token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BootstrapResponse {
    /// The admin token's id.
    pub id: String,
    /// The admin JWT.
    pub token: String,
}

/// `POST /v1/tokens` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// `admin`, `deployer`, `viewer`, `agent` or `router`.
    pub role: String,
    /// Lifetime in seconds (default 90 days, at most 10 years).
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    /// For deployers: the only apps this token may change.
    #[serde(default)]
    pub apps: Option<Vec<String>>,
}

/// `POST /v1/tokens` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenCreated {
    /// The token's id (its `jti`).
    pub id: String,
    /// The JWT; shown once, never stored in plain form by the client.
    pub token: String,
}

/// One token as `GET /v1/tokens` lists it (never the JWT itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenInfo {
    /// The token's id.
    pub id: String,
    /// Its role.
    pub role: String,
    /// Apps it is limited to, if any.
    pub apps: Option<Vec<String>>,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds.
    pub expires_at: u64,
    /// Unix seconds, when revoked.
    pub revoked_at: Option<u64>,
}
