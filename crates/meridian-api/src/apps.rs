//! Apps on the wire.

use std::collections::BTreeMap;

use meridian_core::app::{parse_duration_ms, Probe};
use meridian_core::error::Problem;
use meridian_core::{AppSpec, DomainName, HealthCheck, Jurisdiction, Name, ValidationError};
use serde::{Deserialize, Serialize};

/// Default probe interval when a health check names none.
pub const DEFAULT_INTERVAL: &str = "10s";
/// Default probe timeout.
pub const DEFAULT_TIMEOUT: &str = "2s";
/// Default grace after start.
pub const DEFAULT_GRACE: &str = "5s";

/// `POST /v1/apps` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppBody {
    /// DNS-label name.
    pub name: String,
    /// Container image reference.
    pub image: String,
    /// Instances to run (default 1).
    #[serde(default = "one")]
    pub replicas: u32,
    /// Port the app listens on in its container.
    pub port: u16,
    /// Jurisdictions it may run in (`DE`, `EU`, `EEA`, ...). Left out: the cluster's default
    /// residency, or anywhere when it has none; `[]`: anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residency: Option<Vec<String>>,
    /// Regions it is pinned to, each inside `residency`.
    #[serde(default)]
    pub regions: Option<Vec<String>>,
    /// Environment for every instance.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Health check.
    #[serde(default)]
    pub health: Option<HealthBody>,
    /// CPU per instance in thousandths of a core (default 100).
    #[serde(default)]
    pub cpu_millis: Option<u32>,
    /// Memory per instance in MiB (default 128).
    #[serde(default)]
    pub memory_mb: Option<u32>,
    /// Jurisdictions whose clients are served only by regions inside them (`EU`, `DE`, ...).
    #[serde(default)]
    pub origin_bound: Vec<String>,
    /// Custom domains the routers serve the app on, besides `<name>.<apps domain>`.
    #[serde(default)]
    pub domains: Vec<String>,
}

fn one() -> u32 {
    1
}

/// A health check: exactly one of `http` or `tcp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthBody {
    /// Path for an HTTP probe, e.g. `/healthz`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// `true` for a TCP connect probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<bool>,
    /// Time between probes, e.g. `10s` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Time one probe may take, e.g. `2s` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Time after start before failures count, e.g. `5s` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace: Option<String>,
}

/// `PATCH /v1/apps/{name}` body: fields present are replaced. `regions: []` unpins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppPatch {
    /// New image.
    #[serde(default)]
    pub image: Option<String>,
    /// New replica count.
    #[serde(default)]
    pub replicas: Option<u32>,
    /// New port.
    #[serde(default)]
    pub port: Option<u16>,
    /// New residency.
    #[serde(default)]
    pub residency: Option<Vec<String>>,
    /// New pinned regions; empty to unpin.
    #[serde(default)]
    pub regions: Option<Vec<String>>,
    /// New environment (replaces the whole map).
    #[serde(default)]
    pub env: Option<BTreeMap<String, String>>,
    /// New health check.
    #[serde(default)]
    pub health: Option<HealthBody>,
    /// New CPU per instance.
    #[serde(default)]
    pub cpu_millis: Option<u32>,
    /// New memory per instance.
    #[serde(default)]
    pub memory_mb: Option<u32>,
    /// New origin-bound jurisdictions; empty to drop the rule.
    #[serde(default)]
    pub origin_bound: Option<Vec<String>>,
    /// New custom domains (replaces the list); empty to detach all.
    #[serde(default)]
    pub domains: Option<Vec<String>>,
}

/// An app as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AppView {
    /// Name.
    pub name: String,
    /// Image.
    pub image: String,
    /// Instances wanted.
    pub replicas: u32,
    /// Container port.
    pub port: u16,
    /// Allowed jurisdictions; empty means anywhere.
    pub residency: Vec<String>,
    /// Pinned regions.
    pub regions: Option<Vec<String>>,
    /// Environment.
    pub env: BTreeMap<String, String>,
    /// Health check.
    pub health: Option<HealthBody>,
    /// CPU per instance, in thousandths of a core.
    pub cpu_millis: u32,
    /// Memory per instance, in MiB.
    pub memory_mb: u32,
    /// Jurisdictions whose clients are served only inside them.
    #[serde(default)]
    pub origin_bound: Vec<String>,
    /// Custom domains.
    #[serde(default)]
    pub domains: Vec<String>,
    /// Instances the scheduler could not place, with the reason; empty when all are placed.
    #[serde(default)]
    pub unplaced: Vec<crate::nodes::UnplacedView>,
    /// Where the residency came from: `app` (its own), `cluster_default` or `none` (it may
    /// run anywhere). Only in the answer to a create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residency_source: Option<String>,
    /// Bumped on every change.
    pub version: u64,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds.
    pub updated_at: u64,
}

/// Parses a list of jurisdictions; an error names `field[i]`.
pub(crate) fn parse_jurisdictions(
    field: &str,
    items: &[String],
) -> Result<Vec<Jurisdiction>, ValidationError> {
    items
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Jurisdiction::parse(s).map_err(|p| ValidationError::new(format!("{field}[{i}]"), p))
        })
        .collect()
}

fn parse_domains(items: &[String]) -> Result<Vec<DomainName>, ValidationError> {
    items
        .iter()
        .enumerate()
        .map(|(i, s)| DomainName::parse_field(&format!("domains[{i}]"), s))
        .collect()
}

fn parse_regions(items: Vec<String>) -> Result<Option<Vec<Name>>, ValidationError> {
    if items.is_empty() {
        return Ok(None);
    }
    let names = items
        .iter()
        .enumerate()
        .map(|(i, s)| Name::parse_field(&format!("regions[{i}]"), s))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(names))
}

fn duration(field: &str, given: &Option<String>, default: &str) -> Result<u64, ValidationError> {
    let text = given.as_deref().unwrap_or(default);
    parse_duration_ms(text).ok_or_else(|| {
        ValidationError::new(
            field,
            Problem::BadHealthCheck("must be a duration such as 500ms, 10s or 1m"),
        )
    })
}

impl HealthBody {
    /// Turns the wire form into a checked-shape health check.
    pub fn into_check(self) -> Result<HealthCheck, ValidationError> {
        let probe = match (self.http, self.tcp) {
            (Some(path), None | Some(false)) => Probe::Http { path },
            (None, Some(true)) => Probe::Tcp,
            _ => {
                return Err(ValidationError::new(
                    "health",
                    Problem::BadHealthCheck(
                        "give exactly one of \"http\": \"/path\" or \"tcp\": true",
                    ),
                ))
            }
        };
        Ok(HealthCheck {
            probe,
            interval_ms: duration("health.interval", &self.interval, DEFAULT_INTERVAL)?,
            timeout_ms: duration("health.timeout", &self.timeout, DEFAULT_TIMEOUT)?,
            grace_ms: duration("health.grace", &self.grace, DEFAULT_GRACE)?,
        })
    }
}

impl From<&HealthCheck> for HealthBody {
    fn from(h: &HealthCheck) -> Self {
        let (http, tcp) = match &h.probe {
            Probe::Http { path } => (Some(path.clone()), None),
            Probe::Tcp => (None, Some(true)),
        };
        Self {
            http,
            tcp,
            interval: Some(format!("{}ms", h.interval_ms)),
            timeout: Some(format!("{}ms", h.timeout_ms)),
            grace: Some(format!("{}ms", h.grace_ms)),
        }
    }
}

impl AppBody {
    /// Parses and checks everything that does not depend on the cluster.
    pub fn into_spec(self) -> Result<AppSpec, ValidationError> {
        let spec = AppSpec {
            name: Name::parse_field("name", &self.name)?,
            image: self.image,
            replicas: self.replicas,
            port: self.port,
            residency: parse_jurisdictions("residency", self.residency.as_deref().unwrap_or(&[]))?,
            regions: parse_regions(self.regions.unwrap_or_default())?,
            env: self.env,
            health: self.health.map(HealthBody::into_check).transpose()?,
            cpu_millis: self
                .cpu_millis
                .unwrap_or(meridian_core::app::DEFAULT_CPU_MILLIS),
            memory_mb: self
                .memory_mb
                .unwrap_or(meridian_core::app::DEFAULT_MEMORY_MB),
            origin_bound: parse_jurisdictions("origin_bound", &self.origin_bound)?,
            domains: parse_domains(&self.domains)?,
        };
        spec.validate()?;
        Ok(spec)
    }
}

impl AppPatch {
    /// Applies the patch to `spec` and checks the result.
    pub fn apply_to(self, mut spec: AppSpec) -> Result<AppSpec, ValidationError> {
        if let Some(v) = self.image {
            spec.image = v;
        }
        if let Some(v) = self.replicas {
            spec.replicas = v;
        }
        if let Some(v) = self.port {
            spec.port = v;
        }
        if let Some(v) = self.residency {
            spec.residency = parse_jurisdictions("residency", &v)?;
        }
        if let Some(v) = self.regions {
            spec.regions = parse_regions(v)?;
        }
        if let Some(v) = self.env {
            spec.env = v;
        }
        if let Some(v) = self.health {
            spec.health = Some(v.into_check()?);
        }
        if let Some(v) = self.cpu_millis {
            spec.cpu_millis = v;
        }
        if let Some(v) = self.memory_mb {
            spec.memory_mb = v;
        }
        if let Some(v) = self.origin_bound {
            spec.origin_bound = parse_jurisdictions("origin_bound", &v)?;
        }
        if let Some(v) = self.domains {
            spec.domains = parse_domains(&v)?;
        }
        spec.validate()?;
        Ok(spec)
    }
}

impl AppView {
    /// The wire view of a stored app.
    pub fn new(spec: &AppSpec, version: u64, created_at: u64, updated_at: u64) -> Self {
        Self {
            name: spec.name.to_string(),
            image: spec.image.clone(),
            replicas: spec.replicas,
            port: spec.port,
            residency: spec.residency.iter().map(ToString::to_string).collect(),
            regions: spec
                .regions
                .as_ref()
                .map(|r| r.iter().map(ToString::to_string).collect()),
            env: spec.env.clone(),
            health: spec.health.as_ref().map(HealthBody::from),
            cpu_millis: spec.cpu_millis,
            memory_mb: spec.memory_mb,
            origin_bound: spec.origin_bound.iter().map(ToString::to_string).collect(),
            domains: spec.domains.iter().map(ToString::to_string).collect(),
            unplaced: Vec::new(),
            residency_source: None,
            version,
            created_at,
            updated_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> AppBody {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn minimal_app_gets_defaults() {
        let spec = body(r#"{"name":"web","image":"web:1","port":8080}"#)
            .into_spec()
            .unwrap();
        assert_eq!(spec.replicas, 1);
        assert!(spec.residency.is_empty());
        assert!(spec.regions.is_none());
    }

    #[test]
    fn bad_fields_are_named() {
        for (json, field) in [
            (r#"{"name":"Web","image":"w","port":1}"#, "name"),
            (
                r#"{"name":"web","image":"w","port":1,"residency":["EU","XX"]}"#,
                "residency[1]",
            ),
            (
                r#"{"name":"web","image":"w","port":1,"regions":["A"]}"#,
                "regions[0]",
            ),
            (
                r#"{"name":"web","image":"w","port":1,"health":{}}"#,
                "health",
            ),
            (
                r#"{"name":"web","image":"w","port":1,"health":{"tcp":true,"interval":"soon"}}"#,
                "health.interval",
            ),
        ] {
            let err = body(json).into_spec().unwrap_err();
            assert_eq!(err.field, field, "{json}: {err}");
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(serde_json::from_str::<AppBody>(
            r#"{"name":"w","image":"w","port":1,"replica":2}"#
        )
        .is_err());
    }

    #[test]
    fn health_round_trips_through_the_view() {
        let spec = body(r#"{"name":"web","image":"w","port":1,"health":{"http":"/h","interval":"1s","timeout":"500ms"}}"#)
            .into_spec()
            .unwrap();
        let view = AppView::new(&spec, 1, 0, 0);
        let again = view.health.unwrap().into_check().unwrap();
        assert_eq!(Some(again), spec.health);
    }
}
