//! Header work on the request path: which host a request names, hop-by-hop headers
//! (RFC 9110 §7.6.1), the `X-Forwarded-*` family, and what kind of error page a client wants.

use std::fmt::Write as _;
use std::net::IpAddr;

use http::header::{
    ACCEPT, CONNECTION, EXPECT, HOST, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Version};
use meridian_api::ErrorCode;

/// Set by a router that forwards a request to another region's router: its own region.
pub(crate) fn meridian_hop() -> HeaderName {
    HeaderName::from_static("meridian-hop")
}

/// The region that served a response.
pub(crate) fn meridian_region() -> HeaderName {
    HeaderName::from_static("meridian-region")
}

/// Why that region served it, or why none did.
pub(crate) fn meridian_route() -> HeaderName {
    HeaderName::from_static("meridian-route")
}

/// For the app: the region nearest its client.
pub(crate) fn meridian_client_region() -> HeaderName {
    HeaderName::from_static("meridian-client-region")
}

pub(crate) fn x_forwarded_for() -> HeaderName {
    HeaderName::from_static("x-forwarded-for")
}

pub(crate) fn x_forwarded_proto() -> HeaderName {
    HeaderName::from_static("x-forwarded-proto")
}

pub(crate) fn x_forwarded_host() -> HeaderName {
    HeaderName::from_static("x-forwarded-host")
}

/// Why a request names no usable host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadHost {
    Missing,
    Several,
    Malformed,
}

impl BadHost {
    pub(crate) fn code(self) -> ErrorCode {
        match self {
            BadHost::Missing => ErrorCode::MissingHost,
            BadHost::Several | BadHost::Malformed => ErrorCode::BadHost,
        }
    }

    pub(crate) fn message(self) -> &'static str {
        match self {
            BadHost::Missing => "the request names no host (Host header or :authority)",
            BadHost::Several => "the request carries more than one Host header",
            BadHost::Malformed => "the request's host is not a host name with an optional port",
        }
    }
}

/// Longest host accepted: a 253-character name, a port and brackets.
const MAX_HOST: usize = 253 + 8;

/// The host a request is for: `:authority` for HTTP/2 (falling back to `Host`), `Host` for
/// HTTP/1 (falling back to an absolute-form target).
pub(crate) fn request_host<B>(req: &Request<B>) -> Result<HeaderValue, BadHost> {
    let mut hosts = req.headers().get_all(HOST).iter();
    let header = hosts.next();
    if hosts.next().is_some() {
        return Err(BadHost::Several);
    }
    let from_uri = || {
        req.uri()
            .authority()
            .map(|a| HeaderValue::from_str(a.as_str()).map_err(|_| BadHost::Malformed))
    };
    let value = if req.version() == Version::HTTP_2 {
        from_uri().or_else(|| header.cloned().map(Ok))
    } else {
        header.cloned().map(Ok).or_else(from_uri)
    };
    let value = value.ok_or(BadHost::Missing)??;
    let text = value.to_str().map_err(|_| BadHost::Malformed)?;
    if host_well_formed(text.as_bytes()) {
        Ok(value)
    } else {
        Err(BadHost::Malformed)
    }
}

/// A host name with an optional port (or a bracketed IPv6 address), of sane length.
pub(crate) fn host_well_formed(host: &[u8]) -> bool {
    !host.is_empty()
        && host.len() <= MAX_HOST
        && host
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'[' | b']'))
}

/// Whether the client would rather read an HTML page than JSON: `text/html` ranks above
/// `application/json` (or a wildcard standing for it) in `Accept`.
pub(crate) fn prefers_html(accept: Option<&HeaderValue>) -> bool {
    let Some(accept) = accept.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let (mut html, mut json) = (0.0f32, 0.0f32);
    for range in accept.split(',') {
        let mut params = range.split(';');
        let media = params.next().unwrap_or("").trim();
        let q = params
            .find_map(|p| p.trim().strip_prefix("q="))
            .and_then(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if media.eq_ignore_ascii_case("text/html") {
            html = html.max(q);
        } else if ["application/json", "application/*", "*/*"]
            .iter()
            .any(|m| media.eq_ignore_ascii_case(m))
        {
            json = json.max(q);
        }
    }
    html > json
}

/// The `Accept` header, kept for choosing an error page later.
pub(crate) fn accept(headers: &HeaderMap) -> Option<HeaderValue> {
    headers.get(ACCEPT).cloned()
}

/// The protocol an HTTP/1.1 request asks to switch to (`Connection: upgrade` with
/// `Upgrade`).
pub(crate) fn upgrade_protocol(version: Version, headers: &HeaderMap) -> Option<HeaderValue> {
    if version != Version::HTTP_11 {
        return None;
    }
    let asks = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if asks {
        headers.get(UPGRADE).cloned()
    } else {
        None
    }
}

/// Removes the headers that describe one connection rather than the message: the fixed list,
/// every `Proxy-*`, and whatever `Connection` names. `Expect` goes too: the router answers
/// `100 Continue` itself when it starts reading the body.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in [
        CONNECTION,
        TE,
        TRAILER,
        TRANSFER_ENCODING,
        UPGRADE,
        PROXY_AUTHENTICATE,
        PROXY_AUTHORIZATION,
        EXPECT,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    if headers.keys().any(|k| k.as_str().starts_with("proxy-")) {
        let proxy: Vec<HeaderName> = headers
            .keys()
            .filter(|k| k.as_str().starts_with("proxy-"))
            .cloned()
            .collect();
        for name in proxy {
            headers.remove(name);
        }
    }
}

/// Appends `ip` to `X-Forwarded-For`, folding earlier lines into one value (some apps read
/// only the first line).
pub(crate) fn append_forwarded_for(headers: &mut HeaderMap, ip: IpAddr) {
    let name = x_forwarded_for();
    let mut chain = String::new();
    for v in headers.get_all(&name) {
        if let Ok(v) = v.to_str() {
            let v = v.trim();
            if !v.is_empty() {
                chain.push_str(v);
                chain.push_str(", ");
            }
        }
    }
    // Writing to a String cannot fail.
    let _ = write!(chain, "{ip}");
    if let Ok(value) = HeaderValue::try_from(chain) {
        headers.insert(name, value);
    }
}

/// Every `X-Forwarded-For` line, for finding the client; an unreadable line stays in the list
/// as an entry that stops the walk.
pub(crate) fn forwarded_for(headers: &HeaderMap) -> Vec<&str> {
    headers
        .get_all(x_forwarded_for())
        .iter()
        .map(|v| v.to_str().unwrap_or("?"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, uri: &str, hosts: &[&str]) -> Request<()> {
        let mut b = Request::builder().version(version).uri(uri);
        for h in hosts {
            b = b.header(HOST, *h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn hosts_come_from_host_or_authority() {
        let h1 = req(Version::HTTP_11, "/", &["web.example.com:8080"]);
        assert_eq!(request_host(&h1).unwrap(), "web.example.com:8080");
        let h2 = req(Version::HTTP_2, "http://web.example.com/x", &[]);
        assert_eq!(request_host(&h2).unwrap(), "web.example.com");
        let absolute = req(Version::HTTP_11, "http://a.example.com/", &[]);
        assert_eq!(request_host(&absolute).unwrap(), "a.example.com");
        let none = req(Version::HTTP_10, "/", &[]);
        assert_eq!(request_host(&none), Err(BadHost::Missing));
        let two = req(Version::HTTP_11, "/", &["a.example.com", "b.example.com"]);
        assert_eq!(request_host(&two), Err(BadHost::Several));
        for bad in ["", "a b", "a/b", "<script>", "a@b"] {
            let r = req(Version::HTTP_11, "/", &[bad]);
            assert_eq!(request_host(&r), Err(BadHost::Malformed), "{bad:?}");
        }
        let long = req(Version::HTTP_11, "/", &[&"a".repeat(300)]);
        assert_eq!(request_host(&long), Err(BadHost::Malformed));
    }

    #[test]
    fn html_only_when_preferred() {
        let v = |s: &'static str| HeaderValue::from_static(s);
        let browser = v("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8");
        assert!(prefers_html(Some(&browser)));
        assert!(!prefers_html(Some(&v("*/*"))));
        assert!(!prefers_html(None));
        assert!(!prefers_html(Some(&v("application/json, text/html;q=0.5"))));
        assert!(prefers_html(Some(&v(
            "text/html;q=0.9, application/json;q=0.1"
        ))));
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, x-private"),
            ("keep-alive", "timeout=5"),
            ("x-private", "1"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic x"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("expect", "100-continue"),
            ("content-type", "text/plain"),
            ("cookie", "a=1"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["content-type", "cookie"]);
    }

    #[test]
    fn upgrades_need_both_headers_on_http_1_1() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(upgrade_protocol(Version::HTTP_11, &h).unwrap(), "websocket");
        assert!(upgrade_protocol(Version::HTTP_2, &h).is_none());
        h.remove(CONNECTION);
        assert!(upgrade_protocol(Version::HTTP_11, &h).is_none());
    }

    #[test]
    fn forwarded_for_is_folded_and_appended() {
        let mut h = HeaderMap::new();
        h.append(x_forwarded_for(), HeaderValue::from_static("1.1.1.1"));
        h.append(
            x_forwarded_for(),
            HeaderValue::from_static("2.2.2.2, 3.3.3.3"),
        );
        append_forwarded_for(&mut h, "10.0.0.1".parse().unwrap());
        assert_eq!(h[x_forwarded_for()], "1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.1");
        let mut empty = HeaderMap::new();
        append_forwarded_for(&mut empty, "::1".parse().unwrap());
        assert_eq!(empty[x_forwarded_for()], "::1");
    }
}
