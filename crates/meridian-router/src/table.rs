//! The route table a router works from: the control plane's `RouteTable`, checked and indexed
//! for lookups on the request path.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use meridian_api::routing::RouteTable;
use meridian_core::domain::normalize_host;
use meridian_core::route::{
    self, AppRoutes, ClientPlace, GeoPoint, NoRoute, RegionRoute, Route, RttTable,
};
use meridian_core::{CountryCode, DomainName, Jurisdiction, JurisdictionCatalog, Name};

/// A region as the router knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionInfo {
    /// Name.
    pub name: Name,
    /// Country.
    pub country: CountryCode,
    /// Coordinates.
    pub point: GeoPoint,
}

/// One healthy instance a router may send requests to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Backend {
    /// Instance id.
    pub id: String,
    /// `host:port`.
    pub address: String,
}

/// An app and where it can be served.
#[derive(Debug, Clone, PartialEq)]
pub struct AppEntry {
    /// Name.
    pub name: Name,
    /// Where it may be served; empty means anywhere.
    pub residency: Vec<Jurisdiction>,
    /// Jurisdictions whose clients stay inside them.
    pub origin_bound: Vec<Jurisdiction>,
    /// Every region, with the app's healthy instance count, for the decision.
    pub regions: Vec<RegionRoute>,
    /// Healthy instances by region.
    pub backends: BTreeMap<Name, Vec<Backend>>,
}

impl AppEntry {
    /// Healthy instances in `region` (empty when none).
    pub fn backends_in(&self, region: &Name) -> &[Backend] {
        self.backends.get(region).map_or(&[], Vec::as_slice)
    }
}

/// The checked, indexed table.
#[derive(Debug, Clone, Default)]
pub struct RoutingTable {
    /// The control plane's fingerprint of the table.
    pub version: u64,
    /// `<app>.<apps_domain>` names apps.
    pub apps_domain: Option<DomainName>,
    /// Jurisdiction groups.
    pub catalog: JurisdictionCatalog,
    /// Every region, by name.
    pub regions: BTreeMap<Name, RegionInfo>,
    /// Router base URLs by region.
    pub routers: BTreeMap<Name, Vec<String>>,
    apps: HashMap<Name, Arc<AppEntry>>,
    domains: HashMap<String, Name>,
}

impl RoutingTable {
    /// Checks and indexes a table from the control plane. Entries that do not parse (which a
    /// newer control plane could send) are skipped with a warning rather than failing the
    /// whole table.
    pub fn from_wire(t: &RouteTable) -> Self {
        let mut catalog = JurisdictionCatalog::built_in();
        for (name, countries) in &t.jurisdictions {
            let members: BTreeSet<CountryCode> = countries
                .iter()
                .filter_map(|c| CountryCode::parse(c).ok())
                .collect();
            if let Err(e) = catalog.define(name, members) {
                tracing::warn!(group = %name, error = %e, "skipping jurisdiction group");
            }
        }
        let mut regions = BTreeMap::new();
        for r in &t.regions {
            match (Name::parse(&r.name), CountryCode::parse(&r.country)) {
                (Ok(name), Ok(country)) => {
                    let point = GeoPoint {
                        latitude: r.latitude,
                        longitude: r.longitude,
                    };
                    regions.insert(
                        name.clone(),
                        RegionInfo {
                            name,
                            country,
                            point,
                        },
                    );
                }
                _ => tracing::warn!(region = %r.name, "skipping malformed region"),
            }
        }
        let mut routers: BTreeMap<Name, Vec<String>> = BTreeMap::new();
        for r in &t.routers {
            if let Ok(region) = Name::parse(&r.region) {
                routers
                    .entry(region)
                    .or_default()
                    .push(r.url.trim_end_matches('/').to_string());
            }
        }
        let mut apps = HashMap::new();
        let mut domains = HashMap::new();
        for a in &t.apps {
            let Ok(name) = Name::parse(&a.name) else {
                tracing::warn!(app = %a.name, "skipping app with a malformed name");
                continue;
            };
            let parse_all = |list: &[String]| -> Option<Vec<Jurisdiction>> {
                list.iter().map(|j| Jurisdiction::parse(j).ok()).collect()
            };
            // An app whose rules cannot be read is left out: routing it without its residency
            // could serve it from a disallowed region.
            let (Some(residency), Some(origin_bound)) =
                (parse_all(&a.residency), parse_all(&a.origin_bound))
            else {
                tracing::warn!(app = %a.name, "skipping app with unreadable jurisdictions");
                continue;
            };
            let mut backends: BTreeMap<Name, Vec<Backend>> = BTreeMap::new();
            for i in &a.instances {
                if let Ok(region) = Name::parse(&i.region) {
                    if regions.contains_key(&region) {
                        backends.entry(region).or_default().push(Backend {
                            id: i.id.clone(),
                            address: i.address.clone(),
                        });
                    }
                }
            }
            let region_routes = regions
                .values()
                .map(|r| RegionRoute {
                    name: r.name.clone(),
                    country: r.country,
                    point: r.point,
                    healthy: backends.get(&r.name).map_or(0, |b| b.len() as u32),
                })
                .collect();
            for d in &a.domains {
                if let Ok(d) = DomainName::parse(d) {
                    domains.insert(d.to_string(), name.clone());
                }
            }
            apps.insert(
                name.clone(),
                Arc::new(AppEntry {
                    name,
                    residency,
                    origin_bound,
                    regions: region_routes,
                    backends,
                }),
            );
        }
        Self {
            version: t.version,
            apps_domain: DomainName::parse(&t.apps_domain).ok(),
            catalog,
            regions,
            routers,
            apps,
            domains,
        }
    }

    /// The app a `Host` header names: a custom domain first, then `<app>.<apps domain>`.
    pub fn app_for_host(&self, host: &str) -> Option<Arc<AppEntry>> {
        let host = normalize_host(host);
        let name = match self.domains.get(&host) {
            Some(name) => name.clone(),
            None => self.apps_domain.as_ref()?.app_label(&host)?,
        };
        self.apps.get(&name).cloned()
    }

    /// An app by name.
    pub fn app(&self, name: &Name) -> Option<Arc<AppEntry>> {
        self.apps.get(name).cloned()
    }

    /// Which region serves `client` for `app`.
    pub fn decide(
        &self,
        app: &AppEntry,
        client: &ClientPlace,
        rtt: &RttTable,
    ) -> Result<Route, NoRoute> {
        let routes = AppRoutes {
            residency: &app.residency,
            origin_bound: &app.origin_bound,
            regions: &app.regions,
        };
        route::decide(&self.catalog, &routes, client, rtt)
    }

    /// How many apps the table holds.
    pub fn app_count(&self) -> usize {
        self.apps.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_api::routing::{RouteApp, RouteInstance, RouteRegion, RouterEntry};

    fn wire() -> RouteTable {
        RouteTable {
            version: 7,
            applied: 0,
            apps_domain: "meridian.localhost".into(),
            regions: vec![
                RouteRegion {
                    name: "eu-fra".into(),
                    country: "DE".into(),
                    latitude: 50.11,
                    longitude: 8.68,
                },
                RouteRegion {
                    name: "us-iad".into(),
                    country: "US".into(),
                    latitude: 38.95,
                    longitude: -77.45,
                },
            ],
            jurisdictions: BTreeMap::new(),
            routers: vec![RouterEntry {
                name: "r-fra".into(),
                region: "eu-fra".into(),
                url: "http://10.0.0.1:8080/".into(),
            }],
            apps: vec![
                RouteApp {
                    name: "web".into(),
                    residency: vec!["EU".into()],
                    origin_bound: vec![],
                    domains: vec!["Shop.Example.com".into()],
                    instances: vec![RouteInstance {
                        id: "i1".into(),
                        node: "fra-1".into(),
                        region: "eu-fra".into(),
                        address: "127.0.0.1:30001".into(),
                    }],
                },
                RouteApp {
                    name: "odd".into(),
                    residency: vec!["not a jurisdiction".into()],
                    origin_bound: vec![],
                    domains: vec![],
                    instances: vec![],
                },
            ],
        }
    }

    #[test]
    fn hosts_find_apps_by_custom_domain_and_apps_domain() {
        let t = RoutingTable::from_wire(&wire());
        assert_eq!(
            t.app_for_host("web.meridian.localhost:8080")
                .unwrap()
                .name
                .as_str(),
            "web"
        );
        assert_eq!(
            t.app_for_host("shop.example.com").unwrap().name.as_str(),
            "web"
        );
        assert!(t.app_for_host("nope.meridian.localhost").is_none());
        assert!(t.app_for_host("example.org").is_none());
        assert_eq!(
            t.routers[&Name::parse("eu-fra").unwrap()],
            ["http://10.0.0.1:8080"]
        );
    }

    #[test]
    fn apps_with_unreadable_rules_are_left_out() {
        let t = RoutingTable::from_wire(&wire());
        assert!(t.app_for_host("odd.meridian.localhost").is_none());
        assert_eq!(t.app_count(), 1);
    }

    #[test]
    fn backends_are_grouped_by_region() {
        let t = RoutingTable::from_wire(&wire());
        let web = t.app_for_host("web.meridian.localhost").unwrap();
        let fra = Name::parse("eu-fra").unwrap();
        let iad = Name::parse("us-iad").unwrap();
        assert_eq!(web.backends_in(&fra).len(), 1);
        assert!(web.backends_in(&iad).is_empty());
        let healthy: Vec<u32> = web.regions.iter().map(|r| r.healthy).collect();
        assert_eq!(healthy, [1, 0]);
    }
}
