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
