//! A client's request made ready to send upstream, possibly more than once: hop-by-hop
//! headers gone, the host pinned, and the body kept so a retry can still carry it.

use http::header::{CONNECTION, HOST, UPGRADE};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Request, Uri, Version};
use hyper::body::{Body, Incoming};
use hyper::upgrade::OnUpgrade;

use crate::body::{ProxyBody, RewindSlot};
use crate::headers;

/// The request, as every attempt sends it.
pub(crate) struct Outgoing {
    method: Method,
    path: PathAndQuery,
    headers: HeaderMap,
    body: Source,
    /// The client's side of an HTTP/1.1 upgrade, when it asked for one.
    pub(crate) upgrade: Option<OnUpgrade>,
}

enum Source {
    Empty,
    /// Goes with the first attempt; none can follow once it went.
    Once(Option<Incoming>),
    Rewind(RewindSlot),
}

impl Outgoing {
    /// Takes `req` apart. `host` becomes its `Host` (HTTP/2 requests carry none);
    /// `rewindable` keeps a body available for retries.
    pub(crate) fn new(mut req: Request<Incoming>, host: HeaderValue, rewindable: bool) -> Self {
        let protocol = headers::upgrade_protocol(req.version(), req.headers());
        let upgrade = protocol.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let (parts, body) = req.into_parts();
        let mut headers = parts.headers;
        headers::strip_hop_by_hop(&mut headers);
        headers.insert(HOST, host);
        if let Some(protocol) = protocol {
            headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(UPGRADE, protocol);
        }
        let body = if body.is_end_stream() {
            Source::Empty
        } else if rewindable {
            Source::Rewind(RewindSlot::new(body))
        } else {
            Source::Once(Some(body))
        };
        Self {
            path: parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
            method: parts.method,
            headers,
            body,
            upgrade,
        }
    }

    pub(crate) fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    pub(crate) fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.headers
    }

    /// Whether repeating the request is harmless (RFC 9110 §9.2.2).
    pub(crate) fn is_idempotent(&self) -> bool {
        matches!(
            self.method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::PUT
                | Method::DELETE
                | Method::TRACE
        )
    }

    /// Whether another attempt could still carry the whole body.
    pub(crate) fn can_resend(&self) -> bool {
        match &self.body {
            Source::Empty => true,
            Source::Once(body) => body.is_some(),
            Source::Rewind(slot) => slot.is_unread(),
        }
    }

    /// The request for one attempt, over HTTP/1.1 with an origin-form target; `None` once
    /// the body is gone. `last` hands over the headers instead of copying them, so no attempt
    /// may follow.
    pub(crate) fn attempt(&mut self, last: bool) -> Option<Request<ProxyBody>> {
        let body = match &mut self.body {
            Source::Empty => ProxyBody::empty(),
            Source::Once(body) => ProxyBody::stream(body.take()?, None),
            Source::Rewind(slot) => slot.attempt()?,
        };
        let mut uri = http::uri::Parts::default();
        uri.path_and_query = Some(self.path.clone());
        let uri = Uri::from_parts(uri).ok()?;
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = uri;
        *req.version_mut() = Version::HTTP_11;
        *req.headers_mut() = if last {
            std::mem::take(&mut self.headers)
        } else {
            self.headers.clone()
        };
        Some(req)
    }
}
