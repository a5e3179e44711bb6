//! The relay's TOML config: one-way delays between regions and the routes each relay serves.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::Route;

/// A config the relay cannot use; the message names the offending key, and ends with its
/// cause (which is therefore not also a `source`).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error(transparent)]
    Toml(#[from] toml::de::Error),
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
    #[error("no [[route]] has from = {0:?}")]
    NoRoutes(String),
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    delays: BTreeMap<String, toml::Value>,
    #[serde(default)]
    route: Vec<RawRoute>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    from: Option<String>,
    listen: Option<String>,
    to: Option<String>,
    region: Option<String>,
}

/// One `[[route]]`: a relay in region `from` listens on `listen` and forwards to `to`, a
/// `host:port` in region `region`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    pub from: String,
    pub listen: SocketAddr,
    pub to: String,
    pub region: String,
}

/// A validated config file.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// One-way delays keyed by (from region, to region), as written in `[delays]`.
    pub delays: BTreeMap<(String, String), Duration>,
    pub routes: Vec<RouteConfig>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.display().to_string(),
            error,
        })?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text)?;
        let mut delays = BTreeMap::new();
        for (pair, value) in raw.delays {
            let key = format!("delays.{pair:?}");
            let (a, b) = pair
                .split_once('/')
                .map(|(a, b)| (a.trim(), b.trim()))
                .filter(|(a, b)| !a.is_empty() && !b.is_empty() && !b.contains('/'))
                .ok_or_else(|| invalid(&key, "expected a key of the form \"region-a/region-b\""))?;
            let ms = value
                .as_integer()
                .and_then(|ms| u64::try_from(ms).ok())
                .ok_or_else(|| {
                    invalid(
                        &key,
                        format!("expected a non-negative integer (milliseconds), got {value}"),
                    )
                })?;
            delays.insert((a.to_string(), b.to_string()), Duration::from_millis(ms));
        }
        let mut routes = Vec::new();
        for (i, r) in raw.route.into_iter().enumerate() {
            let field = |name: &str, v: Option<String>| {
                let key = format!("route[{i}].{name}");
                match v.map(|s| s.trim().to_string()) {
                    Some(s) if !s.is_empty() => Ok(s),
                    Some(_) => Err(invalid(key, "must not be empty")),
                    None => Err(invalid(key, "missing")),
                }
            };
            let from = field("from", r.from)?;
            let listen = field("listen", r.listen)?;
            let to = field("to", r.to)?;
            let region = field("region", r.region)?;
            let listen = listen.parse().map_err(|_| {
                invalid(
                    format!("route[{i}].listen"),
                    format!("{listen:?} is not an IP:port address"),
                )
            })?;
            check_host_port(&to).map_err(|reason| invalid(format!("route[{i}].to"), reason))?;
            routes.push(RouteConfig {
                from,
                listen,
                to,
                region,
            });
        }
        // Routes served by one relay (same `from`) cannot share a listening address.
        let mut seen = BTreeSet::new();
        for (i, r) in routes.iter().enumerate() {
            if !seen.insert((&r.from, r.listen)) {
                return Err(invalid(
                    format!("route[{i}].listen"),
                    format!(
                        "{} is already used by another route from {:?}",
                        r.listen, r.from
                    ),
                ));
            }
        }
        Ok(Config { delays, routes })
    }

    /// The one-way delay from region `a` to region `b`: `"a/b"`, else `"b/a"` (symmetric).
    pub fn delay(&self, a: &str, b: &str) -> Option<Duration> {
        let get = |x: &str, y: &str| self.delays.get(&(x.to_string(), y.to_string())).copied();
        get(a, b).or_else(|| get(b, a))
    }

    /// The routes a relay in `region` serves (all routes when `None`), with their delays
    /// resolved. A pair with no delay configured gets 0 ms and one warning.
    pub fn routes_for(&self, region: Option<&str>) -> Result<Vec<Route>, ConfigError> {
        let mut warned = BTreeSet::new();
        let mut delay = |a: &str, b: &str| {
            self.delay(a, b).unwrap_or_else(|| {
                let pair = if a <= b { (a, b) } else { (b, a) };
                if warned.insert((pair.0.to_string(), pair.1.to_string())) {
                    tracing::warn!("no delay configured between {a:?} and {b:?}; using 0 ms");
                }
                Duration::ZERO
            })
        };
        let routes: Vec<Route> = self
            .routes
            .iter()
            .filter(|r| region.is_none_or(|region| r.from == region))
            .map(|r| Route {
                listen: r.listen,
                to: r.to.clone(),
                forward: delay(&r.from, &r.region),
                backward: delay(&r.region, &r.from),
            })
            .collect();
        match region {
            Some(region) if routes.is_empty() => Err(ConfigError::NoRoutes(region.to_string())),
            _ => Ok(routes),
        }
    }
}

/// `host:port` with a non-empty host and a numeric port (`[v6]:port` allowed).
pub fn check_host_port(s: &str) -> Result<(), String> {
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(format!("{s:?} is not host:port")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [delays]
        "eu-fra/eu-ams" = 5
        "eu-fra/us-iad" = 40
        "us-iad/eu-fra" = 45

        [[route]]
        from = "eu-fra"
        listen = "0.0.0.0:7002"
        to = "server-2:7002"
        region = "eu-ams"

        [[route]]
        from = "eu-fra"
        listen = "0.0.0.0:7003"
        to = "server-3:7003"
        region = "us-iad"

        [[route]]
        from = "eu-ams"
        listen = "0.0.0.0:7003"
        to = "server-3:7003"
        region = "ap-syd"
    "#;

    fn err(text: &str) -> String {
        Config::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn parses_delays_and_routes() {
        let c = Config::parse(GOOD).unwrap();
        assert_eq!(c.routes.len(), 3);
        let ms = Duration::from_millis;
        assert_eq!(c.delay("eu-ams", "eu-fra"), Some(ms(5)), "symmetric");
        assert_eq!(c.delay("eu-fra", "us-iad"), Some(ms(40)));
        assert_eq!(
            c.delay("us-iad", "eu-fra"),
            Some(ms(45)),
            "both directions given"
        );
        assert_eq!(c.delay("eu-ams", "ap-syd"), None);

        let fra = c.routes_for(Some("eu-fra")).unwrap();
        assert_eq!(fra.len(), 2);
        assert_eq!(fra[0].to, "server-2:7002");
        assert_eq!((fra[0].forward, fra[0].backward), (ms(5), ms(5)));
        assert_eq!((fra[1].forward, fra[1].backward), (ms(40), ms(45)));
        let ams = c.routes_for(Some("eu-ams")).unwrap();
        assert_eq!(
            (ams[0].forward, ams[0].backward),
            (Duration::ZERO, Duration::ZERO)
        );
        assert_eq!(c.routes_for(None).unwrap().len(), 3);
        assert_eq!(
            c.routes_for(Some("sa-gru")).unwrap_err().to_string(),
            "no [[route]] has from = \"sa-gru\""
        );
    }

    #[test]
    fn errors_name_the_key() {
        let e = err("[delays]\n\"eu-fra/eu-ams\" = \"5ms\"\n");
        assert!(
            e.starts_with("delays.\"eu-fra/eu-ams\": expected a non-negative integer"),
            "{e}"
        );
        let e = err("[delays]\n\"eu-fra/eu-ams\" = -1\n");
        assert!(e.starts_with("delays.\"eu-fra/eu-ams\":"), "{e}");
        let e = err("[delays]\n\"eu-fra\" = 5\n");
        assert!(
            e.starts_with("delays.\"eu-fra\": expected a key of the form"),
            "{e}"
        );

        let route = |body: &str| format!("[[route]]\nfrom = \"a\"\nregion = \"b\"\n{body}\n");
        let e = err(&route("listen = \"0.0.0.0:1\""));
        assert_eq!(e, "route[0].to: missing");
        let e = err(&route("listen = \"localhost:1\"\nto = \"x:1\""));
        assert_eq!(
            e,
            "route[0].listen: \"localhost:1\" is not an IP:port address"
        );
        let e = err(&route("listen = \"0.0.0.0:1\"\nto = \"server-2\""));
        assert_eq!(e, "route[0].to: \"server-2\" is not host:port");
        let e = err(&format!(
            "{}{}",
            route("listen = \"0.0.0.0:1\"\nto = \"x:1\""),
            route("listen = \"0.0.0.0:1\"\nto = \"y:1\"")
        ));
        assert!(
            e.starts_with("route[1].listen: 0.0.0.0:1 is already used"),
            "{e}"
        );

        // Structural mistakes come from the TOML parser, which names the key too.
        let e = err("[delay]\n\"a/b\" = 1\n");
        assert!(e.contains("unknown field `delay`"), "{e}");
        let e = err(&route(
            "listen = \"0.0.0.0:1\"\nto = \"x:1\"\nlisten_addr = 3",
        ));
        assert!(e.contains("unknown field `listen_addr`"), "{e}");
        let e = err(&route("listen = 7002\nto = \"x:1\""));
        assert!(e.contains("listen = 7002"), "{e}");
    }
}
