//! Jurisdictions: a single country, or a named group of countries such as `EU`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::country::CountryCode;
use crate::error::Problem;

/// The 27 member states of the European Union (ISO codes; Greece is `GR`).
pub const EU_MEMBERS: [&str; 27] = [
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT",
    "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
];

/// The European Economic Area: the EU plus these three.
pub const EEA_EXTRA: [&str; 3] = ["IS", "LI", "NO"];

/// A place an app may be allowed to run: one country, or a group of countries.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Jurisdiction {
    /// A single country.
    Country(CountryCode),
    /// A named group (`EU`, `EEA`, or one defined by an operator). Upper case.
    Group(String),
}

impl Jurisdiction {
    /// Parses `DE`, `eu`, `EEA`, ... A two-letter assigned country code is a country; `EU`
    /// and `EEA` are the built-in groups; any other upper-case word of 3 to 32 letters, digits
    /// or `-` names a group, which must then exist in the catalog it is checked against.
    pub fn parse(s: &str) -> Result<Self, Problem> {
        let upper = s.to_ascii_uppercase();
        if JurisdictionCatalog::BUILT_IN.contains(&upper.as_str()) {
            return Ok(Self::Group(upper));
        }
        if upper.len() == 2 {
            return CountryCode::parse(&upper)
                .map(Self::Country)
                .map_err(|_| Problem::UnknownJurisdiction(s.to_string()));
        }
        let shaped = (3..=32).contains(&upper.len())
            && upper
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
            && upper.as_bytes()[0].is_ascii_uppercase();
        if shaped {
            Ok(Self::Group(upper))
        } else {
            Err(Problem::UnknownJurisdiction(s.to_string()))
        }
    }
}

impl fmt::Display for Jurisdiction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Country(c) => c.fmt(f),
            Self::Group(g) => f.write_str(g),
        }
    }
}

impl TryFrom<String> for Jurisdiction {
    type Error = Problem;
    fn try_from(s: String) -> Result<Self, Problem> {
        Self::parse(&s)
    }
}

impl From<Jurisdiction> for String {
    fn from(j: Jurisdiction) -> String {
        j.to_string()
    }
}

/// A list of jurisdictions as `EU, CH`, or `anywhere` when empty.
pub fn list_text(list: &[Jurisdiction]) -> String {
    if list.is_empty() {
        return "anywhere".to_string();
    }
    let parts: Vec<String> = list.iter().map(ToString::to_string).collect();
    parts.join(", ")
}

/// Which countries each group holds: the built-in groups plus any an operator defined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JurisdictionCatalog {
    groups: BTreeMap<String, BTreeSet<CountryCode>>,
}

impl Default for JurisdictionCatalog {
    fn default() -> Self {
        Self::built_in()
    }
}

impl JurisdictionCatalog {
    /// Names of the groups every cluster has.
    pub const BUILT_IN: [&'static str; 2] = ["EU", "EEA"];

    /// The catalog with only `EU` and `EEA`.
    pub fn built_in() -> Self {
        let eu: BTreeSet<CountryCode> = EU_MEMBERS.iter().map(|c| CountryCode::known(c)).collect();
        let mut eea = eu.clone();
        eea.extend(EEA_EXTRA.iter().map(|c| CountryCode::known(c)));
        let groups = BTreeMap::from([("EU".to_string(), eu), ("EEA".to_string(), eea)]);
        Self { groups }
    }

    /// Adds or replaces a custom group. Built-in groups cannot be redefined.
    pub fn define(&mut self, name: &str, members: BTreeSet<CountryCode>) -> Result<(), Problem> {
        match Jurisdiction::parse(name)? {
            Jurisdiction::Group(g) if !Self::BUILT_IN.contains(&g.as_str()) => {
                self.groups.insert(g, members);
                Ok(())
            }
            _ => Err(Problem::UnknownJurisdiction(name.to_string())),
        }
    }

    /// The operator-defined groups and their members (the built-in ones left out).
    pub fn custom_groups(&self) -> impl Iterator<Item = (&str, &BTreeSet<CountryCode>)> {
        self.groups
            .iter()
            .filter(|(g, _)| !Self::BUILT_IN.contains(&g.as_str()))
            .map(|(g, m)| (g.as_str(), m))
    }

    /// Whether the catalog knows this jurisdiction (countries are always known).
    pub fn knows(&self, j: &Jurisdiction) -> bool {
        match j {
            Jurisdiction::Country(_) => true,
            Jurisdiction::Group(g) => self.groups.contains_key(g),
        }
    }

    /// Whether `country` lies in `j`. An unknown group contains nothing.
    pub fn contains(&self, j: &Jurisdiction, country: CountryCode) -> bool {
        match j {
            Jurisdiction::Country(c) => *c == country,
            Jurisdiction::Group(g) => self.groups.get(g).is_some_and(|m| m.contains(&country)),
        }
    }

    /// Whether `country` is allowed by a residency list. An empty list allows everywhere.
    pub fn allows(&self, residency: &[Jurisdiction], country: CountryCode) -> bool {
        residency.is_empty() || residency.iter().any(|j| self.contains(j, country))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cc(s: &str) -> CountryCode {
        CountryCode::parse(s).unwrap()
    }

    #[test]
    fn parses_countries_and_groups() {
        assert_eq!(
            Jurisdiction::parse("de").unwrap(),
            Jurisdiction::Country(cc("DE"))
        );
        assert_eq!(
            Jurisdiction::parse("eu").unwrap(),
            Jurisdiction::Group("EU".into())
        );
        assert_eq!(
            Jurisdiction::parse("EEA").unwrap(),
            Jurisdiction::Group("EEA".into())
        );
        assert_eq!(
            Jurisdiction::parse("five-eyes").unwrap(),
            Jurisdiction::Group("FIVE-EYES".into())
        );
        for bad in ["", "X", "XX", "1AB", "A B C", &"A".repeat(33)] {
            assert!(Jurisdiction::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn eu_and_eea_membership() {
        let cat = JurisdictionCatalog::built_in();
        let eu = Jurisdiction::parse("EU").unwrap();
        let eea = Jurisdiction::parse("EEA").unwrap();
        assert!(cat.contains(&eu, cc("DE")));
        assert!(cat.contains(&eu, cc("GR")));
        assert!(!cat.contains(&eu, cc("NO")));
        assert!(cat.contains(&eea, cc("NO")));
        assert!(!cat.contains(&eu, cc("US")));
        assert!(!cat.contains(&eu, cc("GB")));
        assert!(!cat.contains(&eu, cc("CH")));
    }

    #[test]
    fn empty_residency_allows_everywhere() {
        let cat = JurisdictionCatalog::built_in();
        assert!(cat.allows(&[], cc("US")));
        let eu = [Jurisdiction::parse("EU").unwrap()];
        assert!(!cat.allows(&eu, cc("US")));
        assert!(cat.allows(&eu, cc("NL")));
    }

    #[test]
    fn custom_groups_but_not_over_built_ins() {
        let mut cat = JurisdictionCatalog::built_in();
        cat.define("DACH", [cc("DE"), cc("AT"), cc("CH")].into())
            .unwrap();
        let dach = Jurisdiction::parse("DACH").unwrap();
        assert!(cat.knows(&dach));
        assert!(cat.contains(&dach, cc("CH")));
        assert!(cat.define("EU", BTreeSet::new()).is_err());
        assert!(!cat.knows(&Jurisdiction::parse("NOPE").unwrap()));
    }
}
