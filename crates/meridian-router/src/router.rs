//! The router: shared state, the accept loop, and shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::RouterConfig;
use crate::handler;
use crate::lane::{self, Ended, Rewind};
use crate::locate::Locate;
use crate::metrics::Metrics;
use crate::table::RoutingTable;
use crate::upstreams::Upstreams;

/// How often upstreams nobody used lately are forgotten, with the metrics of apps gone from
/// the table (and idle connections closed, or more often when the idle timeout is shorter),
/// and after how long.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
const PRUNE_IDLE: Duration = Duration::from_secs(600);

/// What every request handler shares.
pub(crate) struct Shared {
    pub(crate) config: RouterConfig,
    /// `config.region`, ready for the `Meridian-Region` header.
    pub(crate) region_value: HeaderValue,
    pub(crate) table: watch::Receiver<Arc<RoutingTable>>,
    pub(crate) locate: Arc<dyn Locate>,
    pub(crate) upstreams: Upstreams,
    pub(crate) metrics: Metrics,
    /// Connections and upgraded tunnels, awaited on shutdown.
    pub(crate) tasks: TaskTracker,
    /// Cancelled when shutdown begins.
    pub(crate) stop: CancellationToken,
}

/// A region's edge router. Clones share everything; serve it once.
#[derive(Clone)]
pub struct Router {
    shared: Arc<Shared>,
}

impl Router {
    /// A router for `config.region`, routing from the latest table in `table` and placing
    /// clients with `locate`. It never calls the control plane itself.
    pub fn new(
        config: RouterConfig,
        table: watch::Receiver<Arc<RoutingTable>>,
        locate: Arc<dyn Locate>,
    ) -> Self {
        let metrics = Metrics::new();
        let region_value = HeaderValue::try_from(config.region.as_str())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        let shared = Shared {
            region_value,
            table,
            locate,
            upstreams: Upstreams::new(metrics.ejections()),
            metrics,
            tasks: TaskTracker::new(),
            stop: CancellationToken::new(),
            config,
        };
        Self {
            shared: Arc::new(shared),
        }
    }

    /// Serves `listener` until `shutdown` resolves: HTTP/1.1, and HTTP/2 with prior knowledge,
    /// on the same port. On shutdown it stops accepting, lets open connections finish their
    /// requests (for up to `request_timeout`), closes upgraded tunnels, and returns once every
    /// connection and tunnel it started has ended.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let shared = self.shared;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new());
        builder.http2().timer(TokioTimer::new());
        let builder = Arc::new(builder);

        let pruner = {
            let shared = Arc::clone(&shared);
            shared.tasks.clone().spawn(async move {
                let idle_timeout = shared.config.idle_timeout;
                let period = PRUNE_EVERY
                    .min(idle_timeout / 2)
                    .max(Duration::from_secs(1));
                let mut every = tokio::time::interval(period);
                loop {
                    tokio::select! {
                        _ = every.tick() => {
                            shared.upstreams.prune(PRUNE_IDLE);
                            shared.upstreams.close_idle(idle_timeout);
                            let table = shared.table.borrow().clone();
                            shared.metrics.forget_apps(|app| table.app(app).is_some());
                        }
                        () = shared.stop.cancelled() => break,
                    }
                }
            })
        };

        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let task = connection(Arc::clone(&shared), Arc::clone(&builder), stream, peer);
                        shared.tasks.spawn(task);
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: pause instead of spinning.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        drop(listener);
        shared.stop.cancel();
        shared.tasks.close();
        shared.tasks.wait().await;
        if let Err(e) = pruner.await {
            tracing::warn!(error = %e, "the upstream pruner ended badly");
        }
        Ok(())
    }

    /// The router's metrics in the Prometheus text format.
    pub fn metrics_text(&self) -> String {
        self.shared.metrics.text()
    }
}

/// Serves one client connection until it closes, or until shutdown and its last request.
async fn connection(
    shared: Arc<Shared>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    mut stream: TcpStream,
    peer: SocketAddr,
) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY refused");
    }
    let stop = shared.stop.clone();
    let drain = shared.config.request_timeout;
    // The fast lane first; the general path takes over from the first request it leaves.
    let ended = {
        let lane = lane::serve(&shared, &mut stream, peer);
        tokio::pin!(lane);
        tokio::select! {
            ended = lane.as_mut() => ended,
            () = stop.cancelled() => match tokio::time::timeout(drain, lane.as_mut()).await {
                Ok(ended) => ended,
                Err(_) => return,
            },
        }
    };
    let prefix = match ended {
        Ended::Closed => return,
        Ended::Handoff(prefix) => prefix,
    };
    let service = service_fn(move |req| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(handler::handle(shared, req, peer).await) }
    });
    let io = TokioIo::new(Rewind::new(stream, prefix));
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let done = tokio::select! {
        done = conn.as_mut() => done,
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(drain, conn.as_mut()).await {
                Ok(done) => done,
                Err(_) => return,
            }
        }
    };
    if let Err(e) = done {
        let error = meridian_core::ErrorChain(&*e);
        tracing::debug!(%peer, %error, "client connection ended with an error");
    }
}
