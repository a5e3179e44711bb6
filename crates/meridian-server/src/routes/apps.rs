//! Apps.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use meridian_api::apps::{AppBody, AppPatch, AppView};
use meridian_api::nodes::UnplacedView;
use meridian_api::ErrorBody;
use meridian_core::{Action, Name, ResidencySource};
use meridian_state::{AppRecord, Applied, Command};

use crate::auth::Caller;
use crate::ctx::{now, Ctx};
use crate::error::ApiError;
use crate::json::JsonBody;

/// An app name from a path, or a 404.
pub fn app_name(raw: &str) -> Result<Name, ApiError> {
    Name::parse(raw).map_err(|p| ApiError::not_found(format!("app {raw:?} does not exist ({p})")))
}

fn app_view(r: &AppRecord) -> AppView {
    AppView::new(&r.spec, r.version, r.created_at, r.updated_at)
}

fn view(applied: Applied) -> Result<Json<AppView>, ApiError> {
    match applied {
        Applied::App(a) => Ok(Json(app_view(&a))),
        other => Err(unexpected(other)),
    }
}

fn unexpected(applied: Applied) -> ApiError {
    ApiError::storage(format!("unexpected apply result {applied:?}"))
}

/// The app, or a 404.
pub async fn current(ctx: &Ctx, name: &Name) -> Result<AppRecord, ApiError> {
    ctx.reader()
        .app(name.as_str())
        .await
        .map_err(ApiError::storage)?
        .ok_or_else(|| ApiError::not_found(format!("app {name} does not exist")))
}

/// Declares an app. Without a residency of its own it gets the cluster's default residency;
/// the answer says which applied (`residency_source`), and so does the audit log.
#[utoipa::path(post, path = "/v1/apps", tag = "apps", request_body = AppBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = AppView),
        (status = 409, description = "Name taken, or a custom domain is attached to another app", body = ErrorBody),
        (status = 422, description = "Invalid field, unknown region or region outside residency", body = ErrorBody)))]
pub async fn create(
    State(ctx): State<Ctx>,
    caller: Caller,
    body: JsonBody<AppBody>,
) -> Result<(StatusCode, Json<AppView>), ApiError> {
    caller.require(Action::CreateApp)?;
    let body = body.parse()?;
    let given = body.residency.is_some();
    let spec = body.into_spec()?;
    let applied = ctx
        .propose(Command::CreateApp {
            spec,
            at: now(),
            default_residency: !given,
        })
        .await?;
    let Applied::App(rec) = applied else {
        return Err(unexpected(applied));
    };
    let source = ResidencySource::of(given, &rec.spec.residency);
    let app = AppView {
        residency_source: Some(source.as_str().to_string()),
        ..app_view(&rec)
    };
    Ok((StatusCode::CREATED, Json(app)))
}

/// Lists apps.
#[utoipa::path(get, path = "/v1/apps", tag = "apps", security(("bearer" = [])),
    responses((status = 200, description = "Every app", body = [AppView])))]
pub async fn list(State(ctx): State<Ctx>, caller: Caller) -> Result<Json<Vec<AppView>>, ApiError> {
    caller.require(Action::Read)?;
    let apps = ctx.reader().apps().await.map_err(ApiError::storage)?;
    let mut unplaced = unplaced(&ctx).await?;
    Ok(Json(
        apps.iter()
            .map(|a| with_status(app_view(a), &mut unplaced))
            .collect(),
    ))
}

async fn unplaced(
    ctx: &Ctx,
) -> Result<std::collections::HashMap<String, Vec<UnplacedView>>, ApiError> {
    let all = ctx.reader().unplaced().await.map_err(ApiError::storage)?;
    Ok(all
        .into_iter()
        .map(|(app, list)| {
            let views = list
                .into_iter()
                .map(|u| UnplacedView {
                    release: u.release,
                    count: u.count,
                    reason: u.reason,
                })
                .collect();
            (app, views)
        })
        .collect())
}

fn with_status(
    mut view: AppView,
    unplaced: &mut std::collections::HashMap<String, Vec<UnplacedView>>,
) -> AppView {
    view.unplaced = unplaced.remove(&view.name).unwrap_or_default();
    view
}

/// One app.
#[utoipa::path(get, path = "/v1/apps/{name}", tag = "apps", security(("bearer" = [])),
    params(("name" = String, Path, description = "App name")),
    responses(
        (status = 200, description = "The app", body = AppView),
        (status = 404, description = "No such app", body = ErrorBody)))]
pub async fn get(
    State(ctx): State<Ctx>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<AppView>, ApiError> {
    caller.require(Action::Read)?;
    let name = app_name(&name)?;
    let app = app_view(&current(&ctx, &name).await?);
    Ok(Json(with_status(app, &mut unplaced(&ctx).await?)))
}

/// Changes an app.
#[utoipa::path(patch, path = "/v1/apps/{name}", tag = "apps", request_body = AppPatch,
    security(("bearer" = [])),
    params(("name" = String, Path, description = "App name")),
    responses(
        (status = 200, description = "Changed", body = AppView),
        (status = 404, description = "No such app", body = ErrorBody),
        (status = 409, description = "A custom domain is attached to another app, or the app kept changing meanwhile", body = ErrorBody),
        (status = 422, description = "Invalid field, unknown region or region outside residency", body = ErrorBody)))]
pub async fn patch(
    State(ctx): State<Ctx>,
    caller: Caller,
    Path(name): Path<String>,
    patch: JsonBody<AppPatch>,
) -> Result<Json<AppView>, ApiError> {
    let name = app_name(&name)?;
    caller.require(Action::WriteApp(name.clone()))?;
    let patch = patch.parse()?;
    let applied = ctx
        .propose_fresh(|| async {
            let old = current(&ctx, &name).await?;
            Ok(Command::UpdateApp {
                spec: patch.clone().apply_to(old.spec)?,
                expected_version: old.version,
                at: now(),
            })
        })
        .await?;
    view(applied)
}

/// Deletes an app.
#[utoipa::path(delete, path = "/v1/apps/{name}", tag = "apps", security(("bearer" = [])),
    params(("name" = String, Path, description = "App name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such app", body = ErrorBody)))]
pub async fn delete(
    State(ctx): State<Ctx>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let name = app_name(&name)?;
    caller.require(Action::WriteApp(name.clone()))?;
    ctx.propose(Command::DeleteApp { name, at: now() }).await?;
    Ok(StatusCode::NO_CONTENT)
}
