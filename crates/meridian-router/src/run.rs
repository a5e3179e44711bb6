//! Running a router: load the geo sources, follow the control plane, serve.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use meridian_core::route::{ClientPlace, GeoPoint, LocatedBy, RttTable};
use meridian_core::{CountryCode, ErrorChain, Name};
use meridian_geo::{GeoIpDb, GeoMap, Locator, TrustedProxies};
use tokio::sync::watch;

use crate::control::{self, Control, ControlConfig};
use crate::table::RoutingTable;
use crate::{Locate, Router, RouterConfig};

/// How long a starting router waits for its first route table before it serves anyway
/// (answering 404 until one arrives).
const FIRST_TABLE_WAIT: Duration = Duration::from_secs(10);

/// Everything `meridian router` needs.
#[derive(Debug, Clone)]
pub struct RouterSettings {
    /// Router name, unique in the cluster.
    pub name: Name,
    /// Its region.
    pub region: Name,
    /// Control-plane URLs.
    pub servers: Vec<String>,
    /// The cluster's CA, and this router's certificate and key, for calls to the servers.
    pub control_tls: meridian_client::ClientTls,
    /// Router-role token.
    pub token: String,
    /// Where apps are served.
    pub listen: SocketAddr,
    /// URL other routers forward to.
    pub advertise_url: String,
    /// GeoIP database.
    pub geoip_db: Option<PathBuf>,
    /// CSV geo map.
    pub geo_map: Option<PathBuf>,
    /// Proxies whose X-Forwarded-For is believed.
    pub trusted_proxies: TrustedProxies,
    /// CSV of round trips between regions.
    pub rtt_table: Option<PathBuf>,
    /// Where `/metrics` and `/health` are served, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// File the newest route table is saved to, and read at start: a router restarted while
    /// the control plane is unreachable routes from it.
    pub table_cache: Option<PathBuf>,
}

/// Why a router could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// A geo source, the round-trip table or another setting cannot be used.
    #[error("{0}")]
    Config(String),
    /// An address cannot be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The client for the control plane cannot be set up.
    #[error("cannot set up the control-plane client")]
    Client(#[source] meridian_client::BuildError),
    /// Serving failed.
    #[error("serving failed")]
    Serve(#[source] std::io::Error),
}

/// Locates clients with the geo sources, placing the unknown in this router's region (as the
/// newest route table describes it).
struct GeoLocate {
    locator: Locator,
    region: Name,
    table: watch::Receiver<Arc<RoutingTable>>,
}

impl Locate for GeoLocate {
    fn locate(&self, ip: IpAddr) -> ClientPlace {
        if let Some(place) = self.locator.locate(ip) {
            return place;
        }
        let table = self.table.borrow();
        match table.regions.get(&self.region) {
            Some(r) => ClientPlace {
                point: r.point,
                country: r.country,
                located_by: LocatedBy::RouterRegion,
            },
            // Only before the first table (when no app is known), or when this router's
            // region is missing from the cluster, which registration refuses and logs: the
            // client is then placed at Null Island, in Antarctica, which no jurisdiction
            // rule names. The decision still only picks regions the app allows.
            None => ClientPlace {
                point: GeoPoint {
                    latitude: 0.0,
                    longitude: 0.0,
                },
                country: CountryCode::parse("AQ").expect("AQ is assigned"),
                located_by: LocatedBy::RouterRegion,
            },
        }
    }
}

fn load(settings: &RouterSettings) -> Result<(Locator, RttTable), RouterError> {
    let geoip = settings
        .geoip_db
        .as_deref()
        .map(GeoIpDb::open)
        .transpose()
        .map_err(|e| RouterError::Config(ErrorChain(&e).to_string()))?;
    let map = settings
        .geo_map
        .as_deref()
        .map(GeoMap::load)
        .transpose()
        .map_err(|e| RouterError::Config(ErrorChain(&e).to_string()))?;
    let rtt = match &settings.rtt_table {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| RouterError::Config(format!("rtt table {}: {e}", path.display())))?;
            RttTable::parse_csv(&text)
                .map_err(|e| RouterError::Config(format!("rtt table {}: {e}", path.display())))?
        }
        None => RttTable::default(),
    };
    Ok((Locator::new(geoip, map), rtt))
}

/// Runs a router until `shutdown` resolves.
pub async fn run(
    settings: RouterSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RouterError> {
    let (locator, rtt) = load(&settings)?;
    let control = Control::new(ControlConfig {
        servers: settings.servers.clone(),
        token: settings.token.clone(),
        name: settings.name.clone(),
        region: settings.region.clone(),
        advertise_url: settings.advertise_url.clone(),
        tls: settings.control_tls.clone(),
    })
    .map_err(RouterError::Client)?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|source| RouterError::Bind {
            addr: settings.listen,
            source,
        })?;
    let metrics_listener = match settings.metrics_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| RouterError::Bind { addr, source })?,
        ),
        None => None,
    };

    let saved = settings
        .table_cache
        .as_deref()
        .and_then(control::load_cache);
    let version = saved.as_ref().map_or(0, |t| t.version);
    let initial = saved
        .as_ref()
        .map(RoutingTable::from_wire)
        .unwrap_or_default();
    if saved.is_some() {
        tracing::info!(
            apps = initial.app_count(),
            "routing from the saved route table until the control plane answers"
        );
    }
    let (tx, mut rx) = watch::channel(Arc::new(initial));
    let follower = tokio::spawn(control::run(
        control,
        tx,
        version,
        settings.table_cache.clone(),
    ));
    if saved.is_none()
        && tokio::time::timeout(FIRST_TABLE_WAIT, rx.changed())
            .await
            .is_err()
    {
        tracing::warn!(
            "no route table from the control plane yet; serving, and answering 404 until one arrives"
        );
    }

    let locate = Arc::new(GeoLocate {
        locator,
        region: settings.region.clone(),
        table: rx.clone(),
    });
    let config = RouterConfig {
        region: settings.region.clone(),
        trusted_proxies: settings.trusted_proxies.clone(),
        rtt,
        ..RouterConfig::default_for(settings.region.clone())
    };
    let router = Router::new(config, rx, locate);
    if let Some(l) = metrics_listener {
        tokio::spawn(crate::admin::serve(l, router.clone()));
    }
    tracing::info!(
        region = %settings.region,
        listen = %settings.listen,
        advertise = %settings.advertise_url,
        "router listening"
    );
    let served = router.serve(listener, shutdown).await;
    follower.abort();
    served.map_err(RouterError::Serve)
}
