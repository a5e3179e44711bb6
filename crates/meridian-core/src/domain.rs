//! Host names: the cluster's apps domain and the custom domains attached to apps.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Problem, ValidationError};
use crate::name::Name;

/// A fully qualified host name in lowercase, without a trailing dot: two or more DNS labels,
/// at most 253 characters. Holding one proves the string was checked.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DomainName(String);

impl DomainName {
    /// Longest host name DNS allows.
    pub const MAX_LEN: usize = 253;

    /// Checks `s` (case-insensitively; one trailing dot is dropped) and wraps it.
    pub fn parse(s: &str) -> Result<Self, Problem> {
        let lower = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
        let why = if lower.is_empty() {
            Some("must not be empty")
        } else if lower.len() > Self::MAX_LEN {
            Some("must be at most 253 characters")
        } else if !lower.contains('.') {
            Some("must have at least two labels, like example.com")
        } else {
            lower.split('.').find_map(|label| match Name::parse(label) {
                Ok(_) => None,
                Err(_) if label.is_empty() => Some("must not have an empty label"),
                Err(_) => Some(
                    "each label must be 1 to 63 letters, digits or '-', not starting or ending with '-'",
                ),
            })
        };
        match why {
            Some(why) => Err(Problem::BadDomain(s.to_string(), why)),
            None => Ok(Self(lower)),
        }
    }

    /// Like [`DomainName::parse`], with the error tied to `field`.
    pub fn parse_field(field: &str, s: &str) -> Result<Self, ValidationError> {
        Self::parse(s).map_err(|p| ValidationError::new(field, p))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `self` is `parent` or lies under it.
    pub fn is_within(&self, parent: &DomainName) -> bool {
        self.0 == parent.0
            || self
                .0
                .strip_suffix(parent.as_str())
                .is_some_and(|rest| rest.ends_with('.'))
    }

    /// The app a host under this apps domain names: `web.meridian.localhost` → `web`.
    pub fn app_label(&self, host: &str) -> Option<Name> {
        let rest = host.strip_suffix(self.as_str())?.strip_suffix('.')?;
        Name::parse(rest).ok()
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for DomainName {
    type Error = Problem;
    fn try_from(s: String) -> Result<Self, Problem> {
        Self::parse(&s)
    }
}

impl From<DomainName> for String {
    fn from(n: DomainName) -> String {
        n.0
    }
}

/// The apps domain a cluster starts with: `<app>.meridian.localhost` resolves to 127.0.0.1 on
/// most systems, so the local cluster works without DNS.
pub const DEFAULT_APPS_DOMAIN: &str = "meridian.localhost";

/// Strips the port and a trailing dot from a `Host` header value and lowercases it.
pub fn normalize_host(host: &str) -> String {
    let host = host.trim();
    let without_port = if host.starts_with('[') {
        // A bracketed IPv6 literal, with or without a port.
        host.find(']').map_or(host, |end| &host[..=end])
    } else {
        match host.split_once(':') {
            Some((h, port)) if !port.contains(':') => h,
            _ => host,
        }
    };
    without_port
        .strip_suffix('.')
        .unwrap_or(without_port)
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        assert_eq!(
            DomainName::parse("Shop.Example.COM.").unwrap().as_str(),
            "shop.example.com"
        );
        for bad in ["", "localhost", "a..b", "-a.b", "a-.b", "a_b.c", "a.b-"] {
            assert!(DomainName::parse(bad).is_err(), "{bad}");
        }
        let long = format!("{}.com", "a.".repeat(130));
        assert!(DomainName::parse(&long).is_err());
    }

    #[test]
    fn within_and_app_labels() {
        let apps = DomainName::parse(DEFAULT_APPS_DOMAIN).unwrap();
        let d = |s: &str| DomainName::parse(s).unwrap();
        assert!(d("web.meridian.localhost").is_within(&apps));
        assert!(apps.is_within(&apps));
        assert!(!d("xmeridian.localhost").is_within(&apps));
        assert_eq!(
            apps.app_label("web.meridian.localhost").unwrap().as_str(),
            "web"
        );
        assert!(apps.app_label("a.b.meridian.localhost").is_none());
        assert!(apps.app_label("meridian.localhost").is_none());
        assert!(apps.app_label("webmeridian.localhost").is_none());
    }

    #[test]
    fn hosts_lose_ports_and_case() {
        assert_eq!(
            normalize_host("Web.Meridian.Localhost:8080"),
            "web.meridian.localhost"
        );
        assert_eq!(normalize_host("example.com."), "example.com");
        assert_eq!(normalize_host("[::1]:80"), "[::1]");
        assert_eq!(normalize_host("[::1]"), "[::1]");
    }
}
