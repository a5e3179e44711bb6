//! Which region serves a request: the edge router's decision, and the API's explanation of it.
//!
//! Among the regions that hold a healthy instance of the app and that its residency allows,
//! the nearest to the client wins. Nearest is great-circle distance from where the client was
//! located, or, when a round-trip table between regions covers every region holding a healthy
//! instance, the measured round trip from the region nearest the client. An app's `origin_bound` jurisdictions add a
//! rule: a client located in one of them is served only by a region inside it (inside every
//! one of them that holds the client). When no region qualifies the answer is a refusal with
//! its reason, never a region the rules exclude.

use std::collections::BTreeMap;
use std::fmt;

use crate::country::CountryCode;
use crate::jurisdiction::{Jurisdiction, JurisdictionCatalog};
use crate::name::Name;

/// Mean Earth radius, km.
const EARTH_RADIUS_KM: f64 = 6371.0088;

/// A point on Earth, in degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeoPoint {
    /// Degrees north, -90 to 90.
    pub latitude: f64,
    /// Degrees east, -180 to 180.
    pub longitude: f64,
}

impl GeoPoint {
    /// Great-circle distance in km (haversine).
    pub fn distance_km(&self, other: &GeoPoint) -> f64 {
        let (p1, p2) = (self.latitude.to_radians(), other.latitude.to_radians());
        let dp = p2 - p1;
        let dl = (other.longitude - self.longitude).to_radians();
        let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
    }
}

/// How the client was located.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocatedBy {
    /// A MaxMind-format GeoIP database.
    GeoIp,
    /// The operator's CSV map of address ranges.
    GeoMap,
    /// Nothing knew the address: the client is taken to stand in the router's own region.
    RouterRegion,
}

impl LocatedBy {
    /// Short name, for headers and explanations.
    pub fn as_str(self) -> &'static str {
        match self {
            LocatedBy::GeoIp => "geoip",
            LocatedBy::GeoMap => "geo-map",
            LocatedBy::RouterRegion => "router-region",
        }
    }
}

/// Where a client is, as far as the router can tell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClientPlace {
    /// Its coordinates.
    pub point: GeoPoint,
    /// Its country.
    pub country: CountryCode,
    /// How it was found.
    pub located_by: LocatedBy,
}

/// A region as routing sees it for one app.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionRoute {
    /// The region.
    pub name: Name,
    /// Its country.
    pub country: CountryCode,
    /// Its coordinates.
    pub point: GeoPoint,
    /// Healthy instances of the app there.
    pub healthy: u32,
}

/// What routing needs of one app.
#[derive(Debug, Clone, PartialEq)]
pub struct AppRoutes<'a> {
    /// Jurisdictions the app may run (and so be served) in; empty means anywhere.
    pub residency: &'a [Jurisdiction],
    /// Jurisdictions whose clients must be served inside them.
    pub origin_bound: &'a [Jurisdiction],
    /// Every region of the cluster, with the app's healthy instances in each.
    pub regions: &'a [RegionRoute],
}

/// Measured round trips between regions, in milliseconds, keyed by (from, to). Symmetric:
/// a pair given one way is used both ways.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RttTable {
    ms: BTreeMap<(Name, Name), f64>,
}

impl RttTable {
    /// Records the round trip between `a` and `b`.
    pub fn insert(&mut self, a: Name, b: Name, ms: f64) {
        self.ms.insert((a, b), ms);
    }

    /// The round trip between two regions: 0 to itself, `None` when not measured.
    pub fn get(&self, a: &Name, b: &Name) -> Option<f64> {
        if a == b {
            return Some(0.0);
        }
        self.ms
            .get(&(a.clone(), b.clone()))
            .or_else(|| self.ms.get(&(b.clone(), a.clone())))
            .copied()
    }

    /// Whether nothing was measured.
    pub fn is_empty(&self) -> bool {
        self.ms.is_empty()
    }

    /// Parses CSV text with the header `from,to,ms` (round trip between two regions, in
    /// milliseconds); blank lines and lines starting with `#` are skipped. Errors name the
    /// 1-based line.
    pub fn parse_csv(text: &str) -> Result<Self, String> {
        let mut table = Self::default();
        let mut header_seen = false;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            if !header_seen {
                if fields != ["from", "to", "ms"] {
                    return Err(format!(
                        "line {}: the first line must be the header from,to,ms",
                        n + 1
                    ));
                }
                header_seen = true;
                continue;
            }
            let [from, to, ms] = fields[..] else {
                return Err(format!("line {}: expected 3 fields: from,to,ms", n + 1));
            };
            let name = |s: &str| Name::parse(s).map_err(|p| format!("line {}: {p}", n + 1));
            let ms: f64 = ms
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| {
                    format!("line {}: {ms:?} is not a round trip in milliseconds", n + 1)
                })?;
            table.insert(name(from)?, name(to)?, ms);
        }
        Ok(table)
    }
}

/// Why the winning region won.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteReason {
    /// The nearest region with a healthy instance.
    Nearest,
    /// The nearest region with a healthy instance by measured round trip.
    NearestByRtt,
    /// A nearer region holds a healthy instance, but residency excludes it.
    Residency,
    /// A nearer region is allowed by residency, but the client's jurisdiction keeps it home.
    OriginBound(Jurisdiction),
}

impl RouteReason {
    /// Short form for the `Meridian-Route` header.
    pub fn short(&self) -> String {
        match self {
            RouteReason::Nearest => "nearest".into(),
            RouteReason::NearestByRtt => "nearest-rtt".into(),
            RouteReason::Residency => "residency".into(),
            RouteReason::OriginBound(j) => format!("origin-bound:{j}"),
        }
    }
}

/// The region that serves the request.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// The winning region.
    pub region: Name,
    /// Great-circle distance from the client, km.
    pub distance_km: f64,
    /// Measured round trip from the client's nearest region, when the table decided.
    pub rtt_ms: Option<f64>,
    /// Why it won.
    pub reason: RouteReason,
}

/// Why no region may serve the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoRoute {
    /// No region the residency allows holds a healthy instance.
    NoHealthyInstance {
        /// The app's residency, as text (`anywhere` when empty).
        residency: String,
    },
    /// Regions allowed by residency hold healthy instances, but none inside every
    /// origin-bound jurisdiction that holds the client.
    OriginBound {
        /// The jurisdictions the client is held to (a serving region must lie in all).
        jurisdictions: Vec<Jurisdiction>,
        /// The client's country.
        country: CountryCode,
    },
}

impl NoRoute {
    /// Short form for the `Meridian-Route` header and error codes.
    pub fn code(&self) -> &'static str {
        match self {
            NoRoute::NoHealthyInstance { .. } => "no_healthy_instance",
            NoRoute::OriginBound { .. } => "origin_bound",
        }
    }
}

impl fmt::Display for NoRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoRoute::NoHealthyInstance { residency } => write!(
                f,
                "no region the app's residency allows ({residency}) holds a healthy instance"
            ),
            NoRoute::OriginBound {
                jurisdictions,
                country,
            } => {
                let inside: Vec<String> = jurisdictions.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "the client is located in {country}, and the app serves clients from there \
                     only in regions inside {}; none of them holds a healthy instance",
                    inside.join(" and ")
                )
            }
        }
    }
}

/// The origin-bound jurisdictions that hold a client in `country`.
pub fn binding_jurisdictions<'a>(
    catalog: &JurisdictionCatalog,
    origin_bound: &'a [Jurisdiction],
    country: CountryCode,
) -> Vec<&'a Jurisdiction> {
    origin_bound
        .iter()
        .filter(|j| catalog.contains(j, country))
        .collect()
}

/// Why `region` may not serve `client` for `app`, or `None` when it may (it still has to be
/// the nearest to win). Rules come before health: an instance starting there changes nothing
/// for a region the residency or an origin-bound rule excludes.
pub fn exclusion(
    catalog: &JurisdictionCatalog,
    app: &AppRoutes<'_>,
    client: &ClientPlace,
    region: &RegionRoute,
) -> Option<String> {
    if !catalog.allows(app.residency, region.country) {
        return Some(format!(
            "{} lies outside the app's residency ({})",
            region.country,
            crate::jurisdiction::list_text(app.residency)
        ));
    }
    let bound = binding_jurisdictions(catalog, app.origin_bound, client.country)
        .into_iter()
        .find(|j| !catalog.contains(j, region.country));
    if let Some(j) = bound {
        return Some(format!(
            "clients from {} ({j}) are served only in {j}",
            client.country
        ));
    }
    (region.healthy == 0).then(|| "no healthy instance".into())
}

/// Picks the region that serves a request from `client` for `app`.
pub fn decide(
    catalog: &JurisdictionCatalog,
    app: &AppRoutes<'_>,
    client: &ClientPlace,
    rtt: &RttTable,
) -> Result<Route, NoRoute> {
    let healthy: Vec<&RegionRoute> = app.regions.iter().filter(|r| r.healthy > 0).collect();
    let allowed: Vec<&RegionRoute> = healthy
        .iter()
        .copied()
        .filter(|r| catalog.allows(app.residency, r.country))
        .collect();
    if allowed.is_empty() {
        return Err(NoRoute::NoHealthyInstance {
            residency: crate::jurisdiction::list_text(app.residency),
        });
    }
    let binding = binding_jurisdictions(catalog, app.origin_bound, client.country);
    let candidates: Vec<&RegionRoute> = allowed
        .iter()
        .copied()
        .filter(|r| binding.iter().all(|j| catalog.contains(j, r.country)))
        .collect();
    if candidates.is_empty() {
        // `binding` is not empty here: without it every allowed region is a candidate.
        return Err(NoRoute::OriginBound {
            jurisdictions: binding.into_iter().cloned().collect(),
            country: client.country,
        });
    }

    let measure = Measure::new(app.regions, client, rtt, &healthy);
    let winner = nearest(&candidates, &measure).expect("candidates is not empty");
    let best_allowed = nearest(&allowed, &measure).expect("allowed is not empty");
    let reason = if best_allowed.name != winner.name {
        // Only the origin-bound rule removed regions between `allowed` and `candidates`.
        let j = binding
            .iter()
            .find(|j| !catalog.contains(j, best_allowed.country))
            .map(|j| (*j).clone())
            .unwrap_or_else(|| Jurisdiction::Country(client.country));
        RouteReason::OriginBound(j)
    } else if nearest(&healthy, &measure).map(|r| &r.name) != Some(&winner.name) {
        RouteReason::Residency
    } else if measure.home.is_some() {
        RouteReason::NearestByRtt
    } else {
        RouteReason::Nearest
    };
    Ok(Route {
        region: winner.name.clone(),
        distance_km: client.point.distance_km(&winner.point),
        rtt_ms: measure.home.and_then(|h| rtt.get(&h.name, &winner.name)),
        reason,
    })
}

/// How candidates are compared: by round trip from the client's nearest region when the
/// table covers every region that could win, else by distance.
struct Measure<'a> {
    client: &'a ClientPlace,
    rtt: &'a RttTable,
    home: Option<&'a RegionRoute>,
}

impl<'a> Measure<'a> {
    fn new(
        regions: &'a [RegionRoute],
        client: &'a ClientPlace,
        rtt: &'a RttTable,
        healthy: &[&RegionRoute],
    ) -> Self {
        let home = if rtt.is_empty() {
            None
        } else {
            regions
                .iter()
                .min_by(|a, b| {
                    let (da, db) = (
                        client.point.distance_km(&a.point),
                        client.point.distance_km(&b.point),
                    );
                    da.total_cmp(&db).then_with(|| a.name.cmp(&b.name))
                })
                .filter(|home| {
                    healthy
                        .iter()
                        .all(|r| rtt.get(&home.name, &r.name).is_some())
                })
        };
        Self { client, rtt, home }
    }

    /// (round trip or distance, name) — smaller is nearer; names break ties.
    fn key(&self, r: &RegionRoute) -> f64 {
        match self.home {
            Some(h) => self.rtt.get(&h.name, &r.name).unwrap_or(f64::INFINITY),
            None => self.client.point.distance_km(&r.point),
        }
    }
}

fn nearest<'r>(regions: &[&'r RegionRoute], measure: &Measure<'_>) -> Option<&'r RegionRoute> {
    regions.iter().copied().min_by(|a, b| {
        measure
            .key(a)
            .total_cmp(&measure.key(b))
            .then_with(|| a.name.cmp(&b.name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cc(s: &str) -> CountryCode {
        CountryCode::parse(s).unwrap()
    }

    fn region(name: &str, country: &str, lat: f64, lon: f64, healthy: u32) -> RegionRoute {
        RegionRoute {
            name: Name::parse(name).unwrap(),
            country: cc(country),
            point: GeoPoint {
                latitude: lat,
                longitude: lon,
            },
            healthy,
        }
    }

    fn regions(fra: u32, ams: u32, iad: u32) -> Vec<RegionRoute> {
        vec![
            region("eu-fra", "DE", 50.11, 8.68, fra),
            region("eu-ams", "NL", 52.37, 4.90, ams),
            region("us-iad", "US", 38.95, -77.45, iad),
        ]
    }

    fn client(country: &str, lat: f64, lon: f64) -> ClientPlace {
        ClientPlace {
            point: GeoPoint {
                latitude: lat,
                longitude: lon,
            },
            country: cc(country),
            located_by: LocatedBy::GeoMap,
        }
    }

    fn new_york() -> ClientPlace {
        client("US", 40.71, -74.01)
    }

    fn paris() -> ClientPlace {
        client("FR", 48.86, 2.35)
    }

    fn j(s: &str) -> Jurisdiction {
        Jurisdiction::parse(s).unwrap()
    }

    fn run(
        residency: &[Jurisdiction],
        origin_bound: &[Jurisdiction],
        regions: &[RegionRoute],
        client: &ClientPlace,
    ) -> Result<Route, NoRoute> {
        let app = AppRoutes {
            residency,
            origin_bound,
            regions,
        };
        decide(
            &JurisdictionCatalog::built_in(),
            &app,
            client,
            &RttTable::default(),
        )
    }

    #[test]
    fn distances_are_great_circle() {
        let fra = GeoPoint {
            latitude: 50.11,
            longitude: 8.68,
        };
        let iad = GeoPoint {
            latitude: 38.95,
            longitude: -77.45,
        };
        let d = fra.distance_km(&iad);
        assert!((6_450.0..6_600.0).contains(&d), "{d}");
        assert_eq!(fra.distance_km(&fra), 0.0);
    }

    #[test]
    fn a_global_app_is_served_from_the_nearest_region() {
        let r = run(&[], &[], &regions(1, 1, 1), &new_york()).unwrap();
        assert_eq!(r.region.as_str(), "us-iad");
        assert_eq!(r.reason, RouteReason::Nearest);
        let r = run(&[], &[], &regions(1, 1, 1), &paris()).unwrap();
        assert_eq!(r.region.as_str(), "eu-ams");
    }

    #[test]
    fn residency_keeps_a_new_york_client_in_the_eu() {
        let r = run(&[j("EU")], &[], &regions(1, 1, 1), &new_york()).unwrap();
        assert_eq!(r.region.as_str(), "eu-ams");
        assert_eq!(r.reason, RouteReason::Residency);
        let r = run(&[j("EU")], &[], &regions(1, 0, 1), &new_york()).unwrap();
        assert_eq!(r.region.as_str(), "eu-fra");
    }

    #[test]
    fn no_healthy_allowed_region_is_a_refusal_never_a_spill() {
        let e = run(&[j("EU")], &[], &regions(0, 0, 3), &new_york()).unwrap_err();
        assert_eq!(
            e,
            NoRoute::NoHealthyInstance {
                residency: "EU".into()
            }
        );
        assert!(e.to_string().contains("residency allows (EU)"));
    }

    #[test]
    fn exclusions_name_the_rule_before_health() {
        let catalog = JurisdictionCatalog::built_in();
        let regions = regions(0, 1, 0);
        let why = |residency: &[Jurisdiction], origin_bound: &[Jurisdiction], r: usize| {
            let app = AppRoutes {
                residency,
                origin_bound,
                regions: &regions,
            };
            exclusion(&catalog, &app, &paris(), &regions[r])
        };
        // us-iad has no healthy instance, but residency is why it may not serve.
        assert_eq!(
            why(&[j("EU")], &[], 2).as_deref(),
            Some("US lies outside the app's residency (EU)")
        );
        assert_eq!(
            why(&[], &[j("EU")], 2).as_deref(),
            Some("clients from FR (EU) are served only in EU")
        );
        // Inside every rule, health is the reason.
        assert_eq!(
            why(&[j("EU")], &[], 0).as_deref(),
            Some("no healthy instance")
        );
        assert_eq!(why(&[j("EU")], &[], 1), None);
    }

    #[test]
    fn origin_bound_keeps_eu_clients_home() {
        // Paris is nearer eu-ams, but a pinned DE origin sends DE clients to DE.
        let berlin = client("DE", 52.52, 13.40);
        let r = run(&[], &[j("EU")], &regions(1, 1, 1), &berlin).unwrap();
        assert_eq!(r.region.as_str(), "eu-fra");
        // An EU client far from the EU (French Guiana is in the EU) stays in the EU.
        let cayenne = client("FR", 4.92, -52.31);
        let r = run(&[], &[j("EU")], &regions(1, 1, 1), &cayenne).unwrap();
        assert_eq!(r.region.as_str(), "eu-ams");
        assert_eq!(r.reason, RouteReason::OriginBound(j("EU")));
        // A US client is not bound.
        let r = run(&[], &[j("EU")], &regions(1, 1, 1), &new_york()).unwrap();
        assert_eq!(r.region.as_str(), "us-iad");
        // No EU instance: refuse the EU client, serve the US one.
        let e = run(&[], &[j("EU")], &regions(0, 0, 1), &cayenne).unwrap_err();
        assert_eq!(e.code(), "origin_bound");
        assert!(run(&[], &[j("EU")], &regions(0, 0, 1), &new_york()).is_ok());
    }

    #[test]
    fn every_binding_jurisdiction_applies() {
        let berlin = client("DE", 52.52, 13.40);
        let r = run(&[], &[j("EU"), j("DE")], &regions(1, 1, 1), &berlin).unwrap();
        assert_eq!(r.region.as_str(), "eu-fra");
        let e = run(&[], &[j("EU"), j("DE")], &regions(0, 1, 1), &berlin).unwrap_err();
        assert_eq!(
            e,
            NoRoute::OriginBound {
                jurisdictions: vec![j("EU"), j("DE")],
                country: cc("DE")
            }
        );
        assert!(e.to_string().contains("inside EU and DE"), "{e}");
    }

    #[test]
    fn rtt_tables_parse_from_csv() {
        let t = RttTable::parse_csv("# measured\nfrom,to,ms\neu-fra,us-iad,84\n\n").unwrap();
        let n = |s: &str| Name::parse(s).unwrap();
        assert_eq!(t.get(&n("us-iad"), &n("eu-fra")), Some(84.0));
        assert!(RttTable::parse_csv("a,b,c\n")
            .unwrap_err()
            .contains("line 1"));
        assert!(RttTable::parse_csv("from,to,ms\nx,y\n")
            .unwrap_err()
            .contains("line 2"));
        assert!(RttTable::parse_csv("from,to,ms\nx,y,-1\n").is_err());
        assert!(RttTable::parse_csv("from,to,ms\nX,y,1\n").is_err());
    }

    #[test]
    fn a_full_rtt_table_overrides_distance() {
        // eu-ams is nearest to Paris but has no instance; measured from eu-ams, us-iad
        // answers faster than eu-fra, though eu-fra is far closer.
        let regions = regions(1, 0, 1);
        let name = |s: &str| Name::parse(s).unwrap();
        let mut rtt = RttTable::default();
        rtt.insert(name("eu-ams"), name("eu-fra"), 30.0);
        rtt.insert(name("eu-ams"), name("us-iad"), 20.0);
        let app = AppRoutes {
            residency: &[],
            origin_bound: &[],
            regions: &regions,
        };
        let catalog = JurisdictionCatalog::built_in();
        let r = decide(&catalog, &app, &paris(), &rtt).unwrap();
        assert_eq!(r.region.as_str(), "us-iad");
        assert_eq!(r.rtt_ms, Some(20.0));
        assert_eq!(r.reason, RouteReason::NearestByRtt);
        // Without the table, distance decides.
        let r = decide(&catalog, &app, &paris(), &RttTable::default()).unwrap();
        assert_eq!(r.region.as_str(), "eu-fra");
        // A table missing a healthy region is not used.
        let mut partial = RttTable::default();
        partial.insert(name("eu-ams"), name("us-iad"), 1.0);
        let r = decide(&catalog, &app, &paris(), &partial).unwrap();
        assert_eq!(r.region.as_str(), "eu-fra");
        assert_eq!(r.reason, RouteReason::Nearest);
    }
}
