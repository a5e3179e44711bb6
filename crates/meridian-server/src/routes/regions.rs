//! Regions.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use meridian_api::regions::{RegionBody, RegionPatch};
use meridian_api::ErrorBody;
use meridian_core::{Action, Name};
use meridian_state::{Applied, Command};

use crate::auth::Caller;
use crate::ctx::{now, Ctx};
use crate::error::ApiError;
use crate::json::JsonBody;

fn region_name(raw: &str) -> Result<Name, ApiError> {
    Name::parse(raw)
        .map_err(|p| ApiError::not_found(format!("region {raw:?} does not exist ({p})")))
}

fn view(applied: Applied) -> Result<Json<RegionBody>, ApiError> {
    match applied {
        Applied::Region(r) => Ok(Json(RegionBody::from(&r.region))),
        other => Err(ApiError::storage(format!(
            "unexpected apply result {other:?}"
        ))),
    }
}

/// Adds a region.
#[utoipa::path(post, path = "/v1/regions", tag = "regions", request_body = RegionBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = RegionBody),
        (status = 409, description = "Name taken", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody)))]
pub async fn create(
    State(ctx): State<Ctx>,
    caller: Caller,
    body: JsonBody<RegionBody>,
) -> Result<(StatusCode, Json<RegionBody>), ApiError> {
    caller.require(Action::WriteRegion)?;
    let body = body.parse()?;
    let region = body.into_region()?;
    let applied = ctx
        .propose(Command::CreateRegion { region, at: now() })
        .await?;
    Ok((StatusCode::CREATED, view(applied)?))
}

/// Lists regions.
#[utoipa::path(get, path = "/v1/regions", tag = "regions", security(("bearer" = [])),
    responses((status = 200, description = "Every region", body = [RegionBody])))]
pub async fn list(
    State(ctx): State<Ctx>,
    caller: Caller,
) -> Result<Json<Vec<RegionBody>>, ApiError> {
    caller.require(Action::Read)?;
    let regions = ctx.reader().regions().await.map_err(ApiError::storage)?;
    Ok(Json(
        regions
            .iter()
            .map(|r| RegionBody::from(&r.region))
            .collect(),
    ))
}

/// One region.
#[utoipa::path(get, path = "/v1/regions/{name}", tag = "regions", security(("bearer" = [])),
    params(("name" = String, Path, description = "Region name")),
    responses(
        (status = 200, description = "The region", body = RegionBody),
        (status = 404, description = "No such region", body = ErrorBody)))]
pub async fn get(
    State(ctx): State<Ctx>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<RegionBody>, ApiError> {
    caller.require(Action::Read)?;
    let name = region_name(&name)?;
    let r = ctx
        .reader()
        .region(name.as_str())
        .await
        .map_err(ApiError::storage)?
        .ok_or_else(|| ApiError::not_found(format!("region {name} does not exist")))?;
    Ok(Json(RegionBody::from(&r.region)))
}

/// Changes a region's country or coordinates.
#[utoipa::path(patch, path = "/v1/regions/{name}", tag = "regions", request_body = RegionPatch,
    security(("bearer" = [])),
    params(("name" = String, Path, description = "Region name")),
    responses(
        (status = 200, description = "Changed", body = RegionBody),
        (status = 404, description = "No such region", body = ErrorBody),
        (status = 409, description = "Would move pinned apps outside their residency, or the region kept changing meanwhile", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody)))]
pub async fn patch(
    State(ctx): State<Ctx>,
    caller: Caller,
    Path(name): Path<String>,
    patch: JsonBody<RegionPatch>,
) -> Result<Json<RegionBody>, ApiError> {
    caller.require(Action::WriteRegion)?;
    let patch = patch.parse()?;
    let name = region_name(&name)?;
    let applied = ctx
        .propose_fresh(|| async {
            let current = ctx
                .reader()
                .region(name.as_str())
                .await
                .map_err(ApiError::storage)?
                .ok_or_else(|| ApiError::not_found(format!("region {name} does not exist")))?;
            Ok(Command::UpdateRegion {
                region: patch.clone().apply_to(current.region)?,
                expected_version: current.version,
                at: now(),
            })
        })
        .await?;
    view(applied)
}

/// Deletes a region no app is pinned to.
#[utoipa::path(delete, path = "/v1/regions/{name}", tag = "regions", security(("bearer" = [])),
    params(("name" = String, Path, description = "Region name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such region", body = ErrorBody),
        (status = 409, description = "Apps are pinned to it", body = ErrorBody)))]
pub async fn delete(
    State(ctx): State<Ctx>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Action::WriteRegion)?;
    let name = region_name(&name)?;
    ctx.propose(Command::DeleteRegion { name }).await?;
    Ok(StatusCode::NO_CONTENT)
}
