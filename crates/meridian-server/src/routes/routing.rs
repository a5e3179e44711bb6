//! Edge routing: the route table routers watch, router registration, the cluster's apps
//! domain, and the explanation of one routing decision.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::Json;
use meridian_api::agent::MAX_WATCH_MS;
use meridian_api::routing::{
    CandidateView, ClientView, ClusterSettings, RegisterRouter, RouteApp, RouteExplanation,
    RouteInstance, RouteRegion, RouteTable, RouterEntry,
};
use meridian_api::{ErrorBody, ErrorCode};
use meridian_core::route::{self, AppRoutes, ClientPlace, GeoPoint, LocatedBy, RegionRoute};
use meridian_core::{Action, DomainName, Name};
use meridian_state::{Command, DbError, ReadSnapshot};
use tokio::time::Instant;

use crate::auth::Caller;
use crate::ctx::{now, Ctx};
use crate::error::ApiError;
use crate::json::JsonBody;
use crate::query::Query;

/// Coalesces bursts of applied entries into one rebuild of the table: under a stream of writes
/// each server rebuilds it at most about four times a second, however many routers wait.
const SETTLE: Duration = Duration::from_millis(250);

/// The route table as of this server's last applied entry, built once and shared by every
/// router waiting on this server.
async fn current_table(ctx: &Ctx) -> Result<Arc<RouteTable>, ApiError> {
    let mut memo = ctx.0.route_table.lock().await;
    let mut snap = ctx.reader().snapshot().await.map_err(ApiError::storage)?;
    if let Some((index, table)) = memo.as_ref() {
        if *index == snap.applied() {
            return Ok(table.clone());
        }
    }
    let table = Arc::new(build_table(&mut snap).await.map_err(ApiError::storage)?);
    *memo = Some((snap.applied(), table.clone()));
    Ok(table)
}

/// Builds the route table from one consistent view of the applied state. Its `applied`
/// field is the index that view reflects.
pub async fn build_table(snap: &mut ReadSnapshot) -> Result<RouteTable, DbError> {
    Ok(RouteRows::read(snap).await?.into_table())
}

/// What the route table is made of, read through one snapshot.
pub struct RouteRows {
    /// The applied index the rows reflect.
    pub applied: u64,
    /// Every region.
    pub regions: Vec<meridian_state::RegionRecord>,
    /// Every app.
    pub apps: Vec<meridian_state::AppRecord>,
    /// Routable instances: (id, app, node, region, address).
    pub instances: Vec<(String, String, String, String, String)>,
    /// Routers: (name, region, url).
    pub routers: Vec<(String, String, String)>,
    /// Jurisdiction groups.
    pub catalog: meridian_core::JurisdictionCatalog,
    /// The apps domain.
    pub apps_domain: DomainName,
}

impl RouteRows {
    /// Reads them.
    pub async fn read(snap: &mut ReadSnapshot) -> Result<Self, DbError> {
        Ok(Self {
            applied: snap.applied(),
            regions: snap.regions().await?,
            apps: snap.apps().await?,
            instances: snap.routable_instances().await?,
            routers: snap.routers().await?,
            catalog: snap.catalog().await?,
            apps_domain: snap.apps_domain().await?,
        })
    }

    /// The table routers receive.
    pub fn into_table(self) -> RouteTable {
        let RouteRows {
            applied,
            regions,
            apps,
            instances,
            routers,
            catalog,
            apps_domain,
        } = self;
        let mut by_app: BTreeMap<String, Vec<RouteInstance>> = BTreeMap::new();
        for (id, app, node, region, address) in instances {
            by_app.entry(app).or_default().push(RouteInstance {
                id,
                node,
                region,
                address,
            });
        }
        let mut table = RouteTable {
            version: 0,
            applied: 0,
            apps_domain: apps_domain.to_string(),
            regions: regions
                .iter()
                .map(|r| RouteRegion {
                    name: r.region.name.to_string(),
                    country: r.region.country.to_string(),
                    latitude: r.region.latitude,
                    longitude: r.region.longitude,
                })
                .collect(),
            jurisdictions: catalog
                .custom_groups()
                .map(|(g, members)| {
                    (
                        g.to_string(),
                        members.iter().map(|c| c.to_string()).collect(),
                    )
                })
                .collect(),
            routers: routers
                .into_iter()
                .map(|(name, region, url)| RouterEntry { name, region, url })
                .collect(),
            apps: apps
                .iter()
                .map(|a| RouteApp {
                    name: a.spec.name.to_string(),
                    residency: a.spec.residency.iter().map(ToString::to_string).collect(),
                    origin_bound: a
                        .spec
                        .origin_bound
                        .iter()
                        .map(ToString::to_string)
                        .collect(),
                    domains: a.spec.domains.iter().map(ToString::to_string).collect(),
                    instances: by_app.remove(a.spec.name.as_str()).unwrap_or_default(),
                })
                .collect(),
        };
        table.version = fingerprint(&table);
        table.applied = applied;
        table
    }
}

/// FNV-1a over the table's JSON (with version and applied 0): equal tables, equal versions,
/// whatever else was applied meanwhile. Never 0, so
/// `after=0` always answers at once.
fn fingerprint(table: &RouteTable) -> u64 {
    let bytes = serde_json::to_vec(table).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.max(1)
}

/// The route table, once its version differs from `after` or after `wait_ms`.
#[utoipa::path(get, path = "/v1/router/table", tag = "routing",
    security(("bearer" = [])),
    params(
        ("after" = Option<u64>, Query, format = "uint64", minimum = 0,
            exclusive_maximum = 18446744073709551616.0,
            description = "Answer once the table's version differs from this (default 0: at once); \
                any 64-bit unsigned value"),
        ("wait_ms" = Option<u64>, Query, minimum = 0, maximum = 60000,
            description = "Longest wait in milliseconds (default 0); more than 60000 is refused")),
    responses(
        (status = 200, description = "The route table", body = RouteTable),
        (status = 403, description = "Not a router or admin token", body = ErrorBody),
        (status = 503, description = "`shutting_down`: the server is stopping", body = ErrorBody)))]
pub async fn table(
    State(ctx): State<Ctx>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Json<RouteTable>, ApiError> {
    caller.require_router(&ctx, None, None)?;
    let query = Query::parse(raw.as_deref());
    let after = query.u64("after", 0, u64::MAX)?;
    let wait = Duration::from_millis(query.u64("wait_ms", 0, MAX_WATCH_MS)?);
    let deadline = Instant::now() + wait;
    let mut applied = ctx.raft().metrics();
    loop {
        // Mark the current state seen before reading, so a change during the read wakes us.
        applied.borrow_and_update();
        let table = current_table(&ctx).await?;
        if table.version != after || Instant::now() >= deadline {
            return Ok(Json(RouteTable::clone(&table)));
        }
        tokio::select! {
            changed = applied.changed() => {
                if changed.is_err() {
                    let stopping = "the server is stopping";
                    return Err(ApiError::unavailable(ErrorCode::ShuttingDown, stopping));
                }
                tokio::time::sleep(SETTLE).await;
            }
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// Registers (or re-registers) an edge router so the others can forward to it.
#[utoipa::path(post, path = "/v1/router/register", tag = "routing", request_body = RegisterRouter,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Registered", body = RouterEntry),
        (status = 422, description = "Invalid field or unknown region", body = ErrorBody)))]
pub async fn register(
    State(ctx): State<Ctx>,
    caller: Caller,
    body: JsonBody<RegisterRouter>,
) -> Result<Json<RouterEntry>, ApiError> {
    // The token and a router's certificate before the body is looked at; then the input,
    // then that the certificate is this router's.
    caller.require_router(&ctx, None, None)?;
    let body = body.parse()?;
    let name = Name::parse_field("name", &body.name).map_err(ApiError::from)?;
    let region = Name::parse_field("region", &body.region).map_err(ApiError::from)?;
    let url = body.url.trim_end_matches('/').to_string();
    let parsed = reqwest::Url::parse(&url)
        .map_err(|e| ApiError::invalid("url", format!("{url:?} is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(ApiError::invalid(
            "url",
            format!("{url:?} must be an http:// or https:// URL with a host"),
        ));
    }
    caller.require_router(&ctx, Some(name.as_str()), Some(region.as_str()))?;
    ctx.propose(Command::RegisterRouter {
        name: name.clone(),
        region: region.clone(),
        url: url.clone(),
        at: now(),
    })
    .await?;
    Ok(Json(RouterEntry {
        name: name.to_string(),
        region: region.to_string(),
        url,
    }))
}

/// Cluster-wide settings.
#[utoipa::path(get, path = "/v1/cluster/settings", tag = "cluster", security(("bearer" = [])),
    responses((status = 200, description = "The settings", body = ClusterSettings)))]
pub async fn settings(
    State(ctx): State<Ctx>,
    caller: Caller,
) -> Result<Json<ClusterSettings>, ApiError> {
    caller.require(Action::Read)?;
    let r = ctx.reader();
    let apps_domain = r.apps_domain().await.map_err(ApiError::storage)?;
    let residency = r.default_residency().await.map_err(ApiError::storage)?;
    Ok(Json(ClusterSettings {
        apps_domain: Some(apps_domain.to_string()),
        default_residency: Some(residency.iter().map(ToString::to_string).collect()),
    }))
}

/// Changes cluster-wide settings; fields left out stay as they are.
#[utoipa::path(patch, path = "/v1/cluster/settings", tag = "cluster", request_body = ClusterSettings,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The settings", body = ClusterSettings),
        (status = 409, description = "An app's custom domain lies under the new apps domain", body = ErrorBody),
        (status = 422, description = "Invalid field: a malformed apps domain; a default residency naming a jurisdiction twice, or one that is not a country code or a known group", body = ErrorBody)))]
pub async fn patch_settings(
    State(ctx): State<Ctx>,
    caller: Caller,
    body: JsonBody<ClusterSettings>,
) -> Result<Json<ClusterSettings>, ApiError> {
    caller.require(Action::ManageCluster)?;
    let body = body.parse()?;
    let domain = body
        .apps_domain
        .as_deref()
        .map(|d| DomainName::parse_field("apps_domain", d))
        .transpose()?;
    let residency = body.default_residency()?;
    if let Some(domain) = domain {
        ctx.propose(Command::SetAppsDomain { domain }).await?;
    }
    if let Some(residency) = residency {
        ctx.propose(Command::SetDefaultResidency { residency })
            .await?;
    }
    settings(State(ctx), caller).await
}

/// How the document declares `?ip=`: an IPv4 or an IPv6 address, what `IpAddr` parses.
struct ClientIp;

impl utoipa::PartialSchema for ClientIp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat};
        let address = |format| {
            ObjectBuilder::new()
                .schema_type(utoipa::openapi::Type::String)
                .format(Some(SchemaFormat::KnownFormat(format)))
        };
        OneOfBuilder::new()
            .item(address(KnownFormat::Ipv4))
            .item(address(KnownFormat::Ipv6))
            .into()
    }
}

impl utoipa::ToSchema for ClientIp {}

/// Which region would serve a client at `ip` for `app`, and why.
#[utoipa::path(get, path = "/v1/route", tag = "routing", security(("bearer" = [])),
    params(
        ("app" = String, Query, min_length = 1, description = "The app"),
        ("ip" = inline(ClientIp), Query, description = "The client's IP address, v4 or v6"),
        ("region" = Option<String>, Query, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
            description = "Where to place a client no geo source knows (default: this server's region)")),
    responses(
        (status = 200, description = "The decision", body = RouteExplanation),
        (status = 404, description = "No such app", body = ErrorBody),
        (status = 422, description = "`invalid`: the client cannot be located, or `region` does not exist", body = ErrorBody)))]
pub async fn explain(
    State(ctx): State<Ctx>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Json<RouteExplanation>, ApiError> {
    caller.require(Action::Read)?;
    let query = Query::parse(raw.as_deref());
    let app_name = query.required("app", "the app")?;
    let ip_text = query.required("ip", "the client's address")?;
    let ip: IpAddr = ip_text
        .parse()
        .map_err(|_| ApiError::invalid_query("ip", format!("{ip_text:?} is not an IP address")))?;
    let r = ctx.reader();
    let app = r
        .app(app_name)
        .await
        .map_err(ApiError::storage)?
        .ok_or_else(|| ApiError::not_found(format!("app {app_name} does not exist")))?;
    let regions = r.regions().await.map_err(ApiError::storage)?;
    let catalog = r.catalog().await.map_err(ApiError::storage)?;
    let mut healthy: BTreeMap<String, u32> = BTreeMap::new();
    for (_, a, _, region, _) in r.routable_instances().await.map_err(ApiError::storage)? {
        if a == app.spec.name.as_str() {
            *healthy.entry(region).or_default() += 1;
        }
    }
    let routes: Vec<RegionRoute> = regions
        .iter()
        .map(|g| RegionRoute {
            name: g.region.name.clone(),
            country: g.region.country,
            point: GeoPoint {
                latitude: g.region.latitude,
                longitude: g.region.longitude,
            },
            healthy: healthy.get(g.region.name.as_str()).copied().unwrap_or(0),
        })
        .collect();

    let client = match ctx.0.locator.locate(ip) {
        Some(place) => place,
        None => {
            let fallback = query
                .get("region")
                .map(str::to_string)
                .or_else(|| ctx.0.region.clone())
                .ok_or_else(|| {
                    ApiError::invalid(
                        "ip",
                        format!(
                            "no geo source on this server knows {ip}; pass ?region=NAME to place \
                             the client in a region"
                        ),
                    )
                })?;
            let home = routes
                .iter()
                .find(|g| g.name.as_str() == fallback)
                .ok_or_else(|| {
                    ApiError::invalid("region", format!("region {fallback} does not exist"))
                })?;
            ClientPlace {
                point: home.point,
                country: home.country,
                located_by: LocatedBy::RouterRegion,
            }
        }
    };
    let app_routes = AppRoutes {
        residency: &app.spec.residency,
        origin_bound: &app.spec.origin_bound,
        regions: &routes,
    };
    let decision = route::decide(&catalog, &app_routes, &client, &ctx.0.rtt);
    let (region, route_code, explanation) = match &decision {
        Ok(r) => (
            Some(r.region.to_string()),
            r.reason.short(),
            format!(
                "served from {} ({:.0} km from the client): {}",
                r.region,
                r.distance_km,
                r.reason.short()
            ),
        ),
        Err(e) => (None, e.code().to_string(), e.to_string()),
    };
    Ok(Json(RouteExplanation {
        app: app.spec.name.to_string(),
        ip: ip.to_string(),
        client: ClientView {
            latitude: client.point.latitude,
            longitude: client.point.longitude,
            country: client.country.to_string(),
            located_by: client.located_by.as_str().to_string(),
        },
        region,
        route: route_code,
        explanation,
        candidates: routes
            .iter()
            .map(|g| CandidateView {
                region: g.name.to_string(),
                country: g.country.to_string(),
                distance_km: client.point.distance_km(&g.point),
                healthy: g.healthy,
                excluded: route::exclusion(&catalog, &app_routes, &client, g),
            })
            .collect(),
    }))
}
