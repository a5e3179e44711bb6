//! Three servers on loopback form one cluster, and every server answers every request.

use std::time::Duration;

use meridian_tests::{app_body, Cluster};

#[tokio::test(flavor = "multi_thread")]
async fn three_servers_agree_on_leader_and_voters() {
    let mut c = Cluster::start(3).await;
    c.bootstrap().await;

    let mut leaders = Vec::new();
    for i in 0..3 {
        // Linearizable (forwarded to the leader) and local views must both agree.
        let status = c.client(i).cluster().await.expect("cluster status");
        assert_eq!(status.members.len(), 3, "{status:?}");
        assert!(status.members.iter().all(|m| m.voter), "{status:?}");
        leaders.push(status.leader.expect("a leader"));
        let local = c.local_view(i).await.expect("local view");
        assert_eq!(local["members"].as_array().map(Vec::len), Some(3));
        assert_eq!(
            local["leader"].as_u64(),
            status.leader,
            "server {i} local view {local}"
        );
    }
    assert!(leaders.windows(2).all(|w| w[0] == w[1]), "{leaders:?}");
    println!(
        "all three servers report leader {} and 3 voters",
        leaders[0]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_through_any_server_are_read_back_everywhere() {
    let mut c = Cluster::start(3).await;
    c.bootstrap().await;
    for i in 0..3 {
        c.client(i)
            .create_app(&app_body(&format!("app-via-{i}")))
            .await
            .expect("create through any server");
    }
    for i in 0..3 {
        let names: Vec<String> = c
            .client(i)
            .apps()
            .await
            .expect("list")
            .into_iter()
            .map(|a| a.name)
            .collect();
        assert_eq!(names, ["app-via-0", "app-via-1", "app-via-2"]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_cluster_resumes_with_its_data() {
    let mut c = Cluster::start(3).await;
    c.bootstrap().await;
    c.client(1)
        .create_app(&app_body("survivor"))
        .await
        .expect("create");
    for i in 0..3 {
        let status = c.terminate(i);
        assert!(
            status.success(),
            "server {i} exited with {status} on SIGTERM"
        );
    }
    for i in 0..3 {
        c.restart(i);
    }
    c.wait_for_voters(3, Duration::from_secs(30)).await;
    c.wait_for_leader(Duration::from_secs(30)).await;
    let app = c
        .client(2)
        .app("survivor")
        .await
        .expect("app kept across restart");
    assert_eq!(app.image, "example/web:1");
    // The admin token is still accepted: the signing key survived too.
    assert!(c.client(0).tokens().await.is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_removes_a_member() {
    let mut c = Cluster::start(3).await;
    c.bootstrap().await;
    let resp = meridian_tests::http()
        .delete(format!("{}/v1/cluster/members/3", c.url(1)))
        .bearer_auth(c.admin.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    c.kill(2);
    c.wait_for_voters(2, Duration::from_secs(20)).await;
    let status = c.client(0).cluster().await.expect("status");
    let ids: Vec<u64> = status.members.iter().map(|m| m.id).collect();
    assert_eq!(ids, [1, 2]);
    // Writes still commit with two voters.
    c.client(1)
        .create_app(&app_body("after-removal"))
        .await
        .expect("write");
    // Removing a server that is not a member: 404.
    let resp = meridian_tests::http()
        .delete(format!("{}/v1/cluster/members/9", c.url(0)))
        .bearer_auth(c.admin.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn openapi_and_metrics_are_served() {
    let c = Cluster::start(1).await;
    let doc: serde_json::Value = meridian_tests::http()
        .get(format!("{}/v1/openapi.json", c.url(0)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    for path in [
        "/v1/apps",
        "/v1/apps/{name}",
        "/v1/regions",
        "/v1/tokens",
        "/v1/cluster/join",
        "/v1/auth/bootstrap",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"]["AppBody"].is_object());
    let text = meridian_tests::http()
        .get(format!("{}/metrics", c.url(0)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "meridian_raft_term",
        "meridian_raft_commit_index",
        "meridian_raft_apply_lag",
        "meridian_http_requests_total",
        "meridian_http_request_duration_seconds_bucket",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }
}
