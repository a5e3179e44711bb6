//! Snapshots are built, sent to a server that joins late, and installed; logs are purged.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use meridian_tests::{app_body, http, Cluster};

#[tokio::test(flavor = "multi_thread")]
async fn a_late_joiner_catches_up_from_a_snapshot() {
    let mut c = Cluster::start_with(
        3,
        &[
            "--raft-snapshot-after-entries",
            "20",
            "--raft-keep-entries",
            "0",
        ],
    )
    .await;
    c.bootstrap().await;
    let mut names = BTreeSet::new();
    for n in 0..60 {
        let name = format!("app-{n}");
        c.client(n % 3)
            .create_app(&app_body(&name))
            .await
            .expect("create");
        names.insert(name);
    }
    // One current snapshot is kept; with no entries kept behind it, the log was purged.
    let leader = c.wait_for_leader(Duration::from_secs(10)).await;
    let snaps = std::fs::read_dir(c.servers[leader].data_dir.join("snapshots"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .count();
    assert_eq!(snaps, 1, "exactly one current snapshot is kept");

    let new = c.add_server();
    let new_snapshots = c.servers[new].data_dir.join("snapshots");
    c.wait_for_voters(4, Duration::from_secs(30)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let resp = http()
            .get(format!("{}/v1/apps?stale=true", c.url(new)))
            .bearer_auth(c.admin.clone().unwrap())
            .send()
            .await
            .unwrap();
        let apps: Vec<serde_json::Value> = resp.json().await.unwrap_or_default();
        let have: BTreeSet<String> = apps
            .iter()
            .filter_map(|a| a["name"].as_str().map(String::from))
            .collect();
        if have == names {
            // It got there by installing the leader's snapshot, not by replaying the log.
            let installed = std::fs::read_dir(&new_snapshots)
                .map(|d| {
                    d.flatten()
                        .any(|e| e.file_name().to_string_lossy().ends_with(".json"))
                })
                .unwrap_or(false);
            assert!(installed, "the new server holds no installed snapshot");
            break;
        }
        if Instant::now() > deadline {
            c.dump_logs();
            panic!("the new server has {} of {} apps", have.len(), names.len());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
