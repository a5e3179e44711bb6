//! The fast lane: most requests are plain HTTP/1.1 for an app this region serves, and the
//! lane relays those over raw keep-alive connections to the app's instances, the way a
//! classic reverse proxy does. It parses heads in place, writes the app's head with the
//! router's fields, and passes bodies through as they come (a chunked body unchanged, its end
//! found by scanning), with no per-request allocation and no task hand-offs.
//!
//! The lane decides nothing on its own: it asks the same table and the same decision as the
//! general path, and takes a request only when the answer is "served here". Everything else
//! (another region wins, no region may serve, HTTP/1.0, HTTP/2, upgrades, `Expect`, chunked
//! uploads, forwarded requests, malformed requests) goes to the general path, together with
//! the rest of the connection, starting from the bytes the lane had read.

mod chunked;
mod clock;
mod head;
mod rewind;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderValue, StatusCode};
use meridian_api::ErrorCode;
use meridian_core::Name;
use meridian_geo::client_ip;
use meridian_geo::net::canonical;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::handler::{nearest_region, reason_value};
use crate::headers::{host_well_formed, prefers_html};
use crate::metrics::Series;
use crate::pool;
use crate::reply::Refusal;
use crate::router::Shared;
use crate::table::{AppEntry, Backend, RoutingTable};
use crate::upstreams::InFlight;
use chunked::Chunked;
use clock::{Alarm, Date};
use head::{AppHeaders, Framing, Head, Parsed, Request, RouterFields, MAX_HEAD};
pub(crate) use rewind::Rewind;

/// How long a client may take over a request head once it has started one.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How much room each read gets.
const READ_CHUNK: usize = 16 * 1024;

/// How a client connection left the lane.
pub(crate) enum Ended {
    /// It is done with and can be closed.
    Closed,
    /// The general path serves the rest of it, starting with these bytes.
    Handoff(Bytes),
}

/// Whether nothing (no byte, no close) has arrived on `stream` since it was last read: an
/// idle keep-alive connection the app has not closed. Costs no system call unless the
/// runtime saw the connection become readable.
pub(crate) fn quiet(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// Serves `client` for as long as its requests suit the lane.
pub(crate) async fn serve(shared: &Arc<Shared>, client: &mut TcpStream, peer: SocketAddr) -> Ended {
    let mut lane = Lane {
        shared,
        peer: canonical(peer.ip()),
        buf: BytesMut::with_capacity(READ_CHUNK),
        ubuf: BytesMut::new(),
        out: Vec::new(),
        scratch: Vec::new(),
        head: Head::default(),
        resp: Head::default(),
        decided: None,
        date: Date::default(),
        stopping: Box::pin(shared.stop.clone().cancelled_owned()),
    };
    let mut alarm = Alarm::new();
    loop {
        match lane.read_head(client, &mut alarm).await {
            Some(Parsed::Complete) => {}
            Some(_) => return Ended::Handoff(lane.buf.freeze()),
            None => return Ended::Closed,
        }
        match lane.exchange(client, &mut alarm).await {
            // Stopping: the request in flight was answered, and that is the last one.
            Next::Again if shared.stop.is_cancelled() => return Ended::Closed,
            Next::Again => {}
            Next::Close => return Ended::Closed,
            Next::Handoff => return Ended::Handoff(lane.buf.freeze()),
        }
    }
}

/// What follows one request.
enum Next {
    /// The next request on the same connection.
    Again,
    Close,
    Handoff,
}

/// Why no answer came from the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// No instance took a connection: nothing was sent.
    Unreachable,
    /// An instance took the request and failed before answering.
    Broken,
    /// The client left while sending its body.
    ClientGone,
}

/// How one attempt failed.
enum AttemptError {
    Client,
    /// The app's side; `answered` once any byte of an answer came.
    Upstream {
        answered: bool,
    },
}

/// How relaying a body ended.
enum Relayed {
    /// Whole; `extra` when the app sent more than the message.
    Whole {
        extra: bool,
    },
    /// The app broke off or broke the framing: the client's connection must close.
    Broken,
    ClientGone,
}

struct Lane<'s> {
    shared: &'s Shared,
    peer: IpAddr,
    /// The client's bytes: the current request head first.
    buf: BytesMut,
    /// The app's bytes: the response head first.
    ubuf: BytesMut,
    /// What is written next.
    out: Vec<u8>,
    /// Request body bytes on their way through.
    scratch: Vec<u8>,
    head: Head,
    resp: Head,
    /// The last decision, reused while it still holds.
    decided: Option<Decided>,
    date: Date,
    /// Resolves when the router begins to stop.
    stopping: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl Lane<'_> {
    /// Reads until a whole request head is in `buf`. `None` when the connection is done: the
    /// client closed it, went quiet for too long, or the router is stopping between requests.
    async fn read_head(&mut self, client: &mut TcpStream, alarm: &mut Alarm) -> Option<Parsed> {
        loop {
            if !self.buf.is_empty() {
                match head::parse_request(&self.buf, &mut self.head) {
                    Parsed::Partial if self.buf.len() < MAX_HEAD => {}
                    Parsed::Partial => return Some(Parsed::Invalid),
                    parsed => return Some(parsed),
                }
            }
            self.buf.reserve(READ_CHUNK);
            let read = match client.try_read_buf(&mut self.buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.wait_for_head(client, alarm).await
                }
                read => read.ok(),
            };
            if read? == 0 {
                return None;
            }
        }
    }

    async fn wait_for_head(&mut self, client: &mut TcpStream, alarm: &mut Alarm) -> Option<usize> {
        let idle = self.buf.is_empty();
        alarm.set(if idle {
            self.shared.config.idle_timeout
        } else {
            HEAD_TIMEOUT
        });
        tokio::select! {
            biased;
            read = client.read_buf(&mut self.buf) => read.ok(),
            () = alarm.ring() => None,
            () = self.stopping.as_mut(), if idle => None,
        }
    }

    /// Serves the request whose head is in `buf`, or leaves it to the general path.
    async fn exchange(&mut self, client: &mut TcpStream, alarm: &mut Alarm) -> Next {
        let shared = self.shared;
        let Some(req) = head::judge_request(&self.buf, &self.head) else {
            return Next::Handoff;
        };
        let trusted_peer = shared.config.trusted_proxies.trusts(self.peer);
        let client_at = if trusted_peer {
            let chain = head::forwarded_for(&self.buf, &self.head);
            client_ip(self.peer, &chain, &shared.config.trusted_proxies)
        } else {
            self.peer
        };
        let host = &self.buf[req.host.clone()];
        let still = self.decided.as_ref().is_some_and(|d| {
            d.client == client_at && d.host == host && Arc::ptr_eq(&d.table, &shared.table.borrow())
        });
        if !still {
            self.decided = None;
            if !host_well_formed(host) {
                return Next::Handoff;
            }
            let table = shared.table.borrow().clone();
            self.decided = decide(shared, table, host, client_at);
        }
        let Some(decided) = self.decided.take() else {
            return Next::Handoff;
        };
        let next = match &decided.series {
            Some(series) => {
                self.serve(client, alarm, &req, &decided, series, trusted_peer)
                    .await
            }
            None => Next::Handoff,
        };
        self.decided = Some(decided);
        next
    }

    /// Serves the request whose head is in `buf` here, as `decided`.
    async fn serve(
        &mut self,
        client: &mut TcpStream,
        alarm: &mut Alarm,
        req: &Request,
        decided: &Decided,
        series: &Series,
        trusted_peer: bool,
    ) -> Next {
        let shared = self.shared;
        let own = &shared.config.region;
        let app = &decided.app;
        let started = Instant::now();
        self.out.clear();
        let app_headers = AppHeaders {
            peer: self.peer,
            trusted_peer,
            client_region: decided.client_region.as_ref().map(Name::as_str),
        };
        head::write_request(&mut self.out, &self.buf, &self.head, req, &app_headers);
        // The body bytes that came with the head go in the same write.
        let in_buf =
            (self.buf.len() - self.head.len).min(usize::try_from(req.body).unwrap_or(usize::MAX));
        let consumed = self.head.len + in_buf;
        self.out
            .extend_from_slice(&self.buf[self.head.len..consumed]);
        let rest = req.body - in_buf as u64;

        alarm.set(shared.config.request_timeout);
        let sent = tokio::select! {
            sent = self.send(client, app.backends_in(own), req, rest) => Ok(sent),
            () = alarm.ring() => Err(()),
        };
        // Refused, a body that was not read whole leaves the connection unusable for another
        // request (an answer means it was read whole).
        let close = req.close || rest > 0;
        let (mut conn, in_flight) = match sent {
            Ok(Ok(sent)) => sent,
            Ok(Err(Failure::ClientGone)) => return Next::Close,
            Ok(Err(failure)) => {
                let refusal = if failure == Failure::Unreachable {
                    Refusal::instance_unreachable(&app.name, own)
                } else {
                    Refusal::instance_broken(&app.name, own)
                };
                return self
                    .refuse(client, &refusal, req, consumed, close, series, started)
                    .await;
            }
            Err(_) => {
                let timeout = shared.config.request_timeout;
                let refusal = Refusal::gateway_timeout(&app.name, own, timeout);
                return self
                    .refuse(client, &refusal, req, consumed, close, series, started)
                    .await;
            }
        };

        let response = match head::judge_response(&self.ubuf, &self.resp, req.head_method) {
            Ok(response) => response,
            Err(bad) => {
                drop(conn);
                let refusal = match bad {
                    head::BadResponse::SwitchedProtocols => Refusal::switched_protocols(),
                    head::BadResponse::Framing => Refusal::new(
                        StatusCode::BAD_GATEWAY,
                        ErrorCode::BadGateway,
                        format!(
                            "the instance of {} in {own} answered with a malformed response",
                            app.name
                        ),
                    ),
                };
                return self
                    .refuse(client, &refusal, req, consumed, close, series, started)
                    .await;
            }
        };
        let status = StatusCode::from_u16(self.resp.status).unwrap_or(StatusCode::BAD_GATEWAY);
        series.record(status, started.elapsed());
        let close = req.close || response.framing == Framing::UntilClose;
        self.out.clear();
        let add = RouterFields {
            region: own.as_str().as_bytes(),
            route: decided.route.as_ref().map(HeaderValue::as_bytes),
            date: self.date.now(),
            close,
        };
        head::write_response(&mut self.out, &self.ubuf, &self.resp, &add);
        let relayed = self.relay(client, &mut conn, response.framing).await;
        let next = match relayed {
            Relayed::Whole { extra } => {
                if response.reusable && !extra {
                    in_flight.upstream().lane_idle().put(conn);
                }
                if close {
                    Next::Close
                } else {
                    Next::Again
                }
            }
            Relayed::Broken | Relayed::ClientGone => Next::Close,
        };
        drop(in_flight);
        self.buf.advance(consumed);
        next
    }

    /// Sends the request in `out` (and the `rest` of its body, from the client) to the least
    /// busy of `backends`, and reads the app's response head into `ubuf` and `resp`. A refused
    /// connection ejects the instance and moves on; a kept connection that turns out closed is
    /// replaced by a new one; other failures move on only for idempotent requests whose body
    /// is still whole, as on the general path.
    async fn send(
        &mut self,
        client: &mut TcpStream,
        backends: &[Backend],
        req: &Request,
        rest: u64,
    ) -> Result<(TcpStream, InFlight), Failure> {
        let shared = self.shared;
        let config = &shared.config;
        let repeatable = req.idempotent && rest == 0;
        let mut tried: Vec<usize> = Vec::new();
        let mut failure = Failure::Unreachable;
        let mut attempts = 0u32;
        while let Some((i, in_flight)) =
            shared
                .upstreams
                .pick(backends, |b| b.address.as_str(), &tried)
        {
            attempts += 1;
            let last = attempts > config.max_retries || tried.len() + 1 >= backends.len();
            let upstream = in_flight.upstream();
            let mut kept = upstream.lane_idle().take(config.idle_timeout);
            loop {
                let reused = kept.is_some();
                let mut conn = match kept.take() {
                    Some(conn) => conn,
                    None => match pool::connect_tcp(upstream.authority(), config.connect_timeout)
                        .await
                    {
                        Ok(conn) => conn,
                        Err(e) => {
                            let authority = upstream.authority().as_str();
                            tracing::warn!(upstream = %authority, error = ?e, "upstream refused a connection; ejected");
                            shared.upstreams.eject(upstream, config.eject_for);
                            break;
                        }
                    },
                };
                match self.attempt(client, &mut conn, rest).await {
                    Ok(()) => {
                        shared.upstreams.reinstate(upstream);
                        return Ok((conn, in_flight));
                    }
                    Err(AttemptError::Client) => return Err(Failure::ClientGone),
                    Err(AttemptError::Upstream { answered }) => {
                        failure = Failure::Broken;
                        if reused && !answered && repeatable {
                            continue;
                        }
                        let authority = upstream.authority().as_str();
                        tracing::warn!(upstream = %authority, "upstream failed before answering");
                        if !repeatable {
                            return Err(failure);
                        }
                        break;
                    }
                }
            }
            if last {
                break;
            }
            tried.push(i);
        }
        Err(failure)
    }

    /// One attempt over `conn`.
    async fn attempt(
        &mut self,
        client: &mut TcpStream,
        conn: &mut TcpStream,
        mut rest: u64,
    ) -> Result<(), AttemptError> {
        let upstream = |answered| AttemptError::Upstream { answered };
        conn.write_all(&self.out)
            .await
            .map_err(|_| upstream(false))?;
        while rest > 0 {
            if self.scratch.is_empty() {
                self.scratch = vec![0; READ_CHUNK];
            }
            let want = self
                .scratch
                .len()
                .min(usize::try_from(rest).unwrap_or(usize::MAX));
            let n = match client.read(&mut self.scratch[..want]).await {
                Ok(0) | Err(_) => return Err(AttemptError::Client),
                Ok(n) => n,
            };
            rest -= n as u64;
            conn.write_all(&self.scratch[..n])
                .await
                .map_err(|_| upstream(false))?;
        }
        self.ubuf.clear();
        let mut answered = false;
        loop {
            if !self.ubuf.is_empty() {
                match head::parse_response(&self.ubuf, &mut self.resp) {
                    // Interim answers (103 Early Hints and the like) are not relayed.
                    Parsed::Complete if self.resp.status < 200 && self.resp.status != 101 => {
                        self.ubuf.advance(self.resp.len);
                        continue;
                    }
                    Parsed::Complete => return Ok(()),
                    Parsed::Partial if self.ubuf.len() < MAX_HEAD => {}
                    _ => return Err(upstream(true)),
                }
            }
            self.ubuf.reserve(READ_CHUNK);
            match conn.read_buf(&mut self.ubuf).await {
                Ok(0) | Err(_) => return Err(upstream(answered)),
                Ok(_) => answered = true,
            }
        }
    }

    /// Writes the response head in `out` and relays the body that follows it in `ubuf` and on
    /// `conn`.
    async fn relay(
        &mut self,
        client: &mut TcpStream,
        conn: &mut TcpStream,
        framing: Framing,
    ) -> Relayed {
        let mut chunked = Chunked::default();
        let mut left = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        // Of `piece`, the bytes of this message, and whether it is now whole.
        let mut take = |piece: &[u8]| -> Option<(usize, bool)> {
            match framing {
                Framing::Empty => Some((0, true)),
                Framing::Length(_) => {
                    let n = left.min(piece.len() as u64);
                    left -= n;
                    Some((n as usize, left == 0))
                }
                Framing::Chunked => {
                    let n = chunked.feed(piece).ok()?;
                    Some((n, chunked.is_done()))
                }
                Framing::UntilClose => Some((piece.len(), false)),
            }
        };
        let start = self.resp.len;
        let first = take(&self.ubuf[start..]);
        let (n, mut whole) = first.unwrap_or((0, false));
        let mut extra = start + n < self.ubuf.len();
        self.out.extend_from_slice(&self.ubuf[start..start + n]);
        if client.write_all(&self.out).await.is_err() {
            return Relayed::ClientGone;
        }
        if first.is_none() {
            return Relayed::Broken;
        }
        while !whole {
            self.ubuf.clear();
            self.ubuf.reserve(READ_CHUNK);
            let got = match conn.read_buf(&mut self.ubuf).await {
                Ok(0) if framing == Framing::UntilClose => return Relayed::Whole { extra: false },
                Ok(0) | Err(_) => return Relayed::Broken,
                Ok(got) => got,
            };
            let Some((n, done)) = take(&self.ubuf) else {
                return Relayed::Broken;
            };
            if client.write_all(&self.ubuf[..n]).await.is_err() {
                return Relayed::ClientGone;
            }
            whole = done;
            extra = n < got;
        }
        Relayed::Whole { extra }
    }

    /// Answers the request with the router's own refusal.
    #[allow(clippy::too_many_arguments)]
    async fn refuse(
        &mut self,
        client: &mut TcpStream,
        refusal: &Refusal,
        req: &Request,
        consumed: usize,
        close: bool,
        series: &Series,
        started: Instant,
    ) -> Next {
        series.record(refusal.status, started.elapsed());
        let accept = req
            .accept
            .as_ref()
            .and_then(|r| HeaderValue::from_bytes(&self.buf[r.clone()]).ok());
        let (content_type, body) = refusal.render(prefers_html(accept.as_ref()));
        self.out.clear();
        let add = RouterFields {
            region: self.shared.config.region.as_str().as_bytes(),
            route: Some(refusal.code.as_str().as_bytes()),
            date: self.date.now(),
            close,
        };
        head::write_refusal(
            &mut self.out,
            refusal,
            content_type,
            &body,
            &add,
            req.head_method,
        );
        if client.write_all(&self.out).await.is_err() || close {
            return Next::Close;
        }
        self.buf.advance(consumed);
        Next::Again
    }
}

/// What the table says of a host and a client. One keep-alive connection nearly always
/// carries one client's requests for one host, so a decision is taken once per connection
/// and table rather than once per request.
struct Decided {
    /// Under which table, for which `Host` and which client.
    table: Arc<RoutingTable>,
    host: Vec<u8>,
    client: IpAddr,
    app: Arc<AppEntry>,
    /// `Meridian-Route`.
    route: Option<HeaderValue>,
    /// `Meridian-Client-Region`.
    client_region: Option<Name>,
    /// The app's metrics here, when this region serves the client (else the general path
    /// takes the request).
    series: Option<Arc<Series>>,
}

/// Decides for `host` and `client`; `None` for a host no app is served at.
fn decide(
    shared: &Shared,
    table: Arc<RoutingTable>,
    host: &[u8],
    client: IpAddr,
) -> Option<Decided> {
    let app = table.app_for_host(std::str::from_utf8(host).ok()?)?;
    let place = shared.locate.locate(client);
    let own = &shared.config.region;
    let (route, series) = match table.decide(&app, &place, &shared.config.rtt) {
        Ok(route) if route.region == *own => (
            reason_value(&route),
            Some(shared.metrics.series(&app.name, own)),
        ),
        _ => (None, None),
    };
    let client_region = nearest_region(&table, &place).cloned();
    Some(Decided {
        host: host.to_vec(),
        client,
        app,
        route,
        client_region,
        series,
        table,
    })
}
