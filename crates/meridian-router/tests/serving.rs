//! Serving from the router's own region: finding the app, what the app and the client are
//! told, refusals, HTTP/2 and metrics.

mod support;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn serves_by_apps_domain_and_custom_domain() {
    let web = echo("fra-1").await;
    let mut wire = app("web", &[], &[("eu-fra", web.address())]);
    wire.domains = vec!["shop.example.com".into()];
    let router = start(config("eu-fra"), table(vec![wire], vec![]), in_new_york()).await;

    let r = send(
        &client(),
        router.addr,
        "GET",
        "web.meridian.localhost:8080",
        "/hello?x=1",
        &[
            ("x-forwarded-for", "6.6.6.6"),
            ("connection", "x-private"),
            ("x-private", "1"),
        ],
        empty(),
    )
    .await;
    assert_eq!(r.status(), ok());
    assert_eq!(header(&r, "meridian-region"), "eu-fra");
    assert_eq!(header(&r, "meridian-route"), "nearest");
    // The app sees its own host, the client's chain with the peer appended, and the region
    // nearest the client (New York: us-iad), never hop-by-hop headers.
    assert_eq!(header(&r, "x-seen-host"), "web.meridian.localhost:8080");
    assert_eq!(header(&r, "x-seen-x-forwarded-for"), "6.6.6.6, 127.0.0.1");
    assert_eq!(header(&r, "x-seen-x-forwarded-proto"), "http");
    assert_eq!(
        header(&r, "x-seen-x-forwarded-host"),
        "web.meridian.localhost:8080"
    );
    assert_eq!(header(&r, "x-seen-meridian-client-region"), "us-iad");
    assert!(r.headers().get("x-seen-connection").is_none());
    assert!(r.headers().get("x-seen-x-private").is_none());
    assert_eq!(text(r).await, "fra-1");

    let r = get(router.addr, "Shop.Example.com", "/").await;
    assert_eq!(r.status(), ok());
    assert_eq!(header(&r, "x-seen-host"), "Shop.Example.com");
    assert_eq!(text(r).await, "fra-1");
    assert_eq!(web.hits(), 2);
    router.stop().await;
}

#[tokio::test]
async fn an_unknown_host_is_a_404_in_json_or_html() {
    let web = echo("fra-1").await;
    let wire = table(vec![app("web", &[], &[("eu-fra", web.address())])], vec![]);
    let router = start(config("eu-fra"), wire, in_paris()).await;

    let r = get(router.addr, "nope.meridian.localhost", "/").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(&r, "content-type"), "application/json");
    let body = text(r).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "unknown_app");
    assert_eq!(
        v["error"]["message"],
        "no app is served at nope.meridian.localhost"
    );

    let r = send(
        &client(),
        router.addr,
        "GET",
        "example.org",
        "/",
        &[("accept", "text/html,application/xhtml+xml,*/*;q=0.8")],
        empty(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(header(&r, "content-type").starts_with("text/html"));
    assert!(text(r).await.contains("no app is served at example.org"));
    assert_eq!(web.hits(), 0);
    router.stop().await;
}

#[tokio::test]
async fn no_allowed_instance_is_a_503_and_the_disallowed_one_gets_nothing() {
    // Residency keeps the app in the EU; its only instance runs in the US.
    let us = echo("iad-1").await;
    let wire = table(
        vec![app("web", &["EU"], &[("us-iad", us.address())])],
        vec![],
    );
    let router = start(config("us-iad"), wire, in_new_york()).await;

    let r = get(router.addr, WEB, "/").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&r, "meridian-route"), "no_healthy_instance");
    assert_eq!(header(&r, "meridian-region"), "us-iad");
    let body = text(r).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "no_healthy_instance");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("(EU)"),
        "{body}"
    );
    assert_eq!(us.hits(), 0);

    let metrics = router.router.metrics_text();
    assert!(
        metrics
            .contains(r#"meridian_router_no_route_total{app="web",code="no_healthy_instance"} 1"#),
        "{metrics}"
    );
    assert!(metrics
        .contains(r#"meridian_router_requests_total{app="web",region="us-iad",class="5xx"} 1"#));
    router.stop().await;
}

/// Sends raw bytes and returns the status line.
async fn raw(addr: std::net::SocketAddr, request: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !out.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
async fn bad_or_missing_hosts_are_400s() {
    let web = echo("fra-1").await;
    let wire = table(vec![app("web", &[], &[("eu-fra", web.address())])], vec![]);
    let router = start(config("eu-fra"), wire, in_paris()).await;
    for request in [
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.0\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: web meridian localhost\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: web.meridian.localhost\r\nHost: other.example.com\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: é.example.com\r\n\r\n",
    ] {
        let status = raw(router.addr, request).await;
        assert!(status.contains(" 400 "), "{request:?}: {status}");
    }
    // Absurd headers are refused before they reach the router's logic.
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: {WEB}\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let status = raw(router.addr, &huge).await;
    assert!(status.starts_with("HTTP/1.1 4"), "{status}");
    assert_eq!(web.hits(), 0);
    // The router is still fine.
    assert_eq!(get(router.addr, WEB, "/").await.status(), ok());
    router.stop().await;
}

#[tokio::test]
async fn an_http2_prior_knowledge_client_is_served() {
    let web = echo("fra-1").await;
    let wire = table(vec![app("web", &[], &[("eu-fra", web.address())])], vec![]);
    let router = start(config("eu-fra"), wire, in_paris()).await;

    let stream = tokio::net::TcpStream::connect(router.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    for path in ["/a", "/b"] {
        let req = Request::builder()
            .uri(format!("http://{WEB}{path}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let r = sender.send_request(req).await.unwrap();
        assert_eq!(r.status(), ok());
        assert_eq!(r.version(), http::Version::HTTP_2);
        assert_eq!(header(&r, "meridian-region"), "eu-fra");
        // The :authority became the app's Host.
        assert_eq!(header(&r, "x-seen-host"), WEB);
        let body = r.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "fra-1");
    }
    drop(sender);
    conn.await.unwrap().unwrap();
    assert_eq!(web.hits(), 2);
    router.stop().await;
}

#[tokio::test]
async fn metrics_count_requests_by_app_region_and_class() {
    let web = echo("fra-1").await;
    let wire = table(vec![app("web", &[], &[("eu-fra", web.address())])], vec![]);
    let router = start(config("eu-fra"), wire, in_paris()).await;
    for _ in 0..3 {
        assert_eq!(get(router.addr, WEB, "/").await.status(), ok());
    }
    let text = router.router.metrics_text();
    for line in [
        r#"meridian_router_requests_total{app="web",region="eu-fra",class="2xx"} 3"#,
        r#"meridian_router_request_duration_seconds_count{app="web",region="eu-fra"} 3"#,
        r#"meridian_router_request_duration_seconds_bucket{le="0.0005",app="web",region="eu-fra"}"#,
        r#"meridian_router_request_duration_seconds_bucket{le="10.0",app="web",region="eu-fra"} 3"#,
        "# TYPE meridian_router_forwarded counter",
        "meridian_router_backend_ejections_total 0",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    router.stop().await;
}
