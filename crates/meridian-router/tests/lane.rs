//! The fast lane, over real sockets: plain HTTP/1.1 requests for an app served in the
//! router's own region are relayed over raw keep-alive connections, with the framing of each
//! message kept exact. The apps here are raw TCP servers that write exact bytes, and the
//! clients write exact requests and read exact responses, so every byte of framing is seen.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use meridian_api::routing::RouteTable;
use meridian_router::RouterConfig;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Longest wait for any read or write: a hang fails the test instead of hanging it.
const WAIT: Duration = Duration::from_secs(5);
/// Between the pieces of an answer an app writes in several writes.
const PAUSE: Duration = Duration::from_millis(20);

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The fields of a head (its first line skipped), names as written.
fn fields_of(head: &str) -> Vec<(String, String)> {
    head.split("\r\n")
        .skip(1)
        .take_while(|line| !line.is_empty())
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            (name.to_string(), value.trim().to_string())
        })
        .collect()
}

fn values<'f>(fields: &'f [(String, String)], name: &str) -> Vec<&'f str> {
    fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Compares two large byte strings without printing them.
fn assert_same(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let first = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: {} bytes, {} expected; first difference at {first:?}",
            got.len(),
            want.len()
        );
    }
}

// ---- apps that write exact bytes ----

/// A request as an app received it from the router.
#[derive(Debug, Clone)]
struct Seen {
    head: String,
    body: Vec<u8>,
}

impl Seen {
    fn method(&self) -> &str {
        self.head.split(' ').next().unwrap_or("")
    }

    fn path(&self) -> &str {
        self.head.split(' ').nth(1).unwrap_or("")
    }

    fn fields(&self) -> Vec<(String, String)> {
        fields_of(&self.head)
    }

    fn all(&self, name: &str) -> Vec<String> {
        values(&self.fields(), name)
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    /// Whether the fast lane relayed it. The lane passes the client's field names through
    /// as written, while the general path writes them in lowercase; the clients here always
    /// write `Host`.
    fn by_lane(&self) -> bool {
        self.head.contains("\r\nHost: ")
    }
}

/// What an app does after reading a request.
enum Then {
    /// Reads the next request on the same connection.
    Keep,
    /// Closes the connection.
    Close,
    /// Keeps the connection open and never reads or writes again.
    Hang,
}

/// An app's answer: bytes written in pieces, `PAUSE` apart, then what happens next.
struct Answer {
    pieces: Vec<Vec<u8>>,
    then: Then,
}

impl Answer {
    fn keep(bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            pieces: vec![bytes.into()],
            then: Then::Keep,
        }
    }

    fn pieces(pieces: &[&str], then: Then) -> Self {
        Self {
            pieces: pieces.iter().map(|p| p.as_bytes().to_vec()).collect(),
            then,
        }
    }

    fn then(mut self, then: Then) -> Self {
        self.then = then;
        self
    }
}

/// `200 OK` with `body` and its `Content-Length`.
fn ok_with(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// An app instance on a raw TCP listener: it reads each request (head, and a body of its
/// `Content-Length`), records it, and writes what `answer` says, byte for byte.
struct RawApp {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl RawApp {
    fn address(&self) -> String {
        self.addr.to_string()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn hits(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for RawApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn raw_app<F>(answer: F) -> RawApp
where
    F: Fn(&Seen) -> Answer + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let connections = Arc::new(AtomicUsize::new(0));
    let answer = Arc::new(answer);
    let (recorded, counted) = (Arc::clone(&seen), Arc::clone(&connections));
    let task = tokio::spawn(async move {
        // Dropped with the task, which ends every connection.
        let mut open = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            counted.fetch_add(1, Ordering::SeqCst);
            open.spawn(serve_raw(
                stream,
                Arc::clone(&answer),
                Arc::clone(&recorded),
            ));
        }
    });
    RawApp {
        addr,
        seen,
        connections,
        task,
    }
}

async fn serve_raw<F>(mut stream: TcpStream, answer: Arc<F>, seen: Arc<Mutex<Vec<Seen>>>)
where
    F: Fn(&Seen) -> Answer + Send + Sync + 'static,
{
    let mut buf = Vec::new();
    loop {
        let end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let length: usize = values(&fields_of(&head), "content-length")
            .first()
            .map_or(0, |v| v.parse().unwrap());
        while buf.len() < end + length {
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
        let request = Seen {
            head,
            body: buf[end..end + length].to_vec(),
        };
        buf.drain(..end + length);
        let reply = answer(&request);
        seen.lock().unwrap().push(request);
        for (i, piece) in reply.pieces.iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(PAUSE).await;
            }
            if stream.write_all(piece).await.is_err() {
                return;
            }
        }
        match reply.then {
            Then::Keep => {}
            Then::Close => return,
            Then::Hang => std::future::pending::<()>().await,
        }
    }
}

// ---- routers ----

/// The app `web`, with instances at `addresses`, all in eu-fra.
fn web_in_fra(addresses: &[String]) -> RouteTable {
    let instances: Vec<(&str, String)> = addresses.iter().map(|a| ("eu-fra", a.clone())).collect();
    table(vec![app("web", &[], &instances)], vec![])
}

/// A router in eu-fra for `web` at `addresses`. Its clients are in New York, and eu-fra is
/// the only region with instances, so it serves them itself.
async fn router_with(config: RouterConfig, addresses: &[String]) -> TestRouter {
    start(config, web_in_fra(addresses), in_new_york()).await
}

async fn router_for(apps: &[&RawApp]) -> TestRouter {
    let addresses: Vec<String> = apps.iter().map(|a| a.address()).collect();
    router_with(config("eu-fra"), &addresses).await
}

// ---- clients that read exact bytes ----

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {WEB}\r\n\r\n")
}

/// A response as the client read it. `body` is as it came on the wire: a chunked body with
/// its chunk lines and trailer.
#[derive(Debug)]
struct Reply {
    version: String,
    status: u16,
    fields: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn all(&self, name: &str) -> Vec<&str> {
        values(&self.fields, name)
    }

    /// The value of a field that must appear exactly once.
    fn one(&self, name: &str) -> &str {
        match self.all(name)[..] {
            [value] => value,
            ref found => panic!("{name}: {found:?} in {self:?}"),
        }
    }

    fn has(&self, name: &str) -> bool {
        !self.all(name).is_empty()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `(code, message)` of one of the router's refusals.
    fn error(&self) -> (String, String) {
        assert_eq!(self.one("content-type"), "application/json", "{self:?}");
        let v: serde_json::Value =
            serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()));
        let field = |f: &str| v["error"][f].as_str().unwrap().to_string();
        (field("code"), field("message"))
    }
}

/// A raw client connection to a router.
struct Client {
    stream: TcpStream,
    /// Bytes read and not yet taken.
    buf: Vec<u8>,
}

impl Client {
    async fn connect(router: &TestRouter) -> Self {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(router.addr))
            .await
            .expect("connected in time")
            .unwrap();
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        tokio::time::timeout(WAIT, self.stream.write_all(bytes.as_ref()))
            .await
            .expect("the router took the request in time")
            .unwrap();
    }

    /// Reads more; 0 when the router closed the connection.
    async fn more(&mut self) -> usize {
        match tokio::time::timeout(WAIT, self.stream.read_buf(&mut self.buf)).await {
            Err(_) => panic!(
                "nothing came from the router within {WAIT:?}; unread: {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
            Ok(Ok(n)) => n,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
            Ok(Err(e)) => panic!("reading from the router: {e}"),
        }
    }

    /// Reads until at least `len` bytes are unread.
    async fn need(&mut self, len: usize) {
        while self.buf.len() < len {
            if self.more().await == 0 {
                panic!(
                    "the router closed the connection mid-response; unread: {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
            }
        }
    }

    /// Where the line starting at `from` ends (its CR), reading as needed.
    async fn line_end(&mut self, from: usize) -> usize {
        loop {
            if let Some(i) = find(&self.buf[from..], b"\r\n") {
                return from + i;
            }
            let len = self.buf.len();
            self.need(len + 1).await;
        }
    }

    /// The response to a request other than HEAD.
    async fn reply(&mut self) -> Reply {
        self.read_reply(false).await
    }

    async fn reply_to_head(&mut self) -> Reply {
        self.read_reply(true).await
    }

    async fn read_reply(&mut self, head_method: bool) -> Reply {
        let end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            let len = self.buf.len();
            self.need(len + 1).await;
        };
        let head = String::from_utf8(self.buf.drain(..end).collect()).unwrap();
        let mut status_line = head.split("\r\n").next().unwrap().splitn(3, ' ');
        let version = status_line.next().unwrap().to_string();
        let status: u16 = status_line.next().unwrap().parse().unwrap();
        let fields = fields_of(&head);
        let chunked = values(&fields, "transfer-encoding")
            .iter()
            .any(|v| v.eq_ignore_ascii_case("chunked"));
        let length = values(&fields, "content-length")
            .first()
            .map(|v| v.parse::<usize>().unwrap());
        let body = if head_method || status < 200 || status == 204 || status == 304 {
            Vec::new()
        } else if chunked {
            self.chunked_body().await
        } else if let Some(length) = length {
            self.need(length).await;
            self.buf.drain(..length).collect()
        } else {
            while self.more().await > 0 {}
            std::mem::take(&mut self.buf)
        };
        Reply {
            version,
            status,
            fields,
            body,
        }
    }

    /// A chunked body, chunk lines and trailer included, exactly as it came.
    async fn chunked_body(&mut self) -> Vec<u8> {
        let mut at = 0;
        loop {
            let end = self.line_end(at).await;
            let line = String::from_utf8_lossy(&self.buf[at..end]).into_owned();
            let size = line.split(';').next().unwrap().trim();
            let size = usize::from_str_radix(size, 16)
                .unwrap_or_else(|e| panic!("chunk size line {line:?}: {e}"));
            at = end + 2;
            if size == 0 {
                // Trailer lines, up to the empty one.
                loop {
                    let end = self.line_end(at).await;
                    let empty = end == at;
                    at = end + 2;
                    if empty {
                        return self.buf.drain(..at).collect();
                    }
                }
            }
            self.need(at + size + 2).await;
            assert_eq!(&self.buf[at + size..at + size + 2], b"\r\n", "chunk end");
            at += size + 2;
        }
    }

    /// Asserts that the router closes the connection, with nothing more sent.
    async fn closed(&mut self) {
        assert!(
            self.buf.is_empty(),
            "bytes after the last response: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        match tokio::time::timeout(WAIT, self.stream.read_buf(&mut self.buf)).await {
            Err(_) => panic!("the router kept the connection open"),
            Ok(Ok(0) | Err(_)) => {}
            Ok(Ok(_)) => panic!(
                "more bytes after the last response: {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }
}

// ---- framing ----

#[tokio::test]
async fn a_chunked_response_is_relayed_and_the_connection_kept() {
    // The body's framing, with a chunk extension and a trailer, cut at awkward places.
    let pieces = [
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n",
        "5;name=va",
        "lue\r\nhello\r\n7\r\n, wo",
        "rld\r\n0\r\nX-Check",
        "sum: 42\r\n\r\n",
    ];
    let body = pieces[1..].concat();
    let web = raw_app(move |seen| match seen.path() {
        "/chunked" => Answer::pieces(&pieces, Then::Keep),
        _ => Answer::keep(ok_with("second")),
    })
    .await;
    let router = router_for(&[&web]).await;

    let mut client = Client::connect(&router).await;
    client.send(get("/chunked")).await;
    let r = client.reply().await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.one("transfer-encoding"), "chunked");
    assert!(!r.has("content-length"), "{r:?}");
    assert!(!r.has("connection"), "{r:?}");
    assert_eq!(r.text(), body);

    client.send(get("/again")).await;
    let r = client.reply().await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "second");

    // Both went over one kept connection to the app.
    let seen = web.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(Seen::by_lane), "{seen:?}");
    assert_eq!(web.connections(), 1);
    router.stop().await;
}

#[tokio::test]
async fn a_one_mebibyte_upload_and_download_pass_through_intact() {
    const SIZE: usize = 1 << 20;
    let upload: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    // The app answers with another megabyte, derived from what it got.
    let web = raw_app(|seen| {
        let body: Vec<u8> = seen.body.iter().map(|b| b ^ 0x5a).collect();
        let mut answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        answer.extend_from_slice(&body);
        Answer::keep(answer)
    })
    .await;
    let router = router_for(&[&web]).await;

    let mut client = Client::connect(&router).await;
    let mut request = format!(
        "POST /upload HTTP/1.1\r\nHost: {WEB}\r\nContent-Type: application/octet-stream\r\nContent-Length: {SIZE}\r\n\r\n"
    )
    .into_bytes();
    request.extend_from_slice(&upload);
    client.send(&request).await;
    let r = client.reply().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.one("content-length"), SIZE.to_string());
    let download: Vec<u8> = upload.iter().map(|b| b ^ 0x5a).collect();
    assert_same(&r.body, &download, "the download");

    let seen = web.seen();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].by_lane(), "{:?}", seen[0].head);
    assert_eq!(seen[0].method(), "POST");
    assert_same(&seen[0].body, &upload, "the upload");
    router.stop().await;
}

#[tokio::test]
async fn the_connection_is_kept_after_an_upload_read_whole() {
    let web = raw_app(|seen| Answer::keep(ok_with(&format!("{} bytes", seen.body.len())))).await;
    let router = router_for(&[&web]).await;
    let post = |size: usize| {
        let mut request =
            format!("POST /upload HTTP/1.1\r\nHost: {WEB}\r\nContent-Length: {size}\r\n\r\n")
                .into_bytes();
        request.resize(request.len() + size, b'u');
        request
    };

    let mut client = Client::connect(&router).await;
    // A body that comes with its head, then one larger than the router reads at once: both
    // are relayed whole before the answer, so the connection can carry the next request.
    for size in [1024, 256 * 1024] {
        client.send(post(size)).await;
        let r = client.reply().await;
        assert_eq!(r.status, 200, "{size}: {r:?}");
        assert_eq!(r.text(), format!("{size} bytes"));
        assert!(
            !r.has("connection"),
            "an upload of {size} bytes, read whole, ended the connection: {r:?}"
        );
        client.send(get("/after")).await;
        let r = client.reply().await;
        assert_eq!(r.status, 200, "after {size}: {r:?}");
    }
    assert!(web.seen().iter().all(Seen::by_lane));
    router.stop().await;
}

#[tokio::test]
async fn two_pipelined_gets_get_two_responses_in_order() {
    let web = raw_app(|seen| Answer::keep(ok_with(&format!("at {}", seen.path())))).await;
    let router = router_for(&[&web]).await;

    let mut client = Client::connect(&router).await;
    client.send(get("/one") + &get("/two")).await;
    let first = client.reply().await;
    let second = client.reply().await;
    assert_eq!((first.status, first.text().as_str()), (200, "at /one"));
    assert_eq!((second.status, second.text().as_str()), (200, "at /two"));
    let seen = web.seen();
    assert_eq!(
        seen.iter().map(Seen::path).collect::<Vec<_>>(),
        ["/one", "/two"]
    );
    assert!(seen.iter().all(Seen::by_lane), "{seen:?}");
    router.stop().await;
}

#[tokio::test]
async fn a_body_delimited_by_closing_is_relayed_whole_and_the_connection_closed() {
    let web = raw_app(|_| {
        Answer::pieces(
            &[
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n",
                "part one, ",
                "part two, ",
                "part three",
            ],
            Then::Close,
        )
    })
    .await;
    let router = router_for(&[&web]).await;

    let mut client = Client::connect(&router).await;
    client.send(get("/stream")).await;
    // Without a length or chunks, the client reads to the end of the connection: the
    // router must close it.
    let r = client.reply().await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.one("connection"), "close");
    assert!(
        !r.has("content-length") && !r.has("transfer-encoding"),
        "{r:?}"
    );
    assert_eq!(r.text(), "part one, part two, part three");
    client.closed().await;
    assert!(web.seen()[0].by_lane());
    router.stop().await;
}

#[tokio::test]
async fn a_head_response_has_no_body_and_the_next_request_is_served() {
    let web = raw_app(|seen| match seen.method() {
        // The length of the body a GET would get, and no body.
        "HEAD" => {
            Answer::keep("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n")
        }
        _ => Answer::keep(ok_with("hello")),
    })
    .await;
    let router = router_for(&[&web]).await;

    let mut client = Client::connect(&router).await;
    client
        .send(format!("HEAD /page HTTP/1.1\r\nHost: {WEB}\r\n\r\n"))
        .await;
    let r = client.reply_to_head().await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.one("content-length"), "5");
    assert!(r.body.is_empty());

    client.send(get("/page")).await;
    let r = client.reply().await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "hello");
    let seen = web.seen();
    assert_eq!(
        seen.iter().map(Seen::method).collect::<Vec<_>>(),
        ["HEAD", "GET"]
    );
    assert!(seen.iter().all(Seen::by_lane), "{seen:?}");
    router.stop().await;
}

#[tokio::test]
async fn an_app_closing_its_kept_connections_never_costs_a_get_a_502() {
    // Each answer is complete and says nothing of closing; the app closes anyway.
    let web =
        raw_app(|seen| Answer::keep(ok_with(&format!("at {}", seen.path()))).then(Then::Close))
            .await;
    let router = router_for(&[&web]).await;

    let mut client = Client::connect(&router).await;
    // Back to back, and with time for the app's close to arrive before the next request.
    for (i, pause) in [0, 0, 0, 100, 100, 100].into_iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let path = format!("/{i}");
        client.send(get(&path)).await;
        let r = client.reply().await;
        assert_eq!(r.status, 200, "request {i}: {r:?}");
        assert_eq!(r.text(), format!("at {path}"));
    }
    // Each request reached the app once, each on a connection of its own.
    assert_eq!(web.hits(), 6);
    assert_eq!(web.connections(), 6);
    assert!(web.seen().iter().all(Seen::by_lane));
    router.stop().await;
}

#[tokio::test]
async fn an_early_hints_answer_is_passed_over_for_the_final_one() {
    const HINTS: &str = "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n";
    let web = raw_app(|seen| match seen.path() {
        // The hints and the answer in separate writes...
        "/apart" => Answer::pieces(
            &[HINTS, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\napart"],
            Then::Keep,
        ),
        // ...and in one.
        _ => Answer::keep(format!(
            "{HINTS}HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\ntogether"
        )),
    })
    .await;
    let router = router_for(&[&web]).await;

    let mut client = Client::connect(&router).await;
    for path in ["/apart", "/together"] {
        client.send(get(path)).await;
        let r = client.reply().await;
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert_eq!(format!("/{}", r.text()), path);
    }
    assert!(web.seen().iter().all(Seen::by_lane));
    router.stop().await;
}

// ---- broken answers ----

#[tokio::test]
async fn answers_that_cannot_be_relayed_are_502s_and_the_connection_stays_good() {
    let web = raw_app(|seen| match seen.path() {
        // Switching protocols when no upgrade was asked for.
        "/switch" => Answer::keep(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        )
        .then(Then::Hang),
        // Two lengths that disagree.
        "/conflict" => {
            Answer::keep("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")
        }
        _ => Answer::keep(ok_with("fine")),
    })
    .await;
    let router = router_for(&[&web]).await;

    for (path, says) in [
        ("/switch", "switched protocols"),
        ("/conflict", "malformed response"),
    ] {
        let mut client = Client::connect(&router).await;
        client.send(get(path)).await;
        let r = client.reply().await;
        assert_eq!(r.status, 502, "{path}: {r:?}");
        assert_eq!(r.one("meridian-region"), "eu-fra");
        let (code, message) = r.error();
        assert_eq!(code, "bad_gateway");
        assert!(message.contains(says), "{path}: {message}");

        // The client's connection is still good.
        client.send(get("/fine")).await;
        let r = client.reply().await;
        assert_eq!((r.status, r.text().as_str()), (200, "fine"));
    }
    assert!(web.seen().iter().all(Seen::by_lane));
    router.stop().await;
}

// ---- what the app and the client are told ----

#[tokio::test]
async fn the_app_gets_forwarding_headers_and_no_hop_by_hop_ones() {
    let web = raw_app(|_| {
        Answer::keep(
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nMeridian-Region: fake\r\nMeridian-Route: fake\r\nX-App: 1\r\n\r\nok",
        )
    })
    .await;
    let router = router_for(&[&web]).await;

    let mut client = Client::connect(&router).await;
    client
        .send(format!(
            "GET /who?x=1 HTTP/1.1\r\nHost: {WEB}\r\nX-Forwarded-For: 203.0.113.7\r\n\
             Connection: keep-alive\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic c2VjcmV0\r\n\
             Meridian-Client-Region: fake\r\nCookie: a=1\r\n\r\n"
        ))
        .await;
    let r = client.reply().await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "ok");
    // The app's word on regions is replaced by the router's.
    assert_eq!(r.all("meridian-region"), ["eu-fra"], "{r:?}");
    assert_eq!(r.all("meridian-route"), ["nearest"], "{r:?}");
    assert_eq!(r.one("x-app"), "1");

    let seen = web.seen();
    assert_eq!(seen.len(), 1);
    let app = &seen[0];
    assert!(app.by_lane(), "{}", app.head);
    assert!(
        app.head.starts_with("GET /who?x=1 HTTP/1.1\r\n"),
        "{}",
        app.head
    );
    assert_eq!(app.all("host"), [WEB]);
    let chain = app.all("x-forwarded-for");
    assert_eq!(chain.len(), 1, "{}", app.head);
    assert!(chain[0].ends_with("127.0.0.1"), "{}", app.head);
    assert_eq!(chain[0], "203.0.113.7, 127.0.0.1");
    assert_eq!(app.all("x-forwarded-proto"), ["http"]);
    assert_eq!(app.all("x-forwarded-host"), [WEB]);
    // New York is nearest us-iad.
    assert_eq!(app.all("meridian-client-region"), ["us-iad"]);
    assert_eq!(app.all("cookie"), ["a=1"]);
    for hop_by_hop in ["connection", "keep-alive", "proxy-authorization"] {
        assert!(app.all(hop_by_hop).is_empty(), "{hop_by_hop}: {}", app.head);
    }
    router.stop().await;
}

// ---- the general path takes over ----

#[tokio::test]
async fn the_general_path_takes_over_mid_connection() {
    let web = raw_app(|seen| Answer::keep(ok_with(&format!("at {}", seen.path())))).await;
    let router = router_for(&[&web]).await;

    // A plain GET for the lane, then an HTTP/1.0 one for the general path.
    let mut client = Client::connect(&router).await;
    client.send(get("/new")).await;
    let r = client.reply().await;
    assert_eq!((r.status, r.text().as_str()), (200, "at /new"));
    assert_eq!(r.version, "HTTP/1.1");
    client
        .send(format!("GET /old HTTP/1.0\r\nHost: {WEB}\r\n\r\n"))
        .await;
    let r = client.reply().await;
    assert_eq!((r.status, r.text().as_str()), (200, "at /old"), "{r:?}");
    assert_eq!(r.one("meridian-region"), "eu-fra");
    // HTTP/1.0 without keep-alive: that was the last response.
    client.closed().await;
    let seen = web.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen[0].by_lane(), "{}", seen[0].head);
    assert!(!seen[1].by_lane(), "{}", seen[1].head);

    // A good request, then one for a host no app is served at, then a good one again.
    let mut client = Client::connect(&router).await;
    client.send(get("/first")).await;
    let r = client.reply().await;
    assert_eq!((r.status, r.text().as_str()), (200, "at /first"));
    client
        .send("GET / HTTP/1.1\r\nHost: nope.meridian.localhost\r\n\r\n")
        .await;
    let r = client.reply().await;
    assert_eq!(r.status, 404, "{r:?}");
    let (code, message) = r.error();
    assert_eq!(code, "unknown_app");
    assert_eq!(message, "no app is served at nope.meridian.localhost");
    client.send(get("/last")).await;
    let r = client.reply().await;
    assert_eq!((r.status, r.text().as_str()), (200, "at /last"));
    assert_eq!(
        web.seen().iter().map(Seen::path).collect::<Vec<_>>(),
        ["/new", "/old", "/first", "/last"]
    );
    router.stop().await;
}

#[tokio::test]
async fn connection_close_from_the_client_closes_after_the_response() {
    let web = raw_app(|_| Answer::keep(ok_with("bye"))).await;
    let router = router_for(&[&web]).await;

    let mut client = Client::connect(&router).await;
    client
        .send(format!(
            "GET / HTTP/1.1\r\nHost: {WEB}\r\nConnection: close\r\n\r\n"
        ))
        .await;
    let r = client.reply().await;
    assert_eq!((r.status, r.text().as_str()), (200, "bye"));
    assert_eq!(r.one("connection"), "close");
    client.closed().await;
    let seen = web.seen();
    assert!(seen[0].by_lane(), "{}", seen[0].head);
    assert!(seen[0].all("connection").is_empty(), "{}", seen[0].head);
    router.stop().await;
}

// ---- no answer ----

#[tokio::test]
async fn an_app_that_never_answers_is_a_504_after_the_request_timeout() {
    let web = raw_app(|_| Answer::pieces(&[], Then::Hang)).await;
    let mut config = config("eu-fra");
    config.request_timeout = Duration::from_millis(300);
    let router = router_with(config, &[web.address()]).await;

    let mut client = Client::connect(&router).await;
    let sent = Instant::now();
    client.send(get("/slow")).await;
    let r = client.reply().await;
    let waited = sent.elapsed();
    assert_eq!(r.status, 504, "{r:?}");
    assert_eq!(r.error().0, "gateway_timeout");
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    assert_eq!(web.hits(), 1);
    router.stop().await;
}

#[tokio::test]
async fn an_instance_with_nothing_listening_is_a_502_saying_so() {
    let router = router_with(config("eu-fra"), &[refused_address().await]).await;

    let mut client = Client::connect(&router).await;
    client.send(get("/")).await;
    let r = client.reply().await;
    assert_eq!(r.status, 502, "{r:?}");
    let (code, message) = r.error();
    // Nothing reached the app: the code says so, so a forwarding router may try elsewhere.
    assert_eq!(code, "instance_unreachable");
    assert_eq!(
        message,
        "no instance of web in eu-fra accepted a connection"
    );
    router.stop().await;
}

#[tokio::test]
async fn a_post_whose_app_hangs_up_unanswered_is_a_502_and_not_retried() {
    // Two instances that read the request and close without a word: another attempt would
    // reach the second.
    let hang_up = || raw_app(|_| Answer::pieces(&[], Then::Close));
    let (a, b) = (hang_up().await, hang_up().await);
    let router = router_for(&[&a, &b]).await;

    let mut client = Client::connect(&router).await;
    client
        .send(format!(
            "POST /order HTTP/1.1\r\nHost: {WEB}\r\nContent-Length: 6\r\n\r\nitem=1"
        ))
        .await;
    let r = client.reply().await;
    assert_eq!(r.status, 502, "{r:?}");
    let (code, message) = r.error();
    assert_eq!(code, "bad_gateway");
    assert!(message.contains("failed before answering"), "{message}");
    // The POST may have had effects: it was sent once.
    let seen: Vec<Seen> = a.seen().into_iter().chain(b.seen()).collect();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].by_lane(), "{}", seen[0].head);
    assert_eq!(seen[0].body, b"item=1");
    router.stop().await;
}
