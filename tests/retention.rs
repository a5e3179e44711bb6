//! Retention on a real three-server cluster with short limits: old releases, audit entries
//! (exported first), down nodes, silent routers and revoked tokens are forgotten through Raft
//! on every server, and what still qualifies to stay, stays.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use meridian_api::agent::{RegisterNode, AGENT_PROTOCOL};
use meridian_api::regions::RegionBody;
use meridian_api::tokens::CreateToken;
use meridian_tests::{app_body, http, Cluster};
use serde_json::{json, Value};

/// Polls `check` every 100 ms until it holds, for at most 20 s.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every audit entry exported under `dir` (every server's export directory), by seq.
fn exported(dirs: &[&Path]) -> BTreeSet<u64> {
    let mut seqs = BTreeSet::new();
    for dir in dirs {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !(name.starts_with("audit-") && name.ends_with(".jsonl")) {
                continue;
            }
            let text = std::fs::read_to_string(entry.path()).expect("export readable");
            for line in text.lines() {
                let v: Value = serde_json::from_str(line).expect("one JSON entry per line");
                seqs.insert(v["seq"].as_u64().expect("seq"));
            }
        }
    }
    seqs
}

#[tokio::test(flavor = "multi_thread")]
async fn old_things_are_forgotten_everywhere_and_audit_is_exported_first() {
    let mut c = Cluster::start_with(
        3,
        &[
            "--keep-releases",
            "2",
            "--audit-max-age-s",
            "1",
            "--forget-gone-after-s",
            "1",
            "--forget-tokens-after-s",
            "1",
            "--retention-every-ms",
            "200",
            "--node-grace-ms",
            "500",
        ],
    )
    .await;
    let admin_token = c.bootstrap().await;
    let admin = c.client_with(0, Some(admin_token.clone()));

    // An app that cannot be placed (no nodes): its create is audited as refused (a round that
    // only records that may wait a moment for more of its kind). Then five more releases:
    // 1 serves, 6 rolls out, 2..5 are superseded.
    admin.create_app(&app_body("web")).await.expect("create");
    until("the refusal is audited", || async {
        admin
            .audit(Some("web"))
            .await
            .is_ok_and(|a| a.iter().any(|a| a.kind == "refused"))
    })
    .await;
    for n in 2..=6 {
        admin
            .deploy("web", &format!("example/web:{n}"))
            .await
            .expect("deploy");
    }
    let first_audit: Vec<u64> = admin
        .audit(Some("web"))
        .await
        .expect("audit")
        .iter()
        .map(|a| a.seq)
        .collect();

    // A token revoked now, one that stays.
    let revoked = admin
        .create_token(&CreateToken {
            role: "viewer".into(),
            ttl_seconds: None,
            apps: None,
        })
        .await
        .expect("token");
    admin.revoke_token(&revoked.id).await.expect("revoke");
    let kept = admin
        .create_token(&CreateToken {
            role: "agent".into(),
            ttl_seconds: None,
            apps: None,
        })
        .await
        .expect("token");

    // A node that registers once and goes silent (down after 500 ms, then forgotten), and a
    // router that registers once.
    admin
        .create_region(&RegionBody {
            name: "eu-fra".into(),
            country: "DE".into(),
            latitude: 50.1,
            longitude: 8.7,
        })
        .await
        .expect("region");
    let agent = c.agent_client(0, &kept.token, "gone-1", "eu-fra");
    agent
        .register_node(
            "gone-1",
            &RegisterNode {
                protocol: AGENT_PROTOCOL,
                region: "eu-fra".into(),
                cpu_millis: 1000,
                memory_mb: 1024,
                labels: Default::default(),
                advertise_host: "127.0.0.1".into(),
            },
        )
        .await
        .expect("register node");
    let router = meridian_tests::http_as(meridian_tls::CertRole::Router, "eu-fra", "edge-1")
        .post(format!("{}/v1/router/register", c.url(0)))
        .bearer_auth(&admin_token)
        .json(&json!({"name": "edge-1", "region": "eu-fra", "url": "http://127.0.0.1:9"}))
        .send()
        .await
        .expect("register router");
    assert_eq!(router.status().as_u16(), 200);

    until("releases beyond the newest 2 are forgotten", || async {
        let numbers: Vec<u64> = admin
            .releases("web")
            .await
            .map(|r| r.iter().map(|r| r.number).collect())
            .unwrap_or_default();
        numbers == vec![6, 5, 1]
    })
    .await;
    until("the revoked token is forgotten", || async {
        admin
            .tokens()
            .await
            .is_ok_and(|t| t.iter().all(|t| t.id != revoked.id))
    })
    .await;
    until("the down node is forgotten", || async {
        admin
            .nodes()
            .await
            .is_ok_and(|n| n.iter().all(|n| n.name != "gone-1"))
    })
    .await;
    until("the silent router is forgotten", || async {
        let table: Value =
            match meridian_tests::http_as(meridian_tls::CertRole::Router, "eu-fra", "edge-1")
                .get(format!("{}/v1/router/table", c.url(0)))
                .bearer_auth(&admin_token)
                .send()
                .await
            {
                Ok(r) => r.json().await.unwrap_or(Value::Null),
                Err(_) => Value::Null,
            };
        table["routers"].as_array().is_some_and(|r| r.is_empty())
    })
    .await;
    until("the first audit entries are forgotten", || async {
        admin
            .audit(Some("web"))
            .await
            .is_ok_and(|a| a.iter().all(|a| !first_audit.contains(&a.seq)))
    })
    .await;

    // What left the state was exported first.
    let dirs: Vec<_> = c
        .servers
        .iter()
        .map(|s| s.data_dir.join("audit-export"))
        .collect();
    let dir_refs: Vec<&Path> = dirs.iter().map(|d| d.as_path()).collect();
    let out = exported(&dir_refs);
    for seq in &first_audit {
        assert!(
            out.contains(seq),
            "audit entry {seq} was forgotten unexported"
        );
    }

    // The token still in use, its node's region and the serving release stayed; every server
    // holds the same releases and tokens.
    c.wait_for_applied(Duration::from_secs(10)).await;
    for i in 0..3 {
        let view = c.client_with(i, Some(admin_token.clone()));
        let releases: Vec<u64> = http()
            .get(format!("{}/v1/apps/web/releases?stale=true", c.url(i)))
            .bearer_auth(&admin_token)
            .send()
            .await
            .expect("releases")
            .json::<Vec<Value>>()
            .await
            .expect("releases json")
            .iter()
            .map(|r| r["number"].as_u64().unwrap())
            .collect();
        assert_eq!(releases, vec![6, 5, 1], "server {i}");
        let tokens = view.tokens().await.expect("tokens");
        assert!(tokens.iter().any(|t| t.id == kept.id), "server {i}");
        assert!(tokens.iter().all(|t| t.id != revoked.id), "server {i}");
    }
}
