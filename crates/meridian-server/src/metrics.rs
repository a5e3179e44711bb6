//! Prometheus metrics: request counts and latency per route, and Raft progress.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use meridian_api::ErrorCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::ctx::Ctx;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms to about 8 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// The server's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    term: Gauge,
    last_log: Gauge,
    applied: Gauge,
    committed: Gauge,
    apply_lag: Gauge,
    is_leader: Gauge,
    voters: Gauge,
    resident: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut r = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        r.register(
            "meridian_http_requests",
            "HTTP requests answered",
            requests.clone(),
        );
        r.register(
            "meridian_http_request_duration_seconds",
            "HTTP request latency",
            latency.clone(),
        );
        let gauge = |r: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            r.register(name, help, g.clone());
            g
        };
        let term = gauge(&mut r, "meridian_raft_term", "Current Raft term");
        let last_log = gauge(
            &mut r,
            "meridian_raft_last_log_index",
            "Index of the last log entry",
        );
        let applied = gauge(
            &mut r,
            "meridian_raft_applied_index",
            "Index of the last applied entry",
        );
        let committed = gauge(
            &mut r,
            "meridian_raft_commit_index",
            "Index of the last committed entry",
        );
        let apply_lag = gauge(
            &mut r,
            "meridian_raft_apply_lag",
            "Log entries not yet applied",
        );
        let is_leader = gauge(&mut r, "meridian_raft_is_leader", "1 on the leader, else 0");
        let voters = gauge(
            &mut r,
            "meridian_raft_voters",
            "Voters in the current membership",
        );
        let resident = gauge(
            &mut r,
            "meridian_process_resident_memory_bytes",
            "Resident memory of this server process (Linux; 0 elsewhere)",
        );
        Self {
            registry: Arc::new(r),
            requests,
            latency,
            term,
            last_log,
            applied,
            committed,
            apply_lag,
            is_leader,
            voters,
            resident,
        }
    }
}

/// This process's resident set size, from `/proc/self/status` (0 where there is none).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Counts and times every request by its route pattern.
pub async fn track(State(ctx): State<Ctx>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    let m = &ctx.0.metrics;
    m.latency
        .get_or_create(&RouteLabels {
            route: route.clone(),
        })
        .observe(start.elapsed().as_secs_f64());
    m.requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: resp.status().as_u16(),
        })
        .inc();
    resp
}

/// `GET /metrics` in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "meta",
    responses(
        (status = 200, description = "Request counts and latency per route, Raft progress",
            content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String),
        (status = 503, description = "`metrics_unavailable`: the metrics could not be encoded", body = meridian_api::ErrorBody)))]
pub async fn render(State(ctx): State<Ctx>) -> Response {
    let m = &ctx.0.metrics;
    let raft = ctx.raft().metrics().borrow().clone();
    let committed = ctx
        .raft()
        .with_raft_state(|s| s.committed.map(|c| c.index))
        .await
        .ok()
        .flatten();
    let last_log = raft.last_log_index.unwrap_or(0);
    let applied = raft.last_applied.map(|l| l.index).unwrap_or(0);
    m.term.set(gauge_value(raft.current_term));
    m.last_log.set(gauge_value(last_log));
    m.applied.set(gauge_value(applied));
    m.committed.set(gauge_value(committed.unwrap_or(0)));
    m.apply_lag
        .set(gauge_value(last_log.saturating_sub(applied)));
    m.is_leader
        .set(i64::from(raft.current_leader == Some(ctx.0.id)));
    m.voters.set(gauge_value(
        raft.membership_config.voter_ids().count() as u64
    ));
    m.resident.set(gauge_value(resident_bytes()));
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &m.registry).is_err() {
        return crate::error::ApiError::unavailable(
            ErrorCode::MetricsUnavailable,
            "metrics could not be encoded",
        )
        .into_response();
    }
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
