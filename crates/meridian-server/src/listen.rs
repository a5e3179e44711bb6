//! The API listener: plain TCP (only with `--insecure-plain-http`) or TLS, who is on the other
//! end of each connection ([`Peer`], handed to every request as `ConnectInfo<Peer>`), and the
//! HTTP server over it with limits on slow and oversized heads ([`serve`]).

use std::net::SocketAddr;
use std::time::Duration;

use axum::serve::Listener;
use meridian_tls::{Acceptor, Identity, TlsStream};
use tokio::net::{TcpListener, TcpStream};

/// How long a client may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes finished and not yet taken by the HTTP server.
const READY_QUEUE: usize = 128;

/// The other end of a connection.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Its address.
    pub addr: SocketAddr,
    /// What its client certificate (checked against the cluster's CA) says it is; `None` over
    /// plain HTTP or without a certificate.
    pub identity: Option<Identity>,
}

fn accepted(tcp: &TcpStream) {
    // Small request/response exchanges: do not let Nagle hold them back.
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY not set");
    }
}

/// Waits out a failed `accept` (say, out of file descriptors) instead of spinning.
async fn accept_failed(e: std::io::Error) {
    tracing::warn!(error = %e, "accepting a connection failed");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Plain TCP, for `--insecure-plain-http`.
#[derive(Debug)]
pub struct PlainListener(pub TcpListener);

impl Listener for PlainListener {
    type Io = TcpStream;
    type Addr = Peer;

    async fn accept(&mut self) -> (TcpStream, Peer) {
        loop {
            match self.0.accept().await {
                Ok((tcp, addr)) => {
                    accepted(&tcp);
                    return (
                        tcp,
                        Peer {
                            addr,
                            identity: None,
                        },
                    );
                }
                Err(e) => accept_failed(e).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Peer> {
        Ok(Peer {
            addr: self.0.local_addr()?,
            identity: None,
        })
    }
}

/// TLS: handshakes run in their own tasks, so a slow or silent client holds up no one else,
/// and one that does not finish in [`HANDSHAKE_TIMEOUT`] is dropped.
#[derive(Debug)]
pub struct TlsListener {
    ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, Peer)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `tcp`.
    pub fn new(tcp: TcpListener, acceptor: Acceptor) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = tokio::sync::mpsc::channel(READY_QUEUE);
        let accepting = tokio::spawn(async move {
            loop {
                let (stream, addr) = match tcp.accept().await {
                    Ok(a) => a,
                    Err(e) => {
                        accept_failed(e).await;
                        continue;
                    }
                };
                accepted(&stream);
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok((tls, identity))) => {
                            let _ = tx.send((tls, Peer { addr, identity })).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%addr, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self {
            ready,
            local,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = Peer;

    async fn accept(&mut self) -> (TlsStream<TcpStream>, Peer) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accepting task holds the sender until the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Peer> {
        Ok(Peer {
            addr: self.local,
            identity: None,
        })
    }
}

/// How long Meridian's own clients keep an idle connection to a server.
pub const IDLE_CLIENT_CONNECTION: Duration = Duration::from_secs(15);

/// What one client connection may take of a server, against slow or hostile clients.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A request's head must arrive whole within this, and a kept-alive connection that sends
    /// nothing for this long is closed (slowloris). Meridian's clients let idle connections go
    /// well before ([`IDLE_CLIENT_CONNECTION`]), so none sends on one the server is closing.
    pub header_read: Duration,
    /// Most header fields in one request.
    pub max_headers: usize,
    /// Most bytes a connection buffers while reading a head (the head's size limit).
    pub max_head_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(30),
            max_headers: 100,
            max_head_bytes: 64 * 1024,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and waits for
/// the open connections to finish their requests. Each request carries `ConnectInfo<Peer>`.
/// Unlike `axum::serve`, every connection has the head timeout and size limits of `limits`.
pub async fn serve<L>(
    mut listener: L,
    router: axum::Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()>,
) where
    L: Listener<Addr = Peer>,
{
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use tower::ServiceExt;

    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .max_headers(limits.max_headers)
        .max_buf_size(limits.max_head_bytes.max(8 * 1024));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_head_bytes).unwrap_or(u32::MAX));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (io, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let router = router.clone();
        let service =
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let mut req = req.map(axum::body::Body::new);
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer.clone()));
                router.clone().oneshot(req)
            });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "a connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
