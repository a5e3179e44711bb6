//! Edge routing on the real Docker engine: one server, real agents in eu-fra (DE), eu-ams (NL)
//! and us-iad (US), and a `meridian router` per region. Clients are placed by a CSV geo map:
//! each one binds its own loopback address, which the map puts in a city. Node names carry an
//! `rt-` prefix so they never meet other tests' agents on the same engine.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use meridian_api::apps::AppBody;
use meridian_client::Client;
use meridian_tests::workers::{
    eventually, hello_images, remove_containers, remove_labelled, RouterProcess,
};
use meridian_tests::Cluster;

const GRACE_MS: u64 = 3_000;

/// Where each client address stands.
const GEO_MAP: &str = "\
# clients of the routing test, by loopback block
cidr,latitude,longitude,country
# New York
127.0.1.0/24,40.71,-74.01,US
# Paris
127.0.2.0/24,48.86,2.35,FR
# Berlin
127.0.3.0/24,52.52,13.40,DE
# Cayenne, French Guiana: in the EU, nearer Virginia than Europe
127.0.4.0/24,4.92,-52.31,FR
";

const NEW_YORK: &str = "127.0.1.1";
const PARIS: &str = "127.0.2.1";
const BERLIN: &str = "127.0.3.1";
const CAYENNE: &str = "127.0.4.1";

/// A client whose requests leave from `ip`.
fn client_at(ip: &str) -> reqwest::Client {
    meridian_tests::http_builder()
        .local_address(ip.parse::<IpAddr>().expect("client address"))
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(0)
        .build()
        .expect("http client")
}

/// One answer through a router.
#[derive(Debug)]
struct Answer {
    status: u16,
    region: String,
    route: String,
    body: String,
}

async fn ask(from: &str, router: &RouterProcess, app: &str, path: &str) -> Option<Answer> {
    let resp = client_at(from)
        .get(format!("{}{path}", router.url))
        .header("host", format!("{app}.meridian.localhost"))
        .send()
        .await
        .ok()?;
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (status, region, route) = (
        resp.status().as_u16(),
        header("meridian-region"),
        header("meridian-route"),
    );
    let body = resp.text().await.ok()?;
    Some(Answer {
        status,
        region,
        route,
        body,
    })
}

/// Asks until the answer comes from `region` (or `give_up` passes); answers the last answer
/// and how long it took.
async fn ask_until(
    from: &str,
    router: &RouterProcess,
    app: &str,
    want: impl Fn(&Answer) -> bool,
    give_up: Duration,
) -> (Answer, Duration) {
    let start = Instant::now();
    loop {
        if let Some(a) = ask(from, router, app, "/").await {
            if want(&a) || start.elapsed() > give_up {
                return (a, start.elapsed());
            }
        } else if start.elapsed() > give_up {
            panic!("no answer from {} for {app} within {give_up:?}", router.url);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn app(name: &str, replicas: u32, residency: &[&str], origin_bound: &[&str]) -> AppBody {
    serde_json::from_value(serde_json::json!({
        "name": name, "image": "meridian-hello:latest", "port": 8080, "replicas": replicas,
        "residency": residency, "origin_bound": origin_bound,
        "health": {"http": "/health", "interval": "300ms", "timeout": "200ms", "grace": "1s"},
        "cpu_millis": 100, "memory_mb": 32
    }))
    .expect("app body")
}

/// Healthy instances of `app`: node → address.
async fn healthy(admin: &Client, app: &str) -> BTreeMap<String, String> {
    admin
        .instances(app)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|i| i.desired == "run" && i.state == "healthy")
        .filter_map(|i| Some((i.node, i.address?)))
        .collect()
}

/// Requests an instance served, from its own count.
async fn served(address: &str) -> u64 {
    let text = meridian_tests::http()
        .get(format!("http://{address}/requests"))
        .send()
        .await
        .expect("instance answers")
        .text()
        .await
        .expect("count");
    text.trim().parse().expect("a number")
}

/// Requests the US instances served, in all.
async fn us_served(addresses: &[String]) -> u64 {
    let mut total = 0;
    for a in addresses {
        total += served(a).await;
    }
    total
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_go_to_the_nearest_region_the_app_may_be_served_from() {
    let nodes = ["rt-fra-1", "rt-ams-1", "rt-iad-1"];
    for n in nodes {
        remove_containers(n);
    }
    hello_images();
    let grace = GRACE_MS.to_string();
    // The server places clients with the same map, for `GET /v1/route`.
    let maps = tempfile::tempdir().expect("tempdir");
    let geo_map = maps.path().join("geo.csv");
    std::fs::write(&geo_map, GEO_MAP).expect("write geo map");
    let geo_map = geo_map.to_str().expect("utf-8 path").to_string();
    let mut c = Cluster::start_with(1, &["--node-grace-ms", &grace, "--geo-map", &geo_map]).await;
    c.bootstrap().await;
    c.three_regions().await;
    let admin = c.client(0);
    let agent_token = c.agent_token_file().await;
    let mut fra = c.start_agent("rt-fra-1", "eu-fra", &agent_token);
    let mut ams = c.start_agent("rt-ams-1", "eu-ams", &agent_token);
    let _iad = c.start_agent("rt-iad-1", "us-iad", &agent_token);
    c.wait_nodes_ready(3).await;

    let router_token = c.router_token_file().await;
    let flags = ["--geo-map", &geo_map, "--trusted-proxies", "127.0.0.1/32"];
    let r_fra = c.start_router("eu-fra", &router_token, &flags);
    let r_ams = c.start_router("eu-ams", &router_token, &flags);
    let r_iad = c.start_router("us-iad", &router_token, &flags);

    // A global app with one instance per region, an EU-resident app, and an app whose EU
    // clients must be served in the EU.
    admin
        .create_app(&app("glob", 3, &[], &[]))
        .await
        .expect("glob");
    admin
        .create_app(&app("eu", 2, &["EU"], &[]))
        .await
        .expect("eu");
    admin
        .create_app(&app("ob", 3, &[], &["EU"]))
        .await
        .expect("ob");
    for (name, n) in [("glob", 3), ("eu", 2), ("ob", 3)] {
        eventually(
            &format!("{name}: {n} healthy"),
            Duration::from_secs(60),
            || async { healthy(&admin, name).await.len() == n },
        )
        .await;
    }
    let glob = healthy(&admin, "glob").await;
    assert_eq!(glob.len(), 3, "one glob instance per node: {glob:?}");
    // Every US instance's address, to count what reaches them.
    let mut us_instances = Vec::new();
    for a in ["glob", "ob"] {
        us_instances.extend(healthy(&admin, a).await.remove("rt-iad-1"));
    }
    assert_eq!(us_instances.len(), 2, "glob and ob each run in us-iad");

    // Tables reach the routers a moment after the control plane changes (an instance's health
    // among them), and each router registers when it starts: wait until every router forwards
    // to every region, each glob instance healthy in its table.
    for r in [&r_fra, &r_ams, &r_iad] {
        for (client, app, region) in [
            (NEW_YORK, "glob", "us-iad"),
            (BERLIN, "glob", "eu-fra"),
            (PARIS, "glob", "eu-ams"),
            (NEW_YORK, "eu", "eu-ams"),
            (CAYENNE, "ob", "eu-ams"),
            (NEW_YORK, "ob", "us-iad"),
        ] {
            let (a, _) = ask_until(
                client,
                r,
                app,
                |a| a.status == 200 && a.region == region,
                Duration::from_secs(20),
            )
            .await;
            assert_eq!(
                (a.status, a.region.as_str()),
                (200, region),
                "{} never sent {client} to {region} for {app}: {a:?}\n{}",
                r.region,
                r.log()
            );
        }
    }

    // 1. The global app: each client from its nearest region, whichever router it asked.
    for (client, router, want) in [
        (NEW_YORK, &r_iad, "us-iad"),
        (NEW_YORK, &r_fra, "us-iad"),
        (PARIS, &r_fra, "eu-ams"),
        (BERLIN, &r_ams, "eu-fra"),
        (BERLIN, &r_iad, "eu-fra"),
    ] {
        let a = ask(client, router, "glob", "/").await.expect("answer");
        assert_eq!(
            (a.status, a.region.as_str()),
            (200, want),
            "client {client} via {}: {a:?}",
            router.region
        );
        assert!(a.body.starts_with("hello from glob"), "{a:?}");
    }

    // 2. The EU app, asked from New York: the nearest EU region, never the US.
    let us_before = us_served(&us_instances).await;
    let a = ask(NEW_YORK, &r_iad, "eu", "/").await.expect("answer");
    // The EU app has no US instance to pass over, so eu-ams is simply the nearest holding one.
    assert_eq!(
        (a.status, a.region.as_str(), a.route.as_str()),
        (200, "eu-ams", "nearest"),
        "{a:?}"
    );
    let seen = ask(NEW_YORK, &r_iad, "eu", "/headers")
        .await
        .expect("headers");
    let headers = seen.body.to_ascii_lowercase();
    assert!(
        headers.contains("meridian-client-region: us-iad"),
        "{headers}"
    );
    assert!(
        headers.contains(NEW_YORK),
        "the app sees the client's address: {headers}"
    );
    assert_eq!(
        us_served(&us_instances).await,
        us_before,
        "the EU app stayed out of the US"
    );

    // 3. origin_bound: the Cayenne client is nearer Virginia but is kept in the EU; the New
    //    York client is not bound.
    let a = ask(CAYENNE, &r_iad, "ob", "/").await.expect("answer");
    assert_eq!(
        (a.status, a.route.as_str()),
        (200, "origin-bound:EU"),
        "{a:?}"
    );
    assert!(a.region.starts_with("eu-"), "{a:?}");
    let a = ask(CAYENNE, &r_iad, "glob", "/").await.expect("answer");
    assert_eq!(
        a.region, "us-iad",
        "without the rule Cayenne goes to Virginia: {a:?}"
    );
    let a = ask(NEW_YORK, &r_iad, "ob", "/").await.expect("answer");
    assert_eq!((a.status, a.region.as_str()), (200, "us-iad"), "{a:?}");

    // The API explains the same decision, and so does the CLI.
    let e = admin
        .explain_route("ob", CAYENNE, None)
        .await
        .expect("explain");
    assert_eq!(e.route, "origin-bound:EU", "{e:?}");
    assert_eq!(e.client.located_by, "geo-map", "{e:?}");
    assert_eq!(e.client.country, "FR", "{e:?}");
    let iad = e
        .candidates
        .iter()
        .find(|x| x.region == "us-iad")
        .expect("us-iad");
    assert!(
        iad.excluded
            .as_deref()
            .unwrap_or_default()
            .contains("only in EU"),
        "{e:?}"
    );
    let (code, out, err) = c.cli(&["route", "ob", CAYENNE]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("origin-bound:EU") && out.contains("us-iad"),
        "{out}"
    );

    // A custom domain, attached with the CLI (PATCH /v1/apps/glob), is served too.
    let (code, _, err) = c.cli(&["apps", "update", "glob", "--domain", "shop.example.com"]);
    assert_eq!(code, 0, "{err}");
    let shop = || async {
        client_at(NEW_YORK)
            .get(format!("{}/", r_fra.url))
            .header("host", "shop.example.com")
            .send()
            .await
            .ok()
            .filter(|r| r.status() == 200)
            .and_then(|r| r.headers().get("meridian-region").cloned())
    };
    eventually(
        "shop.example.com served",
        Duration::from_secs(20),
        || async { shop().await.is_some_and(|r| r == "us-iad") },
    )
    .await;

    // 4. eu-ams loses the EU app: its agent dies (so nothing replaces the instance there) and
    //    the instance with it. Requests move to eu-fra.
    ams.kill();
    remove_labelled(&[("meridian.node", "rt-ams-1"), ("meridian.app", "eu")]);
    let (a, took) = ask_until(
        NEW_YORK,
        &r_iad,
        "eu",
        |a| a.status == 200 && a.region == "eu-fra",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!((a.status, a.region.as_str()), (200, "eu-fra"), "{a:?}");
    println!("eu-ams lost: requests served from eu-fra after {took:?}");

    // 5. No EU instance left at all: a refusal with the reason, never the US.
    fra.kill();
    ams.kill();
    remove_containers("rt-fra-1");
    remove_containers("rt-ams-1");
    let us_before = us_served(&us_instances).await;
    let (a, took) = ask_until(
        NEW_YORK,
        &r_iad,
        "eu",
        |a| a.status == 503,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(a.status, 503, "{a:?}");
    assert_eq!(a.route, "no_healthy_instance", "{a:?}");
    let body: serde_json::Value = serde_json::from_str(&a.body).expect("a JSON body");
    assert_eq!(body["error"]["code"], "no_healthy_instance", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("EU"),
        "{body}"
    );
    println!("no EU instance left: 503 after {took:?}");
    for router in [&r_iad, &r_fra, &r_ams] {
        // Until its table shows the EU nodes down, a router may still try their dead
        // instances (502): never anything outside the EU.
        let (a, _) = ask_until(
            NEW_YORK,
            router,
            "eu",
            |a| a.status == 503,
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(a.status, 503, "via {}: {a:?}", router.region);
        for _ in 0..10 {
            let a = ask(NEW_YORK, router, "eu", "/").await.expect("answer");
            assert_eq!(a.status, 503, "via {}: {a:?}", router.region);
        }
    }
    assert_eq!(
        us_served(&us_instances).await,
        us_before,
        "no request for the EU app reached a US instance"
    );
    let (a, _) = ask_until(
        CAYENNE,
        &r_iad,
        "ob",
        |a| a.status == 503,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!((a.status, a.route.as_str()), (503, "origin_bound"), "{a:?}");
    let a = ask(NEW_YORK, &r_iad, "ob", "/").await.expect("answer");
    assert_eq!((a.status, a.region.as_str()), (200, "us-iad"), "{a:?}");
    let eu_on_iad = admin
        .instances("eu")
        .await
        .expect("instances")
        .into_iter()
        .filter(|i| i.node == "rt-iad-1")
        .count();
    assert_eq!(eu_on_iad, 0, "the EU app was never placed in the US");

    // 6. The control plane goes away: routers keep routing from their last table.
    c.kill(0);
    for _ in 0..5 {
        let a = ask(NEW_YORK, &r_iad, "glob", "/").await.expect("answer");
        assert_eq!((a.status, a.region.as_str()), (200, "us-iad"), "{a:?}");
        let a = ask(CAYENNE, &r_fra, "ob", "/").await.expect("answer");
        assert_eq!((a.status, a.route.as_str()), (503, "origin_bound"), "{a:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
