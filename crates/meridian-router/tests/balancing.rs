//! Spreading requests over a region's backends, and what happens when one fails: ejection,
//! retries where they are safe, and no retry where they are not.

mod support;

use std::time::Duration;

use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use support::*;
use tokio::sync::watch;

/// A backend that holds every request until `release` turns true.
async fn held(name: &'static str, release: watch::Receiver<bool>) -> Backend {
    backend(move |_req: Request<Incoming>| {
        let mut release = release.clone();
        async move {
            let _ = release.wait_for(|go| *go).await;
            http::Response::new(full(name))
        }
    })
    .await
}

#[tokio::test]
async fn concurrent_slow_requests_spread_by_fewest_in_flight() {
    let (release, wait) = watch::channel(false);
    let (a, b) = (held("a", wait.clone()).await, held("b", wait).await);
    let wire = table(
        vec![app(
            "web",
            &[],
            &[("eu-fra", a.address()), ("eu-fra", b.address())],
        )],
        vec![],
    );
    let router = start(config("eu-fra"), wire, in_paris()).await;
    let client = client();
    let mut pending = Vec::new();
    for i in 1..=6 {
        let (client, addr) = (client.clone(), router.addr);
        pending.push(tokio::spawn(async move {
            let r = send(&client, addr, "GET", WEB, "/", &[], empty()).await;
            (r.status(), text(r).await)
        }));
        // One at a time, so each choice sees the ones before it in flight.
        eventually("the request reaches a backend", || a.hits() + b.hits() == i).await;
    }
    assert_eq!((a.hits(), b.hits()), (3, 3));
    release.send(true).unwrap();
    let mut served = Vec::new();
    for p in pending {
        let (status, body) = p.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        served.push(body);
    }
    served.sort();
    assert_eq!(served, ["a", "a", "a", "b", "b", "b"]);
    router.stop().await;
}

/// A backend that answers with the request's method and body.
async fn echo_body() -> Backend {
    backend(|req: Request<Incoming>| async move {
        let method = req.method().to_string();
        let body = req.into_body().collect().await.unwrap().to_bytes();
        http::Response::new(full(format!("{method} {}", String::from_utf8_lossy(&body))))
    })
    .await
}

fn ejections(metrics: &str) -> &str {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("meridian_router_backend_ejections_total "))
        .unwrap()
}

#[tokio::test]
async fn a_refused_backend_is_ejected_and_the_request_served_by_another() {
    // The refused backend is listed first, so a fresh router's first choice is it.
    for (method, body, answer) in [
        ("GET", "", "GET "),
        ("POST", "", "POST "),
        ("POST", "form=1", "POST form=1"),
    ] {
        let live = echo_body().await;
        let instances = [
            ("eu-fra", refused_address().await),
            ("eu-fra", live.address()),
        ];
        let wire = table(vec![app("web", &[], &instances)], vec![]);
        let router = start(config("eu-fra"), wire, in_paris()).await;
        let client = client();
        for _ in 0..4 {
            let r = send(&client, router.addr, method, WEB, "/", &[], full(body)).await;
            assert_eq!(r.status(), StatusCode::OK, "{method} {body:?}");
            assert_eq!(text(r).await, answer);
        }
        assert_eq!(live.hits(), 4);
        // Ejected once, then skipped without another try.
        assert_eq!(
            ejections(&router.router.metrics_text()),
            "1",
            "{method} {body:?}"
        );
        router.stop().await;
    }
}

#[tokio::test]
async fn a_post_whose_backend_breaks_is_not_retried_but_a_get_is() {
    let broken = breaks_mid_response().await;
    let live = echo("live").await;
    let wire = table(
        vec![app(
            "web",
            &[],
            &[("eu-fra", broken.address()), ("eu-fra", live.address())],
        )],
        vec![],
    );
    let router = start(config("eu-fra"), wire, in_paris()).await;
    let client = client();

    // First choice: the broken backend. The POST may have had effects there: 502.
    let r = send(&client, router.addr, "POST", WEB, "/", &[], empty()).await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(error_code(r).await, "bad_gateway");
    assert_eq!((broken.hits(), live.hits()), (1, 0));

    // GETs are retried on the other backend; the choices alternate, so one of two meets the
    // broken backend first.
    for _ in 0..2 {
        let r = send(&client, router.addr, "GET", WEB, "/", &[], empty()).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(text(r).await, "live");
    }
    assert_eq!((broken.hits(), live.hits()), (2, 2));
    // A broken answer is not a refused connection: nothing was ejected.
    assert_eq!(ejections(&router.router.metrics_text()), "0");
    router.stop().await;
}

#[tokio::test]
async fn when_every_backend_is_ejected_they_are_tried_anyway() {
    let live = echo("live").await;
    let address = live.address();
    drop(live);
    let wire = table(
        vec![app("web", &[], &[("eu-fra", address.clone())])],
        vec![],
    );
    let router = start(config("eu-fra"), wire, in_paris()).await;
    let r = get(router.addr, WEB, "/").await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(error_code(r).await, "instance_unreachable");
    // The instance comes back within its ejection: the region is not written off.
    let listener = tokio::net::TcpListener::bind(&address).await.unwrap();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let service = hyper::service::service_fn(|_req| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(full("back")))
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
            .await;
    });
    let r = tokio::time::timeout(Duration::from_secs(5), get(router.addr, WEB, "/"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(text(r).await, "back");
    router.stop().await;
    server.await.unwrap();
}
