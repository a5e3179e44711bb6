//! A MaxMind-format City database: GeoLite2-City, GeoIP2-City or DB-IP City Lite.

use std::net::IpAddr;
use std::path::Path;

use maxminddb::geoip2::city::Location;
use maxminddb::{PathElement, Reader};
use meridian_core::route::GeoPoint;
use meridian_core::CountryCode;

use crate::net::canonical;
use crate::GeoError;

const LOCATION: &[PathElement<'static>] = &[PathElement::Key("location")];
const COUNTRY_CODE: &[PathElement<'static>] =
    &[PathElement::Key("country"), PathElement::Key("iso_code")];

/// A City database held in memory, read once.
#[derive(Debug)]
pub struct GeoIpDb {
    reader: Reader<Vec<u8>>,
}

impl GeoIpDb {
    /// Reads a MaxMind-format (`.mmdb`) City database, e.g. GeoLite2-City or DB-IP City Lite.
    /// Errors name the path.
    pub fn open(path: &Path) -> Result<Self, GeoError> {
        let bytes = std::fs::read(path).map_err(|source| GeoError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(bytes).map_err(|e| e.in_file(path))
    }

    /// A database from its bytes. Checks the metadata and layout; records are read lazily.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, GeoError> {
        Ok(Self {
            reader: Reader::from_source(bytes)?,
        })
    }

    /// The database's own name for its kind, e.g. `GeoLite2-City`, for logs.
    pub fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// Where `ip` is: the record's coordinates and country. `None` when the database has no
    /// record for the address, or the record lacks coordinates (or has impossible ones) or a
    /// country ISO code, or cannot be decoded. IPv4-mapped IPv6 addresses are looked up as
    /// IPv4.
    pub fn lookup(&self, ip: IpAddr) -> Option<(GeoPoint, CountryCode)> {
        let ip = canonical(ip);
        if ip.is_ipv6() && self.reader.metadata().ip_version == 4 {
            return None;
        }
        let found = self.reader.lookup(ip).ok()?;
        if !found.has_data() {
            return None;
        }
        let location: Location<'_> = found.decode_path(LOCATION).ok()??;
        let point = GeoPoint {
            latitude: location
                .latitude
                .filter(|l| l.is_finite() && l.abs() <= 90.0)?,
            longitude: location
                .longitude
                .filter(|l| l.is_finite() && l.abs() <= 180.0)?,
        };
        let code: &str = found.decode_path(COUNTRY_CODE).ok()??;
        let country = CountryCode::parse(code).ok()?;
        Some((point, country))
    }
}
