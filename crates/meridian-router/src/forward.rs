//! Requests another region serves: sent once to one of that region's routers, and moved to the
//! next-best region the rules allow when none of them can be reached, or when the one reached
//! answers that no instance there could take the request (nothing reached an app).

use http::StatusCode;
use meridian_api::ErrorCode;
use meridian_core::route::{self, AppRoutes, Route};
use meridian_core::Name;

use crate::handler::{reason_value, Answer, By, Exchange};
use crate::headers::{append_forwarded_for, meridian_hop, meridian_route};
use crate::outgoing::Outgoing;
use crate::reply::Refusal;
use crate::upstream::{exchange, relay, Failure};

impl Exchange<'_> {
    /// Sends the request once to a router of the winning region. When none of that region's
    /// routers can be reached (or none is registered), or the router reached refuses it for
    /// want of a reachable or healthy instance, the next-best region the rules allow takes it,
    /// this one included.
    pub(crate) async fn forward(&self, mut out: Outgoing, first: Route) -> Answer {
        let shared = self.shared;
        let here = out.headers().clone();
        let mut forwarded = here.clone();
        append_forwarded_for(&mut forwarded, self.client);
        forwarded.insert(meridian_hop(), shared.region_value.clone());
        let mut route = first;
        let mut unreachable: Vec<Name> = Vec::new();
        loop {
            if route.region == *self.own() {
                *out.headers_mut() = here;
                return self.serve_here(out, &route).await;
            }
            *out.headers_mut() = forwarded.clone();
            let routers: Vec<&str> = self
                .table
                .routers
                .get(&route.region)
                .map(|urls| urls.iter().filter_map(|u| router_authority(u)).collect())
                .unwrap_or_default();
            // Every router of the region gets its chance before the region is given up.
            let retries = routers.len().saturating_sub(1) as u32;
            let sent = tokio::time::timeout(
                shared.config.request_timeout,
                exchange(shared, &mut out, &routers, |a| a, retries),
            )
            .await;
            let region = &route.region;
            match sent {
                Ok(Ok(reply)) => {
                    // The region's router refused before any app saw the request: the next
                    // region the rules allow gets it, when there is one.
                    if served_nothing(&reply.response) && out.can_resend() {
                        let mut without = unreachable.clone();
                        without.push(region.clone());
                        if let Some(next) = self.next_best(&without) {
                            tracing::warn!(
                                app = %self.app.name, %region, next = %next.region,
                                "the region's router had no instance to serve; trying the next region"
                            );
                            unreachable = without;
                            route = next;
                            continue;
                        }
                    }
                    shared.metrics.series(&self.app.name, region).forwarded();
                    let result = relay(shared, reply, out.upgrade.take());
                    return Answer {
                        route: reason_value(&route),
                        by: By::Region(route.region),
                        result,
                    };
                }
                Ok(Err(Failure::Unreachable)) => {
                    tracing::warn!(app = %self.app.name, %region, "no router of the region could be reached");
                    unreachable.push(route.region.clone());
                    match self.next_best(&unreachable).filter(|_| out.can_resend()) {
                        Some(next) => route = next,
                        None => {
                            let regions: Vec<&str> = unreachable.iter().map(Name::as_str).collect();
                            return Answer::refused(Refusal::new(
                                StatusCode::BAD_GATEWAY,
                                ErrorCode::RegionUnreachable,
                                format!(
                                    "no router of {} could be reached, and no other region \
                                     may serve this request",
                                    regions.join(", ")
                                ),
                            ));
                        }
                    }
                }
                Ok(Err(Failure::Broken)) => {
                    return Answer::refused(Refusal::new(
                        StatusCode::BAD_GATEWAY,
                        ErrorCode::BadGateway,
                        format!("the router in {region} failed before answering"),
                    ))
                }
                Err(_) => return Answer::refused(self.timed_out(region)),
            }
        }
    }

    /// The decision again, with the regions whose routers could not be reached left out.
    fn next_best(&self, unreachable: &[Name]) -> Option<Route> {
        let mut regions = self.app.regions.clone();
        for r in &mut regions {
            if unreachable.contains(&r.name) {
                r.healthy = 0;
            }
        }
        let routes = AppRoutes {
            residency: &self.app.residency,
            origin_bound: &self.app.origin_bound,
            regions: &regions,
        };
        route::decide(
            &self.table.catalog,
            &routes,
            &self.place,
            &self.shared.config.rtt,
        )
        .ok()
    }
}

/// Whether a router's answer is its own refusal saying no instance of the region took the
/// request: none could be reached, or none is healthy by its table. (A served answer carries
/// a route reason in `Meridian-Route`, never a refusal code.)
fn served_nothing(response: &http::Response<hyper::body::Incoming>) -> bool {
    let code = response
        .headers()
        .get(meridian_route())
        .and_then(|c| c.to_str().ok());
    matches!(response.status().as_u16(), 502 | 503)
        && code.is_some_and(|c| {
            matches!(
                ErrorCode::parse(c),
                ErrorCode::InstanceUnreachable | ErrorCode::NoHealthyInstance
            )
        })
}

/// `host:port` of a router's base URL; routers are reached over plain HTTP.
fn router_authority(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("http://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    (!authority.is_empty()).then_some(authority)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_urls_give_authorities() {
        assert_eq!(
            router_authority("http://10.0.0.1:8080"),
            Some("10.0.0.1:8080")
        );
        assert_eq!(
            router_authority("http://r.example.com/base"),
            Some("r.example.com")
        );
        assert_eq!(router_authority("https://r.example.com"), None);
        assert_eq!(router_authority("http://"), None);
    }
}
