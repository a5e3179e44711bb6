//! Hostile clients against a real server over TLS: guessing tokens is throttled per address
//! (429 with Retry-After, right guesses included), a head that never ends is cut off (30 s),
//! and a head with too many fields or past 64 KiB is refused (431).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_tests::{http_builder, pki, Cluster};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn client_at(ip: &str) -> reqwest::Client {
    http_builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_authentication_is_throttled_per_address() {
    let mut c = Cluster::start_with(1, &["--failed-auth-burst", "5"]).await;
    let admin = c.bootstrap().await;
    let url = c.url(0);
    let guesser = client_at("127.0.0.3");
    let apps = |client: &reqwest::Client, token: &str| {
        client
            .get(format!("{url}/v1/apps"))
            .bearer_auth(token)
            .send()
    };
    for i in 0..5 {
        let resp = apps(&guesser, &format!("guess.{i}.x")).await.unwrap();
        assert_eq!(resp.status(), 401, "guess {i}");
    }
    let resp = apps(&guesser, "guess.5.x").await.unwrap();
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp
        .headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=6).contains(&retry), "Retry-After {retry}");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    // A right guess from there is refused the same way: the answer says nothing.
    assert_eq!(apps(&guesser, &admin).await.unwrap().status(), 429);
    // Another address is not held back.
    assert_eq!(
        apps(&client_at("127.0.0.1"), &admin)
            .await
            .unwrap()
            .status(),
        200
    );
    // Nor, a refill later, the guesser's address with the right token.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(apps(&guesser, &admin).await.unwrap().status(), 200);
}

/// A TLS connection to server `i` of `c`, as a client without a certificate.
async fn tls_to(c: &Cluster, i: usize) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let config = meridian_tls::client_config(&pki().ca_file(), None).unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", c.servers[i].port))
        .await
        .unwrap();
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_head_that_never_ends_is_cut_off() {
    let c = Cluster::start(1).await;
    let mut tls = tls_to(&c, 0).await;
    tls.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let t = Instant::now();
    let mut buf = Vec::new();
    // The server gives up on the head and closes (answering 408 first, or not at all).
    let read = tokio::time::timeout(Duration::from_secs(60), tls.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection was still open after 60 s");
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_secs(25) && waited <= Duration::from_secs(45),
        "closed after {waited:?}"
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(buf.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_head_with_too_many_fields_is_refused() {
    let c = Cluster::start(1).await;
    let mut tls = tls_to(&c, 0).await;
    let mut head = String::from("GET /v1/health HTTP/1.1\r\nHost: x\r\n");
    for i in 0..200 {
        head.push_str(&format!("x-filler-{i}: y\r\n"));
    }
    head.push_str("\r\n");
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    // One field of 100 KiB: past the 64 KiB a head may take.
    let mut tls = tls_to(&c, 0).await;
    let head = format!(
        "GET /v1/health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
}
