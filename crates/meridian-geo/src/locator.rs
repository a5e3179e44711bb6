//! Locating a client from the sources a router has, best first.

use std::net::IpAddr;

use meridian_core::route::{ClientPlace, LocatedBy};

use crate::{GeoIpDb, GeoMap};

/// The router's sources of client places: a GeoIP database, an operator's map, both or
/// neither.
#[derive(Debug, Default)]
pub struct Locator {
    geoip: Option<GeoIpDb>,
    map: Option<GeoMap>,
}

impl Locator {
    /// A locator over the given sources.
    pub fn new(geoip: Option<GeoIpDb>, map: Option<GeoMap>) -> Self {
        Self { geoip, map }
    }

    /// Where `ip` is: the GeoIP database first, then the CSV map; `None` when neither knows
    /// the address. The database goes first because it is kept current by its publisher;
    /// the map is for what it cannot know, such as private networks.
    pub fn locate(&self, ip: IpAddr) -> Option<ClientPlace> {
        let from = |found: Option<_>, located_by| {
            found.map(|(point, country)| ClientPlace {
                point,
                country,
                located_by,
            })
        };
        self.geoip
            .as_ref()
            .and_then(|db| from(db.lookup(ip), LocatedBy::GeoIp))
            .or_else(|| {
                self.map
                    .as_ref()
                    .and_then(|m| from(m.lookup(ip), LocatedBy::GeoMap))
            })
    }

    /// [`Locator::locate`], else `fallback`: the router's own region, located by
    /// [`LocatedBy::RouterRegion`].
    pub fn locate_or(&self, ip: IpAddr, fallback: &ClientPlace) -> ClientPlace {
        self.locate(ip).unwrap_or(*fallback)
    }

    /// Whether the locator has a GeoIP database.
    pub fn has_geoip(&self) -> bool {
        self.geoip.is_some()
    }

    /// Whether the locator has a CSV map.
    pub fn has_map(&self) -> bool {
        self.map.is_some()
    }
}

#[cfg(test)]
mod tests {
    use meridian_core::route::GeoPoint;
    use meridian_core::CountryCode;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn router_region() -> ClientPlace {
        ClientPlace {
            point: GeoPoint {
                latitude: 50.11,
                longitude: 8.68,
            },
            country: CountryCode::parse("DE").unwrap(),
            located_by: LocatedBy::RouterRegion,
        }
    }

    #[test]
    fn the_map_locates_what_it_holds_and_the_fallback_covers_the_rest() {
        let map =
            GeoMap::parse("cidr,latitude,longitude,country\n10.0.0.0/8,52.37,4.90,NL\n").unwrap();
        let locator = Locator::new(None, Some(map));
        assert!(locator.has_map() && !locator.has_geoip());
        let place = locator.locate(ip("10.1.2.3")).unwrap();
        assert_eq!(place.country.as_str(), "NL");
        assert_eq!(place.located_by, LocatedBy::GeoMap);
        assert_eq!(place.point.latitude, 52.37);
        assert_eq!(locator.locate(ip("192.0.2.1")), None);
        assert_eq!(
            locator.locate_or(ip("192.0.2.1"), &router_region()),
            router_region()
        );
        assert_eq!(locator.locate_or(ip("10.1.2.3"), &router_region()), place);
    }

    #[test]
    fn without_sources_every_client_is_in_the_router_region() {
        let locator = Locator::default();
        assert_eq!(locator.locate(ip("10.1.2.3")), None);
        assert_eq!(
            locator.locate_or(ip("2001:db8::1"), &router_region()),
            router_region()
        );
    }
}
