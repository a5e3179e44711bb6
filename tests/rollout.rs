//! Rolling deploys on real agents keep each region's share. Three regions, two nodes in each
//! EU region and one in us-iad; an EU app of 4 (two per EU region) and a global app of 3 (one
//! per region) are deployed to a new image at once. Throughout, every region serves at least
//! its share of each app (old instances, and new ones once healthy); at the end the new
//! release runs on the same spread as the old, the EU app one per EU node, never in us-iad.
//! Needs a Docker engine; builds the `meridian-hello` images offline when they are missing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use meridian_api::apps::AppBody;
use meridian_api::nodes::InstanceView;
use meridian_client::Client;
use meridian_tests::workers::{eventually, hello_images, remove_containers, unique};
use meridian_tests::Cluster;

/// One of the apps deployed.
struct TestApp {
    name: &'static str,
    residency: &'static [&'static str],
    replicas: u32,
    /// Instances per region, as a fresh plan spreads them.
    share: &'static [(&'static str, usize)],
}

const APPS: [TestApp; 2] = [
    TestApp {
        name: "eu-shop",
        residency: &["EU"],
        replicas: 4,
        share: &[("eu-ams", 2), ("eu-fra", 2)],
    },
    TestApp {
        name: "world",
        residency: &[],
        replicas: 3,
        share: &[("eu-ams", 1), ("eu-fra", 1), ("us-iad", 1)],
    },
];

fn app(name: &str, residency: &[&str], replicas: u32) -> AppBody {
    serde_json::from_value(serde_json::json!({
        "name": name, "image": "meridian-hello:latest", "port": 8080, "replicas": replicas,
        "residency": residency,
        "health": {"http": "/health", "interval": "300ms", "timeout": "200ms", "grace": "1s"},
        "cpu_millis": 100, "memory_mb": 32
    }))
    .expect("app body")
}

fn share(list: &[(&str, usize)]) -> BTreeMap<String, usize> {
    list.iter().map(|(r, n)| (r.to_string(), *n)).collect()
}

/// Instances wanted running, per region, that serve: those of releases other than `new`,
/// and those of `new` once healthy.
fn serving(live: &[InstanceView], new: u64) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for i in live.iter().filter(|i| i.desired == "run") {
        if i.release != new || i.state == "healthy" {
            *out.entry(i.region.clone()).or_default() += 1;
        }
    }
    out
}

/// Healthy instances of `release` wanted running, per region.
fn healthy_of(live: &[InstanceView], release: u64) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for i in live {
        if i.desired == "run" && i.state == "healthy" && i.release == release {
            *out.entry(i.region.clone()).or_default() += 1;
        }
    }
    out
}

async fn promoted(admin: &Client, app: &str, release: u64, replicas: usize) -> bool {
    let releases = admin.releases(app).await.unwrap_or_default();
    let live = admin.instances(app).await.unwrap_or_default();
    let running: Vec<_> = live.iter().filter(|i| i.desired == "run").collect();
    releases
        .iter()
        .any(|r| r.number == release && r.status == "active")
        && running.len() == replicas
        && running
            .iter()
            .all(|i| i.release == release && i.state == "healthy")
}

#[tokio::test(flavor = "multi_thread")]
async fn rolling_deploys_keep_each_region_share() {
    let prefix = unique("ro");
    let nodes = [
        ("fra-1", "eu-fra"),
        ("fra-2", "eu-fra"),
        ("ams-1", "eu-ams"),
        ("ams-2", "eu-ams"),
        ("iad-1", "us-iad"),
    ]
    .map(|(n, r)| (format!("{prefix}-{n}"), r));
    for (n, _) in &nodes {
        remove_containers(n);
    }
    hello_images();
    let mut c = Cluster::start(1).await;
    c.bootstrap().await;
    c.three_regions().await;
    let admin = c.client(0);
    let token = c.agent_token_file().await;
    let _agents: Vec<_> = nodes
        .iter()
        .map(|(n, r)| c.start_agent(n, r, &token))
        .collect();
    c.wait_nodes_ready(nodes.len()).await;

    for a in &APPS {
        admin
            .create_app(&app(a.name, a.residency, a.replicas))
            .await
            .expect("create app");
    }
    eventually("both apps healthy", Duration::from_secs(90), || async {
        let mut all = true;
        for a in &APPS {
            all &= promoted(&admin, a.name, 1, a.replicas as usize).await;
        }
        all
    })
    .await;
    for a in &APPS {
        let live = admin.instances(a.name).await.expect("instances");
        assert_eq!(healthy_of(&live, 1), share(a.share), "{} release 1", a.name);
    }

    // Both apps roll out v2 at once. Every poll, every region serves at least its share.
    for a in &APPS {
        let release = admin
            .deploy(a.name, "meridian-hello:v2")
            .await
            .expect("deploy");
        assert_eq!(release.number, 2);
    }
    let start = Instant::now();
    let mut polls = 0;
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "release 2 was not promoted everywhere"
        );
        let mut done = true;
        for a in &APPS {
            let name = a.name;
            let live = admin.instances(name).await.unwrap_or_default();
            let now = serving(&live, 2);
            for (region, want) in share(a.share) {
                let got = now.get(&region).copied().unwrap_or(0);
                assert!(
                    got >= want,
                    "{name} serves {got} in {region}, below its share {want}, {:?} into \
                     the rollout: {live:#?}",
                    start.elapsed()
                );
            }
            done &= promoted(&admin, name, 2, a.replicas as usize).await;
        }
        polls += 1;
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "both apps rolled out v2 in {:?}; every region kept its share over {polls} polls",
        start.elapsed()
    );

    for a in &APPS {
        let name = a.name;
        let live = admin.instances(name).await.expect("instances");
        assert_eq!(healthy_of(&live, 2), share(a.share), "{name} release 2");
        // Each new instance was placed in a region whose old one waited for it, in turn.
        let audit = admin.audit(Some(name)).await.expect("audit");
        let placed: Vec<&str> = audit
            .iter()
            .filter(|a| a.kind == "placed" && a.detail.starts_with("release 2 "))
            .filter_map(|a| a.region.as_deref())
            .collect();
        println!("{name}: release 2 placed in {placed:?}");
        let mut placed_spread = BTreeMap::new();
        for r in &placed {
            *placed_spread.entry(r.to_string()).or_default() += 1;
        }
        assert_eq!(placed_spread, share(a.share), "{name}: {placed:?}");
        if name == "eu-shop" {
            assert!(
                audit
                    .iter()
                    .all(|a| a.region.as_deref() != Some("us-iad")
                        && a.country.as_deref() != Some("US")),
                "the EU app touched us-iad: {audit:#?}"
            );
            // As before the deploy: one per EU node.
            let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
            for i in live.iter().filter(|i| i.desired == "run") {
                *per_node.entry(i.node.as_str()).or_default() += 1;
            }
            assert!(
                per_node.len() == 4 && per_node.values().all(|&n| n == 1),
                "{per_node:?}"
            );
        }
    }
}
