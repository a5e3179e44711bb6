//! The fast lane, over real sockets: plain HTTP/1.1 requests for an app served in the
//! router's own region are relayed over raw keep-alive connections, with the framing of each
//! message kept exact. The apps here are raw TCP servers that write exact bytes, and the
//! clients write exact requests and read exact responses, so every byte of framing is seen.

#[path = "lane/raw.rs"]
mod raw;
mod support;

use std::time::{Duration, Instant};

use raw::{get, *};
use support::*;

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
