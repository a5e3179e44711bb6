//! Where an app's residency comes from: its own, the cluster's default residency, or none at
//! all; and the checks a default residency must pass.

use crate::error::{Problem, ValidationError};
use crate::jurisdiction::{list_text, Jurisdiction, JurisdictionCatalog};
use crate::name::Name;

/// Where the residency an app was created with came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResidencySource {
    /// Its creator gave one (an empty list included: "anywhere", asked for).
    App,
    /// Its creator gave none, and the cluster's default residency applied.
    ClusterDefault,
    /// Its creator gave none and the cluster has no default: it may run anywhere.
    None,
}

impl ResidencySource {
    /// Where the residency `applied` came from, for an app whose creator gave one (`given`)
    /// or left it to the cluster's default.
    pub fn of(given: bool, applied: &[Jurisdiction]) -> Self {
        match (given, applied.is_empty()) {
            (true, _) => Self::App,
            (false, false) => Self::ClusterDefault,
            (false, true) => Self::None,
        }
    }

    /// `app`, `cluster_default` or `none`, as the API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::App => "app",
            Self::ClusterDefault => "cluster_default",
            Self::None => "none",
        }
    }

    /// The inverse of [`ResidencySource::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [Self::App, Self::ClusterDefault, Self::None]
            .into_iter()
            .find(|k| k.as_str() == s)
    }

    /// What an audit entry says about an app created with `residency` from this source.
    pub fn explain(self, residency: &[Jurisdiction]) -> String {
        match (self, residency.is_empty()) {
            (Self::App, false) => {
                format!("created with its own residency [{}]", list_text(residency))
            }
            (Self::App, true) => "created to run anywhere, as its creator asked".to_string(),
            (Self::ClusterDefault, _) => format!(
                "created without a residency; the cluster's default residency [{}] applies",
                list_text(residency)
            ),
            (Self::None, _) => "created without a residency, and the cluster has no default \
                                residency: it may run in any region"
                .to_string(),
        }
    }
}

/// The policy an app is checked against, as the audit log shows it:
/// `residency [EU], regions [eu-fra]`.
pub fn policy_text(residency: &[Jurisdiction], regions: Option<&[Name]>) -> String {
    let mut p = format!("residency [{}]", list_text(residency));
    if let Some(regions) = regions {
        let names: Vec<&str> = regions.iter().map(Name::as_str).collect();
        p.push_str(&format!(", regions [{}]", names.join(", ")));
    }
    p
}

/// Checks a cluster default residency the way an app's own is checked: no jurisdiction
/// twice, and every group known to `catalog`. Errors name `default_residency[i]`.
pub fn check_default(
    residency: &[Jurisdiction],
    catalog: &JurisdictionCatalog,
) -> Result<(), ValidationError> {
    for (i, j) in residency.iter().enumerate() {
        let field = || format!("default_residency[{i}]");
        if residency[..i].contains(j) {
            return Err(ValidationError::new(
                field(),
                Problem::Duplicate(j.to_string()),
            ));
        }
        if !catalog.knows(j) {
            return Err(ValidationError::new(
                field(),
                Problem::UnknownJurisdiction(j.to_string()),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<Jurisdiction> {
        items
            .iter()
            .map(|s| Jurisdiction::parse(s).unwrap())
            .collect()
    }

    #[test]
    fn source_follows_what_was_given() {
        assert_eq!(
            ResidencySource::of(true, &list(&["EU"])),
            ResidencySource::App
        );
        assert_eq!(ResidencySource::of(true, &[]), ResidencySource::App);
        assert_eq!(
            ResidencySource::of(false, &list(&["EU"])),
            ResidencySource::ClusterDefault
        );
        assert_eq!(ResidencySource::of(false, &[]), ResidencySource::None);
    }

    #[test]
    fn source_names_round_trip() {
        for s in [
            ResidencySource::App,
            ResidencySource::ClusterDefault,
            ResidencySource::None,
        ] {
            assert_eq!(ResidencySource::parse(s.as_str()), Some(s));
        }
        assert_eq!(ResidencySource::parse("default"), None);
    }

    #[test]
    fn explanations_say_where_the_policy_came_from() {
        let eu = list(&["EU"]);
        assert!(ResidencySource::ClusterDefault
            .explain(&eu)
            .contains("cluster's default residency [EU]"));
        assert!(ResidencySource::None.explain(&[]).contains("any region"));
        assert!(ResidencySource::App
            .explain(&eu)
            .contains("its own residency [EU]"));
    }

    #[test]
    fn policy_names_residency_and_pinned_regions() {
        let regions = [Name::parse("eu-fra").unwrap()];
        assert_eq!(policy_text(&[], None), "residency [anywhere]");
        assert_eq!(
            policy_text(&list(&["EU", "CH"]), Some(&regions)),
            "residency [EU, CH], regions [eu-fra]"
        );
    }

    #[test]
    fn a_default_is_checked_like_an_app_residency() {
        let catalog = JurisdictionCatalog::built_in();
        assert!(check_default(&list(&["EU", "CH"]), &catalog).is_ok());
        assert!(check_default(&[], &catalog).is_ok());
        let err = check_default(&list(&["EU", "eu"]), &catalog).unwrap_err();
        assert_eq!(err.field, "default_residency[1]");
        let err = check_default(&list(&["DE", "NORDICS"]), &catalog).unwrap_err();
        assert_eq!(err.field, "default_residency[1]");
        assert!(err.to_string().contains("NORDICS"), "{err}");
    }
}
