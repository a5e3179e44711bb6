//! Random route tables against an independent checker of the routing rules.
//!
//! The rules, as `route.rs` documents them: a region may serve a request when it holds a
//! healthy instance, the app's residency allows its country (an empty residency allows any),
//! and it lies in every origin-bound jurisdiction that holds the client's country. Of those,
//! the nearest wins, names breaking ties: nearest by great-circle distance, or, when a
//! round-trip table covers every healthy region from the region nearest the client, by the
//! measured round trip from there. No region qualifying is a refusal: `NoHealthyInstance`
//! when residency alone leaves no healthy region, else `OriginBound`.
//!
//! The checker below knows jurisdictions, distances and round trips only from this file.
//!
//! `MERIDIAN_ROUTE_CASES` sets the number of cases (default 200,000), `MERIDIAN_ROUTE_SEED`
//! fixes the seed (default: from the clock, printed), `MERIDIAN_ROUTE_CASE` replays one case.
//! A failure prints the seed and case number; add them to `REGRESSIONS` to keep them.

use std::collections::BTreeSet;

use meridian_core::route::{
    binding_jurisdictions, decide, AppRoutes, ClientPlace, GeoPoint, LocatedBy, NoRoute,
    RegionRoute, Route, RttTable,
};
use meridian_core::{CountryCode, Jurisdiction, JurisdictionCatalog, Name};

mod support;
use support::Rng;

/// (seed, case) pairs that once failed; run before the random cases.
const REGRESSIONS: &[(u64, u64)] = &[
    // Regions at longitude -180 and 180 on the equator: one place, two spellings, distances
    // equal but for rounding. The checker once demanded the rounding-free answer.
    (1_795_833_353_522_496_917, 2_818_145),
];

// ---- The world as the checker knows it ------------------------------------------------------

const EU: [&str; 27] = [
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT",
    "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
];
const EEA_ONLY: [&str; 3] = ["IS", "LI", "NO"];
const NORDIC: [&str; 5] = ["NO", "SE", "DK", "FI", "IS"];

/// Whether the jurisdiction named `j` holds `country`.
fn holds(j: &str, country: &str) -> bool {
    match j {
        "EU" => EU.contains(&country),
        "EEA" => EU.contains(&country) || EEA_ONLY.contains(&country),
        "NORDIC" => NORDIC.contains(&country),
        single => single == country,
    }
}

/// EU members, EEA-only members and others.
const REGION_COUNTRIES: [&str; 13] = [
    "DE", "NL", "FR", "IE", "PL", "SE", "NO", "IS", "US", "JP", "GB", "CH", "BR",
];
/// Clients also come from Nordic EU members without a region, where `EU` and `NORDIC`
/// overlap.
const CLIENT_COUNTRIES: [&str; 15] = [
    "DE", "NL", "FR", "IE", "PL", "SE", "NO", "IS", "US", "JP", "GB", "CH", "BR", "DK", "FI",
];
const JURISDICTIONS: [&str; 5] = ["EU", "EEA", "DE", "US", "NORDIC"];
const REGION_NAMES: [&str; 7] = ["r-a", "r-b", "r-c", "r-d", "r-e", "r-f", "r-g"];
/// Points that recur, so that regions share places and distances tie; the poles and the
/// antimeridian are among them.
const GRID_LAT: [f64; 7] = [-90.0, -45.0, 0.0, 30.0, 45.0, 60.0, 90.0];
const GRID_LON: [f64; 7] = [-180.0, -90.0, -10.0, 0.0, 10.0, 90.0, 180.0];
const RTT_MS: [f64; 6] = [1.0, 5.0, 10.0, 20.0, 40.0, 80.0];

/// Mean Earth radius, km.
const EARTH_KM: f64 = 6371.0088;

fn haversine_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lat2) = (a.0.to_radians(), b.0.to_radians());
    let half_dlat = (lat2 - lat1) / 2.0;
    let half_dlon = (b.1 - a.1).to_radians() / 2.0;
    let h = half_dlat.sin() * half_dlat.sin()
        + lat1.cos() * lat2.cos() * half_dlon.sin() * half_dlon.sin();
    2.0 * EARTH_KM * h.sqrt().clamp(0.0, 1.0).asin()
}

/// Distances closer than this are a tie the checker cannot break by arithmetic alone.
fn tolerance(d: f64) -> f64 {
    1e-9 * (1.0 + d)
}

// ---- Generated cases ------------------------------------------------------------------------

/// A region as plain data: (name, country, (latitude, longitude), healthy instances).
type Region = (&'static str, &'static str, (f64, f64), u32);

/// One generated request, as plain data for the checker.
#[derive(Debug, Clone)]
struct Case {
    residency: Vec<&'static str>,
    origin_bound: Vec<&'static str>,
    /// In the order given to `decide`.
    regions: Vec<Region>,
    client: (&'static str, (f64, f64)),
    /// Measured round trips (from, to, ms); empty for no table.
    rtt: Vec<(&'static str, &'static str, f64)>,
}

fn point(rng: &mut Rng, known: &[(f64, f64)]) -> (f64, f64) {
    match rng.below(100) {
        0..=59 => (rng.between(-90.0, 90.0), rng.between(-180.0, 180.0)),
        60..=84 => (rng.pick(&GRID_LAT), rng.pick(&GRID_LON)),
        _ if !known.is_empty() => known[rng.below(known.len())],
        _ => (rng.pick(&GRID_LAT), rng.pick(&GRID_LON)),
    }
}

fn subset(rng: &mut Rng) -> Vec<&'static str> {
    let p = rng.pick(&[0, 15, 30, 60]);
    JURISDICTIONS
        .iter()
        .copied()
        .filter(|_| rng.percent(p))
        .collect()
}

fn generate(rng: &mut Rng) -> Case {
    let mut names = REGION_NAMES;
    rng.shuffle(&mut names);
    let n = 1 + rng.below(REGION_NAMES.len());
    let mut points: Vec<(f64, f64)> = Vec::new();
    let mut regions = Vec::new();
    for &name in &names[..n] {
        let p = point(rng, &points);
        points.push(p);
        let healthy = if rng.percent(45) {
            0
        } else {
            1 + rng.below(3) as u32
        };
        regions.push((name, rng.pick(&REGION_COUNTRIES), p, healthy));
    }
    let client = (rng.pick(&CLIENT_COUNTRIES), point(rng, &points));
    let residency = subset(rng);
    let origin_bound = subset(rng);
    let mut rtt = Vec::new();
    if rng.percent(50) {
        let keep = rng.pick(&[100, 100, 90, 60]);
        for (i, a) in regions.iter().enumerate() {
            for b in &regions[i + 1..] {
                if rng.percent(keep) {
                    let ms = if rng.percent(70) {
                        rng.pick(&RTT_MS)
                    } else {
                        rng.between(0.0, 300.0)
                    };
                    // One direction only: the table is symmetric.
                    let (from, to) = if rng.percent(50) {
                        (a.0, b.0)
                    } else {
                        (b.0, a.0)
                    };
                    rtt.push((from, to, ms));
                }
            }
        }
        if rng.percent(10) {
            // A region to itself is 0 whatever is recorded.
            let r = regions[rng.below(n)].0;
            rtt.push((r, r, 55.0));
        }
        if rng.percent(10) {
            // A region this app's table does not list.
            rtt.push(("r-z", regions[rng.below(n)].0, 0.5));
        }
    }
    Case {
        residency,
        origin_bound,
        regions,
        client,
        rtt,
    }
}

// ---- Running a case through `decide` --------------------------------------------------------

fn catalog() -> JurisdictionCatalog {
    let mut catalog = JurisdictionCatalog::built_in();
    let nordic: BTreeSet<CountryCode> = NORDIC.iter().map(|c| cc(c)).collect();
    catalog.define("NORDIC", nordic).unwrap();
    catalog
}

fn cc(s: &str) -> CountryCode {
    CountryCode::parse(s).unwrap()
}

fn name(s: &str) -> Name {
    Name::parse(s).unwrap()
}

fn jurisdictions(list: &[&str]) -> Vec<Jurisdiction> {
    list.iter()
        .map(|j| Jurisdiction::parse(j).unwrap())
        .collect()
}

fn region_routes(case: &Case) -> Vec<RegionRoute> {
    case.regions
        .iter()
        .map(
            |&(n, country, (latitude, longitude), healthy)| RegionRoute {
                name: name(n),
                country: cc(country),
                point: GeoPoint {
                    latitude,
                    longitude,
                },
                healthy,
            },
        )
        .collect()
}

fn client_place(case: &Case) -> ClientPlace {
    let (country, (latitude, longitude)) = case.client;
    ClientPlace {
        point: GeoPoint {
            latitude,
            longitude,
        },
        country: cc(country),
        located_by: LocatedBy::GeoIp,
    }
}

fn rtt_table(case: &Case) -> RttTable {
    let mut table = RttTable::default();
    for &(a, b, ms) in &case.rtt {
        table.insert(name(a), name(b), ms);
    }
    table
}

fn run(
    catalog: &JurisdictionCatalog,
    case: &Case,
    regions: &[RegionRoute],
) -> Result<Route, NoRoute> {
    let (residency, origin_bound) = (
        jurisdictions(&case.residency),
        jurisdictions(&case.origin_bound),
    );
    let app = AppRoutes {
        residency: &residency,
        origin_bound: &origin_bound,
        regions,
    };
    decide(catalog, &app, &client_place(case), &rtt_table(case))
}

#[path = "route_property/checker.rs"]
mod checker;
use checker::{Checker, Seen};

fn check(
    catalog: &JurisdictionCatalog,
    case: &Case,
    rng: &mut Rng,
    seen: &mut Seen,
) -> Result<(), String> {
    let regions = region_routes(case);
    let got = run(catalog, case, &regions);
    let checker = Checker { case };

    let mine = checker.binding();
    let theirs: Vec<String> = binding_jurisdictions(
        catalog,
        &jurisdictions(&case.origin_bound),
        cc(case.client.0),
    )
    .iter()
    .map(|j| j.to_string())
    .collect();
    if theirs != mine {
        return Err(format!(
            "binding_jurisdictions {theirs:?}, expected {mine:?}"
        ));
    }

    // The order regions are listed in changes nothing: names break ties, not positions.
    let mut shuffled = regions.clone();
    rng.shuffle(&mut shuffled);
    if run(catalog, case, &shuffled) != got {
        return Err("the decision depends on the order of the regions".into());
    }
    checker
        .check(&got, seen)
        .map_err(|why| format!("{why}\ndecided: {got:?}"))
}

fn run_case(catalog: &JurisdictionCatalog, seed: u64, case: u64, seen: &mut Seen) {
    let mut rng = Rng::for_case(seed, case);
    let generated = generate(&mut rng);
    if let Err(why) = check(catalog, &generated, &mut rng, seen) {
        panic!(
            "{why}\nreplay: MERIDIAN_ROUTE_SEED={seed} MERIDIAN_ROUTE_CASE={case}\n\
             case: {generated:#?}"
        );
    }
}

fn env_u64(key: &str) -> Option<u64> {
    std::env::var(key).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{key} must be a number"))
    })
}

#[test]
fn routes_follow_the_rules() {
    let catalog = catalog();
    let mut seen = Seen::default();
    for &(seed, case) in REGRESSIONS {
        run_case(&catalog, seed, case, &mut seen);
    }
    let seed = env_u64("MERIDIAN_ROUTE_SEED").unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        t.as_nanos() as u64
    });
    if let Some(case) = env_u64("MERIDIAN_ROUTE_CASE") {
        println!("route property: replaying seed {seed} case {case}");
        return run_case(&catalog, seed, case, &mut seen);
    }
    let cases = env_u64("MERIDIAN_ROUTE_CASES").unwrap_or(200_000);
    println!("route property: seed {seed}, {cases} cases (MERIDIAN_ROUTE_SEED={seed} to replay)");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let catalog = &catalog;
    let all: Vec<Seen> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut seen = Seen::default();
                    for case in (t..cases).step_by(threads as usize) {
                        run_case(catalog, seed, case, &mut seen);
                    }
                    seen
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    for s in &all {
        seen.add(s);
    }
    println!("route property: {seen:?}");
    // The generator must reach every outcome, or the checker proves little.
    assert!(
        seen.nearest > 0
            && seen.nearest_rtt > 0
            && seen.residency > 0
            && seen.origin_bound > 0
            && seen.no_healthy > 0
            && seen.refused_origin_bound > 0
            || cases < 10_000,
        "some outcome was never generated: {seen:?}"
    );
}

/// The checker itself: it must refuse answers that break the rules.
#[test]
fn the_checker_refuses_wrong_answers() {
    let catalog = catalog();
    let mut refused = 0;
    for case in 0..20_000 {
        let mut rng = Rng::for_case(7, case);
        let generated = generate(&mut rng);
        let checker = Checker { case: &generated };
        let Ok(route) = run(&catalog, &generated, &region_routes(&generated)) else {
            continue;
        };
        let mut seen = Seen::default();
        assert_eq!(checker.check(&Ok(route.clone()), &mut seen), Ok(()));
        // Any region that does not qualify, put in the winner's place.
        for r in generated.regions.iter().filter(|r| !checker.qualifies(r)) {
            let wrong = Route {
                region: name(r.0),
                ..route.clone()
            };
            assert!(
                checker.check(&Ok(wrong), &mut seen).is_err(),
                "{generated:?}"
            );
            refused += 1;
        }
        let far = Route {
            distance_km: route.distance_km + 1.0,
            ..route.clone()
        };
        assert!(checker.check(&Ok(far), &mut seen).is_err());
        let refusal = NoRoute::NoHealthyInstance {
            residency: "anywhere".into(),
        };
        assert!(checker.check(&Err(refusal), &mut seen).is_err());
    }
    assert!(refused > 1000, "{refused}");
}
