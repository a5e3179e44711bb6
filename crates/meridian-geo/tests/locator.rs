//! Which source locates a client when a router has several.

mod support;

use std::net::IpAddr;

use meridian_core::route::{ClientPlace, GeoPoint, LocatedBy};
use meridian_core::CountryCode;
use meridian_geo::{GeoIpDb, GeoMap, Locator};
use support::mmdb::{city, map, s, Writer};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn geoip() -> GeoIpDb {
    let mut w = Writer::new(6, 28, "GeoLite2-City");
    w.insert("192.0.2.0/24", city(52.52, 13.40, "DE"))
        .insert(
            "198.51.100.0/24",
            map([("country", map([("iso_code", s("NL"))]))]),
        )
        .insert("2001:db8::/32", city(40.71, -74.01, "US"));
    GeoIpDb::from_bytes(w.build()).unwrap()
}

fn geo_map() -> GeoMap {
    GeoMap::parse(
        "cidr,latitude,longitude,country\n\
         192.0.2.0/24,48.86,2.35,FR\n\
         198.51.100.0/24,52.37,4.90,NL\n\
         10.0.0.0/8,35.68,139.69,JP\n",
    )
    .unwrap()
}

fn router_region() -> ClientPlace {
    ClientPlace {
        point: GeoPoint {
            latitude: 59.33,
            longitude: 18.07,
        },
        country: CountryCode::parse("SE").unwrap(),
        located_by: LocatedBy::RouterRegion,
    }
}

fn located(locator: &Locator, addr: &str) -> Option<(String, LocatedBy)> {
    locator
        .locate(ip(addr))
        .map(|p| (p.country.to_string(), p.located_by))
}

#[test]
fn the_geoip_database_comes_before_the_map() {
    let locator = Locator::new(Some(geoip()), Some(geo_map()));
    assert!(locator.has_geoip() && locator.has_map());
    // Both know it: the database decides.
    assert_eq!(
        located(&locator, "192.0.2.1"),
        Some(("DE".into(), LocatedBy::GeoIp))
    );
    let place = locator.locate(ip("192.0.2.1")).unwrap();
    assert_eq!(place.point.latitude, 52.52);
    // The database has no coordinates for it: the map does.
    assert_eq!(
        located(&locator, "198.51.100.9"),
        Some(("NL".into(), LocatedBy::GeoMap))
    );
    // Only the map knows it (a private network).
    assert_eq!(
        located(&locator, "10.1.2.3"),
        Some(("JP".into(), LocatedBy::GeoMap))
    );
    assert_eq!(
        located(&locator, "::ffff:10.1.2.3"),
        Some(("JP".into(), LocatedBy::GeoMap))
    );
    // Only the database knows it.
    assert_eq!(
        located(&locator, "2001:db8::5"),
        Some(("US".into(), LocatedBy::GeoIp))
    );
    // Neither: the router's region stands in.
    assert_eq!(located(&locator, "8.8.8.8"), None);
    assert_eq!(
        locator.locate_or(ip("8.8.8.8"), &router_region()),
        router_region()
    );
    assert_eq!(locator.locate_or(ip("192.0.2.1"), &router_region()), place);
}

#[test]
fn each_source_alone() {
    let db_only = Locator::new(Some(geoip()), None);
    assert_eq!(
        located(&db_only, "192.0.2.1"),
        Some(("DE".into(), LocatedBy::GeoIp))
    );
    assert_eq!(located(&db_only, "10.1.2.3"), None);
    assert_eq!(located(&db_only, "198.51.100.9"), None);
    let map_only = Locator::new(None, Some(geo_map()));
    assert_eq!(
        located(&map_only, "192.0.2.1"),
        Some(("FR".into(), LocatedBy::GeoMap))
    );
    let neither = Locator::new(None, None);
    assert_eq!(
        neither.locate_or(ip("192.0.2.1"), &router_region()),
        router_region()
    );
}
