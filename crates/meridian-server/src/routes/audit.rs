//! The audit log of placement decisions.

use axum::extract::{RawQuery, State};
use axum::Json;
use meridian_api::nodes::AuditEntry;
use meridian_core::{Action, Name};
use meridian_state::AuditFilter;

use crate::auth::Caller;
use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::query::{Query, MAX_STORED};

/// Most entries one call returns.
pub const MAX_LIMIT: u64 = 10_000;

/// Audit entries, oldest first: every app created (with the residency it got and where that
/// came from), placement, stop, refusal and release change, with the policy it was checked
/// against.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", security(("bearer" = [])),
    params(("app" = Option<String>, Query, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
            description = "Only this app (an app name)"),
        ("since" = Option<u64>, Query, minimum = 0,
            description = "Only entries made at or after this time, in unix seconds (default 0)"),
        ("after" = Option<u64>, Query, minimum = 0,
            description = "Only entries after this sequence number (default 0)"),
        ("limit" = Option<u64>, Query, minimum = 0, maximum = 10000,
            description = "At most this many (default and maximum 10000); more is refused"),
        ("newest" = Option<bool>, Query,
            description = "`true`: the newest `limit` entries that match instead of the oldest, still oldest first (default `false`)")),
    responses((status = 200, description = "Entries", body = [AuditEntry])))]
pub async fn list(
    State(ctx): State<Ctx>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    caller.require(Action::Read)?;
    let query = Query::parse(raw.as_deref());
    let app = match query.get("app") {
        Some(a) => Some(
            Name::parse(a)
                .map_err(|p| ApiError::invalid_query("app", format!("app {a:?}: {p}")))?,
        ),
        None => None,
    };
    let filter = AuditFilter {
        app: app.as_ref().map(Name::as_str),
        after: query.u64("after", 0, MAX_STORED)?,
        since: query.u64("since", 0, MAX_STORED)?,
        limit: query.u64("limit", MAX_LIMIT, MAX_LIMIT)? as u32,
        newest: query.bool("newest", false)?,
    };
    let entries = ctx
        .reader()
        .audit(&filter)
        .await
        .map_err(ApiError::storage)?;
    Ok(Json(
        entries
            .into_iter()
            .map(|a| AuditEntry {
                seq: a.seq,
                at: a.at,
                app: a.app.to_string(),
                kind: a.kind,
                instance: a.instance,
                node: a.node,
                region: a.region,
                country: a.country,
                policy: a.policy,
                detail: a.detail,
            })
            .collect(),
    ))
}
