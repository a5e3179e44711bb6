//! Images without a registry: blobs stored on the server that received them, names replicated
//! through Raft, agents fetching from any server (which proxies from a holder when it has no
//! copy).

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use meridian_api::images::{is_digest, BlobStored, ImageView, RegisterImage};
use meridian_api::{ErrorBody, ErrorCode};
use meridian_core::Action;
use meridian_state::{Applied, Command, ImageRecord};
use tokio_util::io::ReaderStream;

use crate::auth::{Caller, ClusterPeer};
use crate::ctx::{now, Ctx};
use crate::error::ApiError;
use crate::image_store::StoreError;
use crate::json::JsonBody;
use crate::query::Query;

/// Where peers serve the blobs they hold.
pub const INTERNAL_BLOB_PATH: &str = "/v1/internal/images/{digest}";

fn view(r: &ImageRecord) -> ImageView {
    ImageView {
        name: r.name.clone(),
        digest: r.digest.clone(),
        size: r.size,
        holders: r.holders.clone(),
        pushed_at: r.pushed_at,
    }
}

/// Stores an uploaded `docker save` tar on this server.
#[utoipa::path(post, path = "/v1/images/blobs", tag = "images", security(("bearer" = [])),
    request_body(content = Vec<u8>, content_type = "application/x-tar", description = "docker save output"),
    responses(
        (status = 201, description = "Stored", body = BlobStored),
        (status = 400, description = "Empty or broken upload", body = ErrorBody),
        (status = 413, description = "Too large", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`: the blob cannot be written", body = ErrorBody)))]
pub async fn upload(
    State(ctx): State<Ctx>,
    caller: Caller,
    body: Body,
) -> Result<(StatusCode, Json<BlobStored>), ApiError> {
    caller.require(Action::PushImage)?;
    let (digest, size) = ctx
        .0
        .images
        .put(body.into_data_stream())
        .await
        .map_err(|e| match e {
            StoreError::TooLarge(_) => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                e.to_string(),
            ),
            StoreError::Empty | StoreError::Upload(_) => ApiError::bad_request(e.to_string()),
            StoreError::Disk(_) => ApiError::storage(e),
        })?;
    tracing::info!(%digest, size, "image blob stored");
    Ok((
        StatusCode::CREATED,
        Json(BlobStored {
            digest,
            size,
            server: ctx.0.id,
        }),
    ))
}

/// Names a blob a server holds, so agents can fetch it by image reference.
#[utoipa::path(post, path = "/v1/images", tag = "images", request_body = RegisterImage,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Registered", body = ImageView),
        (status = 422, description = "Invalid name or digest, or the server holds no such blob", body = ErrorBody),
        (status = 503, description = "`holder_unreachable`: the server named cannot be asked about its blob", body = ErrorBody)))]
pub async fn register(
    State(ctx): State<Ctx>,
    caller: Caller,
    body: JsonBody<RegisterImage>,
) -> Result<(StatusCode, Json<ImageView>), ApiError> {
    caller.require(Action::PushImage)?;
    let body = body.parse()?;
    meridian_core::app::validate_image(&body.name)
        .map_err(|e| ApiError::invalid("name", e.problem.to_string()))?;
    if !is_digest(&body.digest) {
        return Err(ApiError::invalid(
            "digest",
            "must be sha256: followed by 64 lowercase hex digits",
        ));
    }
    let size = blob_size(&ctx, body.server, &body.digest).await?;
    let applied = ctx
        .propose(Command::RegisterImage {
            name: body.name,
            digest: body.digest,
            size,
            holder: body.server,
            at: now(),
        })
        .await?;
    let Applied::Image(r) = applied else {
        return Err(ApiError::storage("unexpected apply result"));
    };
    Ok((StatusCode::CREATED, Json(view(&r))))
}

/// The size of the blob `digest` on server `server`, or a 422 when it does not hold it.
async fn blob_size(ctx: &Ctx, server: u64, digest: &str) -> Result<u64, ApiError> {
    let missing = || {
        ApiError::invalid(
            "server",
            format!("server {server} holds no blob {digest}; upload it with POST /v1/images/blobs first"),
        )
    };
    if server == ctx.0.id {
        let file = ctx.0.images.open(digest).await.ok_or_else(missing)?;
        return Ok(file.metadata().await.map_err(ApiError::storage)?.len());
    }
    let url = member_url(ctx, server).ok_or_else(missing)?;
    let resp = ctx
        .0
        .forward
        .head(format!("{url}/v1/internal/images/{digest}"))
        .header(meridian_api::CLUSTER_SECRET_HEADER, &ctx.0.secret)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| {
            ApiError::unavailable(
                ErrorCode::HolderUnreachable,
                format!("server {server}: {e}"),
            )
        })?;
    if !resp.status().is_success() {
        return Err(missing());
    }
    resp.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .ok_or_else(missing)
}

fn member_url(ctx: &Ctx, id: u64) -> Option<String> {
    let metrics = ctx.raft().metrics();
    let m = metrics.borrow();
    let addr = m.membership_config.membership().get_node(&id)?.addr.clone();
    Some(addr.trim_end_matches('/').to_string())
}

/// Lists pushed images.
#[utoipa::path(get, path = "/v1/images", tag = "images", security(("bearer" = [])),
    responses((status = 200, description = "Every pushed image", body = [ImageView])))]
pub async fn list(
    State(ctx): State<Ctx>,
    caller: Caller,
) -> Result<Json<Vec<ImageView>>, ApiError> {
    caller.require(Action::Read)?;
    let all = ctx.reader().images().await.map_err(ApiError::storage)?;
    Ok(Json(all.iter().map(view).collect()))
}

fn tar_response(len: u64, body: Body) -> Response {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

/// An image for an agent, as `docker save` wrote it: from this server's disk, or relayed from
/// a server that holds it.
#[utoipa::path(get, path = "/v1/agent/images", tag = "agent", security(("bearer" = [])),
    params(("name" = String, Query, min_length = 1, description = "Image reference")),
    responses(
        (status = 200, description = "The tar", content_type = "application/x-tar"),
        (status = 404, description = "Not pushed", body = ErrorBody),
        (status = 503, description = "`image_unavailable`: no server holding it answers; `storage_unavailable`", body = ErrorBody)))]
pub async fn fetch(
    State(ctx): State<Ctx>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    caller.require_agent(&ctx, None, None)?;
    let query = Query::parse(raw.as_deref());
    let name = query.required("name", "the image")?.to_string();
    let image = ctx
        .reader()
        .image(&name)
        .await
        .map_err(ApiError::storage)?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "image {name} was not pushed to the control plane (meridian images push {name})"
            ))
        })?;
    if let Some(file) = ctx.0.images.open(&image.digest).await {
        return Ok(tar_response(
            image.size,
            Body::from_stream(ReaderStream::new(file)),
        ));
    }
    for holder in image.holders.iter().filter(|h| **h != ctx.0.id) {
        let Some(url) = member_url(&ctx, *holder) else {
            continue;
        };
        let resp = ctx
            .0
            .forward
            .get(format!("{url}/v1/internal/images/{}", image.digest))
            .header(meridian_api::CLUSTER_SECRET_HEADER, &ctx.0.secret)
            .send()
            .await;
        match resp {
            Ok(r) if r.status().is_success() => {
                return Ok(tar_response(
                    image.size,
                    Body::from_stream(r.bytes_stream()),
                ));
            }
            Ok(r) => tracing::warn!(holder, status = %r.status(), "holder did not serve the image"),
            Err(e) => {
                let error = meridian_core::ErrorChain(&e);
                tracing::warn!(holder, %error, "holder unreachable");
            }
        }
    }
    Err(ApiError::unavailable(
        ErrorCode::ImageUnavailable,
        format!("no server holding {name} ({}) answers", image.digest),
    ))
}

/// A blob this server holds, for other servers (cluster secret required). `HEAD` answers its
/// size in Content-Length.
#[utoipa::path(method(get, head), path = INTERNAL_BLOB_PATH, tag = "internal",
    security(("cluster_secret" = [])),
    params(("digest" = String, Path, description = "sha256:<64 hex digits>")),
    responses(
        (status = 200, description = "The tar", content_type = "application/x-tar"),
        (status = 404, description = "`not_found`: this server holds no such blob", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`: the blob cannot be read", body = ErrorBody)))]
pub async fn internal_blob(
    State(ctx): State<Ctx>,
    _peer: ClusterPeer,
    Path(digest): Path<String>,
) -> Result<Response, ApiError> {
    if !is_digest(&digest) {
        return Err(ApiError::not_found("no such blob"));
    }
    let file = ctx
        .0
        .images
        .open(&digest)
        .await
        .ok_or_else(|| ApiError::not_found("no such blob"))?;
    let len = file.metadata().await.map_err(ApiError::storage)?.len();
    Ok(tar_response(len, Body::from_stream(ReaderStream::new(file))).into_response())
}
