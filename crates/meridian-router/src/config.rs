//! A router's settings.

use std::time::Duration;

use meridian_core::route::RttTable;
use meridian_core::Name;
use meridian_geo::TrustedProxies;

/// How a router runs. [`RouterConfig::default_for`] fills in the defaults.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// The region this router serves from.
    pub region: Name,
    /// Peers whose `X-Forwarded-For` is believed: load balancers in front of the router, and
    /// the other regions' routers (a forwarded request names its client there).
    pub trusted_proxies: TrustedProxies,
    /// Measured round trips between regions; empty lets distance decide.
    pub rtt: RttTable,
    /// Longest wait for a TCP connection to a backend or another router (default 2 s).
    pub connect_timeout: Duration,
    /// Longest wait from a request's headers to the upstream's response headers (default
    /// 60 s). On shutdown, also how long open connections get to finish.
    pub request_timeout: Duration,
    /// How long an idle upstream connection stays pooled (default 90 s).
    pub idle_timeout: Duration,
    /// How long a backend or router that refused a connection is skipped (default 10 s).
    pub eject_for: Duration,
    /// Further attempts on other backends after a failed one (default 2).
    pub max_retries: u32,
}

impl RouterConfig {
    /// The defaults for a router in `region`: no trusted proxies, no round-trip table.
    pub fn default_for(region: Name) -> Self {
        Self {
            region,
            trusted_proxies: TrustedProxies::default(),
            rtt: RttTable::default(),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(90),
            eject_for: Duration::from_secs(10),
            max_retries: 2,
        }
    }
}
