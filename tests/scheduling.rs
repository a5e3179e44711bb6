//! The control plane's side of placement, driven through the agent protocol by simulated
//! agents (plain HTTP calls with an agent token; the real agent on Docker is covered by
//! `workers.rs`): residency holds through node loss, refusals carry reasons, the watch blocks.

use std::collections::BTreeMap;
use std::time::Duration;

use meridian_api::agent::{InstanceReport, InstanceReports, RegisterNode, AGENT_PROTOCOL};
use meridian_client::Client;
use meridian_core::InstanceState;
use meridian_tests::simulated_agent::{keep_beating, register, Agents};
use meridian_tests::workers::eventually;
use meridian_tests::Cluster;

const GRACE_MS: u64 = 2_000;

async fn setup() -> (Cluster, Client, Agents) {
    let grace = GRACE_MS.to_string();
    let mut c = Cluster::start_with(1, &["--node-grace-ms", &grace]).await;
    c.bootstrap().await;
    let admin = c.client(0);
    c.three_regions().await;
    let agents = Agents::new(&c, 0, c.token("agent").await);
    (c, admin, agents)
}

/// Reports every assigned instance of `node` as healthy.
async fn report_healthy(agents: &Agents, node: &str) {
    let agent = agents.of(node);
    let a = agent.assignments(node, 0, 0).await.expect("assignments");
    let instances = a
        .instances
        .iter()
        .enumerate()
        .map(|(i, x)| InstanceReport {
            id: x.id.clone(),
            state: InstanceState::Healthy,
            exit_code: None,
            address: Some(format!("127.0.0.1:{}", 20_000 + i)),
            detail: None,
        })
        .collect();
    agent
        .report_instances(
            node,
            &InstanceReports {
                generation: a.generation,
                instances,
            },
        )
        .await
        .expect("report");
}

async fn running_nodes(admin: &Client, app: &str) -> Vec<String> {
    let mut nodes: Vec<String> = admin
        .instances(app)
        .await
        .expect("instances")
        .into_iter()
        .filter(|i| i.desired == "run")
        .map(|i| i.node)
        .collect();
    nodes.sort();
    nodes
}

#[tokio::test(flavor = "multi_thread")]
async fn eu_app_stays_in_the_eu_through_node_loss() {
    let (c, admin, agents) = setup().await;
    for (n, r) in [
        ("fra-1", "eu-fra"),
        ("ams-1", "eu-ams"),
        ("iad-1", "us-iad"),
    ] {
        register(&agents, n, r).await;
    }
    let app: meridian_api::apps::AppBody = serde_json::from_value(serde_json::json!({
        "name": "web", "image": "meridian-hello:latest", "port": 8080, "replicas": 3,
        "residency": ["EU"]
    }))
    .unwrap();
    admin.create_app(&app).await.expect("create app");

    // Heartbeat all three while the app is placed.
    let beating = keep_beating(&agents, &["fra-1", "ams-1", "iad-1"]);
    eventually("3 instances placed", Duration::from_secs(10), || async {
        running_nodes(&admin, "web").await.len() == 3
    })
    .await;
    let nodes = running_nodes(&admin, "web").await;
    assert!(
        nodes.iter().all(|n| n != "iad-1"),
        "placed in the US: {nodes:?}"
    );
    assert!(
        nodes.contains(&"fra-1".to_string()) && nodes.contains(&"ams-1".to_string()),
        "not spread: {nodes:?}"
    );
    for n in ["fra-1", "ams-1"] {
        report_healthy(&agents, n).await;
    }

    // The watch blocks until the generation moves, then answers at once.
    let agent = agents.of("fra-1");
    let fra = agent.assignments("fra-1", 0, 0).await.unwrap();
    let t = std::time::Instant::now();
    let same = agent
        .assignments("fra-1", fra.generation, 500)
        .await
        .unwrap();
    assert_eq!(same.generation, fra.generation);
    assert!(
        t.elapsed() >= Duration::from_millis(450),
        "watch did not block"
    );

    // fra-1 goes silent: after the grace its instances move to ams-1, never to iad-1.
    beating.abort();
    let beating = keep_beating(&agents, &["ams-1", "iad-1"]);
    eventually(
        "instances moved to ams-1",
        Duration::from_millis(GRACE_MS + 10_000),
        || async { running_nodes(&admin, "web").await == vec!["ams-1"; 3] },
    )
    .await;
    let node = admin.node("fra-1").await.unwrap();
    assert_eq!(node.status, "down");

    // Now ams-1 goes silent too: nothing may run in the US, and the reason is given.
    beating.abort();
    let beating = keep_beating(&agents, &["iad-1"]);
    eventually(
        "app refused with a reason",
        Duration::from_millis(GRACE_MS + 10_000),
        || async {
            let plan = admin.plan("web").await.unwrap();
            let app = admin.app("web").await.unwrap();
            plan.unplaced.iter().any(|u| {
                u.count == 3
                    && u.reason
                        .contains("no ready node with capacity in jurisdictions [EU]")
            }) && running_nodes(&admin, "web").await.is_empty()
                && app
                    .unplaced
                    .iter()
                    .any(|u| u.reason.contains("jurisdictions [EU]"))
        },
    )
    .await;
    let plan = admin.plan("web").await.unwrap();
    let iad = plan.nodes.iter().find(|n| n.node == "iad-1").unwrap();
    assert!(
        !iad.eligible
            && iad
                .reason
                .as_deref()
                .unwrap_or("")
                .contains("outside residency"),
        "{iad:?}"
    );
    beating.abort();

    let audit = admin.audit(Some("web")).await.unwrap();
    assert!(audit.iter().any(|a| a.kind == "refused"), "{audit:#?}");
    let placed: Vec<_> = audit.iter().filter(|a| a.kind == "placed").collect();
    // Three at first, then one replacing the instance lost with fra-1.
    assert!(placed.len() >= 4, "{placed:#?}");
    assert!(
        placed
            .iter()
            .all(|a| a.country.as_deref() != Some("US") && a.policy == "residency [EU]"),
        "{placed:#?}"
    );
    drop(c);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_agent_input_gets_clear_errors() {
    let (c, admin, agents) = setup().await;
    let mut body = RegisterNode {
        protocol: AGENT_PROTOCOL,
        region: "nowhere".into(),
        cpu_millis: 1000,
        memory_mb: 1024,
        labels: BTreeMap::new(),
        advertise_host: "127.0.0.1".into(),
    };
    // The agent of a node in a region the cluster does not have.
    let err = agents
        .node("n1", "nowhere")
        .register_node("n1", &body)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(422), "{err}");
    body.region = "eu-fra".into();
    body.protocol = 99;
    let agent = agents.node("n1", "eu-fra");
    assert_eq!(
        agent.register_node("n1", &body).await.unwrap_err().status(),
        Some(422)
    );
    body.protocol = AGENT_PROTOCOL;
    body.advertise_host = "has space".into();
    assert_eq!(
        agent.register_node("n1", &body).await.unwrap_err().status(),
        Some(422)
    );
    assert_eq!(
        agent
            .register_node("Bad_Name", &body)
            .await
            .unwrap_err()
            .status(),
        Some(422)
    );
    // A node's certificate for another node's calls, and a call without the certificate.
    assert_eq!(
        agent.heartbeat("ams-1").await.unwrap_err().status(),
        Some(403)
    );
    let token = c.token("agent").await;
    let no_cert = c.client_with(0, Some(token));
    let err = no_cert.heartbeat("n1").await.unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");
    let ghost = agents.node("ghost", "eu-fra");
    assert_eq!(
        ghost.heartbeat("ghost").await.unwrap_err().status(),
        Some(404)
    );
    assert_eq!(
        ghost.assignments("ghost", 0, 0).await.unwrap_err().status(),
        Some(404)
    );
    // Viewers and deployers may not speak for agents; agents may not deploy.
    assert_eq!(admin.node("ghost").await.unwrap_err().status(), Some(404));
    assert_eq!(
        agent.deploy("web", "x:1").await.unwrap_err().status(),
        Some(403)
    );
    let raw = meridian_tests::http_as(meridian_tls::CertRole::Agent, "eu-fra", "n1")
        .get(format!(
            "{}/v1/agent/nodes/n1/assignments?index=soon",
            c.url(0)
        ))
        .bearer_auth(c.admin.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    let body: serde_json::Value = raw.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains("index"),
        "{body}"
    );
    assert_eq!(
        admin.deploy("missing", "x:1").await.unwrap_err().status(),
        Some(404)
    );
    let app: meridian_api::apps::AppBody = serde_json::from_value(serde_json::json!({
        "name": "web", "image": "x:1", "port": 8080
    }))
    .unwrap();
    admin.create_app(&app).await.unwrap();
    assert_eq!(
        admin
            .deploy("web", "bad image!")
            .await
            .unwrap_err()
            .status(),
        Some(422)
    );
    let r = admin.deploy("web", "x:2").await.unwrap();
    assert_eq!((r.number, r.status.as_str()), (2, "rolling"));
    let releases = admin.releases("web").await.unwrap();
    assert_eq!(releases.len(), 2);
}

/// An app the cluster cannot place is recorded unplaced with its reason; a node that arrives
/// afterwards in an allowed region gets it at once, even while that record waits to be
/// committed; and an app deleted while its record waits leaves no record behind.
#[tokio::test(flavor = "multi_thread")]
async fn unplaced_apps_are_placed_when_room_arrives_and_forgotten_when_deleted() {
    let (c, admin, agents) = setup().await;
    let body = |name: &str| -> meridian_api::apps::AppBody {
        serde_json::from_value(serde_json::json!({
            "name": name, "image": "meridian-hello:latest", "port": 8080, "replicas": 1,
            "residency": ["EU"]
        }))
        .unwrap()
    };
    admin.create_app(&body("waits")).await.expect("create app");
    eventually(
        "the app recorded unplaced",
        Duration::from_secs(10),
        || async {
            let app = admin.app("waits").await.unwrap();
            app.unplaced
                .iter()
                .any(|u| u.reason.contains("no ready node"))
        },
    )
    .await;

    // A second app, then a node right away: the node must not wait for the second app's
    // record (made before the node existed) to be committed first.
    admin.create_app(&body("late")).await.expect("create app");
    register(&agents, "fra-1", "eu-fra").await;
    let beating = keep_beating(&agents, &["fra-1"]);
    eventually(
        "both apps placed on fra-1",
        Duration::from_secs(10),
        || async {
            running_nodes(&admin, "waits").await == vec!["fra-1"]
                && running_nodes(&admin, "late").await == vec!["fra-1"]
        },
    )
    .await;
    eventually(
        "no unplaced records left",
        Duration::from_secs(10),
        || async {
            admin.app("waits").await.unwrap().unplaced.is_empty()
                && admin.app("late").await.unwrap().unplaced.is_empty()
        },
    )
    .await;

    // A US-only app cannot go to fra-1; deleted straight away, it leaves nothing pending.
    let us: meridian_api::apps::AppBody = serde_json::from_value(serde_json::json!({
        "name": "gone", "image": "meridian-hello:latest", "port": 8080, "residency": ["US"]
    }))
    .unwrap();
    admin.create_app(&us).await.expect("create app");
    admin.delete_app("gone").await.expect("delete app");
    // Long enough for any record planned before the delete to be committed.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let apps = admin.apps().await.expect("apps");
    assert!(apps.iter().all(|a| a.name != "gone"), "{apps:#?}");
    let plan_err = admin.plan("gone").await.expect_err("the app is gone");
    assert_eq!(plan_err.status(), Some(404), "{plan_err:?}");
    beating.abort();
    drop(c);
}
