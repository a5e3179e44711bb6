//! Where a client is: from a MaxMind-format GeoIP database, else an operator's CSV map of
//! address ranges, else the router's own region. Also which address is the client's when the
//! peer is a trusted proxy.
//!
//! Both sources are read once at start-up and looked up on every request, so lookups neither
//! allocate nor touch the disk.

pub mod geo_map;
pub mod geoip;
pub mod locator;
pub mod net;

use std::path::PathBuf;

pub use geo_map::GeoMap;
pub use geoip::GeoIpDb;
pub use locator::Locator;
pub use net::{canonical, client_ip, IpNet, TrustedProxies};

/// Why a geo source or setting could not be used.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// A CIDR block that does not parse.
    #[error("{0:?} is not an address block like 10.0.0.0/8 or 2001:db8::/32")]
    BadCidr(String),
    /// A geo map that does not start with the expected header line.
    #[error(
        "line {line}: expected the header line `{expected}`, found {found:?}",
        expected = GeoMap::HEADER
    )]
    GeoMapHeader {
        /// 1-based line number of the first line that is neither blank nor a comment.
        line: usize,
        /// What that line holds.
        found: String,
    },
    /// A geo map with no header line at all (empty, or only blank lines and comments).
    #[error(
        "the geo map is empty: expected the header line `{expected}` and one line per block",
        expected = GeoMap::HEADER
    )]
    GeoMapEmpty,
    /// A row of a geo map with a bad field.
    #[error("line {line}, {field}: {problem}")]
    GeoMapRow {
        /// 1-based line number.
        line: usize,
        /// The column at fault: `cidr`, `latitude`, `longitude`, `country`, or `row` when the
        /// line does not have four fields.
        field: &'static str,
        /// What is wrong, in words an operator can act on.
        problem: String,
    },
    /// The same block listed twice in a geo map.
    #[error("line {line}, cidr: block {block} is already listed on line {first_line}")]
    GeoMapDuplicate {
        /// The block, as written on the later line.
        block: String,
        /// 1-based line number of its first listing.
        first_line: usize,
        /// 1-based line number of the repeat.
        line: usize,
    },
    /// Bytes that are not a usable MaxMind DB.
    #[error("not a usable MaxMind DB (.mmdb) database")]
    GeoIp(#[from] maxminddb::MaxMindDbError),
    /// A file that could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file that was read but whose content is unusable.
    #[error("{}", path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with its content.
        source: Box<GeoError>,
    },
}

impl GeoError {
    /// Ties an error about content to the file it came from.
    pub(crate) fn in_file(self, path: &std::path::Path) -> Self {
        GeoError::InFile {
            path: path.to_path_buf(),
            source: Box::new(self),
        }
    }
}
