//! The router's link to the control plane: it registers itself once, then long-polls the route
//! table and publishes each new one. When every server is unreachable the last table stays in
//! force, so routing goes on; nothing on the request path waits for the control plane.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use meridian_api::routing::{RegisterRouter, RouteTable, RouterEntry};
use meridian_client::{BuildError, Client, ClientError};
use meridian_core::Name;
use tokio::sync::watch;

use crate::table::RoutingTable;

/// How long one long poll may wait at the server.
const POLL_WAIT: Duration = Duration::from_secs(30);
/// Longest pause between attempts while the control plane is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// First pause after a failure.
const MIN_BACKOFF: Duration = Duration::from_millis(200);

/// Where the control plane is and who this router is.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// Server base URLs; any of them answers.
    pub servers: Vec<String>,
    /// A router-role token.
    pub token: String,
    /// This router's name, unique in the cluster.
    pub name: Name,
    /// This router's region.
    pub region: Name,
    /// The URL other routers forward to.
    pub advertise_url: String,
    /// The cluster's CA, and this router's certificate and key.
    pub tls: meridian_client::ClientTls,
}

/// The router's calls to the control plane, through one client over all the servers: a call
/// moves on to the next server when the first cannot answer it (both calls here may be
/// repeated: registering again changes nothing, the table is a read).
#[derive(Debug, Clone)]
pub struct Control {
    config: ControlConfig,
    client: Client,
}

/// Whether retrying cannot help until an operator acts (bad token, unknown region).
pub fn is_permanent(e: &ClientError) -> bool {
    matches!(e.status(), Some(401 | 403 | 422))
}

impl Control {
    /// A client for `config`, or why none can be built (an address that is not a URL).
    pub fn new(config: ControlConfig) -> Result<Self, BuildError> {
        let client = Client::builder(&config.servers)
            .token(config.token.clone())
            .tls_files(config.tls.clone())
            .build()?;
        Ok(Self { config, client })
    }

    /// Registers this router so others can forward to it.
    pub async fn register(&self) -> Result<RouterEntry, ClientError> {
        let body = RegisterRouter {
            name: self.config.name.to_string(),
            region: self.config.region.to_string(),
            url: self.config.advertise_url.clone(),
        };
        self.client.register_router(&body).await
    }

    /// The route table once its version differs from `after` (or after the server's wait).
    pub async fn table(&self, after: u64) -> Result<RouteTable, ClientError> {
        let wait_ms = u64::try_from(POLL_WAIT.as_millis()).unwrap_or(u64::MAX);
        self.client.route_table(after, wait_ms).await
    }
}

/// Reads a table saved by [`save`]; `None` when there is none or it cannot be read (logged).
pub fn load_cache(path: &Path) -> Option<RouteTable> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the saved route table");
            return None;
        }
    };
    match serde_json::from_slice(&bytes) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable saved route table");
            None
        }
    }
}

/// Saves `table` to `path` atomically (a temporary file renamed over it).
async fn save(path: &Path, table: &RouteTable) {
    let Ok(bytes) = serde_json::to_vec(table) else {
        return;
    };
    let tmp = path.with_extension("tmp");
    let written = async {
        tokio::fs::write(&tmp, &bytes).await?;
        tokio::fs::rename(&tmp, path).await
    };
    if let Err(e) = written.await {
        tracing::warn!(path = %path.display(), error = %e, "cannot save the route table");
    }
}

/// How often a router registers again while it runs.
const REREGISTER_EVERY: Duration = Duration::from_secs(600);

/// Registers, then keeps `tx` holding the newest route table until `tx` has no receivers,
/// starting from the table of `version` already published. Each new table is also saved to
/// `cache` when given. Failures are logged and retried with back-off; the last table stays
/// published meanwhile.
pub async fn run(
    control: Control,
    tx: watch::Sender<Arc<RoutingTable>>,
    version: u64,
    cache: Option<PathBuf>,
) {
    let mut backoff = MIN_BACKOFF;
    let mut registered = false;
    let mut registered_at = tokio::time::Instant::now();
    let mut version = version;
    while !tx.is_closed() {
        // Registering again now and then tells the control plane this router is alive: the
        // leader forgets routers silent for longer than its retention grace.
        if registered && registered_at.elapsed() >= REREGISTER_EVERY {
            registered = false;
        }
        if !registered {
            match control.register().await {
                Ok(entry) => {
                    registered = true;
                    registered_at = tokio::time::Instant::now();
                    tracing::info!(
                        name = %entry.name,
                        region = %entry.region,
                        url = %entry.url,
                        server = control.client.server(),
                        "router registered"
                    );
                }
                Err(e) => {
                    log_failure("registering with the control plane", &e);
                }
            }
        }
        match control.table(version).await {
            Ok(wire) => {
                backoff = MIN_BACKOFF;
                if registered
                    && !wire
                        .routers
                        .iter()
                        .any(|r| r.name == control.config.name.as_str())
                {
                    // Forgotten (silent too long, say behind a partition): register again.
                    registered = false;
                }
                if wire.version != version {
                    version = wire.version;
                    let table = RoutingTable::from_wire(&wire);
                    tracing::info!(
                        version,
                        apps = table.app_count(),
                        regions = table.regions.len(),
                        "route table updated"
                    );
                    tx.send_replace(Arc::new(table));
                    if let Some(path) = &cache {
                        save(path, &wire).await;
                    }
                }
                if registered {
                    continue;
                }
            }
            Err(e) => log_failure(
                "fetching the route table (routing goes on from the last one)",
                &e,
            ),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn log_failure(what: &str, e: &ClientError) {
    if is_permanent(e) {
        tracing::error!(error = %e, "{what}");
    } else {
        tracing::warn!(error = %e, "{what}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_saved_table_loads_back_and_a_bad_one_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("table.json");
        assert!(load_cache(&path).is_none(), "no file yet");
        let table = RouteTable {
            version: 42,
            apps_domain: "meridian.localhost".into(),
            ..RouteTable::default()
        };
        save(&path, &table).await;
        assert_eq!(load_cache(&path), Some(table));
        std::fs::write(&path, b"{ not json").unwrap();
        assert!(load_cache(&path).is_none());
    }

    #[test]
    fn bad_tokens_and_unknown_regions_are_permanent() {
        let refused = |status| ClientError::Api {
            status,
            code: meridian_api::ErrorCode::Other("x".into()),
            message: String::new(),
            hint: None,
        };
        assert!(is_permanent(&refused(401)));
        assert!(is_permanent(&refused(422)));
        assert!(!is_permanent(&refused(503)));
    }
}
