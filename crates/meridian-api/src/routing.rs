//! What edge routers need from the control plane, and the API's explanation of a routing
//! decision.

use std::collections::BTreeMap;

use meridian_core::{Jurisdiction, ValidationError};
use serde::{Deserialize, Serialize};

/// `GET /v1/router/table`: everything a router routes by. Routers keep the last one they
/// received and route from it while the control plane is unreachable.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RouteTable {
    /// Fingerprint of the rest of the table (`applied` aside); pass it back as `after` to
    /// wait for a change. Any 64-bit unsigned value: it exceeds int64.
    #[schema(format = "uint64")]
    pub version: u64,
    /// The applied index of the state the table was built from.
    #[serde(default)]
    pub applied: u64,
    /// Apps are served as `<app>.<apps_domain>`.
    pub apps_domain: String,
    /// Every region.
    pub regions: Vec<RouteRegion>,
    /// Operator-defined jurisdiction groups and their countries (EU and EEA are built in).
    #[serde(default)]
    pub jurisdictions: BTreeMap<String, Vec<String>>,
    /// Registered routers, by region.
    #[serde(default)]
    pub routers: Vec<RouterEntry>,
    /// Every app, with its healthy instances.
    pub apps: Vec<RouteApp>,
}

/// A region as routers see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RouteRegion {
    /// Name.
    pub name: String,
    /// ISO country code.
    pub country: String,
    /// Degrees north.
    pub latitude: f64,
    /// Degrees east.
    pub longitude: f64,
}

/// An app as routers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RouteApp {
    /// Name.
    pub name: String,
    /// Jurisdictions it may be served from; empty means anywhere.
    pub residency: Vec<String>,
    /// Jurisdictions whose clients are served only inside them.
    #[serde(default)]
    pub origin_bound: Vec<String>,
    /// Custom domains.
    #[serde(default)]
    pub domains: Vec<String>,
    /// Healthy instances that should run, with an address.
    pub instances: Vec<RouteInstance>,
}

/// One healthy instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RouteInstance {
    /// Instance id.
    pub id: String,
    /// Its node.
    pub node: String,
    /// The node's region.
    pub region: String,
    /// `host:port` the router connects to.
    pub address: String,
}

/// A router other routers forward to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RouterEntry {
    /// Its name, unique in the cluster.
    pub name: String,
    /// Its region.
    pub region: String,
    /// Base URL other routers forward requests to, e.g. `http://10.0.1.5:8080`.
    pub url: String,
}

/// `POST /v1/router/register` body, sent by a router when it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRouter {
    /// Its name, unique in the cluster (re-registering replaces the entry).
    pub name: String,
    /// Its region, which must exist.
    pub region: String,
    /// Base URL other routers forward requests to.
    pub url: String,
}

/// `GET /v1/cluster/settings` and the body of `PATCH` on it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// Apps are served as `<app>.<apps_domain>` (default `meridian.localhost`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apps_domain: Option<String>,
    /// Jurisdictions apps created without a residency get (`EU`, `DE`, ...); empty by
    /// default, when such apps may run anywhere. In a change, `[]` clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_residency: Option<Vec<String>>,
}

impl ClusterSettings {
    /// The default residency a change sets, parsed; `None` when it leaves it alone.
    pub fn default_residency(&self) -> Result<Option<Vec<Jurisdiction>>, ValidationError> {
        self.default_residency
            .as_deref()
            .map(|list| crate::apps::parse_jurisdictions("default_residency", list))
            .transpose()
    }
}

/// `GET /v1/route?app=A&ip=ADDR`: which region serves a client, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RouteExplanation {
    /// The app.
    pub app: String,
    /// The client address asked about.
    pub ip: String,
    /// Where the client was placed.
    pub client: ClientView,
    /// The serving region, when one may serve.
    pub region: Option<String>,
    /// Short reason: `nearest`, `residency`, `origin-bound:EU`, or the refusal code.
    pub route: String,
    /// The reason in words.
    pub explanation: String,
    /// Every region, with whether it may serve this client and why not.
    pub candidates: Vec<CandidateView>,
}

/// A located client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClientView {
    /// Degrees north.
    pub latitude: f64,
    /// Degrees east.
    pub longitude: f64,
    /// ISO country code.
    pub country: String,
    /// `geoip`, `geo-map` or `router-region`.
    pub located_by: String,
}

/// One region in an explanation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CandidateView {
    /// Region.
    pub region: String,
    /// Its country.
    pub country: String,
    /// Great-circle distance from the client, km.
    pub distance_km: f64,
    /// Healthy instances of the app there.
    pub healthy: u32,
    /// Why it may not serve, when it may not.
    pub excluded: Option<String>,
}
