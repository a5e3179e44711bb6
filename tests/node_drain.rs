//! Draining and undraining a node through the CLI, against a real server and a simulated
//! agent (plain HTTP calls with an agent token): the drain holds through a restart of the
//! agent and a silence, and only `meridian nodes undrain` lets work onto the node again.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meridian_client::Client;
use meridian_tests::simulated_agent::{register, Agents};
use meridian_tests::workers::{create_app_args, eventually};
use meridian_tests::Cluster;

const GRACE_MS: u64 = 1_500;

/// Heartbeats, every 300 ms, the nodes in the set it shares.
fn heartbeats(agent: Client) -> (Arc<Mutex<BTreeSet<String>>>, tokio::task::JoinHandle<()>) {
    let beating = Arc::new(Mutex::new(BTreeSet::new()));
    let which = beating.clone();
    let task = tokio::spawn(async move {
        loop {
            let nodes: Vec<String> = which.lock().unwrap().iter().cloned().collect();
            for n in nodes {
                let _ = agent.heartbeat(&n).await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    (beating, task)
}

async fn status(admin: &Client, node: &str) -> (String, bool) {
    let n = admin.node(node).await.expect("node");
    (n.status, n.drain)
}

fn running_on(instances: &[meridian_api::nodes::InstanceView]) -> Vec<&str> {
    instances
        .iter()
        .filter(|i| i.desired == "run")
        .map(|i| i.node.as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drained_node_stays_drained_until_undrained() {
    let grace = GRACE_MS.to_string();
    let mut c = Cluster::start_with(1, &["--node-grace-ms", &grace]).await;
    c.bootstrap().await;
    c.three_regions().await;
    let admin = c.client(0);
    let agents = Agents::new(&c, 0, c.token("agent").await);
    register(&agents, "fra-1", "eu-fra").await;
    let (beating, task) = heartbeats(agents.of("fra-1"));
    beating.lock().unwrap().insert("fra-1".into());

    let (code, out, err) = c.cli(&["nodes", "drain", "fra-1"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("Draining node fra-1"), "{out}");

    // The agent restarts: it registers again, and the node is still draining.
    register(&agents, "fra-1", "eu-fra").await;
    assert_eq!(status(&admin, "fra-1").await, ("draining".into(), true));

    // Silent past its grace, it is down, and the list says it will come back drained.
    beating.lock().unwrap().clear();
    eventually("fra-1 down", Duration::from_secs(15), || async {
        status(&admin, "fra-1").await == ("down".into(), true)
    })
    .await;
    let (code, out, err) = c.cli(&["nodes", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("down (drained)"), "{out}");

    // Back (heartbeats and a new registration): draining, not ready. Work pinned to its
    // region waits, saying why.
    beating.lock().unwrap().insert("fra-1".into());
    register(&agents, "fra-1", "eu-fra").await;
    eventually("fra-1 back, draining", Duration::from_secs(10), || async {
        status(&admin, "fra-1").await == ("draining".into(), true)
    })
    .await;
    let (code, _, err) = c.cli(&create_app_args(
        "web",
        &["--region", "eu-fra", "--residency", "EU"],
    ));
    assert_eq!(code, 0, "{err}");
    eventually("web waits for a node", Duration::from_secs(10), || async {
        admin
            .app("web")
            .await
            .is_ok_and(|a| a.unplaced.iter().any(|u| u.reason.contains("draining")))
    })
    .await;
    assert!(running_on(&admin.instances("web").await.unwrap()).is_empty());

    // Undrained: ready again, and the waiting instance lands on it.
    let (code, out, err) = c.cli(&["nodes", "undrain", "fra-1"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "Undrained node fra-1: it takes new work again\n");
    assert_eq!(status(&admin, "fra-1").await, ("ready".into(), false));
    eventually("web placed on fra-1", Duration::from_secs(10), || async {
        admin
            .instances("web")
            .await
            .is_ok_and(|i| running_on(&i) == ["fra-1"])
    })
    .await;

    // Undrained again: nothing changes; as JSON, the node as it is.
    let (code, out, err) = c.cli(&["nodes", "undrain", "fra-1", "--json"]);
    assert_eq!(code, 0, "{err}");
    let node: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(
        (node["status"].as_str(), node["drain"].as_bool()),
        (Some("ready"), Some(false))
    );

    // A drained node that is down when undrained comes back ready.
    c.cli(&["nodes", "drain", "fra-1"]);
    beating.lock().unwrap().clear();
    eventually("fra-1 down again", Duration::from_secs(15), || async {
        status(&admin, "fra-1").await.0 == "down"
    })
    .await;
    let (code, out, err) = c.cli(&["nodes", "undrain", "fra-1"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("it is down, and takes new work once it is back"),
        "{out}"
    );
    beating.lock().unwrap().insert("fra-1".into());
    eventually("fra-1 back, ready", Duration::from_secs(10), || async {
        status(&admin, "fra-1").await == ("ready".into(), false)
    })
    .await;
    task.abort();

    // Unknown nodes and names that cannot be nodes: a 404 in words.
    for name in ["nope-1", "Not_A_Name"] {
        let (code, _, err) = c.cli(&["nodes", "undrain", name]);
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains("does not exist") && err.contains("404"),
            "{err}"
        );
    }
    // Only a role that manages the cluster may undrain.
    let viewer = c.client_with(0, Some(c.token("viewer").await));
    let refused = viewer
        .undrain_node("fra-1")
        .await
        .expect_err("viewer refused");
    assert_eq!(refused.status(), Some(403), "{refused}");
}
