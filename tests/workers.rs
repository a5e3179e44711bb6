//! Agents on the real Docker engine: residency through agent loss, and rolling deploys that
//! halt on a failing release. Needs a Docker engine; builds the `meridian-hello` images
//! offline when they are missing. Node names carry a `wt-` prefix so they never meet the
//! agents of a local cluster running on the same engine.

use std::time::Duration;

use meridian_api::apps::AppBody;
use meridian_client::Client;
use meridian_tests::workers::{containers_of, eventually, hello_images, remove_containers};
use meridian_tests::Cluster;

const GRACE_MS: u64 = 3_000;

async fn cluster() -> Cluster {
    hello_images();
    let grace = GRACE_MS.to_string();
    let mut c = Cluster::start_with(1, &["--node-grace-ms", &grace]).await;
    c.bootstrap().await;
    c.three_regions().await;
    c
}

fn app(name: &str, replicas: u32) -> AppBody {
    serde_json::from_value(serde_json::json!({
        "name": name, "image": "meridian-hello:latest", "port": 8080, "replicas": replicas,
        "residency": ["EU"],
        "health": {"http": "/health", "interval": "300ms", "timeout": "200ms", "grace": "1s"},
        "cpu_millis": 100, "memory_mb": 32
    }))
    .expect("app body")
}

/// `(node, address)` of every instance wanted running and healthy.
async fn healthy(admin: &Client, app: &str) -> Vec<(String, String, u64)> {
    admin
        .instances(app)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|i| i.desired == "run" && i.state == "healthy")
        .map(|i| (i.node, i.address.unwrap_or_default(), i.release))
        .collect()
}

async fn get(address: &str) -> Option<String> {
    let resp = meridian_tests::http()
        .get(format!("http://{address}/"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    resp.status().is_success().then_some(())?;
    resp.text().await.ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn eu_app_runs_only_on_eu_nodes_and_survives_agent_loss() {
    for n in ["wt-fra-1", "wt-ams-1", "wt-iad-1"] {
        remove_containers(n);
    }
    let c = cluster().await;
    let admin = c.client(0);
    let token = c.agent_token_file().await;
    let mut fra = c.start_agent("wt-fra-1", "eu-fra", &token);
    let mut ams = c.start_agent("wt-ams-1", "eu-ams", &token);
    let iad = c.start_agent("wt-iad-1", "us-iad", &token);
    c.wait_nodes_ready(3).await;

    admin.create_app(&app("web", 3)).await.expect("create app");
    let took = eventually("3 healthy instances", Duration::from_secs(60), || async {
        healthy(&admin, "web").await.len() == 3
    })
    .await;
    println!("3 instances healthy {took:?} after the app was created");
    let running = healthy(&admin, "web").await;
    for (node, address, _) in &running {
        assert_ne!(node, "wt-iad-1", "placed in the US: {running:?}");
        let body = get(address)
            .await
            .unwrap_or_else(|| panic!("{address} does not answer"));
        assert!(body.contains("hello from web"), "{body}");
    }
    assert_eq!(
        containers_of("wt-fra-1").len() + containers_of("wt-ams-1").len(),
        3
    );
    assert!(containers_of("wt-iad-1").is_empty());

    // SIGKILL fra-1's agent and kill its containers: its instances come back on ams-1.
    fra.kill();
    remove_containers("wt-fra-1");
    let took = eventually(
        "instances healthy on ams-1 only",
        Duration::from_millis(GRACE_MS + 15_000),
        || async {
            let h = healthy(&admin, "web").await;
            h.len() == 3 && h.iter().all(|(n, _, _)| n == "wt-ams-1")
        },
    )
    .await;
    println!("fra-1 lost: 3 instances healthy on ams-1 {took:?} later (grace {GRACE_MS} ms)");
    for (_, address, _) in healthy(&admin, "web").await {
        assert!(get(&address).await.is_some(), "{address} does not answer");
    }

    // Lose the last EU node too: the app is refused with its reason, nothing runs in the US.
    ams.kill();
    remove_containers("wt-ams-1");
    eventually(
        "refusal recorded",
        Duration::from_millis(GRACE_MS + 15_000),
        || async {
            admin.app("web").await.is_ok_and(|a| {
                a.unplaced.iter().any(|u| {
                    u.reason
                        .contains("no ready node with capacity in jurisdictions [EU]")
                })
            })
        },
    )
    .await;
    let app = admin.app("web").await.unwrap();
    println!("last EU node lost: {:?}", app.unplaced);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        containers_of("wt-iad-1").is_empty(),
        "something runs on iad-1"
    );
    let audit = admin.audit(Some("web")).await.unwrap();
    let placed: Vec<_> = audit.iter().filter(|a| a.kind == "placed").collect();
    assert!(placed.len() >= 4, "{audit:#?}");
    for a in &audit {
        assert_ne!(a.node.as_deref(), Some("wt-iad-1"), "{a:?}");
        assert_ne!(a.country.as_deref(), Some("US"), "{a:?}");
    }
    assert!(audit.iter().any(|a| a.kind == "refused"), "{audit:#?}");
    drop(iad);
}

#[tokio::test(flavor = "multi_thread")]
async fn rolling_deploy_replaces_one_at_a_time_and_halts_on_failure() {
    for n in ["fra-2", "ams-2"] {
        remove_containers(n);
    }
    let c = cluster().await;
    let admin = c.client(0);
    let token = c.agent_token_file().await;
    let _fra = c.start_agent("fra-2", "eu-fra", &token);
    let _ams = c.start_agent("ams-2", "eu-ams", &token);
    admin.create_app(&app("shop", 2)).await.expect("create app");
    eventually("2 healthy instances", Duration::from_secs(60), || async {
        healthy(&admin, "shop").await.len() == 2
    })
    .await;

    // Roll out v2: at no point fewer than 2 healthy instances, nor more than 1 new one
    // unhealthy at a time.
    let release = admin
        .deploy("shop", "meridian-hello:v2")
        .await
        .expect("deploy");
    assert_eq!(release.number, 2);
    let mut max_new_pending = 0;
    let mut min_healthy = usize::MAX;
    let start = std::time::Instant::now();
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "release 2 never became active"
        );
        let all = admin.instances("shop").await.unwrap_or_default();
        let live: Vec<_> = all.iter().filter(|i| i.desired == "run").collect();
        let pending = live
            .iter()
            .filter(|i| i.release == 2 && i.state != "healthy")
            .count();
        max_new_pending = max_new_pending.max(pending);
        min_healthy = min_healthy.min(live.iter().filter(|i| i.state == "healthy").count());
        let releases = admin.releases("shop").await.unwrap_or_default();
        if releases
            .iter()
            .any(|r| r.number == 2 && r.status == "active")
            && live.len() == 2
            && live.iter().all(|i| i.release == 2 && i.state == "healthy")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("rolled out v2: at most {max_new_pending} new instance(s) pending at once, at least {min_healthy} healthy throughout");
    assert!(max_new_pending <= 1, "more than one new instance at a time");
    assert!(min_healthy >= 2, "capacity dropped during the rollout");
    for (_, address, _) in healthy(&admin, "shop").await {
        let body = get(&address).await.expect("v2 answers");
        assert!(body.contains("release 2"), "{body}");
    }

    // A release whose health check fails halts; release 2 keeps answering.
    admin
        .deploy("shop", "meridian-hello:unhealthy")
        .await
        .expect("deploy");
    eventually("release 3 halted", Duration::from_secs(60), || async {
        admin
            .releases("shop")
            .await
            .is_ok_and(|r| r.iter().any(|r| r.number == 3 && r.status == "halted"))
    })
    .await;
    let releases = admin.releases("shop").await.unwrap();
    println!("release 3: {:?}", releases.iter().find(|r| r.number == 3));
    eventually(
        "release 2 still serves on 2 instances",
        Duration::from_secs(20),
        || async {
            let h = healthy(&admin, "shop").await;
            h.len() == 2 && h.iter().all(|(_, _, r)| *r == 2)
        },
    )
    .await;
    for (_, address, _) in healthy(&admin, "shop").await {
        let body = get(&address).await.expect("release 2 answers");
        assert!(body.contains("release 2"), "{body}");
    }
    assert_eq!(admin.app("shop").await.unwrap().image, "meridian-hello:v2");
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_pushes_deploys_drains_and_explains() {
    for n in ["cli-fra", "cli-ams"] {
        remove_containers(n);
    }
    let c = cluster().await;
    let admin = c.client(0);
    let token = c.agent_token_file().await;
    let _fra = c.start_agent("cli-fra", "eu-fra", &token);
    let _ams = c.start_agent("cli-ams", "eu-ams", &token);
    let (code, _, err) = c.cli(&[
        "apps",
        "create",
        "tool",
        "--image",
        "meridian-hello:latest",
        "--port",
        "8080",
        "--replicas",
        "2",
        "--residency",
        "EU",
        "--health-http",
        "/health",
        "--health-interval",
        "300ms",
        "--health-timeout",
        "200ms",
        "--health-grace",
        "1s",
        "--memory-mb",
        "32",
    ]);
    assert_eq!(code, 0, "{err}");
    eventually("2 healthy instances", Duration::from_secs(60), || async {
        healthy(&admin, "tool").await.len() == 2
    })
    .await;

    let (code, out, err) = c.cli(&["nodes", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("cli-fra") && out.contains("cli-ams") && out.contains("ready"),
        "{out}"
    );
    let (code, out, _) = c.cli(&["apps", "instances", "tool"]);
    assert_eq!(code, 0);
    assert_eq!(out.matches("healthy").count(), 2, "{out}");
    let (code, out, _) = c.cli(&["apps", "plan", "tool"]);
    assert_eq!(code, 0);
    assert!(out.contains("residency EU") && out.contains("yes"), "{out}");

    // An image the engine does not have: pushed to the control plane, fetched by the agents.
    let image = format!("meridian-pushed-{}:1", std::process::id());
    let docker = |args: &[&str]| {
        std::process::Command::new("docker")
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("docker")
            .success()
    };
    assert!(docker(&["tag", "meridian-hello:v2", &image]));
    let (code, out, err) = c.cli(&["images", "push", &image]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Pushed") && out.contains("sha256:"), "{out}");
    assert!(docker(&["rmi", &image]));
    let (code, _, err) = c.cli(&["deploy", "tool", "--image", &image]);
    let _ = docker(&["rmi", "-f", &image]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("is live everywhere") || err.contains("Deploying"),
        "{err}"
    );
    for (_, address, release) in healthy(&admin, "tool").await {
        assert_eq!(release, 2);
        let body = get(&address).await.expect("pushed image answers");
        assert!(body.contains("version 2"), "{body}");
    }

    // A failing release: the CLI says it halted and exits 1.
    let (code, _, err) = c.cli(&["deploy", "tool", "--image", "meridian-hello:unhealthy"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("halted") && err.contains("previous release keeps serving"),
        "{err}"
    );

    // Drain: both instances end on cli-ams, each old one stopped after its replacement.
    let (code, out, err) = c.cli(&["nodes", "drain", "cli-fra"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Draining node cli-fra"), "{out}");
    eventually(
        "instances moved off cli-fra",
        Duration::from_secs(60),
        || async {
            let h = healthy(&admin, "tool").await;
            h.len() == 2 && h.iter().all(|(n, _, _)| n == "cli-ams")
        },
    )
    .await;

    // Bad input: named, with the HTTP status, exit code 1, no panic.
    let (code, _, err) = c.cli(&["deploy", "nope", "--image", "x:1"]);
    assert_eq!(code, 1);
    assert!(err.contains("HTTP 404"), "{err}");
    let (code, _, err) = c.cli(&["deploy", "tool", "--image", "bad image!"]);
    assert_eq!(code, 1);
    assert!(err.contains("HTTP 422"), "{err}");
    let (code, _, err) = c.cli(&["images", "push", "Bad!"]);
    assert_ne!(code, 0);
    assert!(err.contains("not an image reference"), "{err}");
    let (code, _, err) = c.cli(&["deploy", "tool", "--image", "x:1", "--wait", "soon"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--wait"), "{err}");
}
