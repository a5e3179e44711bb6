//! Deploys, releases, instances and the dry-run plan of an app.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use meridian_api::nodes::{
    DeployBody, InstanceView, NodeEligibility, PlanView, ReleaseView, UnplacedView,
};
use meridian_api::ErrorBody;
use meridian_core::schedule;
use meridian_core::Action;
use meridian_state::{Applied, Command, ReleaseRecord};

use crate::auth::Caller;
use crate::ctx::{now, Ctx};
use crate::error::ApiError;
use crate::json::JsonBody;
use crate::reconcile;
use crate::routes::apps::{app_name, current};

/// Seconds a deployed release has to become healthy everywhere.
pub const DEPLOY_DEADLINE_S: u64 = 300;

fn release_view(r: &ReleaseRecord) -> ReleaseView {
    ReleaseView {
        app: r.app.to_string(),
        number: r.number,
        image: r.config.image.clone(),
        status: r.status.as_str().to_string(),
        reason: r.reason.clone(),
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

/// Starts a rolling deploy of a new image.
#[utoipa::path(post, path = "/v1/apps/{name}/deploy", tag = "apps", request_body = DeployBody,
    security(("bearer" = [])),
    params(("name" = String, Path, description = "App name")),
    responses(
        (status = 202, description = "Release created; rolling out", body = ReleaseView),
        (status = 404, description = "No such app", body = ErrorBody),
        (status = 422, description = "Invalid image", body = ErrorBody)))]
pub async fn deploy(
    State(ctx): State<Ctx>,
    caller: Caller,
    Path(name): Path<String>,
    body: JsonBody<DeployBody>,
) -> Result<(StatusCode, Json<ReleaseView>), ApiError> {
    let name = app_name(&name)?;
    caller.require(Action::WriteApp(name.clone()))?;
    let body = body.parse()?;
    meridian_core::app::validate_image(&body.image)?;
    let applied = ctx
        .propose(Command::Deploy {
            app: name,
            image: body.image,
            deadline_s: DEPLOY_DEADLINE_S,
            at: now(),
        })
        .await?;
    let Applied::Release(r) = applied else {
        return Err(ApiError::storage("unexpected apply result"));
    };
    Ok((StatusCode::ACCEPTED, Json(release_view(&r))))
}

/// An app's releases, newest first.
#[utoipa::path(get, path = "/v1/apps/{name}/releases", tag = "apps", security(("bearer" = [])),
    params(("name" = String, Path, description = "App name")),
    responses(
        (status = 200, description = "Releases", body = [ReleaseView]),
        (status = 404, description = "No such app", body = ErrorBody)))]
pub async fn releases(
    State(ctx): State<Ctx>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Vec<ReleaseView>>, ApiError> {
    caller.require(Action::Read)?;
    let name = app_name(&name)?;
    current(&ctx, &name).await?;
    let all = ctx
        .reader()
        .releases(Some(name.as_str()))
        .await
        .map_err(ApiError::storage)?;
    Ok(Json(all.iter().map(release_view).collect()))
}

/// An app's instances: those wanted running, then the most recent stopped ones.
#[utoipa::path(get, path = "/v1/apps/{name}/instances", tag = "apps", security(("bearer" = [])),
    params(("name" = String, Path, description = "App name")),
    responses(
        (status = 200, description = "Instances", body = [InstanceView]),
        (status = 404, description = "No such app", body = ErrorBody)))]
pub async fn instances(
    State(ctx): State<Ctx>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Vec<InstanceView>>, ApiError> {
    caller.require(Action::Read)?;
    let name = app_name(&name)?;
    current(&ctx, &name).await?;
    let r = ctx.reader();
    let all = r
        .app_instances(name.as_str())
        .await
        .map_err(ApiError::storage)?;
    let nodes = r.nodes().await.map_err(ApiError::storage)?;
    let out = all
        .into_iter()
        .map(|i| InstanceView {
            region: nodes
                .iter()
                .find(|n| n.name == i.node)
                .map(|n| n.region.to_string())
                .unwrap_or_default(),
            id: i.id,
            app: i.app.to_string(),
            node: i.node.to_string(),
            release: i.release,
            state: i.state.as_str().to_string(),
            desired: i.desired.as_str().to_string(),
            address: i.address,
            exit_code: i.exit_code,
            detail: i.detail,
            created_at: i.created_at,
            updated_at: i.updated_at,
        })
        .collect();
    Ok(Json(out))
}

/// What the scheduler would do for an app now, changing nothing: every node, eligible or
/// the reason it is not.
#[utoipa::path(get, path = "/v1/apps/{name}/plan", tag = "apps", security(("bearer" = [])),
    params(("name" = String, Path, description = "App name")),
    responses(
        (status = 200, description = "The dry run", body = PlanView),
        (status = 404, description = "No such app", body = ErrorBody)))]
pub async fn plan(
    State(ctx): State<Ctx>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<PlanView>, ApiError> {
    caller.require(Action::Read)?;
    let name = app_name(&name)?;
    let app = current(&ctx, &name).await?;
    // The app in the room every other app leaves, as the leader's next round would see it.
    let mut read = ctx.reader().snapshot().await.map_err(ApiError::storage)?;
    let mut world = reconcile::World::load(&mut read)
        .await
        .map_err(ApiError::storage)?;
    let only = std::collections::BTreeSet::from([name.clone()]);
    let snap = reconcile::read_round(&mut read, &mut world, &only)
        .await
        .map_err(ApiError::storage)?;
    drop(read);
    let (demands, _) = reconcile::demands(&snap, now());
    let demand = demands
        .iter()
        .find(|d| d.app == name)
        .ok_or_else(|| ApiError::not_found(format!("app {name} does not exist")))?;
    let nodes = schedule::eligibility(&snap.view, &demands, demand)
        .into_iter()
        .map(|v| NodeEligibility {
            node: v.node.to_string(),
            region: v.region.to_string(),
            eligible: v.verdict.is_ok(),
            reason: v.verdict.err(),
        })
        .collect();
    let planned = schedule::plan(&snap.view, &demands);
    Ok(Json(PlanView {
        app: name.to_string(),
        residency: app.spec.residency_text(),
        nodes,
        would_place: planned
            .place
            .iter()
            .filter(|p| p.app == name)
            .map(|p| p.node.to_string())
            .collect(),
        unplaced: planned
            .unplaced
            .into_iter()
            .filter(|u| u.app == name)
            .map(|u| UnplacedView {
                release: u.release,
                count: u.count,
                reason: u.reason,
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use meridian_state::Desired;

    #[test]
    fn clients_read_a_running_instance_by_the_name_the_server_gives_it() {
        assert_eq!(Desired::Run.as_str(), meridian_api::nodes::DESIRED_RUN);
    }
}
