//! Mutual TLS between real `meridian server` processes on loopback: what crosses the wire is
//! encrypted, a server without a certificate of the cluster's CA cannot join, and a
//! certificate of another role cannot call what is a server's alone.

use std::process::Command;
use std::time::Duration;

use meridian_api::apps::AppBody;
use meridian_tests::wire::{capture, count};
use meridian_tests::{http, http_as, pki, Cluster};
use meridian_tls::issue::{create_ca, issue, CaOptions, LeafOptions};
use meridian_tls::CertRole;

const SECRET: &str = "test-cluster-secret-0123456789";
const ENV_VALUE: &str = "hunter2-do-not-leak-7f3a";

/// Joins a second and third server, bootstraps, creates an app with an env value: everything
/// that carries the cluster secret, a JWT and an app setting.
async fn traffic(c: &mut Cluster) -> String {
    c.add_server();
    c.add_server();
    c.wait_for_voters(3, Duration::from_secs(30)).await;
    let token = c.bootstrap().await;
    let body: AppBody = serde_json::from_value(serde_json::json!({
        "name": "web", "image": "x:1", "port": 8080, "replicas": 0,
        "env": {"PASSWORD": ENV_VALUE}
    }))
    .unwrap();
    // Through a follower, so the write is forwarded to the leader too.
    let leader = c.wait_for_leader(Duration::from_secs(10)).await;
    let follower = (leader + 1) % 3;
    c.client(follower)
        .create_app(&body)
        .await
        .expect("create app");
    c.wait_for_applied(Duration::from_secs(10)).await;
    token
}

#[tokio::test(flavor = "multi_thread")]
async fn the_wire_carries_no_secret_token_or_setting_in_clear() {
    // Over TLS: none of them in the capture.
    let mut c = Cluster::start(1).await;
    let mut token = String::new();
    let pcap = capture(async {
        token = traffic(&mut c).await;
    })
    .await;
    // The capture saw the conversation (handshakes and records), and nothing readable in it.
    assert!(pcap.len() > 10_000, "only {} bytes captured", pcap.len());
    assert_eq!(
        count(&pcap, SECRET),
        0,
        "the cluster secret crossed in clear"
    );
    assert_eq!(count(&pcap, &token), 0, "the admin JWT crossed in clear");
    assert_eq!(count(&pcap, ENV_VALUE), 0, "an env value crossed in clear");
    assert_eq!(
        count(&pcap, "/v1/apps"),
        0,
        "a request line crossed in clear"
    );
    drop(c);

    // The same over plain HTTP: the capture does see them (so the search above could find them).
    let mut c = Cluster::start_with(1, &["--insecure-plain-http"]).await;
    let mut token = String::new();
    let pcap = capture(async {
        token = traffic(&mut c).await;
    })
    .await;
    assert!(
        count(&pcap, SECRET) > 0,
        "no cluster secret in a plain capture"
    );
    assert!(count(&pcap, &token) > 0, "no JWT in a plain capture");
    assert!(
        count(&pcap, ENV_VALUE) > 0,
        "no env value in a plain capture"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_without_a_certificate_of_the_ca_cannot_join() {
    let mut c = Cluster::start(1).await;
    // A server certificate from another CA, presented to this cluster (whose CA it trusts).
    let rogue_ca = create_ca(&CaOptions::default()).unwrap();
    let rogue = issue(
        &rogue_ca,
        &LeafOptions {
            role: CertRole::Server,
            region: "test".into(),
            name: "server-2".into(),
            sans: vec![],
            days: 1,
        },
    )
    .unwrap();
    let dir = c.dir.path().to_path_buf();
    let (cert, key) = (dir.join("rogue.pem"), dir.join("rogue-key.pem"));
    std::fs::write(&cert, &rogue.cert_pem).unwrap();
    std::fs::write(&key, &rogue.key_pem).unwrap();
    let port = meridian_tests::free_port();
    let log = std::fs::File::create(dir.join("rogue.log")).unwrap();
    let mut child = Command::new(meridian_tests::meridian_bin())
        .arg("server")
        .args(["--node-id", "2", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.join("rogue-data"))
        .arg("--cluster-secret-file")
        .arg(dir.join("cluster-secret"))
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .arg("--tls-ca")
        .arg(pki().ca_file())
        .args(["--join", &c.url(0)])
        .env("RUST_LOG", "info")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start rogue server");
    // It knows the cluster secret and asks for five seconds; it never becomes a member.
    tokio::time::sleep(Duration::from_secs(5)).await;
    c.bootstrap().await;
    let status = c.client(0).cluster().await.expect("cluster status");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status.members.len(), 1, "{:?}", status.members);
    let log = std::fs::read_to_string(dir.join("rogue.log")).unwrap();
    assert!(log.contains("join"), "{log}");
    c.wait_for_voters(1, Duration::from_secs(5)).await;
    drop(c);
}

#[tokio::test(flavor = "multi_thread")]
async fn server_only_endpoints_want_a_server_certificate() {
    let mut c = Cluster::start(1).await;
    c.bootstrap().await;
    let url = c.url(0);
    let secret = ("meridian-cluster-secret", SECRET);
    let vote = serde_json::json!({});
    // No certificate: 401. An agent's or a router's, even with the secret: 403.
    let resp = http()
        .post(format!("{url}/v1/internal/raft/vote"))
        .header(secret.0, secret.1)
        .json(&vote)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    for role in [CertRole::Agent, CertRole::Router] {
        let resp = http_as(role, "eu-fra", "x1")
            .post(format!("{url}/v1/internal/raft/vote"))
            .header(secret.0, secret.1)
            .json(&vote)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{role}");
        let body: serde_json::Value = resp.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("a server's certificate"), "{message}");
    }
    // An agent's certificate cannot join the cluster either.
    let resp = http_as(CertRole::Agent, "eu-fra", "x1")
        .post(format!("{url}/v1/cluster/join"))
        .header(secret.0, secret.1)
        .json(&serde_json::json!({"node_id": 9, "addr": "https://127.0.0.1:9"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // A router's certificate may not speak for an agent, nor an agent's for a router.
    let agent_token = c.token("agent").await;
    let resp = http_as(CertRole::Router, "eu-fra", "fra-1")
        .post(format!("{url}/v1/agent/nodes/fra-1/heartbeat"))
        .bearer_auth(&agent_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let router_token = c.token("router").await;
    let resp = http_as(CertRole::Agent, "eu-fra", "edge-1")
        .get(format!("{url}/v1/router/table"))
        .bearer_auth(&router_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}
