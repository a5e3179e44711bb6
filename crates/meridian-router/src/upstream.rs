//! Talking to upstreams: one exchange with retries across a region's backends (or routers)
//! over pooled HTTP/1.1 connections, and relaying the answer, upgrades included.

use http::header::{CONNECTION, UPGRADE};
use http::{HeaderValue, Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::body::ProxyBody;
use crate::headers::strip_hop_by_hop;
use crate::outgoing::Outgoing;
use crate::pool::{self, SendError};
use crate::reply::Refusal;
use crate::router::Shared;
use crate::upstreams::InFlight;

/// An upstream's answer, with the upstream still counted busy.
pub(crate) struct Reply {
    pub(crate) response: Response<Incoming>,
    pub(crate) in_flight: InFlight,
}

/// Why an exchange gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No upstream took a connection (or there was none): nothing was sent anywhere.
    Unreachable,
    /// An upstream took the request and failed before answering, and it could not be retried.
    Broken,
}

/// Sends `out` to the least busy of `items`. A refused (or timed-out) connection ejects the
/// upstream and moves on, whatever the method, as nothing was sent; other failures before the
/// response headers move on only for idempotent methods. Either way at most `retries` times,
/// and only while the body is still whole.
pub(crate) async fn exchange<T>(
    shared: &Shared,
    out: &mut Outgoing,
    items: &[T],
    address: impl Fn(&T) -> &str,
    retries: u32,
) -> Result<Reply, Failure> {
    // Filled only when a retry happens, so the first attempt allocates nothing for it.
    let mut tried: Vec<usize> = Vec::new();
    let mut failure = Failure::Unreachable;
    let mut attempts = 0u32;
    let config = &shared.config;
    while let Some((i, mut in_flight)) = shared.upstreams.pick(items, &address, &tried) {
        attempts += 1;
        let last = attempts > retries || tried.len() + 1 >= items.len();
        let Some(req) = out.attempt(last) else {
            break;
        };
        let state = in_flight.upstream();
        let upstream = state.authority().as_str();
        let sent = pool::send(
            state.idle(),
            state.authority(),
            req,
            config.connect_timeout,
            config.idle_timeout,
        )
        .await;
        match sent {
            Ok((response, conn)) => {
                shared.upstreams.reinstate(in_flight.upstream());
                in_flight.keep(conn);
                return Ok(Reply {
                    response,
                    in_flight,
                });
            }
            Err(SendError::Connect(e)) => {
                tracing::warn!(%upstream, error = ?e, "upstream refused a connection; ejected");
                shared
                    .upstreams
                    .eject(in_flight.upstream(), shared.config.eject_for);
            }
            Err(SendError::Http(e)) => {
                tracing::warn!(%upstream, error = ?e, "upstream failed before answering");
                failure = Failure::Broken;
                if !out.is_idempotent() {
                    break;
                }
            }
        }
        if last || !out.can_resend() {
            break;
        }
        tried.push(i);
    }
    Err(failure)
}

/// The client's response to an upstream's answer. A `101 Switching Protocols` joins the two
/// upgraded connections in a tunnel that lives until either side closes or the router stops.
pub(crate) fn relay(
    shared: &Shared,
    reply: Reply,
    client_upgrade: Option<OnUpgrade>,
) -> Result<Response<ProxyBody>, Refusal> {
    let Reply {
        mut response,
        mut in_flight,
    } = reply;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        return Ok(Response::from_parts(
            parts,
            ProxyBody::stream(body, Some(in_flight)),
        ));
    }
    let Some(client_side) = client_upgrade else {
        return Err(Refusal::switched_protocols());
    };
    // The upstream connection now belongs to the tunnel.
    in_flight.release();
    let upstream_side = hyper::upgrade::on(&mut response);
    let (mut parts, _) = response.into_parts();
    let protocol = parts.headers.get(UPGRADE).cloned();
    strip_hop_by_hop(&mut parts.headers);
    parts
        .headers
        .insert(CONNECTION, HeaderValue::from_static("upgrade"));
    if let Some(protocol) = protocol {
        parts.headers.insert(UPGRADE, protocol);
    }
    let stop = shared.stop.clone();
    shared.tasks.spawn(async move {
        // Counted busy for as long as the tunnel is open.
        let _in_flight = in_flight;
        let tunnel = async {
            let (client, upstream) = tokio::try_join!(client_side, upstream_side)?;
            let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
            tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
            Ok::<_, crate::body::BoxError>(())
        };
        tokio::select! {
            done = tunnel => if let Err(e) = done {
                let error = meridian_core::ErrorChain(&*e);
                tracing::debug!(%error, "upgraded connection ended with an error");
            },
            () = stop.cancelled() => {}
        }
    });
    Ok(Response::from_parts(parts, ProxyBody::empty()))
}
