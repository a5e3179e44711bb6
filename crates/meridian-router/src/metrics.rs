//! The router's Prometheus metrics. Label sets are built once per app and region and cached,
//! so the request path only bumps counters it already holds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use http::StatusCode;
use meridian_core::Name;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Request durations, seconds: half a millisecond to ten seconds.
const BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Status classes; 101 (an upgraded connection) counts as `1xx`.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    app: String,
    region: String,
    class: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppRegion {
    app: String,
    region: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NoRouteLabels {
    app: String,
    code: &'static str,
}

type HistogramFamily = Family<AppRegion, Histogram, fn() -> Histogram>;

/// One app's metrics for one region.
pub(crate) struct Series {
    classes: [Counter; 5],
    duration: Histogram,
    forwarded: Counter,
}

impl Series {
    /// Counts a request answered with `status` after `elapsed` (to its response headers).
    pub(crate) fn record(&self, status: StatusCode, elapsed: Duration) {
        let class = (status.as_u16() / 100).clamp(1, 5) as usize - 1;
        self.classes[class].inc();
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// Counts a request forwarded to this series' region.
    pub(crate) fn forwarded(&self) {
        self.forwarded.inc();
    }
}

/// Every metric the router keeps.
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: HistogramFamily,
    forwarded: Family<AppRegion, Counter>,
    no_route: Family<NoRouteLabels, Counter>,
    ejections: Counter,
    series: RwLock<HashMap<Name, HashMap<Name, Arc<Series>>>>,
    /// The refusal codes counted per app, to find their series again.
    no_route_codes: Mutex<HashMap<Name, Vec<&'static str>>>,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let duration: HistogramFamily = Family::new_with_constructor(|| Histogram::new(BUCKETS));
        let forwarded = Family::<AppRegion, Counter>::default();
        let no_route = Family::<NoRouteLabels, Counter>::default();
        let ejections = Counter::default();
        let mut registry = Registry::default();
        registry.register(
            "meridian_router_requests",
            "Requests answered, by app, serving region and status class",
            requests.clone(),
        );
        registry.register(
            "meridian_router_request_duration_seconds",
            "Time from a request's headers to its response headers, by app and serving region",
            duration.clone(),
        );
        registry.register(
            "meridian_router_forwarded",
            "Requests forwarded to another region's router, by app and that region",
            forwarded.clone(),
        );
        registry.register(
            "meridian_router_no_route",
            "Requests refused because no region may serve them, by app and reason",
            no_route.clone(),
        );
        registry.register(
            "meridian_router_backend_ejections",
            "Backends and routers skipped after refusing or timing out a connection",
            ejections.clone(),
        );
        Self {
            registry,
            requests,
            duration,
            forwarded,
            no_route,
            ejections,
            series: RwLock::new(HashMap::new()),
            no_route_codes: Mutex::new(HashMap::new()),
        }
    }

    /// The ejection counter, shared with the upstream registry.
    pub(crate) fn ejections(&self) -> Counter {
        self.ejections.clone()
    }

    /// `app`'s metrics in `region`.
    pub(crate) fn series(&self, app: &Name, region: &Name) -> Arc<Series> {
        {
            let cache = self.series.read().unwrap_or_else(|p| p.into_inner());
            if let Some(s) = cache.get(app).and_then(|r| r.get(region)) {
                return Arc::clone(s);
            }
        }
        let pair = AppRegion {
            app: app.to_string(),
            region: region.to_string(),
        };
        let classes = CLASSES.map(|class| {
            self.requests.get_or_create_owned(&RequestLabels {
                app: pair.app.clone(),
                region: pair.region.clone(),
                class,
            })
        });
        let series = Arc::new(Series {
            classes,
            duration: self.duration.get_or_create_owned(&pair),
            forwarded: self.forwarded.get_or_create_owned(&pair),
        });
        let mut cache = self.series.write().unwrap_or_else(|p| p.into_inner());
        let entry = cache
            .entry(app.clone())
            .or_default()
            .entry(region.clone())
            .or_insert(series);
        Arc::clone(entry)
    }

    /// Counts a request for `app` refused for `code`.
    pub(crate) fn no_route(&self, app: &Name, code: &'static str) {
        self.no_route
            .get_or_create(&NoRouteLabels {
                app: app.to_string(),
                code,
            })
            .inc();
        let mut codes = self
            .no_route_codes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let seen = codes.entry(app.clone()).or_default();
        if !seen.contains(&code) {
            seen.push(code);
        }
    }

    /// Drops every series of the apps `keep` refuses (apps gone from the route table), so a
    /// router that outlives many apps does not export them forever.
    pub(crate) fn forget_apps(&self, keep: impl Fn(&Name) -> bool) {
        let gone: Vec<(Name, Vec<Name>)> = {
            let mut cache = self.series.write().unwrap_or_else(|p| p.into_inner());
            let gone = cache
                .iter()
                .filter(|(app, _)| !keep(app))
                .map(|(app, regions)| (app.clone(), regions.keys().cloned().collect()))
                .collect::<Vec<_>>();
            for (app, _) in &gone {
                cache.remove(app);
            }
            gone
        };
        for (app, regions) in gone {
            for region in regions {
                let pair = AppRegion {
                    app: app.to_string(),
                    region: region.to_string(),
                };
                for class in CLASSES {
                    self.requests.remove(&RequestLabels {
                        app: pair.app.clone(),
                        region: pair.region.clone(),
                        class,
                    });
                }
                self.duration.remove(&pair);
                self.forwarded.remove(&pair);
            }
        }
        let mut codes = self
            .no_route_codes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        codes.retain(|app, seen| {
            let kept = keep(app);
            if !kept {
                for code in seen.iter() {
                    self.no_route.remove(&NoRouteLabels {
                        app: app.to_string(),
                        code,
                    });
                }
            }
            kept
        });
    }

    /// The Prometheus text exposition.
    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding the router's metrics failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_shared_and_exported() {
        let m = Metrics::new();
        let (web, fra) = (Name::parse("web").unwrap(), Name::parse("eu-fra").unwrap());
        m.series(&web, &fra)
            .record(StatusCode::OK, Duration::from_millis(3));
        m.series(&web, &fra)
            .record(StatusCode::BAD_GATEWAY, Duration::from_millis(3));
        m.series(&web, &fra).forwarded();
        m.no_route(&web, "origin_bound");
        m.ejections().inc();
        let text = m.text();
        for line in [
            r#"meridian_router_requests_total{app="web",region="eu-fra",class="2xx"} 1"#,
            r#"meridian_router_requests_total{app="web",region="eu-fra",class="5xx"} 1"#,
            r#"meridian_router_request_duration_seconds_count{app="web",region="eu-fra"} 2"#,
            r#"meridian_router_forwarded_total{app="web",region="eu-fra"} 1"#,
            r#"meridian_router_no_route_total{app="web",code="origin_bound"} 1"#,
            "meridian_router_backend_ejections_total 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn the_series_of_apps_gone_are_forgotten() {
        let m = Metrics::new();
        let (web, api) = (Name::parse("web").unwrap(), Name::parse("api").unwrap());
        let fra = Name::parse("eu-fra").unwrap();
        for app in [&web, &api] {
            let series = m.series(app, &fra);
            series.record(StatusCode::OK, Duration::from_millis(1));
            series.forwarded();
            m.no_route(app, "no_healthy_instance");
        }
        m.forget_apps(|app| *app == web);
        let text = m.text();
        assert!(!text.contains(r#"app="api""#), "{text}");
        assert!(text.contains(
            r#"meridian_router_requests_total{app="web",region="eu-fra",class="2xx"} 1"#
        ));
        assert!(text
            .contains(r#"meridian_router_no_route_total{app="web",code="no_healthy_instance"} 1"#));
        // A returning app starts afresh.
        m.series(&api, &fra)
            .record(StatusCode::OK, Duration::from_millis(1));
        assert!(m.text().contains(
            r#"meridian_router_requests_total{app="api",region="eu-fra",class="2xx"} 1"#
        ));
    }
}
