//! The Meridian control-plane server: REST API, auth, leader forwarding, Raft RPC endpoints,
//! metrics and the OpenAPI document, over a replicated `meridian-state` node.

pub mod auth;
pub mod auth_limit;
pub mod config;
pub mod ctx;
pub mod error;
pub mod image_store;
pub mod json;
pub mod leader;
pub mod listen;
pub mod membership;
pub mod metrics;
pub mod openapi;
pub mod query;
pub mod raft_network;
pub mod reconcile;
pub mod retention;
pub mod router;
pub mod routes;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use config::{RetentionSettings, ServerConfig, StartMode};
use meridian_core::ErrorChain;

use crate::ctx::{Ctx, Inner};
use crate::metrics::Metrics;
use crate::raft_network::HttpNetwork;

/// Why a server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The cluster secret file cannot be read or is empty.
    #[error("cluster secret file {path}: {detail}")]
    Secret {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        detail: String,
    },
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The replicated store failed.
    #[error(transparent)]
    State(#[from] meridian_state::StateError),
    /// Forming the cluster failed.
    #[error("bootstrap: {0}")]
    Bootstrap(String),
    /// The listener cannot be set up.
    #[error("the HTTP listener cannot be set up")]
    Serve(#[source] std::io::Error),
    /// An HTTP client for calls to other servers cannot be built.
    #[error("cannot set up the HTTP client for {purpose}")]
    HttpClient {
        /// What the client is for.
        purpose: &'static str,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// A geo source or round-trip table cannot be used.
    #[error("{0}")]
    Geo(String),
    /// The TLS files cannot be used.
    #[error("the TLS set-up cannot be made")]
    Tls(#[from] meridian_tls::TlsError),
}

/// How this server talks: the acceptor of its listener (none over plain HTTP), and the TLS
/// set-up of its calls to other servers (presenting its own certificate).
struct Transport {
    acceptor: Option<meridian_tls::Acceptor>,
    peers: rustls::ClientConfig,
}

fn transport(config: &ServerConfig) -> Result<Transport, ServerError> {
    match &config.tls {
        Some(files) => Ok(Transport {
            acceptor: Some(meridian_tls::Acceptor::new(meridian_tls::server_config(
                files,
                &[b"http/1.1"],
            )?)),
            peers: meridian_tls::client_config(&files.ca, Some((&files.cert, &files.key)))?,
        }),
        None => {
            tracing::warn!(
                "serving plain HTTP (--insecure-plain-http): tokens, the cluster secret and app \
                 settings cross the network in clear, and no peer's certificate is checked"
            );
            Ok(Transport {
                acceptor: None,
                peers: meridian_tls::config::web_client_config(
                    &meridian_tls::config::system_roots(),
                )?,
            })
        }
    }
}

/// The API's listener, as `transport` chose.
enum Bound {
    Tls(listen::TlsListener),
    Plain(listen::PlainListener),
}

/// An HTTP client builder for calls to other servers, with this server's TLS set-up.
pub(crate) fn peer_http(tls: &rustls::ClientConfig) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls.clone())
        .pool_idle_timeout(listen::IDLE_CLIENT_CONNECTION)
}

/// Loads the sources `GET /v1/route` locates clients with, and the round-trip table.
fn load_geo(
    config: &ServerConfig,
) -> Result<(meridian_geo::Locator, meridian_core::route::RttTable), ServerError> {
    let geoip = config
        .geoip_db
        .as_deref()
        .map(meridian_geo::GeoIpDb::open)
        .transpose()
        .map_err(|e| ServerError::Geo(ErrorChain(&e).to_string()))?;
    let map = config
        .geo_map
        .as_deref()
        .map(meridian_geo::GeoMap::load)
        .transpose()
        .map_err(|e| ServerError::Geo(ErrorChain(&e).to_string()))?;
    let rtt = match &config.rtt_table {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ServerError::Geo(format!("rtt table {}: {e}", path.display())))?;
            meridian_core::route::RttTable::parse_csv(&text)
                .map_err(|e| ServerError::Geo(format!("rtt table {}: {e}", path.display())))?
        }
        None => Default::default(),
    };
    Ok((meridian_geo::Locator::new(geoip, map), rtt))
}

/// Largest image blob accepted: 16 GiB.
pub const MAX_IMAGE_BYTES: u64 = 16 << 30;

/// Shortest cluster secret accepted.
pub const MIN_SECRET_LEN: usize = 16;

fn read_secret(config: &ServerConfig) -> Result<String, ServerError> {
    let path = &config.cluster_secret_file;
    let text = std::fs::read_to_string(path).map_err(|e| ServerError::Secret {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    let secret = text.trim().to_string();
    if secret.len() < MIN_SECRET_LEN || secret.chars().any(|c| c.is_control()) {
        return Err(ServerError::Secret {
            path: path.clone(),
            detail: format!("must hold one line of at least {MIN_SECRET_LEN} printable characters"),
        });
    }
    Ok(secret)
}

/// Runs a server until `shutdown` resolves, then stops it cleanly: in-flight requests finish,
/// Raft stops, SQLite closes.
pub async fn run(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let secret = read_secret(&config)?;
    let (locator, rtt) = load_geo(&config)?;
    let transport = transport(&config)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
    let mutual_tls = transport.acceptor.is_some();
    let listener = match transport.acceptor {
        Some(acceptor) => {
            Bound::Tls(listen::TlsListener::new(listener, acceptor).map_err(ServerError::Serve)?)
        }
        None => Bound::Plain(listen::PlainListener(listener)),
    };
    let network =
        HttpNetwork::new(&secret, &transport.peers).map_err(|source| ServerError::HttpClient {
            purpose: "Raft",
            source,
        })?;
    let forward = peer_http(&transport.peers)
        .connect_timeout(Duration::from_millis(500))
        .build()
        .map_err(|source| ServerError::HttpClient {
            purpose: "forwarding to the leader",
            source,
        })?;
    let join_http = match &config.start {
        StartMode::Join(_) => {
            Some(membership::join_client(&transport.peers).map_err(|source| {
                ServerError::HttpClient {
                    purpose: "joining the cluster",
                    source,
                }
            })?)
        }
        StartMode::Resume | StartMode::Bootstrap => None,
    };
    let node =
        meridian_state::open(&config.data_dir, config.node_id, &config.raft, network).await?;
    let ctx = Ctx(Arc::new(Inner {
        id: config.node_id,
        node: node.clone(),
        secret: secret.clone(),
        forward,
        metrics: Metrics::default(),
        max_body: config.max_body_bytes,
        heartbeats: Default::default(),
        leader_since: Default::default(),
        node_grace: Duration::from_millis(config.node_grace_ms),
        images: image_store::ImageStore::new(config.data_dir.join("images"), MAX_IMAGE_BYTES),
        locator,
        rtt,
        region: config.region.clone(),
        route_table: Default::default(),
        verified: Default::default(),
        failed_auth: auth_limit::FailedAuth::new(config.failed_auth_burst),
        mutual_tls,
    }));
    let app = router::build(ctx.clone());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (retention_stop, retention_rx) = tokio::sync::oneshot::channel::<()>();
    let retention = tokio::spawn(retention::run(
        ctx.clone(),
        config.retention.clone(),
        config.audit_export_dir(),
        async move {
            let _ = retention_rx.await;
        },
    ));
    let reconciler = tokio::spawn(reconcile::run(ctx, async move {
        let _ = stop_rx.await;
    }));
    tracing::info!(node = config.node_id, listen = %config.listen, advertise = %config.advertise(), "server listening");

    let joining = match &config.start {
        StartMode::Resume => None,
        StartMode::Bootstrap => {
            membership::bootstrap(&node.raft, &config)
                .await
                .map_err(ServerError::Bootstrap)?;
            None
        }
        StartMode::Join(urls) => join_http.map(|http| {
            tokio::spawn(membership::join(
                http,
                node.raft.clone(),
                config.clone(),
                urls.clone(),
                secret,
            ))
        }),
    };

    let limits = listen::Limits::default();
    match listener {
        Bound::Tls(l) => listen::serve(l, app, limits, shutdown).await,
        Bound::Plain(l) => listen::serve(l, app, limits, shutdown).await,
    };
    if let Some(task) = joining {
        task.abort();
        let _ = task.await;
    }
    let _ = stop_tx.send(());
    let _ = retention_stop.send(());
    let _ = reconciler.await;
    let _ = retention.await;
    tracing::info!("stopping raft and closing the databases");
    node.shutdown().await;
    Ok(())
}
