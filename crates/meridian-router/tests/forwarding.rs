//! Requests another region must serve: forwarded once to that region's router, never twice,
//! and moved to the next allowed region when the winner's routers cannot be reached.

mod support;

use http::StatusCode;
use meridian_router::Locate;
use support::*;

/// Routers in eu-fra and us-iad that know each other.
struct TwoRegions {
    fra: TestRouter,
    iad: TestRouter,
}

/// Every client is in New York.
async fn two_regions(apps: Vec<meridian_api::routing::RouteApp>) -> TwoRegions {
    two_regions_placed(apps, in_new_york).await
}

/// Every client where `place` says.
async fn two_regions_placed<L: Locate + 'static>(
    apps: Vec<meridian_api::routing::RouteApp>,
    place: fn() -> L,
) -> TwoRegions {
    let (fra_listener, iad_listener) = (listener().await, listener().await);
    let routers = vec![
        router_entry("eu-fra", &fra_listener.local_addr().unwrap().to_string()),
        router_entry("us-iad", &iad_listener.local_addr().unwrap().to_string()),
    ];
    let wire = table(apps, routers);
    TwoRegions {
        fra: start_on(fra_listener, config("eu-fra"), wire.clone(), place()).await,
        iad: start_on(iad_listener, config("us-iad"), wire, place()).await,
    }
}

/// Requests a router forwarded, all apps and regions together.
fn forwarded(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("meridian_router_forwarded_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

impl TwoRegions {
    async fn stop(self) {
        self.fra.stop().await;
        self.iad.stop().await;
    }
}

#[tokio::test]
async fn a_us_client_is_served_by_the_only_healthy_region_through_its_router() {
    let fra_backend = echo("fra-1").await;
    let cluster = two_regions(vec![app("web", &[], &[("eu-fra", fra_backend.address())])]).await;

    // The client comes through a load balancer the us-iad router trusts.
    let r = send(
        &client(),
        cluster.iad.addr,
        "GET",
        WEB,
        "/",
        &[("x-forwarded-for", "203.0.113.7")],
        empty(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "meridian-region"), "eu-fra");
    assert_eq!(header(&r, "meridian-route"), "nearest");
    assert_eq!(header(&r, "x-seen-meridian-client-region"), "us-iad");
    let chain = header(&r, "x-seen-x-forwarded-for");
    assert!(chain.starts_with("203.0.113.7,"), "{chain}");
    assert_eq!(header(&r, "x-seen-host"), WEB);
    assert_eq!(header(&r, "x-seen-x-forwarded-host"), WEB);
    assert!(
        r.headers().get("x-seen-meridian-hop").is_none(),
        "the app never sees the hop"
    );
    assert_eq!(text(r).await, "fra-1");
    assert_eq!(fra_backend.hits(), 1);

    let iad = cluster.iad.router.metrics_text();
    for line in [
        r#"meridian_router_forwarded_total{app="web",region="eu-fra"} 1"#,
        r#"meridian_router_requests_total{app="web",region="eu-fra",class="2xx"} 1"#,
    ] {
        assert!(iad.contains(line), "{line} missing from\n{iad}");
    }
    let fra = cluster.fra.router.metrics_text();
    assert!(
        fra.contains(r#"meridian_router_requests_total{app="web",region="eu-fra",class="2xx"} 1"#)
    );
    assert_eq!(forwarded(&fra), 0, "{fra}");
    cluster.stop().await;
}

#[tokio::test]
async fn a_forwarded_request_is_never_forwarded_again() {
    let fra_backend = echo("fra-1").await;
    let cluster = two_regions(vec![app("web", &[], &[("eu-fra", fra_backend.address())])]).await;

    // us-iad holds no instance, and the request says it was forwarded already.
    let r = send(
        &client(),
        cluster.iad.addr,
        "GET",
        WEB,
        "/",
        &[("meridian-hop", "eu-fra")],
        empty(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::LOOP_DETECTED);
    assert_eq!(header(&r, "meridian-region"), "us-iad");
    assert_eq!(error_code(r).await, "forward_loop");
    assert_eq!(fra_backend.hits(), 0);
    assert_eq!(forwarded(&cluster.iad.router.metrics_text()), 0);
    assert!(!cluster
        .fra
        .router
        .metrics_text()
        .contains("meridian_router_requests_total{"));

    // Where the region may serve, a forwarded request is served there.
    let r = send(
        &client(),
        cluster.fra.addr,
        "GET",
        WEB,
        "/",
        &[("meridian-hop", "us-iad")],
        empty(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "meridian-region"), "eu-fra");
    assert_eq!(fra_backend.hits(), 1);
    cluster.stop().await;
}

#[tokio::test]
async fn an_upgrade_is_tunnelled_across_regions() {
    let fra_backend = upgrading_echo().await;
    let cluster = two_regions(vec![app("web", &[], &[("eu-fra", fra_backend.address())])]).await;
    let head = talk_through_upgrade(cluster.iad.addr, WEB).await;
    assert!(head.contains("meridian-region: eu-fra"), "{head}");
    cluster.stop().await;
}

#[tokio::test]
async fn an_unreachable_region_gives_way_to_the_next_allowed_one() {
    // The app runs in both regions; the Paris client's nearest is eu-fra, whose only router
    // refuses connections.
    let fra_backend = echo("fra-1").await;
    let iad_backend = echo("iad-1").await;
    let instances = [
        ("eu-fra", fra_backend.address()),
        ("us-iad", iad_backend.address()),
    ];
    let dead = refused_address().await;
    let wire = table(
        vec![app("web", &[], &instances)],
        vec![router_entry("eu-fra", &dead)],
    );
    let iad = start(config("us-iad"), wire, in_paris()).await;
    let r = get(iad.addr, WEB, "/").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "meridian-region"), "us-iad");
    assert_eq!(text(r).await, "iad-1");
    iad.stop().await;

    // No router registered for eu-fra at all: the same.
    let wire = table(vec![app("web", &[], &instances)], vec![]);
    let iad = start(config("us-iad"), wire, in_paris()).await;
    let r = get(iad.addr, WEB, "/").await;
    assert_eq!(header(&r, "meridian-region"), "us-iad");
    iad.stop().await;
    assert_eq!((fra_backend.hits(), iad_backend.hits()), (0, 2));

    // Residency allows only the EU: the US instance must not serve, so the answer is a 502.
    let wire = table(
        vec![app("web", &["EU"], &instances)],
        vec![router_entry("eu-fra", &dead)],
    );
    let iad = start(config("us-iad"), wire, in_paris()).await;
    let r = get(iad.addr, WEB, "/").await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(error_code(r).await, "region_unreachable");
    assert_eq!(
        iad_backend.hits(),
        2,
        "the disallowed region served nothing"
    );
    iad.stop().await;
}

#[tokio::test]
async fn a_region_whose_instances_refuse_connections_gives_way_to_the_next_allowed_one() {
    // The Paris client's nearest region is eu-fra, whose router is up but whose only instance
    // refuses connections; us-iad's router forwards there first.
    let dead = refused_address().await;
    let iad_backend = echo("iad-1").await;
    let instances = [("eu-fra", dead), ("us-iad", iad_backend.address())];
    for (residency, served_by) in [(&[][..], Some("us-iad")), (&["EU"][..], None)] {
        let cluster = two_regions_placed(vec![app("web", residency, &instances)], in_paris).await;
        let before = iad_backend.hits();
        let r = get(cluster.iad.addr, WEB, "/").await;
        match served_by {
            Some(region) => {
                // Nothing reached an app in eu-fra, so the next region may serve it.
                assert_eq!(r.status(), StatusCode::OK);
                assert_eq!(header(&r, "meridian-region"), region);
                assert_eq!(text(r).await, "iad-1");
                assert_eq!(iad_backend.hits(), before + 1);
            }
            None => {
                // Residency allows only the EU: eu-fra's refusal stands.
                assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
                assert_eq!(error_code(r).await, "instance_unreachable");
                assert_eq!(
                    iad_backend.hits(),
                    before,
                    "the disallowed region served nothing"
                );
            }
        }
        cluster.stop().await;
    }
}
