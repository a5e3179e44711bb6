//! Typed validation errors. Each names the field it is about so the API can point at it.

/// Why a piece of input was refused. `field` is the JSON path of the offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ValidationError {
    /// Where the bad value sits, e.g. `name`, `residency[2]`, `env.PATH`.
    pub field: String,
    /// What is wrong with it, in words a person can act on.
    pub problem: Problem,
}

/// The kinds of problem validation finds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// Not a DNS label.
    #[error("{0:?} is not a valid name: {1}")]
    BadName(String, &'static str),
    /// Not a host name.
    #[error("{0:?} is not a valid domain name: {1}")]
    BadDomain(String, &'static str),
    /// Not an assigned ISO 3166-1 alpha-2 code.
    #[error("{0:?} is not an ISO 3166-1 alpha-2 country code")]
    BadCountry(String),
    /// Neither a country code nor a known jurisdiction group.
    #[error("{0:?} is not a country code or a known jurisdiction group")]
    UnknownJurisdiction(String),
    /// A number outside its allowed range.
    #[error("{value} is out of range ({min} to {max})")]
    OutOfRange {
        /// The value given.
        value: String,
        /// Smallest allowed.
        min: String,
        /// Largest allowed.
        max: String,
    },
    /// A required value was empty.
    #[error("must not be empty")]
    Empty,
    /// Too long.
    #[error("is longer than {0} characters")]
    TooLong(usize),
    /// Not a usable container image reference.
    #[error("{0:?} is not a valid image reference")]
    BadImage(String),
    /// Not a usable environment variable name.
    #[error("{0:?} is not a valid environment variable name")]
    BadEnvName(String),
    /// A list longer than allowed.
    #[error("holds more than {0} items")]
    TooMany(usize),
    /// The same value appears twice in a list.
    #[error("{0:?} is listed twice")]
    Duplicate(String),
    /// A health check that cannot run.
    #[error("{0}")]
    BadHealthCheck(&'static str),
    /// A region the app pins lies outside the jurisdictions it allows.
    #[error("region {region} ({country}) lies outside the app's residency [{residency}]")]
    RegionOutsideResidency {
        /// The pinned region.
        region: String,
        /// Its country.
        country: String,
        /// The app's residency, comma separated.
        residency: String,
    },
    /// A region the app pins does not exist.
    #[error("region {0} does not exist")]
    UnknownRegion(String),
}

impl ValidationError {
    /// Builds an error for `field`.
    pub fn new(field: impl Into<String>, problem: Problem) -> Self {
        Self {
            field: field.into(),
            problem,
        }
    }
}
