//! Apps: what a user asks Meridian to run, and where it may run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::country::CountryCode;
use crate::domain::DomainName;
use crate::error::{Problem, ValidationError};
use crate::jurisdiction::{Jurisdiction, JurisdictionCatalog};
use crate::name::Name;

/// Most instances one app may ask for.
pub const MAX_REPLICAS: u32 = 1000;
/// Most environment variables one app may set.
pub const MAX_ENV: usize = 256;
/// Longest environment value, in bytes.
pub const MAX_ENV_VALUE: usize = 32 * 1024;
/// Longest image reference.
pub const MAX_IMAGE_LEN: usize = 255;
/// Most custom domains one app may have.
pub const MAX_DOMAINS: usize = 100;
/// CPU per instance when an app does not say, in thousandths of a core.
pub const DEFAULT_CPU_MILLIS: u32 = 100;
/// Memory per instance when an app does not say, in MiB.
pub const DEFAULT_MEMORY_MB: u32 = 128;
/// Most CPU one instance may ask for (64 cores).
pub const MAX_CPU_MILLIS: u32 = 64_000;
/// Most memory one instance may ask for (1 TiB).
pub const MAX_MEMORY_MB: u32 = 1 << 20;
/// Least memory one instance may ask for.
pub const MIN_MEMORY_MB: u32 = 6;

/// An app as a user declared it. Holding one does not prove it is valid: call
/// [`AppSpec::validate`] and [`AppSpec::check_places`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppSpec {
    /// DNS-label name, unique in the cluster.
    pub name: Name,
    /// Container image reference, e.g. `registry.example/web:1.2`.
    pub image: String,
    /// How many instances to run.
    pub replicas: u32,
    /// The port the app listens on inside its container.
    pub port: u16,
    /// Jurisdictions the app may run in. Empty means anywhere.
    pub residency: Vec<Jurisdiction>,
    /// Regions the app is pinned to, if any; each must lie inside `residency`.
    pub regions: Option<Vec<Name>>,
    /// Environment passed to every instance.
    pub env: BTreeMap<String, String>,
    /// How to tell an instance is healthy.
    pub health: Option<HealthCheck>,
    /// CPU reserved (and limited) per instance, in thousandths of a core.
    #[serde(default = "default_cpu")]
    pub cpu_millis: u32,
    /// Memory reserved (and limited) per instance, in MiB.
    #[serde(default = "default_memory")]
    pub memory_mb: u32,
    /// Jurisdictions whose clients are served only by regions inside them.
    #[serde(default)]
    pub origin_bound: Vec<Jurisdiction>,
    /// Custom domains the routers serve the app on, besides `<name>.<apps domain>`.
    #[serde(default)]
    pub domains: Vec<DomainName>,
}

fn default_cpu() -> u32 {
    DEFAULT_CPU_MILLIS
}

fn default_memory() -> u32 {
    DEFAULT_MEMORY_MB
}

/// How an instance is probed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// What is probed.
    pub probe: Probe,
    /// Time between probes, in milliseconds.
    pub interval_ms: u64,
    /// How long one probe may take, in milliseconds.
    pub timeout_ms: u64,
    /// How long after start failures are not counted, in milliseconds.
    pub grace_ms: u64,
}

/// The kinds of health probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    /// `GET path` must answer 2xx or 3xx.
    Http {
        /// Absolute path, starting with `/`.
        path: String,
    },
    /// A TCP connection to the app port must open.
    Tcp,
}

impl AppSpec {
    /// Checks everything that does not depend on the rest of the cluster.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_image(&self.image)?;
        if self.replicas > MAX_REPLICAS {
            return Err(range("replicas", self.replicas, 0, MAX_REPLICAS));
        }
        if self.port == 0 {
            return Err(range("port", 0, 1, 65535));
        }
        no_duplicates("residency", &self.residency)?;
        if let Some(regions) = &self.regions {
            no_duplicates("regions", regions)?;
        }
        no_duplicates("origin_bound", &self.origin_bound)?;
        no_duplicates("domains", &self.domains)?;
        if self.domains.len() > MAX_DOMAINS {
            return Err(ValidationError::new(
                "domains",
                Problem::TooMany(MAX_DOMAINS),
            ));
        }
        validate_env(&self.env)?;
        if !(1..=MAX_CPU_MILLIS).contains(&self.cpu_millis) {
            return Err(range("cpu_millis", self.cpu_millis, 1, MAX_CPU_MILLIS));
        }
        if !(MIN_MEMORY_MB..=MAX_MEMORY_MB).contains(&self.memory_mb) {
            return Err(range(
                "memory_mb",
                self.memory_mb,
                MIN_MEMORY_MB,
                MAX_MEMORY_MB,
            ));
        }
        if let Some(h) = &self.health {
            h.validate()?;
        }
        Ok(())
    }

    /// Checks the app against the cluster: every residency group must be known, and every
    /// pinned region must exist (`region_country` answers `None` for an unknown region) and lie
    /// inside the residency.
    pub fn check_places(
        &self,
        catalog: &JurisdictionCatalog,
        region_country: impl Fn(&Name) -> Option<CountryCode>,
    ) -> Result<(), ValidationError> {
        for (field, list) in [
            ("residency", &self.residency),
            ("origin_bound", &self.origin_bound),
        ] {
            for (i, j) in list.iter().enumerate() {
                if !catalog.knows(j) {
                    return Err(ValidationError::new(
                        format!("{field}[{i}]"),
                        Problem::UnknownJurisdiction(j.to_string()),
                    ));
                }
            }
        }
        for (i, r) in self.regions.iter().flatten().enumerate() {
            let field = format!("regions[{i}]");
            let country = region_country(r).ok_or_else(|| {
                ValidationError::new(&field, Problem::UnknownRegion(r.to_string()))
            })?;
            if !catalog.allows(&self.residency, country) {
                return Err(ValidationError::new(
                    field,
                    Problem::RegionOutsideResidency {
                        region: r.to_string(),
                        country: country.to_string(),
                        residency: self.residency_text(),
                    },
                ));
            }
        }
        Ok(())
    }

    /// The residency as `EU, CH`, or `anywhere` when empty.
    pub fn residency_text(&self) -> String {
        crate::jurisdiction::list_text(&self.residency)
    }
}

/// Refuses a list holding the same item twice, naming the second.
fn no_duplicates<T: PartialEq + std::fmt::Display>(
    field: &str,
    items: &[T],
) -> Result<(), ValidationError> {
    for (i, item) in items.iter().enumerate() {
        if items[..i].contains(item) {
            return Err(ValidationError::new(
                format!("{field}[{i}]"),
                Problem::Duplicate(item.to_string()),
            ));
        }
    }
    Ok(())
}

impl HealthCheck {
    /// Longest interval, timeout or grace accepted: one hour.
    pub const MAX_MS: u64 = 3_600_000;

    fn validate(&self) -> Result<(), ValidationError> {
        if let Probe::Http { path } = &self.probe {
            if !path.starts_with('/') || path.len() > 1024 || path.chars().any(char::is_whitespace)
            {
                return Err(ValidationError::new(
                    "health.http",
                    Problem::BadHealthCheck("must be an absolute path such as /healthz"),
                ));
            }
        }
        for (field, v, min) in [
            ("health.interval", self.interval_ms, 100),
            ("health.timeout", self.timeout_ms, 10),
            ("health.grace", self.grace_ms, 0),
        ] {
            if !(min..=Self::MAX_MS).contains(&v) {
                return Err(ValidationError::new(
                    field,
                    Problem::OutOfRange {
                        value: format!("{v}ms"),
                        min: format!("{min}ms"),
                        max: "1h".into(),
                    },
                ));
            }
        }
        if self.timeout_ms > self.interval_ms {
            return Err(ValidationError::new(
                "health.timeout",
                Problem::BadHealthCheck("must not be longer than the interval"),
            ));
        }
        Ok(())
    }
}

fn range(field: &str, v: impl ToString, min: impl ToString, max: impl ToString) -> ValidationError {
    ValidationError::new(
        field,
        Problem::OutOfRange {
            value: v.to_string(),
            min: min.to_string(),
            max: max.to_string(),
        },
    )
}

/// Accepts `name[:tag][@digest]` references with an optional registry host and path; the
/// error names the field `image`.
pub fn validate_image(image: &str) -> Result<(), ValidationError> {
    let bad = || ValidationError::new("image", Problem::BadImage(image.to_string()));
    if image.is_empty() {
        return Err(ValidationError::new("image", Problem::Empty));
    }
    if image.len() > MAX_IMAGE_LEN {
        return Err(ValidationError::new(
            "image",
            Problem::TooLong(MAX_IMAGE_LEN),
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._-/:@".contains(c);
    if !image.chars().all(allowed) {
        return Err(bad());
    }
    let first = image.chars().next().unwrap_or('-');
    let last = image.chars().last().unwrap_or('-');
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() || image.contains("//") {
        return Err(bad());
    }
    Ok(())
}

fn validate_env(env: &BTreeMap<String, String>) -> Result<(), ValidationError> {
    if env.len() > MAX_ENV {
        return Err(range("env", env.len(), 0, MAX_ENV));
    }
    for (k, v) in env {
        let mut chars = k.chars();
        let head_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !head_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') || k.len() > 256 {
            return Err(ValidationError::new(
                format!("env.{k}"),
                Problem::BadEnvName(k.clone()),
            ));
        }
        if v.len() > MAX_ENV_VALUE || v.contains('\0') {
            return Err(ValidationError::new(
                format!("env.{k}"),
                Problem::TooLong(MAX_ENV_VALUE),
            ));
        }
    }
    Ok(())
}

/// Parses a duration such as `250ms`, `10s`, `1m30s`, `1h` or `7d` into milliseconds.
pub fn parse_duration_ms(s: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(factor)?)?;
        rest = &rest[unit_len..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> AppSpec {
        AppSpec {
            name: Name::parse("web").unwrap(),
            image: "registry.example:5000/team/web:1.2".into(),
            replicas: 3,
            port: 8080,
            residency: vec![Jurisdiction::parse("EU").unwrap()],
            regions: None,
            env: BTreeMap::from([("RUST_LOG".into(), "info".into())]),
            health: Some(HealthCheck {
                probe: Probe::Http {
                    path: "/healthz".into(),
                },
                interval_ms: 10_000,
                timeout_ms: 2_000,
                grace_ms: 5_000,
            }),
            cpu_millis: DEFAULT_CPU_MILLIS,
            memory_mb: DEFAULT_MEMORY_MB,
            origin_bound: Vec::new(),
            domains: Vec::new(),
        }
    }

    #[test]
    fn a_sound_app_validates() {
        assert_eq!(app().validate(), Ok(()));
    }

    type Change = Box<dyn Fn(&mut AppSpec)>;

    #[test]
    fn each_bad_field_is_named() {
        let cases: Vec<(&str, Change)> = vec![
            ("image", Box::new(|a| a.image = String::new())),
            ("image", Box::new(|a| a.image = "web latest".into())),
            ("image", Box::new(|a| a.image = "-web".into())),
            ("replicas", Box::new(|a| a.replicas = MAX_REPLICAS + 1)),
            ("port", Box::new(|a| a.port = 0)),
            (
                "residency[1]",
                Box::new(|a| a.residency.push(Jurisdiction::parse("eu").unwrap())),
            ),
            (
                "env.1X",
                Box::new(|a| {
                    a.env.insert("1X".into(), "v".into());
                }),
            ),
            (
                "health.http",
                Box::new(|a| {
                    a.health.as_mut().unwrap().probe = Probe::Http {
                        path: "healthz".into(),
                    }
                }),
            ),
            (
                "health.timeout",
                Box::new(|a| a.health.as_mut().unwrap().timeout_ms = 20_000),
            ),
            (
                "health.interval",
                Box::new(|a| a.health.as_mut().unwrap().interval_ms = 1),
            ),
        ];
        for (field, change) in cases {
            let mut a = app();
            change(&mut a);
            let err = a.validate().expect_err(field);
            assert_eq!(err.field, field, "{err}");
        }
    }

    #[test]
    fn pinned_regions_must_lie_inside_residency() {
        let cat = JurisdictionCatalog::built_in();
        let country = |n: &Name| match n.as_str() {
            "eu-fra" => Some(CountryCode::parse("DE").unwrap()),
            "us-iad" => Some(CountryCode::parse("US").unwrap()),
            _ => None,
        };
        let mut a = app();
        a.regions = Some(vec![Name::parse("eu-fra").unwrap()]);
        assert_eq!(a.check_places(&cat, country), Ok(()));

        a.regions = Some(vec![Name::parse("us-iad").unwrap()]);
        let err = a.check_places(&cat, country).unwrap_err();
        assert_eq!(err.field, "regions[0]");
        assert!(
            err.to_string().contains("outside the app's residency [EU]"),
            "{err}"
        );

        a.regions = Some(vec![Name::parse("nowhere").unwrap()]);
        assert!(matches!(
            a.check_places(&cat, country).unwrap_err().problem,
            Problem::UnknownRegion(_)
        ));

        a.regions = None;
        a.residency = vec![Jurisdiction::parse("NOPE").unwrap()];
        assert!(matches!(
            a.check_places(&cat, country).unwrap_err().problem,
            Problem::UnknownJurisdiction(_)
        ));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("250ms"), Some(250));
        assert_eq!(parse_duration_ms("10s"), Some(10_000));
        assert_eq!(parse_duration_ms("1m30s"), Some(90_000));
        assert_eq!(parse_duration_ms("2h"), Some(7_200_000));
        assert_eq!(parse_duration_ms("1d12h"), Some(129_600_000));
        for bad in ["", "s", "10", "10x", "-1s", "1.5s", "99999999999999999999h"] {
            assert_eq!(parse_duration_ms(bad), None, "{bad}");
        }
    }
}
