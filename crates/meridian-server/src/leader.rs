//! Any server answers any request: unless a read asks for `?stale=true`, requests are served by
//! the leader. A follower forwards the request once (the leader may not forward it again);
//! the leader confirms its leadership with a quorum before serving a read (read index), so
//! reads are linearizable.

use std::time::Duration;

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use meridian_api::{ErrorCode, FORWARDED_BY_HEADER, SERVED_BY_HEADER};
use meridian_state::NodeId;
use openraft::error::{CheckIsLeaderError, RaftError};
use tokio::time::Instant;

use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::query::Query;

/// How long a request waits for a leader to be elected or to become reachable.
const LEADER_WAIT: Duration = Duration::from_secs(5);
/// How often the leader is looked up again while waiting.
const POLL: Duration = Duration::from_millis(25);
/// How long a forwarded request may take at the leader.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(15);

/// Headers carried over when forwarding.
const FORWARDED_HEADERS: [&str; 4] = [
    "authorization",
    "content-type",
    "accept",
    meridian_api::CLUSTER_SECRET_HEADER,
];

/// The current leader as this server sees it: its id and URL.
pub fn leader(ctx: &Ctx) -> Option<(NodeId, String)> {
    // Called on every request: read through the borrow instead of cloning the metrics.
    let metrics = ctx.raft().metrics();
    let m = metrics.borrow();
    let id = m.current_leader?;
    let addr = m.membership_config.membership().get_node(&id)?.addr.clone();
    Some((id, addr))
}

/// GET and HEAD read; everything else writes.
fn is_read(parts: &Parts) -> bool {
    parts.method == Method::GET || parts.method == Method::HEAD
}

/// Whether a read asks for `?stale=true`. Writes ignore the parameter: they always go to the
/// leader.
fn wants_stale(parts: &Parts) -> Result<bool, ApiError> {
    if !is_read(parts) {
        return Ok(false);
    }
    Query::parse(parts.uri.query()).bool("stale", false)
}

enum ForwardFailure {
    /// Nothing reached the leader: safe to try again.
    NotSent,
    /// The request may have been processed: the outcome is unknown.
    Unknown(String),
}

/// Middleware over the public API routes.
pub async fn route_to_leader(State(ctx): State<Ctx>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    match wants_stale(&parts) {
        Ok(true) => return next.run(Request::from_parts(parts, body)).await,
        Ok(false) => {}
        Err(e) => return e.into_response(),
    }
    let bytes = match to_bytes(body, ctx.0.max_body).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                format!("request bodies are limited to {} bytes", ctx.0.max_body),
            )
            .into_response()
        }
    };
    let deadline = Instant::now() + LEADER_WAIT;
    let already_forwarded = parts.headers.contains_key(FORWARDED_BY_HEADER);
    loop {
        match leader(&ctx) {
            Some((id, _)) if id == ctx.0.id => match confirm_for_read(&ctx, &parts).await {
                Ok(()) => {
                    return next
                        .run(Request::from_parts(parts, Body::from(bytes)))
                        .await
                }
                Err(Some(e)) => return e.into_response(),
                Err(None) => {} // leadership moved: look again
            },
            Some((_, addr)) if !already_forwarded => {
                match forward(&ctx, &parts, bytes.clone(), &addr).await {
                    Ok(resp) => return resp,
                    Err(ForwardFailure::NotSent) => {}
                    Err(ForwardFailure::Unknown(why)) => {
                        return ApiError::unavailable(
                            ErrorCode::LeaderUnreachable,
                            format!(
                        "lost contact with the leader mid-request ({why}); the outcome is unknown"
                    ),
                        )
                        .into_response()
                    }
                }
            }
            _ => {}
        }
        if Instant::now() >= deadline {
            return ApiError::unavailable(
                ErrorCode::NoLeader,
                "no leader is reachable right now; retry shortly",
            )
            .into_response();
        }
        tokio::time::sleep(POLL).await;
    }
}

/// On the leader, confirms leadership with a quorum before a read. `Err(None)` means this
/// server is no longer the leader.
async fn confirm_for_read(ctx: &Ctx, parts: &Parts) -> Result<(), Option<ApiError>> {
    if !is_read(parts) {
        return Ok(());
    }
    match ctx.raft().ensure_linearizable().await {
        Ok(_) => Ok(()),
        Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_))) => Err(None),
        Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q))) => {
            Err(Some(ApiError::unavailable(
                ErrorCode::NoQuorum,
                format!("the leader cannot reach a quorum: {q}"),
            )))
        }
        Err(e) => Err(Some(ApiError::unavailable(
            ErrorCode::RaftUnavailable,
            e.to_string(),
        ))),
    }
}

async fn forward(
    ctx: &Ctx,
    parts: &Parts,
    body: Bytes,
    leader: &str,
) -> Result<Response, ForwardFailure> {
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let url = format!("{leader}{path}");
    let mut req = ctx
        .0
        .forward
        .request(parts.method.clone(), &url)
        .timeout(FORWARD_TIMEOUT)
        .header(FORWARDED_BY_HEADER, ctx.0.id.to_string());
    for name in FORWARDED_HEADERS {
        if let Some(v) = parts.headers.get(name) {
            req = req.header(name, v.clone());
        }
    }
    // The leader sees this server's certificate: tell it whose this request's was.
    if let Some(peer) = crate::auth::peer_identity(parts) {
        req = req.header(meridian_api::PEER_HEADER, peer.dns_name());
    }
    if let Some(addr) = crate::auth::client_addr(parts) {
        req = req.header(meridian_api::CLIENT_ADDR_HEADER, addr.to_string());
    }
    let resp = req.body(body).send().await.map_err(|e| {
        if e.is_connect() {
            ForwardFailure::NotSent
        } else {
            ForwardFailure::Unknown(e.to_string())
        }
    })?;
    let status = resp.status();
    let content_type = resp.headers().get("content-type").cloned();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| ForwardFailure::Unknown(e.to_string()))?;
    let mut out = Response::new(Body::from(bytes));
    *out.status_mut() = status;
    if let Some(ct) = content_type {
        out.headers_mut().insert("content-type", ct);
    }
    if let Ok(v) = HeaderValue::from_str(leader) {
        out.headers_mut().insert(SERVED_BY_HEADER, v);
    }
    Ok(out)
}
