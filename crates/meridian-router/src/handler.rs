//! One request from start to end: which app, where its client is, which region serves it,
//! and then a local backend, the winning region's router, or a refusal with its reason.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use http::header::HOST;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use meridian_api::ErrorCode;
use meridian_core::route::{self, AppRoutes, ClientPlace, Route, RouteReason};
use meridian_core::Name;
use meridian_geo::client_ip;
use meridian_geo::net::canonical;

use crate::body::ProxyBody;
use crate::headers::{
    self, append_forwarded_for, meridian_client_region, meridian_hop, meridian_region,
    meridian_route, x_forwarded_host, x_forwarded_proto,
};
use crate::outgoing::Outgoing;
use crate::reply::Refusal;
use crate::router::Shared;
use crate::table::{AppEntry, RoutingTable};
use crate::upstream::{exchange, relay, Failure};

/// Answers one request. Never fails: every problem becomes a response that says what went
/// wrong.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let accept = headers::accept(req.headers());
    let (app, answer) = route_request(&shared, req, peer).await;
    let Answer { by, route, result } = answer;
    let own = &shared.config.region;
    let mut response = match result {
        Ok(response) => response,
        Err(refusal) => {
            let code = HeaderValue::from_str(refusal.code.as_str());
            let mut response = refusal.into_response(headers::prefers_html(accept.as_ref()));
            let h = response.headers_mut();
            h.insert(meridian_region(), shared.region_value.clone());
            if let Ok(code) = code {
                h.insert(meridian_route(), code);
            }
            return finish(&shared, app.as_deref(), own, response, started);
        }
    };
    let h = response.headers_mut();
    let served_by = match &by {
        By::Here => {
            // What the app said about regions is not the router's word: replace it.
            h.insert(meridian_region(), shared.region_value.clone());
            h.remove(meridian_route());
            own
        }
        By::Region(region) => {
            // The remote router set both; fill them in only if it did not.
            if !h.contains_key(meridian_region()) {
                if let Ok(v) = HeaderValue::try_from(region.as_str()) {
                    h.insert(meridian_region(), v);
                }
            }
            region
        }
    };
    if let Some(route) = route {
        h.entry(meridian_route()).or_insert(route);
    }
    finish(&shared, app.as_deref(), served_by, response, started)
}

fn finish(
    shared: &Shared,
    app: Option<&AppEntry>,
    region: &Name,
    response: Response<ProxyBody>,
    started: Instant,
) -> Response<ProxyBody> {
    // Requests for no known app have no app to count them under.
    if let Some(app) = app {
        let series = shared.metrics.series(&app.name, region);
        series.record(response.status(), started.elapsed());
    }
    response
}

/// Which region answered.
pub(crate) enum By {
    Here,
    Region(Name),
}

/// How a request went, before the router's own headers are added.
pub(crate) struct Answer {
    pub(crate) by: By,
    /// `Meridian-Route` for a served request.
    pub(crate) route: Option<HeaderValue>,
    pub(crate) result: Result<Response<ProxyBody>, Refusal>,
}

impl Answer {
    pub(crate) fn refused(refusal: Refusal) -> Self {
        Self {
            by: By::Here,
            route: None,
            result: Err(refusal),
        }
    }
}

async fn route_request(
    shared: &Shared,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> (Option<Arc<AppEntry>>, Answer) {
    if req.method() == Method::CONNECT {
        let refusal = Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::MethodNotAllowed,
            "the router does not open tunnels with CONNECT",
        );
        return (None, Answer::refused(refusal));
    }
    let host = match headers::request_host(&req) {
        Ok(host) => host,
        Err(bad) => {
            let refusal = Refusal::new(StatusCode::BAD_REQUEST, bad.code(), bad.message());
            return (None, Answer::refused(refusal));
        }
    };
    // An Arc clone of the latest table; the lock is released at once.
    let table = shared.table.borrow().clone();
    let host_text = host.to_str().unwrap_or_default();
    let Some(app) = table.app_for_host(host_text) else {
        let refusal = Refusal::new(
            StatusCode::NOT_FOUND,
            ErrorCode::UnknownApp,
            format!(
                "no app is served at {}",
                meridian_core::domain::normalize_host(host_text)
            ),
        );
        return (None, Answer::refused(refusal));
    };
    let peer = canonical(peer.ip());
    let trusted_peer = shared.config.trusted_proxies.trusts(peer);
    let client = if trusted_peer {
        client_ip(
            peer,
            &headers::forwarded_for(req.headers()),
            &shared.config.trusted_proxies,
        )
    } else {
        peer
    };
    let place = shared.locate.locate(client);
    let hop = req.headers().get(meridian_hop()).cloned();
    let out = Outgoing::new(req, host, shared.config.max_retries > 0);
    let request = Exchange {
        shared,
        table: &table,
        app: &app,
        place,
        client,
        peer,
        trusted_peer,
    };
    let answer = match hop {
        Some(from) => request.forwarded_here(out, &from).await,
        None => request.decide_and_serve(out).await,
    };
    (Some(app), answer)
}

/// A request whose app and client are known.
pub(crate) struct Exchange<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) table: &'a RoutingTable,
    pub(crate) app: &'a AppEntry,
    pub(crate) place: ClientPlace,
    /// The client, as the trusted proxies in front tell.
    pub(crate) client: IpAddr,
    /// Who connected to this router.
    pub(crate) peer: IpAddr,
    pub(crate) trusted_peer: bool,
}

impl Exchange<'_> {
    pub(crate) fn own(&self) -> &Name {
        &self.shared.config.region
    }

    fn no_route(&self, no_route: &route::NoRoute) -> Answer {
        self.shared
            .metrics
            .no_route(&self.app.name, no_route.code());
        Answer::refused(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::from(no_route),
            no_route.to_string(),
        ))
    }

    async fn decide_and_serve(&self, out: Outgoing) -> Answer {
        match self
            .table
            .decide(self.app, &self.place, &self.shared.config.rtt)
        {
            Err(no_route) => self.no_route(&no_route),
            Ok(route) if route.region == *self.own() => self.serve_here(out, &route).await,
            Ok(route) => self.forward(out, route).await,
        }
    }

    /// Another region's router sent this request here. It is served here when this region
    /// may serve the client at all (the sender may have fallen back from an unreachable
    /// region), and never forwarded again.
    async fn forwarded_here(&self, out: Outgoing, from: &HeaderValue) -> Answer {
        let rtt = &self.shared.config.rtt;
        let decided = self.table.decide(self.app, &self.place, rtt);
        if let Ok(route) = &decided {
            if route.region == *self.own() {
                return self.serve_here(out, route).await;
            }
        }
        let here = self.app.regions.iter().find(|r| r.name == *self.own());
        let qualifies = here.and_then(|region| {
            let only_here = AppRoutes {
                residency: &self.app.residency,
                origin_bound: &self.app.origin_bound,
                regions: std::slice::from_ref(region),
            };
            route::decide(&self.table.catalog, &only_here, &self.place, rtt).ok()
        });
        match (qualifies, decided) {
            (Some(route), _) => self.serve_here(out, &route).await,
            (None, Err(no_route)) => self.no_route(&no_route),
            (None, Ok(route)) => Answer::refused(Refusal::new(
                StatusCode::LOOP_DETECTED,
                ErrorCode::ForwardLoop,
                format!(
                    "the router in {from} forwarded this request to {own}, which may not \
                     serve it ({winner} should); a request is forwarded only once",
                    from = from.to_str().unwrap_or("another region"),
                    own = self.own(),
                    winner = route.region,
                ),
            )),
        }
    }

    /// Proxies to the least busy healthy instance in this region.
    pub(crate) async fn serve_here(&self, mut out: Outgoing, route: &Route) -> Answer {
        let shared = self.shared;
        let region = self.own();
        self.add_app_headers(out.headers_mut());
        let backends = self.app.backends_in(region);
        let sent = tokio::time::timeout(
            shared.config.request_timeout,
            exchange(
                shared,
                &mut out,
                backends,
                |b| b.address.as_str(),
                shared.config.max_retries,
            ),
        )
        .await;
        let app = &self.app.name;
        let result = match sent {
            Ok(Ok(reply)) => relay(shared, reply, out.upgrade.take()),
            Ok(Err(Failure::Unreachable)) => Err(Refusal::instance_unreachable(app, region)),
            Ok(Err(Failure::Broken)) => Err(Refusal::instance_broken(app, region)),
            Err(_) => Err(self.timed_out(region)),
        };
        Answer {
            by: By::Here,
            route: reason_value(route),
            result,
        }
    }

    pub(crate) fn timed_out(&self, region: &Name) -> Refusal {
        Refusal::gateway_timeout(&self.app.name, region, self.shared.config.request_timeout)
    }

    /// What the app learns about the request: who sent it (`X-Forwarded-*`, unless a trusted
    /// proxy already said), and the region nearest its client.
    fn add_app_headers(&self, headers: &mut HeaderMap) {
        headers.remove(meridian_hop());
        append_forwarded_for(headers, self.peer);
        let keep = |headers: &HeaderMap, name| self.trusted_peer && headers.contains_key(name);
        if !keep(headers, x_forwarded_proto()) {
            headers.insert(x_forwarded_proto(), HeaderValue::from_static("http"));
        }
        if !keep(headers, x_forwarded_host()) {
            if let Some(host) = headers.get(HOST).cloned() {
                headers.insert(x_forwarded_host(), host);
            }
        }
        match nearest_region(self.table, &self.place)
            .and_then(|n| HeaderValue::try_from(n.as_str()).ok())
        {
            Some(region) => headers.insert(meridian_client_region(), region),
            None => headers.remove(meridian_client_region()),
        };
    }
}

/// The region nearest `place` by great-circle distance (ties to the first name).
pub(crate) fn nearest_region<'t>(table: &'t RoutingTable, place: &ClientPlace) -> Option<&'t Name> {
    table
        .regions
        .values()
        .map(|r| (place.point.distance_km(&r.point), &r.name))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, name)| name)
}

/// `Meridian-Route` for a served request; the common reasons without an allocation.
pub(crate) fn reason_value(route: &Route) -> Option<HeaderValue> {
    match route.reason {
        RouteReason::Nearest => Some(HeaderValue::from_static("nearest")),
        RouteReason::NearestByRtt => Some(HeaderValue::from_static("nearest-rtt")),
        RouteReason::Residency => Some(HeaderValue::from_static("residency")),
        RouteReason::OriginBound(_) => HeaderValue::try_from(route.reason.short()).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_headers_match_the_reasons_short_form() {
        let reasons = [
            RouteReason::Nearest,
            RouteReason::NearestByRtt,
            RouteReason::Residency,
            RouteReason::OriginBound(meridian_core::Jurisdiction::parse("EU").unwrap()),
        ];
        for reason in reasons {
            let route = Route {
                region: Name::parse("eu-fra").unwrap(),
                distance_km: 0.0,
                rtt_ms: None,
                reason,
            };
            assert_eq!(reason_value(&route).unwrap(), route.reason.short().as_str());
        }
    }
}
