//! Test fixtures shared by the integration tests: in-process backends and routers on
//! 127.0.0.1, route tables, client places, and a plain HTTP client. Each test binary uses part
//! of them.
#![allow(dead_code)]

use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, UPGRADE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use meridian_api::routing::{RouteApp, RouteInstance, RouteRegion, RouteTable, RouterEntry};
use meridian_core::route::{ClientPlace, GeoPoint, LocatedBy};
use meridian_core::{CountryCode, Name};
use meridian_geo::TrustedProxies;
use meridian_router::table::RoutingTable;
use meridian_router::{Locate, Router, RouterConfig};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

pub type BoxError = Box<dyn StdError + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;

pub const APPS_DOMAIN: &str = "meridian.localhost";
pub const WEB: &str = "web.meridian.localhost";

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|e: Infallible| match e {})
        .boxed()
}

pub fn empty() -> Body {
    Empty::new().map_err(|e: Infallible| match e {}).boxed()
}

pub fn name(s: &str) -> Name {
    Name::parse(s).unwrap()
}

/// Polls `f` until it holds, for at most ten seconds.
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

// ---- backends ----

/// An in-process HTTP server standing for an app instance; counts the requests it gets.
pub struct Backend {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Backend {
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn address(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A backend answering every request with `handler` (HTTP/1.1, upgrades allowed).
pub async fn backend<F, Fut>(handler: F) -> Backend
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&hits);
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handler = handler.clone();
            let hits = Arc::clone(&counted);
            connections.spawn(async move {
                let service = service_fn(move |req| {
                    hits.fetch_add(1, Ordering::SeqCst);
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let builder = auto::Builder::new(TokioExecutor::new());
                let _ = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Backend { addr, hits, task }
}

/// A backend that answers `200 <name>` and echoes what the router told it in headers:
/// `x-seen-<header>` for each header the tests look at.
pub async fn echo(name: &'static str) -> Backend {
    backend(move |req: Request<Incoming>| async move {
        let mut response = Response::new(full(name));
        for h in [
            "host",
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-host",
            "meridian-client-region",
            "meridian-hop",
            "connection",
            "x-private",
        ] {
            if let Some(v) = req.headers().get(h) {
                let seen = http::HeaderName::try_from(format!("x-seen-{h}")).unwrap();
                response.headers_mut().insert(seen, v.clone());
            }
        }
        response
            .headers_mut()
            .insert("x-backend", HeaderValue::from_static(name));
        response
    })
    .await
}

/// An address nothing listens on: connections to it are refused.
pub async fn refused_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr.to_string()
}

// ---- route tables ----

/// eu-fra (Frankfurt), eu-ams (Amsterdam) and us-iad (Ashburn).
pub fn regions() -> Vec<RouteRegion> {
    [
        ("eu-fra", "DE", 50.11, 8.68),
        ("eu-ams", "NL", 52.37, 4.90),
        ("us-iad", "US", 38.95, -77.45),
    ]
    .into_iter()
    .map(|(name, country, latitude, longitude)| RouteRegion {
        name: name.into(),
        country: country.into(),
        latitude,
        longitude,
    })
    .collect()
}

/// An app with instances at `instances` (region, address).
pub fn app(name: &str, residency: &[&str], instances: &[(&str, String)]) -> RouteApp {
    RouteApp {
        name: name.into(),
        residency: residency.iter().map(|s| s.to_string()).collect(),
        origin_bound: vec![],
        domains: vec![],
        instances: instances
            .iter()
            .enumerate()
            .map(|(i, (region, address))| RouteInstance {
                id: format!("{name}-{i}"),
                node: format!("{region}-node"),
                region: region.to_string(),
                address: address.clone(),
            })
            .collect(),
    }
}

pub fn router_entry(region: &str, addr: &str) -> RouterEntry {
    RouterEntry {
        name: format!("router-{region}"),
        region: region.into(),
        url: format!("http://{addr}"),
    }
}

pub fn table(apps: Vec<RouteApp>, routers: Vec<RouterEntry>) -> RouteTable {
    RouteTable {
        version: 1,
        applied: 0,
        apps_domain: APPS_DOMAIN.into(),
        regions: regions(),
        jurisdictions: Default::default(),
        routers,
        apps,
    }
}

// ---- client places ----

pub fn place(country: &str, latitude: f64, longitude: f64) -> ClientPlace {
    ClientPlace {
        point: GeoPoint {
            latitude,
            longitude,
        },
        country: CountryCode::parse(country).unwrap(),
        located_by: LocatedBy::GeoMap,
    }
}

/// Every client is in Paris.
pub fn in_paris() -> impl Locate {
    |_| place("FR", 48.86, 2.35)
}

/// Every client is in New York.
pub fn in_new_york() -> impl Locate {
    |_| place("US", 40.71, -74.01)
}

// ---- routers ----

/// A router serving on 127.0.0.1 until stopped.
pub struct TestRouter {
    pub addr: SocketAddr,
    pub router: Router,
    pub table: watch::Sender<Arc<RoutingTable>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestRouter {
    /// Stops the router and waits for it to finish.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let done = tokio::time::timeout(Duration::from_secs(10), self.task.take().unwrap())
            .await
            .expect("the router stops within 10 s");
        done.unwrap().unwrap();
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for TestRouter {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Settings for a router in `region` that trusts other routers on 127.0.0.1.
pub fn config(region: &str) -> RouterConfig {
    let mut config = RouterConfig::default_for(name(region));
    config.trusted_proxies = TrustedProxies::parse("127.0.0.1").unwrap();
    config.connect_timeout = Duration::from_millis(500);
    config.request_timeout = Duration::from_secs(10);
    config
}

/// Binds a listener for a router to be started with [`start_on`].
pub async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

pub async fn start(config: RouterConfig, table: RouteTable, locate: impl Locate) -> TestRouter {
    start_on(listener().await, config, table, locate).await
}

pub async fn start_on(
    listener: TcpListener,
    config: RouterConfig,
    table: RouteTable,
    locate: impl Locate,
) -> TestRouter {
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = watch::channel(Arc::new(RoutingTable::from_wire(&table)));
    let router = Router::new(config, rx, Arc::new(locate));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(router.clone().serve(listener, async move {
        let _ = stopped.await;
    }));
    TestRouter {
        addr,
        router,
        table: tx,
        stop: Some(stop),
        task: Some(task),
    }
}

// ---- client ----

pub type HttpClient = Client<HttpConnector, Body>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends `method path` for `host` to `to`, with extra `headers` and `body`.
pub async fn send(
    client: &HttpClient,
    to: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Body,
) -> Response<Incoming> {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{to}{path}"))
        .header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    client.request(req.body(body).unwrap()).await.unwrap()
}

pub async fn get(to: SocketAddr, host: &str, path: &str) -> Response<Incoming> {
    send(&client(), to, "GET", host, path, &[], empty()).await
}

/// The whole body, as text.
pub async fn text(response: Response<Incoming>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The `{"error":{"code":..}}` of a refusal.
pub async fn error_code(response: Response<Incoming>) -> String {
    let body = text(response).await;
    let v: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["error"]["code"].as_str().unwrap().to_string()
}

pub fn header<'r, B>(response: &'r Response<B>, name: &str) -> &'r str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

pub fn ok() -> StatusCode {
    StatusCode::OK
}

/// A backend that reads a request, starts a response and hangs up mid-headers.
pub async fn breaks_mid_response() -> Backend {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&hits);
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let hits = Arc::clone(&counted);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                hits.fetch_add(1, Ordering::SeqCst);
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Le").await;
            });
        }
    });
    Backend { addr, hits, task }
}

/// A backend that switches `Upgrade: websocket` requests to an echo of raw bytes.
pub async fn upgrading_echo() -> Backend {
    backend(|mut req: Request<Incoming>| async move {
        if req.headers().get(UPGRADE).is_none() {
            return Response::new(full("not upgraded"));
        }
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let upgraded = upgrade.await.unwrap();
            let (mut read, mut write) = tokio::io::split(TokioIo::new(upgraded));
            let _ = tokio::io::copy(&mut read, &mut write).await;
        });
        let mut r = Response::new(empty());
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("upgrade"));
        r.headers_mut()
            .insert(UPGRADE, HeaderValue::from_static("websocket"));
        r
    })
    .await
}

/// Opens a WebSocket-style upgrade through `to` for `host`, checks that bytes come back
/// echoed, and returns the response head in lowercase.
pub async fn talk_through_upgrade(to: SocketAddr, host: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(to).await.unwrap();
    let request = format!(
        "GET /socket HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).await.unwrap(), 1, "closed mid-head");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    for message in ["ping", "a longer message, sent after the first"] {
        s.write_all(message.as_bytes()).await.unwrap();
        let mut echoed = vec![0u8; message.len()];
        s.read_exact(&mut echoed).await.unwrap();
        assert_eq!(echoed, message.as_bytes());
    }
    head
}
