//! The relay over real loopback sockets: latency added, data intact, half-close forwarded,
//! failures surfaced, and the binary's config errors.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use meridian_relay::{serve, Route};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const DELAY: Duration = Duration::from_millis(50);

/// A server on 127.0.0.1:0 running `handle` for each connection.
async fn server<F, Fut>(handle: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(handle(stream));
        }
    });
    addr
}

/// Echoes everything, then closes its write side after the client's EOF.
async fn echo_server() -> SocketAddr {
    server(|mut s| async move {
        s.set_nodelay(true).unwrap();
        let (mut r, mut w) = s.split();
        tokio::io::copy(&mut r, &mut w).await.unwrap();
        w.shutdown().await.unwrap();
    })
    .await
}

/// A relay on 127.0.0.1:0 in front of `to`, delaying each direction by `delay`.
async fn relay(to: impl ToString, delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listen = listener.local_addr().unwrap();
    let route = Route {
        listen,
        to: to.to_string(),
        forward: delay,
        backward: delay,
    };
    tokio::spawn(serve(listener, route));
    listen
}

#[tokio::test]
async fn round_trip_takes_twice_the_one_way_delay() {
    let addr = relay(echo_server().await, DELAY).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.set_nodelay(true).unwrap();
    for i in 0..3u8 {
        let start = Instant::now();
        c.write_all(&[b'p', i]).await.unwrap();
        let mut reply = [0; 2];
        c.read_exact(&mut reply).await.unwrap();
        let rtt = start.elapsed();
        assert_eq!(reply, [b'p', i]);
        assert!(
            rtt >= 2 * DELAY,
            "round trip {i} took {rtt:?}, less than 2 × {DELAY:?}"
        );
    }
}

#[tokio::test]
async fn five_megabytes_pass_intact_both_ways() {
    let addr = relay(echo_server().await, DELAY).await;
    // Deterministic, non-repeating-looking bytes (xorshift), so reordering or loss shows up.
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    let data: Vec<u8> = (0..5 * 1024 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut c = TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = c.split();
    let send = async {
        // Uneven writes, so chunk boundaries vary.
        for piece in data.chunks(70_001) {
            w.write_all(piece).await.unwrap();
        }
        w.shutdown().await.unwrap();
    };
    let mut back = Vec::with_capacity(data.len());
    let ((), n) = tokio::join!(send, r.read_to_end(&mut back));
    assert_eq!(n.unwrap(), data.len());
    assert!(back == data, "echoed data differs from what was sent");
}

#[tokio::test]
async fn half_close_is_forwarded_and_the_tail_still_arrives() {
    // Replies only once it has seen the client's EOF, so the reply travels after the half-close.
    let addr = server(|mut s| async move {
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        s.write_all(format!("got {} bytes: ", got.len()).as_bytes())
            .await
            .unwrap();
        s.write_all(&got).await.unwrap();
        s.shutdown().await.unwrap();
    })
    .await;
    let addr = relay(addr, DELAY).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    c.write_all(b"hello").await.unwrap();
    c.shutdown().await.unwrap();
    let mut reply = String::new();
    c.read_to_string(&mut reply).await.unwrap();
    assert_eq!(reply, "got 5 bytes: hello");
    // The EOF itself was delayed too: it reached the server no sooner than the data.
    assert!(start.elapsed() >= 2 * DELAY, "{:?}", start.elapsed());
}

#[tokio::test]
async fn unreachable_target_closes_the_client() {
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let addr = relay(dead, DELAY).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0; 1];
    let read = tokio::time::timeout(Duration::from_secs(3), c.read(&mut buf)).await;
    match read.expect("relay left the client hanging") {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("read {n} bytes from a relay with no target"),
    }
}

#[tokio::test]
async fn target_is_resolved_by_name() {
    let echo = echo_server().await;
    let addr = relay(format!("localhost:{}", echo.port()), Duration::ZERO).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"hi").await.unwrap();
    c.shutdown().await.unwrap();
    let mut reply = Vec::new();
    c.read_to_end(&mut reply).await.unwrap();
    assert_eq!(reply, b"hi");
}

#[test]
fn bad_config_exits_2_naming_the_key() {
    let path =
        std::env::temp_dir().join(format!("meridian-relay-test-{}.toml", std::process::id()));
    std::fs::write(&path, "[delays]\n\"eu-fra/eu-ams\" = \"5ms\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meridian-relay"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("delays.\"eu-fra/eu-ams\": expected a non-negative integer"),
        "{stderr}"
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meridian-relay"))
        .args(["--listen", "0.0.0.0:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
