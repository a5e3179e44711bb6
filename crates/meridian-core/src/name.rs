//! Names of apps, regions and nodes: DNS labels, so they can appear in host names.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Problem, ValidationError};

/// A DNS label: lowercase ASCII letters, digits and `-`, 1 to 63 characters, not starting or
/// ending with `-`. Holding a `Name` proves the string was checked.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

impl Name {
    /// Longest label DNS allows.
    pub const MAX_LEN: usize = 63;

    /// Checks `s` and wraps it, or says why it is not a DNS label.
    pub fn parse(s: &str) -> Result<Self, Problem> {
        let why = if s.is_empty() {
            Some("must not be empty")
        } else if s.len() > Self::MAX_LEN {
            Some("must be at most 63 characters")
        } else if !s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            Some("only lowercase letters, digits and '-' are allowed")
        } else if s.starts_with('-') || s.ends_with('-') {
            Some("must not start or end with '-'")
        } else {
            None
        };
        match why {
            Some(why) => Err(Problem::BadName(s.to_string(), why)),
            None => Ok(Self(s.to_string())),
        }
    }

    /// Like [`Name::parse`], with the error tied to `field`.
    pub fn parse_field(field: &str, s: &str) -> Result<Self, ValidationError> {
        Self::parse(s).map_err(|p| ValidationError::new(field, p))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Name {
    type Error = Problem;
    fn try_from(s: String) -> Result<Self, Problem> {
        Self::parse(&s)
    }
}

impl From<Name> for String {
    fn from(n: Name) -> String {
        n.0
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels() {
        for ok in ["a", "web", "eu-fra", "a1-b2", &"x".repeat(63)] {
            assert!(Name::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_what_dns_refuses() {
        for bad in [
            "",
            "-a",
            "a-",
            "Web",
            "a_b",
            "a.b",
            "ü",
            " a",
            &"x".repeat(64),
        ] {
            assert!(Name::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn deserializing_checks_too() {
        assert!(serde_json::from_str::<Name>("\"ok-name\"").is_ok());
        assert!(serde_json::from_str::<Name>("\"Bad\"").is_err());
    }
}
