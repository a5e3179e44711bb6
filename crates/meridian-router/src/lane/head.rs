//! HTTP/1.1 message heads on the fast lane: parsed in place (offsets into the buffer they were
//! read into, nothing copied), judged, and written out again with the router's changes.

use std::io::Write as _;
use std::net::IpAddr;
use std::ops::Range;

use crate::reply::Refusal;

/// Most header lines in a head; more send the request to the general path, which refuses it.
pub(crate) const MAX_HEADERS: usize = 100;
/// Longest head read on the fast lane.
pub(crate) const MAX_HEAD: usize = 64 * 1024;

/// A parsed head: where its parts lie in the buffer.
#[derive(Debug, Default)]
pub(crate) struct Head {
    /// Its length in bytes, up to and including the blank line.
    pub(crate) len: usize,
    /// HTTP/1.x minor version.
    pub(crate) minor: u8,
    /// A request's method, or a response's reason phrase.
    pub(crate) first: Range<usize>,
    /// A request's target.
    pub(crate) target: Range<usize>,
    /// A response's status.
    pub(crate) status: u16,
    pub(crate) fields: Vec<(Range<usize>, Range<usize>)>,
}

/// How far a head could be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parsed {
    Complete,
    Partial,
    /// Not a head this lane reads: malformed, too many fields, or another protocol.
    Invalid,
}

fn span(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    start..start + part.len()
}

fn fields(
    buf: &[u8],
    parsed: &[httparse::Header<'_>],
    into: &mut Vec<(Range<usize>, Range<usize>)>,
) {
    into.clear();
    into.extend(
        parsed
            .iter()
            .map(|h| (span(buf, h.name.as_bytes()), span(buf, h.value))),
    );
}

/// Parses the request head at the start of `buf` into `head`.
pub(crate) fn parse_request(buf: &[u8], head: &mut Head) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version)
            else {
                return Parsed::Invalid;
            };
            head.len = len;
            head.minor = minor;
            head.first = span(buf, method.as_bytes());
            head.target = span(buf, target.as_bytes());
            head.status = 0;
            fields(buf, req.headers, &mut head.fields);
            Parsed::Complete
        }
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(_) => Parsed::Invalid,
    }
}

/// Parses the response head at the start of `buf` into `head`.
pub(crate) fn parse_response(buf: &[u8], head: &mut Head) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            let (Some(minor), Some(status)) = (resp.version, resp.code) else {
                return Parsed::Invalid;
            };
            head.len = len;
            head.minor = minor;
            head.status = status;
            head.first = span(buf, resp.reason.unwrap_or("").as_bytes());
            head.target = 0..0;
            fields(buf, resp.headers, &mut head.fields);
            Parsed::Complete
        }
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(_) => Parsed::Invalid,
    }
}

/// What the fast lane needs to know of a request it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) host: Range<usize>,
    /// Body length (`Content-Length`, or none).
    pub(crate) body: u64,
    /// The client asked to close the connection after this exchange.
    pub(crate) close: bool,
    /// Repeating it is harmless (RFC 9110 §9.2.2).
    pub(crate) idempotent: bool,
    pub(crate) head_method: bool,
    pub(crate) accept: Option<Range<usize>>,
    /// Whether any `X-Forwarded-For` line came with it.
    pub(crate) forwarded_for: bool,
}

/// Judges a parsed request: `None` leaves it to the general path, which handles everything
/// rare (HTTP/1.0, upgrades, `Expect`, chunked uploads, forwarded requests, odd framing) or
/// refuses it with the right error.
pub(crate) fn judge_request(buf: &[u8], head: &Head) -> Option<Request> {
    let method = &buf[head.first.clone()];
    if head.minor != 1 || method == b"CONNECT" || buf.get(head.target.start) != Some(&b'/') {
        return None;
    }
    let mut host = None;
    let mut body = None;
    let mut close = false;
    let mut accept = None;
    let mut forwarded_for = false;
    for (name, value) in &head.fields {
        let name = &buf[name.clone()];
        let value_bytes = &buf[value.clone()];
        if name.eq_ignore_ascii_case(b"host") {
            if host.replace(value.clone()).is_some() {
                return None;
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            if body.replace(decimal(value_bytes)?).is_some() {
                return None;
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value_bytes.split(|b| *b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if !(token.is_empty() || token.eq_ignore_ascii_case(b"keep-alive")) {
                    return None;
                }
            }
        } else if name.eq_ignore_ascii_case(b"accept") {
            accept.get_or_insert(value.clone());
        } else if name.eq_ignore_ascii_case(b"x-forwarded-for") {
            forwarded_for = true;
        } else if [
            &b"transfer-encoding"[..],
            b"upgrade",
            b"expect",
            b"meridian-hop",
        ]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n))
        {
            return None;
        }
    }
    Some(Request {
        host: host?,
        body: body.unwrap_or(0),
        close,
        idempotent: matches!(
            method,
            b"GET" | b"HEAD" | b"OPTIONS" | b"PUT" | b"DELETE" | b"TRACE"
        ),
        head_method: method == b"HEAD",
        accept,
        forwarded_for,
    })
}

/// A `Content-Length`: digits only, at most 18 of them.
fn decimal(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

/// A header value as text, when it is visible ASCII (as `HeaderValue::to_str` requires).
pub(crate) fn text(v: &[u8]) -> Option<&str> {
    if v.iter().all(|b| *b == b'\t' || (0x20..0x7f).contains(b)) {
        std::str::from_utf8(v).ok()
    } else {
        None
    }
}

/// Every `X-Forwarded-For` line, an unreadable one as `?` (which stops the walk for the
/// client).
pub(crate) fn forwarded_for<'b>(buf: &'b [u8], head: &Head) -> Vec<&'b str> {
    head.fields
        .iter()
        .filter(|(n, _)| buf[n.clone()].eq_ignore_ascii_case(b"x-forwarded-for"))
        .map(|(_, v)| text(&buf[v.clone()]).unwrap_or("?"))
        .collect()
}

/// What the router tells the app about a request, as on the general path.
pub(crate) struct AppHeaders<'a> {
    /// Who connected to the router.
    pub(crate) peer: IpAddr,
    /// Whether that peer is a trusted proxy, whose `X-Forwarded-Proto` and `-Host` stand.
    pub(crate) trusted_peer: bool,
    /// The region nearest the client.
    pub(crate) client_region: Option<&'a str>,
}

fn is_hop_by_hop(name: &[u8]) -> bool {
    [
        &b"connection"[..],
        b"keep-alive",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"expect",
    ]
    .iter()
    .any(|n| name.eq_ignore_ascii_case(n))
        || (name.len() >= 6 && name[..6].eq_ignore_ascii_case(b"proxy-"))
}

/// Writes the request head the app gets to `out`: the client's, less hop-by-hop fields, with
/// `X-Forwarded-For` folded and extended, `X-Forwarded-Proto` and `-Host` (unless a trusted
/// proxy set them), and `Meridian-Client-Region`.
pub(crate) fn write_request(
    out: &mut Vec<u8>,
    buf: &[u8],
    head: &Head,
    req: &Request,
    app: &AppHeaders<'_>,
) {
    out.extend_from_slice(&buf[head.first.clone()]);
    out.push(b' ');
    out.extend_from_slice(&buf[head.target.clone()]);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let (mut proto, mut host) = (false, false);
    let mut chain_started = false;
    for (name, value) in &head.fields {
        let n = &buf[name.clone()];
        let v = &buf[value.clone()];
        if is_hop_by_hop(n) || n.eq_ignore_ascii_case(b"meridian-client-region") {
            continue;
        }
        if n.eq_ignore_ascii_case(b"x-forwarded-for") {
            continue;
        }
        if n.eq_ignore_ascii_case(b"x-forwarded-proto") {
            if !app.trusted_peer || proto {
                continue;
            }
            proto = true;
        } else if n.eq_ignore_ascii_case(b"x-forwarded-host") {
            if !app.trusted_peer || host {
                continue;
            }
            host = true;
        }
        field(out, n, v);
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    if req.forwarded_for {
        for (name, value) in &head.fields {
            if !buf[name.clone()].eq_ignore_ascii_case(b"x-forwarded-for") {
                continue;
            }
            if let Some(v) = text(&buf[value.clone()])
                .map(str::trim)
                .filter(|v| !v.is_empty())
            {
                if chain_started {
                    out.extend_from_slice(b", ");
                }
                out.extend_from_slice(v.as_bytes());
                chain_started = true;
            }
        }
    }
    if chain_started {
        out.extend_from_slice(b", ");
    }
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{}\r\n", app.peer);
    if !proto {
        out.extend_from_slice(b"x-forwarded-proto: http\r\n");
    }
    if !host {
        field(out, b"x-forwarded-host", &buf[req.host.clone()]);
    }
    if let Some(region) = app.client_region {
        field(out, b"meridian-client-region", region.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// How a response's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// It has none.
    Empty,
    Length(u64),
    Chunked,
    /// When the app closes the connection.
    UntilClose,
}

/// What the fast lane needs to know of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    pub(crate) framing: Framing,
    /// Whether the app's connection can carry another request afterwards.
    pub(crate) reusable: bool,
}

/// Why a response cannot be relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadResponse {
    /// `101` to a request that asked for no upgrade.
    SwitchedProtocols,
    /// Conflicting or malformed framing.
    Framing,
}

/// Judges a final (non-1xx) response head.
pub(crate) fn judge_response(
    buf: &[u8],
    head: &Head,
    head_method: bool,
) -> Result<Response, BadResponse> {
    if head.status == 101 {
        return Err(BadResponse::SwitchedProtocols);
    }
    let mut length: Option<u64> = None;
    let mut chunked = None;
    let mut close = head.minor == 0;
    for (name, value) in &head.fields {
        let n = &buf[name.clone()];
        let v = &buf[value.clone()];
        if n.eq_ignore_ascii_case(b"content-length") {
            let l = decimal(v).ok_or(BadResponse::Framing)?;
            if length.is_some_and(|old| old != l) {
                return Err(BadResponse::Framing);
            }
            length = Some(l);
        } else if n.eq_ignore_ascii_case(b"transfer-encoding") {
            let last = v.rsplit(|b| *b == b',').next().unwrap_or(b"").trim_ascii();
            chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
        } else if n.eq_ignore_ascii_case(b"connection") {
            for token in v.split(|b| *b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && head.minor == 0 {
                    close = false;
                }
            }
        }
    }
    let framing = if head_method || head.status == 204 || head.status == 304 {
        Framing::Empty
    } else {
        match (chunked, length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) => Framing::UntilClose,
            (None, Some(l)) => Framing::Length(l),
            (None, None) => Framing::UntilClose,
        }
    };
    Ok(Response {
        framing,
        reusable: !close && framing != Framing::UntilClose,
    })
}

/// What the router adds to every response head it relays.
pub(crate) struct RouterFields<'a> {
    /// `Meridian-Region`.
    pub(crate) region: &'a [u8],
    /// `Meridian-Route`.
    pub(crate) route: Option<&'a [u8]>,
    /// `Date`, when the app sent none (RFC 9110 §6.6.1).
    pub(crate) date: &'a [u8],
    /// The client's connection ends with this response: `Connection: close`.
    pub(crate) close: bool,
}

/// Writes the head the client gets: the app's status and fields, less hop-by-hop ones (but
/// `Transfer-Encoding`, as the body is relayed as it came) and any `Meridian-*` the app set,
/// plus the router's fields.
pub(crate) fn write_response(out: &mut Vec<u8>, buf: &[u8], head: &Head, add: &RouterFields<'_>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    // httparse reads exactly three digits.
    let status = head.status.min(999);
    out.extend_from_slice(&[
        b'0' + (status / 100) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
        b' ',
    ]);
    out.extend_from_slice(&buf[head.first.clone()]);
    out.extend_from_slice(b"\r\n");
    let named = |name: &[u8]| {
        head.fields
            .iter()
            .any(|(n, _)| buf[n.clone()].eq_ignore_ascii_case(name))
    };
    let chunked = named(b"transfer-encoding");
    // Names the app's `Connection` lists are hop-by-hop too.
    let listed = |name: &[u8]| {
        head.fields.iter().any(|(n, v)| {
            buf[n.clone()].eq_ignore_ascii_case(b"connection")
                && buf[v.clone()]
                    .split(|b| *b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(name))
        })
    };
    for (name, value) in &head.fields {
        let n = &buf[name.clone()];
        let keep = if n.eq_ignore_ascii_case(b"transfer-encoding") {
            true
        } else if n.eq_ignore_ascii_case(b"content-length") {
            !chunked
        } else {
            !(is_hop_by_hop(n)
                || n.eq_ignore_ascii_case(b"meridian-region")
                || n.eq_ignore_ascii_case(b"meridian-route")
                || listed(n))
        };
        if keep {
            field(out, n, &buf[value.clone()]);
        }
    }
    if !named(b"date") {
        field(out, b"date", add.date);
    }
    field(out, b"meridian-region", add.region);
    if let Some(route) = add.route {
        field(out, b"meridian-route", route);
    }
    if add.close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes the router's own refusal, head and body (none for `HEAD`).
pub(crate) fn write_refusal(
    out: &mut Vec<u8>,
    refusal: &Refusal,
    content_type: &str,
    body: &str,
    add: &RouterFields<'_>,
    head_method: bool,
) {
    let status = refusal.status;
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\ncontent-type: {content_type}\r\ncache-control: no-store\r\n\
         content-length: {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
    );
    field(out, b"date", add.date);
    field(out, b"meridian-region", add.region);
    field(out, b"meridian-route", add.route.unwrap_or_default());
    if add.close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_method {
        out.extend_from_slice(body.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(raw: &str) -> (Head, Option<Request>) {
        let mut head = Head::default();
        assert_eq!(
            parse_request(raw.as_bytes(), &mut head),
            Parsed::Complete,
            "{raw:?}"
        );
        let judged = judge_request(raw.as_bytes(), &head);
        (head, judged)
    }

    #[test]
    fn plain_requests_take_the_fast_lane() {
        let raw = "POST /a?b=1 HTTP/1.1\r\nHost: web.example.com\r\nContent-Length: 12\r\nConnection: keep-alive, close\r\nAccept: text/html\r\n\r\n";
        let (_, req) = request(raw);
        let req = req.unwrap();
        assert_eq!(&raw[req.host.clone()], "web.example.com");
        assert_eq!(req.body, 12);
        assert!(req.close && !req.idempotent && !req.head_method);
        assert_eq!(&raw[req.accept.unwrap()], "text/html");
    }

    #[test]
    fn anything_rare_goes_to_the_general_path() {
        for raw in [
            "GET / HTTP/1.0\r\nHost: a\r\n\r\n",
            "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: x-private\r\n\r\n",
            "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nMeridian-Hop: eu-fra\r\n\r\n",
        ] {
            assert_eq!(request(raw).1, None, "{raw:?}");
        }
        let mut head = Head::default();
        assert_eq!(
            parse_request(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", &mut head),
            Parsed::Invalid
        );
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nHost: a\r\n", &mut head),
            Parsed::Partial
        );
    }

    #[test]
    fn the_app_gets_the_clients_fields_and_the_routers() {
        let raw = "GET /x HTTP/1.1\r\nHost: web.example.com\r\nX-Forwarded-For: 1.1.1.1\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: x\r\nX-Forwarded-For: 2.2.2.2, 3.3.3.3\r\nX-Forwarded-Proto: https\r\nMeridian-Client-Region: fake\r\nCookie: a=1\r\n\r\n";
        let (head, req) = request(raw);
        let req = req.unwrap();
        let mut out = Vec::new();
        let app = AppHeaders {
            peer: "10.0.0.1".parse().unwrap(),
            trusted_peer: false,
            client_region: Some("eu-fra"),
        };
        write_request(&mut out, raw.as_bytes(), &head, &req, &app);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /x HTTP/1.1\r\nHost: web.example.com\r\nCookie: a=1\r\n\
             x-forwarded-for: 1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.1\r\n\
             x-forwarded-proto: http\r\nx-forwarded-host: web.example.com\r\n\
             meridian-client-region: eu-fra\r\n\r\n"
        );
        let mut out = Vec::new();
        let trusted = AppHeaders {
            trusted_peer: true,
            client_region: None,
            ..app
        };
        write_request(&mut out, raw.as_bytes(), &head, &req, &trusted);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("X-Forwarded-Proto: https\r\n"), "{text}");
        assert!(!text.contains("x-forwarded-proto: http\r\n"), "{text}");
        assert!(!text.contains("eridian-client-region"), "{text}");
    }

    fn response(raw: &str, head_method: bool) -> (Head, Result<Response, BadResponse>) {
        let mut head = Head::default();
        assert_eq!(parse_response(raw.as_bytes(), &mut head), Parsed::Complete);
        let judged = judge_response(raw.as_bytes(), &head, head_method);
        (head, judged)
    }

    #[test]
    fn response_framing_follows_the_rules() {
        let framing = |raw: &str, head_method| response(raw, head_method).1.map(|r| r.framing);
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true),
            Ok(Framing::Empty)
        );
        assert_eq!(
            framing("HTTP/1.1 204 No Content\r\n\r\n", false),
            Ok(Framing::Empty)
        );
        assert_eq!(
            framing(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\r\n",
                false
            ),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\n\r\n", false),
            Ok(Framing::UntilClose)
        );
        assert_eq!(
            framing(
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                false
            ),
            Err(BadResponse::Framing)
        );
        assert_eq!(
            framing("HTTP/1.1 101 Switching\r\n\r\n", false),
            Err(BadResponse::SwitchedProtocols)
        );
        let reusable = |raw: &str| response(raw, false).1.unwrap().reusable;
        assert!(reusable("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(!reusable(
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ));
        assert!(!reusable("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(reusable(
            "HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
        ));
    }

    #[test]
    fn the_client_gets_the_apps_fields_and_the_routers() {
        let raw = "HTTP/1.1 200 Fine\r\nContent-Type: text/plain\r\nConnection: x-secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nMeridian-Region: fake\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n";
        let (head, _) = response(raw, false);
        let mut out = Vec::new();
        let add = RouterFields {
            region: b"eu-fra",
            route: Some(b"nearest"),
            date: b"Sat, 28 Nov 2026 06:00:00 GMT",
            close: true,
        };
        write_response(&mut out, raw.as_bytes(), &head, &add);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 Fine\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\
             date: Sat, 28 Nov 2026 06:00:00 GMT\r\n\
             meridian-region: eu-fra\r\nmeridian-route: nearest\r\nconnection: close\r\n\r\n"
        );
        let dated = "HTTP/1.1 204 No Content\r\nDate: Fri, 27 Nov 2026 00:00:00 GMT\r\n\r\n";
        let (head, _) = response(dated, false);
        let mut out = Vec::new();
        let quiet = RouterFields {
            close: false,
            route: None,
            ..add
        };
        write_response(&mut out, dated.as_bytes(), &head, &quiet);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 204 No Content\r\nDate: Fri, 27 Nov 2026 00:00:00 GMT\r\n\
             meridian-region: eu-fra\r\n\r\n"
        );
    }
}
