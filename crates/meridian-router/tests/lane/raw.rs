//! The fast-lane tests' own harness: apps that are raw TCP servers writing exact bytes, and
//! clients that write exact requests and read exact responses.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meridian_api::routing::RouteTable;
use meridian_router::RouterConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::support::*;
/// Longest wait for any read or write: a hang fails the test instead of hanging it.
pub const WAIT: Duration = Duration::from_secs(5);
/// Between the pieces of an answer an app writes in several writes.
pub const PAUSE: Duration = Duration::from_millis(20);

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The fields of a head (its first line skipped), names as written.
pub fn fields_of(head: &str) -> Vec<(String, String)> {
    head.split("\r\n")
        .skip(1)
        .take_while(|line| !line.is_empty())
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            (name.to_string(), value.trim().to_string())
        })
        .collect()
}

pub fn values<'f>(fields: &'f [(String, String)], name: &str) -> Vec<&'f str> {
    fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Compares two large byte strings without printing them.
pub fn assert_same(got: &[u8], want: &[u8], what: &str) {
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
pub struct Seen {
    pub head: String,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn method(&self) -> &str {
        self.head.split(' ').next().unwrap_or("")
    }

    pub fn path(&self) -> &str {
        self.head.split(' ').nth(1).unwrap_or("")
    }

    pub fn fields(&self) -> Vec<(String, String)> {
        fields_of(&self.head)
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        values(&self.fields(), name)
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    /// Whether the fast lane relayed it. The lane passes the client's field names through
    /// as written, while the general path writes them in lowercase; the clients here always
    /// write `Host`.
    pub fn by_lane(&self) -> bool {
        self.head.contains("\r\nHost: ")
    }
}

/// What an app does after reading a request.
pub enum Then {
    /// Reads the next request on the same connection.
    Keep,
    /// Closes the connection.
    Close,
    /// Keeps the connection open and never reads or writes again.
    Hang,
}

/// An app's answer: bytes written in pieces, `PAUSE` apart, then what happens next.
pub struct Answer {
    pub pieces: Vec<Vec<u8>>,
    pub then: Then,
}

impl Answer {
    pub fn keep(bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            pieces: vec![bytes.into()],
            then: Then::Keep,
        }
    }

    pub fn pieces(pieces: &[&str], then: Then) -> Self {
        Self {
            pieces: pieces.iter().map(|p| p.as_bytes().to_vec()).collect(),
            then,
        }
    }

    pub fn then(mut self, then: Then) -> Self {
        self.then = then;
        self
    }
}

/// `200 OK` with `body` and its `Content-Length`.
pub fn ok_with(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// An app instance on a raw TCP listener: it reads each request (head, and a body of its
/// `Content-Length`), records it, and writes what `answer` says, byte for byte.
pub struct RawApp {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub connections: Arc<AtomicUsize>,
    pub task: JoinHandle<()>,
}

impl RawApp {
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn hits(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for RawApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn raw_app<F>(answer: F) -> RawApp
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

pub async fn serve_raw<F>(mut stream: TcpStream, answer: Arc<F>, seen: Arc<Mutex<Vec<Seen>>>)
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
pub fn web_in_fra(addresses: &[String]) -> RouteTable {
    let instances: Vec<(&str, String)> = addresses.iter().map(|a| ("eu-fra", a.clone())).collect();
    table(vec![app("web", &[], &instances)], vec![])
}

/// A router in eu-fra for `web` at `addresses`. Its clients are in New York, and eu-fra is
/// the only region with instances, so it serves them itself.
pub async fn router_with(config: RouterConfig, addresses: &[String]) -> TestRouter {
    start(config, web_in_fra(addresses), in_new_york()).await
}

pub async fn router_for(apps: &[&RawApp]) -> TestRouter {
    let addresses: Vec<String> = apps.iter().map(|a| a.address()).collect();
    router_with(config("eu-fra"), &addresses).await
}

// ---- clients that read exact bytes ----

pub fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {WEB}\r\n\r\n")
}

/// A response as the client read it. `body` is as it came on the wire: a chunked body with
/// its chunk lines and trailer.
#[derive(Debug)]
pub struct Reply {
    pub version: String,
    pub status: u16,
    pub fields: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn all(&self, name: &str) -> Vec<&str> {
        values(&self.fields, name)
    }

    /// The value of a field that must appear exactly once.
    pub fn one(&self, name: &str) -> &str {
        match self.all(name)[..] {
            [value] => value,
            ref found => panic!("{name}: {found:?} in {self:?}"),
        }
    }

    pub fn has(&self, name: &str) -> bool {
        !self.all(name).is_empty()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `(code, message)` of one of the router's refusals.
    pub fn error(&self) -> (String, String) {
        assert_eq!(self.one("content-type"), "application/json", "{self:?}");
        let v: serde_json::Value =
            serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()));
        let field = |f: &str| v["error"][f].as_str().unwrap().to_string();
        (field("code"), field("message"))
    }
}

/// A raw client connection to a router.
pub struct Client {
    pub stream: TcpStream,
    /// Bytes read and not yet taken.
    pub buf: Vec<u8>,
}

impl Client {
    pub async fn connect(router: &TestRouter) -> Self {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(router.addr))
            .await
            .expect("connected in time")
            .unwrap();
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        tokio::time::timeout(WAIT, self.stream.write_all(bytes.as_ref()))
            .await
            .expect("the router took the request in time")
            .unwrap();
    }

    /// Reads more; 0 when the router closed the connection.
    pub async fn more(&mut self) -> usize {
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
    pub async fn need(&mut self, len: usize) {
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
    pub async fn line_end(&mut self, from: usize) -> usize {
        loop {
            if let Some(i) = find(&self.buf[from..], b"\r\n") {
                return from + i;
            }
            let len = self.buf.len();
            self.need(len + 1).await;
        }
    }

    /// The response to a request other than HEAD.
    pub async fn reply(&mut self) -> Reply {
        self.read_reply(false).await
    }

    pub async fn reply_to_head(&mut self) -> Reply {
        self.read_reply(true).await
    }

    pub async fn read_reply(&mut self, head_method: bool) -> Reply {
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
    pub async fn chunked_body(&mut self) -> Vec<u8> {
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
    pub async fn closed(&mut self) {
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
