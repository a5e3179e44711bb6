//! Typed validation errors, each naming the field it is about so the API can point at it; and
//! [`ErrorChain`], which shows any error with the causes beneath it.

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

/// Shows an error with every cause beneath it, `outer: inner: root`, for logs and messages
/// that have only one line.
///
/// Meridian's errors say each thing once: an error that returns its cause from
/// [`source`](std::error::Error::source) leaves it out of its own message. Displaying such an
/// error alone therefore hides why it happened; this walks the chain instead.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open {0}")]
    struct Open(&'static str, #[source] std::fmt::Error);

    #[test]
    fn a_chain_names_every_cause_once() {
        let e = Open("state.db", std::fmt::Error);
        assert_eq!(
            ErrorChain(&e).to_string(),
            "cannot open state.db: an error occurred when formatting an argument"
        );
    }
}
