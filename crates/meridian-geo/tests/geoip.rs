//! GeoIP lookups against City databases written by the test's own MaxMind DB writer.

mod support;

use std::net::IpAddr;

use meridian_core::ErrorChain;
use meridian_geo::GeoIpDb;
use support::mmdb::{city, map, s, Value, Writer};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// Networks of every kind a lookup must handle, in an IPv4 or IPv6 database.
fn sample(ip_version: u16, record_size: u16) -> Vec<u8> {
    let mut w = Writer::new(ip_version, record_size, "GeoLite2-City");
    w.insert("192.0.2.0/24", city(52.52, 13.40, "DE"))
        // Inside the block above: the longer prefix wins.
        .insert("192.0.2.128/25", city(48.86, 2.35, "FR"))
        .insert("198.51.100.7/32", city(35.68, 139.69, "JP"))
        // Country only, as for addresses known to a country but not a place.
        .insert(
            "198.51.100.0/25",
            map([("country", map([("iso_code", s("NL"))]))]),
        )
        // Coordinates but no country, as for some anycast and satellite ranges.
        .insert(
            "203.0.113.0/24",
            map([(
                "location",
                map([
                    ("latitude", Value::Double(1.0)),
                    ("longitude", Value::Double(2.0)),
                ]),
            )]),
        )
        // Impossible coordinates and an unassigned country code are not believed.
        .insert("100.64.0.0/10", city(200.0, 13.40, "DE"))
        .insert("100.128.0.0/10", city(52.52, -181.0, "DE"))
        .insert("10.0.0.0/8", city(52.52, 13.40, "XX"));
    if ip_version == 6 {
        w.insert("2001:db8::/32", city(40.71, -74.01, "US"))
            .insert("2001:db8:abcd::/48", city(-33.87, 151.21, "AU"))
            .insert("2001:db8:abcd:1::1/128", city(1.35, 103.82, "SG"));
    }
    w.build()
}

fn country(db: &GeoIpDb, addr: &str) -> Option<String> {
    db.lookup(ip(addr)).map(|(_, c)| c.to_string())
}

#[test]
fn the_writer_makes_databases_the_reader_verifies() {
    for (version, size) in [(6, 24), (6, 28), (6, 32), (4, 24), (4, 28)] {
        let reader = maxminddb::Reader::from_source(sample(version, size)).unwrap();
        reader
            .verify()
            .unwrap_or_else(|e| panic!("ip_version {version}, {size}-bit records: {e}"));
        // And the crate's own City schema reads what the writer wrote.
        let found = reader.lookup(ip("192.0.2.1")).unwrap();
        let record = found.decode::<maxminddb::geoip2::City>().unwrap().unwrap();
        assert_eq!(record.country.iso_code, Some("DE"));
        assert_eq!(record.location.latitude, Some(52.52));
        assert_eq!(record.city.names.english, Some("Somewhere"));
        // The /25 inside it splits the /24: its lower half is a network of its own.
        assert_eq!(found.network().unwrap().to_string(), "192.0.2.0/25");
        let found = reader.lookup(ip("198.51.100.7")).unwrap();
        assert_eq!(found.network().unwrap().to_string(), "198.51.100.7/32");
    }
}

#[test]
fn an_ipv6_database_locates_ipv4_and_ipv6_clients() {
    for record_size in [24, 28, 32] {
        let db = GeoIpDb::from_bytes(sample(6, record_size)).unwrap();
        assert_eq!(db.database_type(), "GeoLite2-City");
        let (point, c) = db.lookup(ip("192.0.2.1")).unwrap();
        assert_eq!(c.as_str(), "DE");
        assert_eq!((point.latitude, point.longitude), (52.52, 13.40));
        assert_eq!(country(&db, "192.0.2.127").as_deref(), Some("DE"));
        assert_eq!(country(&db, "192.0.2.128").as_deref(), Some("FR"));
        assert_eq!(country(&db, "192.0.2.255").as_deref(), Some("FR"));
        assert_eq!(country(&db, "198.51.100.7").as_deref(), Some("JP"));
        // IPv4-mapped IPv6, as a dual-stack listener reports IPv4 peers.
        assert_eq!(country(&db, "::ffff:192.0.2.1").as_deref(), Some("DE"));
        assert_eq!(country(&db, "::ffff:192.0.2.200").as_deref(), Some("FR"));

        let (point, c) = db.lookup(ip("2001:db8:1::1")).unwrap();
        assert_eq!(c.as_str(), "US");
        assert_eq!((point.latitude, point.longitude), (40.71, -74.01));
        assert_eq!(country(&db, "2001:db8:abcd::9").as_deref(), Some("AU"));
        assert_eq!(country(&db, "2001:db8:abcd:1::1").as_deref(), Some("SG"));
        assert_eq!(country(&db, "2001:db8:abcd:1::2").as_deref(), Some("AU"));
    }
}

#[test]
fn unknown_addresses_are_not_located() {
    let db = GeoIpDb::from_bytes(sample(6, 28)).unwrap();
    for addr in [
        "8.8.8.8",
        "192.0.3.1",
        "0.0.0.0",
        "255.255.255.255",
        "2001:db9::1",
        "::1",
        "::",
        "ffff::1",
        "::ffff:8.8.8.8",
    ] {
        assert_eq!(db.lookup(ip(addr)), None, "{addr}");
    }
}

#[test]
fn records_without_coordinates_or_country_are_not_located() {
    let db = GeoIpDb::from_bytes(sample(6, 24)).unwrap();
    // No location.
    assert_eq!(db.lookup(ip("198.51.100.1")), None);
    // No country.
    assert_eq!(db.lookup(ip("203.0.113.1")), None);
    // Latitude 200, longitude -181, country XX.
    assert_eq!(db.lookup(ip("100.64.0.1")), None);
    assert_eq!(db.lookup(ip("100.128.0.1")), None);
    assert_eq!(db.lookup(ip("10.1.1.1")), None);
    // The longer, complete record inside the country-only block still counts.
    assert_eq!(country(&db, "198.51.100.7").as_deref(), Some("JP"));
}

#[test]
fn an_ipv4_database_locates_ipv4_clients_only() {
    for record_size in [24, 28] {
        let db = GeoIpDb::from_bytes(sample(4, record_size)).unwrap();
        assert_eq!(country(&db, "192.0.2.1").as_deref(), Some("DE"));
        assert_eq!(country(&db, "192.0.2.200").as_deref(), Some("FR"));
        assert_eq!(country(&db, "::ffff:192.0.2.1").as_deref(), Some("DE"));
        assert_eq!(country(&db, "8.8.8.8"), None);
        assert_eq!(country(&db, "2001:db8::1"), None);
        assert_eq!(db.lookup(ip("198.51.100.1")), None);
    }
}

#[test]
fn bytes_that_are_no_database_are_refused() {
    let e = GeoIpDb::from_bytes(b"cidr,latitude,longitude,country\n".to_vec()).unwrap_err();
    assert_eq!(e.to_string(), "not a usable MaxMind DB (.mmdb) database");
    let chain = ErrorChain(&e).to_string();
    assert!(
        chain.starts_with("not a usable MaxMind DB (.mmdb) database: "),
        "{chain}"
    );
    assert!(GeoIpDb::from_bytes(Vec::new()).is_err());
    // A database cut short keeps its metadata but loses its tree.
    let whole = sample(6, 28);
    let marker = whole
        .windows(14)
        .rposition(|w| w == b"\xAB\xCD\xEFMaxMind.com")
        .unwrap();
    let mut cut = whole[..40].to_vec();
    cut.extend(&whole[marker..]);
    assert!(GeoIpDb::from_bytes(cut).is_err());
}

#[test]
fn open_names_the_file() {
    let dir = std::env::temp_dir().join(format!("meridian-geoip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("city.mmdb");
    std::fs::write(&good, sample(6, 28)).unwrap();
    let db = GeoIpDb::open(&good).unwrap();
    assert_eq!(country(&db, "2001:db8::1").as_deref(), Some("US"));

    let garbage = dir.join("garbage.mmdb");
    std::fs::write(&garbage, b"not a database").unwrap();
    let e = ErrorChain(&GeoIpDb::open(&garbage).unwrap_err()).to_string();
    assert!(
        e.starts_with(&format!(
            "{}: not a usable MaxMind DB (.mmdb) database: ",
            garbage.display()
        )),
        "{e}"
    );
    assert_eq!(e.matches("not a usable").count(), 1, "{e}");
    let missing = dir.join("missing.mmdb");
    let e = ErrorChain(&GeoIpDb::open(&missing).unwrap_err()).to_string();
    assert!(
        e.starts_with(&format!("cannot read {}: ", missing.display())),
        "{e}"
    );
    assert_eq!(e.matches("cannot read").count(), 1, "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_larger_database_with_far_pointers_and_long_strings() {
    let countries = ["DE", "FR", "NL", "US", "JP", "BR", "NO"];
    for record_size in [24, 28, 32] {
        let mut w = Writer::new(6, record_size, "DBIP-City-Lite");
        for k in 0..600u32 {
            let country = countries[k as usize % countries.len()];
            let mut record = city(f64::from(k % 90), -f64::from(k % 180), country);
            if let Value::Map(pairs) = &mut record {
                // Strings past the one-byte and two-byte size forms.
                pairs.push(("note".into(), s(&"x".repeat(40 + k as usize))));
            }
            w.insert(&format!("10.{}.{}.0/24", k / 256, k % 256), record);
            w.insert(&format!("2001:db8:{k:x}::/48"), city(1.0, 2.0, country));
        }
        let bytes = w.build();
        assert!(bytes.len() > 70_000, "{}", bytes.len());
        maxminddb::Reader::from_source(bytes.clone())
            .unwrap()
            .verify()
            .unwrap();
        let db = GeoIpDb::from_bytes(bytes).unwrap();
        assert_eq!(db.database_type(), "DBIP-City-Lite");
        for k in [0u32, 1, 255, 256, 599] {
            let (point, c) = db
                .lookup(ip(&format!("10.{}.{}.9", k / 256, k % 256)))
                .unwrap();
            assert_eq!(c.as_str(), countries[k as usize % countries.len()]);
            assert_eq!(point.latitude, f64::from(k % 90));
            assert_eq!(point.longitude, -f64::from(k % 180));
            let v6 = db.lookup(ip(&format!("2001:db8:{k:x}::1"))).unwrap();
            assert_eq!(v6.1, c);
        }
        assert_eq!(db.lookup(ip("10.2.88.1")), None);
    }
}
