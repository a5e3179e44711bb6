//! The operator's CSV map of address blocks to places: for private networks, or for a cluster
//! without a GeoIP database.
//!
//! ```text
//! cidr,latitude,longitude,country
//! # office network
//! 10.20.0.0/16,52.52,13.40,DE
//! 2001:db8:100::/48,40.71,-74.01,US
//! ```

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;

use meridian_core::route::GeoPoint;
use meridian_core::CountryCode;

use crate::net::{canonical, mask128, mask32, IpNet};
use crate::GeoError;

/// Where the addresses of one block are.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Place {
    point: GeoPoint,
    country: CountryCode,
    /// 1-based line it was read from, to name both lines of a duplicate.
    line: usize,
}

/// Blocks of one prefix length, keyed by their masked network.
#[derive(Debug, Clone, Default)]
struct Level<K> {
    prefix: u8,
    blocks: HashMap<K, Place>,
}

/// Address blocks with their places; the longest block holding an address decides.
///
/// Blocks are kept per prefix length, longest first, each level a hash map keyed by the
/// masked network: a lookup probes at most one map per prefix length present (33 for IPv4,
/// 129 for IPv6), and in practice a handful.
#[derive(Debug, Clone, Default)]
pub struct GeoMap {
    v4: Vec<Level<u32>>,
    v6: Vec<Level<u128>>,
    len: usize,
}

impl GeoMap {
    /// The header line every geo map starts with.
    pub const HEADER: &'static str = "cidr,latitude,longitude,country";

    /// Parses CSV text with a header line `cidr,latitude,longitude,country`; blank lines and
    /// lines starting with `#` are skipped. Blocks may overlap (the longest prefix wins), but
    /// the same block may not be listed twice. Errors name the 1-based line and the field.
    pub fn parse(text: &str) -> Result<Self, GeoError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut rows = text
            .lines()
            .enumerate()
            .map(|(k, l)| (k + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
        let (line, header) = rows.next().ok_or(GeoError::GeoMapEmpty)?;
        let fields: Vec<String> = header
            .split(',')
            .map(|f| f.trim().to_ascii_lowercase())
            .collect();
        if fields.join(",") != Self::HEADER {
            return Err(GeoError::GeoMapHeader {
                line,
                found: header.to_string(),
            });
        }

        let mut v4: HashMap<u8, HashMap<u32, Place>> = HashMap::new();
        let mut v6: HashMap<u8, HashMap<u128, Place>> = HashMap::new();
        let mut len = 0;
        for (line, row) in rows {
            let (net, place) = parse_row(line, row)?;
            let duplicate = |first: &Place| GeoError::GeoMapDuplicate {
                block: row.split(',').next().unwrap_or_default().trim().to_string(),
                first_line: first.line,
                line,
            };
            match net.network() {
                IpAddr::V4(a) => match v4.entry(net.prefix()).or_default().entry(a.into()) {
                    Entry::Occupied(e) => return Err(duplicate(e.get())),
                    Entry::Vacant(e) => e.insert(place),
                },
                IpAddr::V6(a) => match v6.entry(net.prefix()).or_default().entry(a.into()) {
                    Entry::Occupied(e) => return Err(duplicate(e.get())),
                    Entry::Vacant(e) => e.insert(place),
                },
            };
            len += 1;
        }
        Ok(Self {
            v4: levels(v4),
            v6: levels(v6),
            len,
        })
    }

    /// Reads and parses a geo map file; errors name the path.
    pub fn load(path: &Path) -> Result<Self, GeoError> {
        let text = std::fs::read_to_string(path).map_err(|source| GeoError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|e| e.in_file(path))
    }

    /// The place of the longest block holding `ip`. IPv4-mapped IPv6 addresses
    /// (`::ffff:192.0.2.1`) match IPv4 blocks.
    pub fn lookup(&self, ip: IpAddr) -> Option<(GeoPoint, CountryCode)> {
        let place = match canonical(ip) {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4
                    .iter()
                    .find_map(|l| l.blocks.get(&(a & mask32(l.prefix))))
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6
                    .iter()
                    .find_map(|l| l.blocks.get(&(a & mask128(l.prefix))))
            }
        }?;
        Some((place.point, place.country))
    }

    /// How many blocks the map holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the map holds no block.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Levels sorted longest prefix first, so the first hit is the longest match.
fn levels<K>(by_prefix: HashMap<u8, HashMap<K, Place>>) -> Vec<Level<K>> {
    let mut levels: Vec<Level<K>> = by_prefix
        .into_iter()
        .map(|(prefix, blocks)| Level { prefix, blocks })
        .collect();
    levels.sort_by_key(|l| std::cmp::Reverse(l.prefix));
    levels
}

fn parse_row(line: usize, row: &str) -> Result<(IpNet, Place), GeoError> {
    let bad = |field: &'static str, problem: String| GeoError::GeoMapRow {
        line,
        field,
        problem,
    };
    let fields: Vec<&str> = row.split(',').map(str::trim).collect();
    let [cidr, latitude, longitude, country] = fields[..] else {
        return Err(bad(
            "row",
            format!(
                "expected 4 comma-separated fields ({}), found {}",
                GeoMap::HEADER,
                fields.len()
            ),
        ));
    };
    let net = IpNet::from_str(cidr).map_err(|e| bad("cidr", e.to_string()))?;
    if net.addr() != net.network() {
        return Err(bad(
            "cidr",
            format!(
                "{cidr:?} has bits set past its /{} prefix; the block starts at {}/{}",
                net.prefix(),
                net.network(),
                net.prefix()
            ),
        ));
    }
    let latitude = coordinate(latitude, 90.0).map_err(|p| bad("latitude", p))?;
    let longitude = coordinate(longitude, 180.0).map_err(|p| bad("longitude", p))?;
    let country = CountryCode::parse(country).map_err(|p| bad("country", p.to_string()))?;
    let point = GeoPoint {
        latitude,
        longitude,
    };
    Ok((
        net,
        Place {
            point,
            country,
            line,
        },
    ))
}

/// A latitude (`limit` 90) or longitude (`limit` 180) in decimal degrees.
fn coordinate(text: &str, limit: f64) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of degrees like 52.52 or -74.01"))?;
    if !value.is_finite() {
        Err(format!("{text} is not a finite number of degrees"))
    } else if (-limit..=limit).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{text} is out of range (-{limit} to {limit})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_core::ErrorChain;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn country_of(map: &GeoMap, s: &str) -> Option<String> {
        map.lookup(ip(s)).map(|(_, c)| c.to_string())
    }

    const GOOD: &str = "\
# Offices and data centres
cidr,latitude,longitude,country

10.0.0.0/8,50.11,8.68,DE
10.20.0.0/16,52.37,4.90,nl
  10.20.30.0/24 , 48.86 , 2.35 , FR
# a single host
10.20.30.40,40.71,-74.01,US
0.0.0.0/0,0,0,CH
2001:db8::/32,35.68,139.69,JP
2001:db8:1::/48,-33.87,151.21,AU
::/0,-90,-180,BR
";

    #[test]
    fn a_good_map_parses_with_comments_blanks_and_spaces() {
        let map = GeoMap::parse(GOOD).unwrap();
        assert_eq!(map.len(), 8);
        assert!(!map.is_empty());
        let (point, country) = map.lookup(ip("10.20.30.7")).unwrap();
        assert_eq!(country.as_str(), "FR");
        assert_eq!(
            point,
            GeoPoint {
                latitude: 48.86,
                longitude: 2.35
            }
        );
        // Lower case country codes are normalised.
        assert_eq!(country_of(&map, "10.20.1.1").as_deref(), Some("NL"));
    }

    #[test]
    fn the_longest_prefix_wins() {
        let map = GeoMap::parse(GOOD).unwrap();
        assert_eq!(country_of(&map, "10.20.30.40").as_deref(), Some("US"));
        assert_eq!(country_of(&map, "10.20.30.41").as_deref(), Some("FR"));
        assert_eq!(country_of(&map, "10.20.31.1").as_deref(), Some("NL"));
        assert_eq!(country_of(&map, "10.21.0.1").as_deref(), Some("DE"));
        assert_eq!(country_of(&map, "192.0.2.1").as_deref(), Some("CH"));
    }

    #[test]
    fn ipv6_blocks_match_ipv6_addresses() {
        let map = GeoMap::parse(GOOD).unwrap();
        assert_eq!(country_of(&map, "2001:db8:1:2::9").as_deref(), Some("AU"));
        assert_eq!(country_of(&map, "2001:db8:2::9").as_deref(), Some("JP"));
        assert_eq!(country_of(&map, "2001:db9::1").as_deref(), Some("BR"));
        // ::/0 holds every IPv6 address but no IPv4 one: 0.0.0.0/0 decides those.
        assert_eq!(country_of(&map, "8.8.8.8").as_deref(), Some("CH"));
    }

    #[test]
    fn ipv4_mapped_ipv6_addresses_match_ipv4_blocks() {
        let map = GeoMap::parse(GOOD).unwrap();
        assert_eq!(
            country_of(&map, "::ffff:10.20.30.40").as_deref(),
            Some("US")
        );
        assert_eq!(country_of(&map, "::ffff:10.1.1.1").as_deref(), Some("DE"));
        let v4_only = GeoMap::parse("cidr,latitude,longitude,country\n10.0.0.0/8,1,2,DE").unwrap();
        assert_eq!(
            country_of(&v4_only, "::ffff:10.9.9.9").as_deref(),
            Some("DE")
        );
        // Not mapped: an IPv6 address, which no IPv4 block holds.
        assert_eq!(country_of(&v4_only, "::10.9.9.9"), None);
        assert_eq!(country_of(&v4_only, "11.0.0.1"), None);
    }

    #[test]
    fn an_address_outside_every_block_is_unknown() {
        let map = GeoMap::parse("cidr,latitude,longitude,country\n10.0.0.0/8,1,2,DE\n").unwrap();
        assert_eq!(map.lookup(ip("172.16.0.1")), None);
        assert_eq!(map.lookup(ip("2001:db8::1")), None);
    }

    #[test]
    fn a_header_only_map_is_empty_and_windows_line_ends_are_fine() {
        let map = GeoMap::parse("\u{feff}CIDR, Latitude, Longitude, Country\r\n").unwrap();
        assert!(map.is_empty());
        assert_eq!(map.len(), 0);
        let map =
            GeoMap::parse("cidr,latitude,longitude,country\r\n10.0.0.0/8,1,2,DE\r\n").unwrap();
        assert_eq!(country_of(&map, "10.0.0.1").as_deref(), Some("DE"));
    }

    fn error(text: &str) -> String {
        GeoMap::parse(text).unwrap_err().to_string()
    }

    fn row_error(row: &str) -> String {
        error(&format!("cidr,latitude,longitude,country\n# note\n{row}\n"))
    }

    #[test]
    fn a_missing_or_wrong_header_is_named() {
        assert!(error("").contains("empty"), "{}", error(""));
        assert!(error("# only a comment\n\n").contains("empty"));
        let e = error("\n10.0.0.0/8,1,2,DE\n");
        assert!(
            e.starts_with("line 2: expected the header line `cidr,latitude,longitude,country`"),
            "{e}"
        );
        let e = error("cidr,lat,lon,country\n");
        assert!(e.contains("found \"cidr,lat,lon,country\""), "{e}");
    }

    #[test]
    fn each_bad_field_is_named_with_its_line() {
        let cases = [
            ("10.0.0.0/8,1,2", "line 3, row: expected 4 comma-separated fields"),
            ("10.0.0.0/8,1,2,DE,x", "found 5"),
            ("10.0.0.0/33,1,2,DE", "line 3, cidr: \"10.0.0.0/33\" is not an address block"),
            ("10.0.0/8,1,2,DE", "line 3, cidr:"),
            ("10.1.0.0/8,1,2,DE", "line 3, cidr: \"10.1.0.0/8\" has bits set past its /8 prefix; the block starts at 10.0.0.0/8"),
            ("2001:db8::1/32,1,2,DE", "the block starts at 2001:db8::/32"),
            (",1,2,DE", "line 3, cidr:"),
            ("10.0.0.0/8,north,2,DE", "line 3, latitude: \"north\" is not a number"),
            ("10.0.0.0/8,,2,DE", "line 3, latitude:"),
            ("10.0.0.0/8,90.5,2,DE", "line 3, latitude: 90.5 is out of range (-90 to 90)"),
            ("10.0.0.0/8,-91,2,DE", "line 3, latitude: -91 is out of range"),
            ("10.0.0.0/8,NaN,2,DE", "line 3, latitude: NaN is not a finite number"),
            ("10.0.0.0/8,1,180.01,DE", "line 3, longitude: 180.01 is out of range (-180 to 180)"),
            ("10.0.0.0/8,1,-inf,DE", "line 3, longitude: -inf is not a finite number"),
            ("10.0.0.0/8,1,east,DE", "line 3, longitude: \"east\" is not a number"),
            ("10.0.0.0/8,1,2,XX", "line 3, country: \"XX\" is not an ISO 3166-1 alpha-2"),
            ("10.0.0.0/8,1,2,DEU", "line 3, country:"),
            ("10.0.0.0/8,1,2,", "line 3, country:"),
        ];
        for (row, want) in cases {
            let e = row_error(row);
            assert!(e.contains(want), "{row:?}: {e:?} lacks {want:?}");
        }
    }

    #[test]
    fn the_edges_of_the_coordinate_ranges_are_allowed() {
        let map = GeoMap::parse(
            "cidr,latitude,longitude,country\n10.0.0.0/8,90,180,NO\n11.0.0.0/8,-90,-180,AQ\n",
        )
        .unwrap();
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn a_duplicate_block_names_both_lines() {
        let e = error("cidr,latitude,longitude,country\n10.0.0.0/8,1,2,DE\n\n10.0.0.0/8,3,4,FR\n");
        assert_eq!(
            e,
            "line 4, cidr: block 10.0.0.0/8 is already listed on line 2"
        );
        // The same block spelt differently is still the same block.
        let e = error(
            "cidr,latitude,longitude,country\n2001:db8::/32,1,2,DE\n2001:0db8:0::/32,3,4,FR\n",
        );
        assert!(e.contains("line 3") && e.contains("line 2"), "{e}");
        let e =
            error("cidr,latitude,longitude,country\n192.0.2.1,1,2,DE\n::ffff:192.0.2.1,3,4,FR\n");
        assert!(e.contains("on line 2"), "{e}");
        // Same network, other prefix: an overlap, which is allowed.
        assert!(GeoMap::parse(
            "cidr,latitude,longitude,country\n10.0.0.0/8,1,2,DE\n10.0.0.0/9,3,4,FR\n"
        )
        .is_ok());
    }

    #[test]
    fn load_names_the_file() {
        let dir = std::env::temp_dir().join(format!("meridian-geo-map-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.csv");
        std::fs::write(&good, GOOD).unwrap();
        assert_eq!(GeoMap::load(&good).unwrap().len(), 8);
        let bad = dir.join("bad.csv");
        std::fs::write(&bad, "cidr,latitude,longitude,country\n10.0.0.0/8,1,2,ZZ\n").unwrap();
        let e = ErrorChain(&GeoMap::load(&bad).unwrap_err()).to_string();
        assert!(
            e.starts_with(&format!("{}: line 2, country:", bad.display())),
            "{e}"
        );
        let missing = dir.join("missing.csv");
        let e = ErrorChain(&GeoMap::load(&missing).unwrap_err()).to_string();
        assert!(
            e.starts_with(&format!("cannot read {}: ", missing.display())),
            "{e}"
        );
        assert_eq!(e.matches(&missing.display().to_string()).count(), 1, "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
