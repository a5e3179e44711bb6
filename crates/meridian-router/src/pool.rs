//! Keep-alive HTTP/1.1 connections to upstreams. Each upstream's state holds its own idle
//! list, so taking a connection costs one uncontended lock and no lookup; a connection goes
//! back to the list when the answer it carried has been relayed whole.

use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::uri::Authority;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::ProxyBody;

/// Idle connections kept per upstream; more are closed when they come back.
const MAX_IDLE: usize = 256;

/// The sending half of one upstream connection; its connection runs in its own task.
pub(crate) type Sender = SendRequest<ProxyBody>;

/// Why a request found no answer.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection could be opened: nothing was sent.
    Connect(io::Error),
    /// The connection broke before the response headers.
    Http(hyper::Error),
}

/// A connection an idle list can keep.
pub(crate) trait Pooled {
    /// It can take a request now.
    fn usable(&self) -> bool;
    /// It has closed (or can never be used again).
    fn closed(&self) -> bool;
}

impl Pooled for Sender {
    fn usable(&self) -> bool {
        self.is_ready()
    }

    fn closed(&self) -> bool {
        self.is_closed()
    }
}

/// The fast lane's raw connections: usable while nothing at all arrived since the last answer
/// (the app closing it, most often).
impl Pooled for TcpStream {
    fn usable(&self) -> bool {
        crate::lane::quiet(self)
    }

    fn closed(&self) -> bool {
        !crate::lane::quiet(self)
    }
}

/// One upstream's idle connections, most recently used last.
pub(crate) struct IdleList<C> {
    list: Mutex<Vec<(C, Instant)>>,
}

impl<C> Default for IdleList<C> {
    fn default() -> Self {
        Self {
            list: Mutex::new(Vec::new()),
        }
    }
}

impl<C: Pooled> IdleList<C> {
    /// The most recently used connection that can take a request now. Closed, stale or still
    /// busy ones met on the way are dropped, which closes them.
    pub(crate) fn take(&self, idle_timeout: Duration) -> Option<C> {
        let mut list = lock(&self.list);
        while let Some((conn, since)) = list.pop() {
            if since.elapsed() < idle_timeout && conn.usable() {
                return Some(conn);
            }
        }
        None
    }

    /// Keeps `conn` for the next request, unless it has closed.
    pub(crate) fn put(&self, conn: C) {
        if conn.closed() {
            return;
        }
        let mut list = lock(&self.list);
        if list.len() < MAX_IDLE {
            list.push((conn, Instant::now()));
        }
    }

    /// Closes the connections idle for `idle_timeout` or more, and the closed ones.
    pub(crate) fn close_idle(&self, idle_timeout: Duration) {
        lock(&self.list).retain(|(conn, since)| !conn.closed() && since.elapsed() < idle_timeout);
    }
}

/// Sends `req` over an idle connection to `authority` (from `idle`), or a new one. A request
/// an idle connection could not take (it closed meanwhile) goes over the next one, as nothing
/// of it was written. Returns the connection with the answer, to go back to `idle` once the
/// answer's body is done with.
pub(crate) async fn send(
    idle: &IdleList<Sender>,
    authority: &Authority,
    mut req: Request<ProxyBody>,
    connect_timeout: Duration,
    idle_timeout: Duration,
) -> Result<(Response<Incoming>, Sender), SendError> {
    while let Some(mut sender) = idle.take(idle_timeout) {
        match sender.try_send_request(req).await {
            Ok(response) => return Ok((response, sender)),
            Err(mut e) => match e.take_message() {
                Some(unsent) => req = unsent,
                None => return Err(SendError::Http(e.into_error())),
            },
        }
    }
    let mut sender = connect(authority, connect_timeout).await?;
    match sender.send_request(req).await {
        Ok(response) => Ok((response, sender)),
        Err(e) => Err(SendError::Http(e)),
    }
}

/// Opens a connection to `authority` and runs it in a task of its own, upgrades included;
/// the task ends when the connection closes or its sender is dropped while it is idle.
async fn connect(authority: &Authority, timeout: Duration) -> Result<Sender, SendError> {
    let stream = connect_tcp(authority, timeout)
        .await
        .map_err(SendError::Connect)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(SendError::Http)?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            let error = meridian_core::ErrorChain(&e);
            tracing::debug!(%error, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// A TCP connection to `authority` (`TCP_NODELAY` set), within `timeout`.
pub(crate) async fn connect_tcp(authority: &Authority, timeout: Duration) -> io::Result<TcpStream> {
    let connecting = TcpStream::connect(authority.as_str());
    let stream = match tokio::time::timeout(timeout, connecting).await {
        Ok(connected) => connected?,
        Err(_) => {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connecting timed out",
            ))
        }
    };
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY refused");
    }
    Ok(stream)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A list of connections is valid in any state.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use hyper::service::service_fn;
    use tokio::net::TcpListener;

    use super::*;

    const LONG: Duration = Duration::from_secs(60);

    /// An upstream answering every request, counting the connections it accepted.
    async fn upstream() -> (Authority, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = Authority::try_from(listener.local_addr().unwrap().to_string()).unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::Relaxed);
                let service = service_fn(|_| async {
                    Ok::<_, Infallible>(Response::new(ProxyBody::full("ok")))
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        (authority, accepted)
    }

    fn get() -> Request<ProxyBody> {
        Request::builder()
            .uri("/")
            .header(http::header::HOST, "app")
            .body(ProxyBody::empty())
            .unwrap()
    }

    async fn exchange(idle: &IdleList<Sender>, authority: &Authority, keep: Duration) {
        let (response, sender) = send(idle, authority, get(), LONG, keep).await.unwrap();
        let body = http_body_util::BodyExt::collect(response.into_body()).await;
        assert_eq!(body.unwrap().to_bytes(), "ok");
        idle.put(sender);
    }

    #[tokio::test]
    async fn connections_are_reused_until_they_idle_too_long() {
        let (authority, accepted) = upstream().await;
        let idle = IdleList::<Sender>::default();
        for _ in 0..3 {
            exchange(&idle, &authority, LONG).await;
        }
        assert_eq!(
            accepted.load(Ordering::Relaxed),
            1,
            "one keep-alive connection"
        );
        exchange(&idle, &authority, Duration::ZERO).await;
        assert_eq!(
            accepted.load(Ordering::Relaxed),
            2,
            "a stale one is replaced"
        );
        idle.close_idle(Duration::ZERO);
        assert!(lock(&idle.list).is_empty());
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = Authority::try_from(listener.local_addr().unwrap().to_string()).unwrap();
        drop(listener);
        let sent = send(
            &IdleList::<Sender>::default(),
            &authority,
            get(),
            LONG,
            LONG,
        )
        .await;
        assert!(matches!(sent, Err(SendError::Connect(_))));
    }
}
