//! Authentication and authorisation against a real three-server cluster.

use std::time::Duration;

use base64::Engine;
use meridian_api::tokens::CreateToken;
use meridian_tests::{app_body, http, Cluster};
use serde_json::{json, Value};

async fn status_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

fn assert_error(status: u16, body: &Value, want: u16) {
    assert_eq!(status, want, "{body}");
    assert!(
        body["error"]["code"].is_string(),
        "JSON error body expected, got {body}"
    );
    assert!(
        body["error"]["message"].is_string(),
        "JSON error body expected, got {body}"
    );
}

async fn get_apps(url: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = http().get(format!("{url}/v1/apps"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    status_of(req.send().await.expect("request")).await
}

async fn token(
    c: &Cluster,
    role: &str,
    ttl: Option<u64>,
    apps: Option<Vec<&str>>,
) -> (String, String) {
    let t = c
        .client(0)
        .create_token(&CreateToken {
            role: role.into(),
            ttl_seconds: ttl,
            apps: apps.map(|a| a.into_iter().map(String::from).collect()),
        })
        .await
        .expect("create token");
    (t.id, t.token)
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_checked_on_every_route() {
    let mut c = Cluster::start(3).await;
    // Before bootstrap nothing authenticated works.
    let (s, b) = get_apps(&c.url(1), Some("anything")).await;
    assert_error(s, &b, 401);

    c.bootstrap().await;
    let url = c.url(2);

    // No token, a malformed header.
    let (s, b) = get_apps(&url, None).await;
    assert_error(s, &b, 401);
    let resp = http()
        .get(format!("{url}/v1/apps"))
        .header("authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .unwrap();
    let (s, b) = status_of(resp).await;
    assert_error(s, &b, 401);

    // Wrong role: a viewer reads but cannot write; a deployer cannot manage tokens or regions;
    // agent and router tokens reach none of these routes.
    let (_, viewer) = token(&c, "viewer", None, None).await;
    assert_eq!(get_apps(&url, Some(&viewer)).await.0, 200);
    let err = meridian_tests::client(&url, Some(viewer.clone()))
        .create_app(&app_body("nope"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    let (_, deployer) = token(&c, "deployer", None, None).await;
    let dep = meridian_tests::client(&url, Some(deployer));
    dep.create_app(&app_body("web"))
        .await
        .expect("deployer writes apps");
    assert_eq!(dep.tokens().await.unwrap_err().status(), Some(403));
    let region = serde_json::from_value(
        json!({"name":"eu-fra","country":"DE","latitude":50.1,"longitude":8.7}),
    )
    .unwrap();
    assert_eq!(
        dep.create_region(&region).await.unwrap_err().status(),
        Some(403)
    );
    for role in ["agent", "router"] {
        let (_, t) = token(&c, role, None, None).await;
        let (s, b) = get_apps(&url, Some(&t)).await;
        assert_error(s, &b, 403);
    }

    // A deployer limited to one app may touch only that one.
    let (_, scoped) = token(&c, "deployer", None, Some(vec!["web"])).await;
    let scoped = meridian_tests::client(&url, Some(scoped));
    scoped
        .delete_app("web")
        .await
        .expect("scoped deployer deletes its app");
    assert_eq!(
        scoped
            .create_app(&app_body("other"))
            .await
            .unwrap_err()
            .status(),
        Some(403)
    );

    // Expired.
    let (_, short) = token(&c, "viewer", Some(1), None).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (s, b) = get_apps(&url, Some(&short)).await;
    assert_error(s, &b, 401);

    // alg=none, with the claims of a valid token.
    let admin = c.admin.clone().unwrap();
    let claims = admin.split('.').nth(1).unwrap().to_string();
    let none = format!("{}.{}.", b64(&json!({"alg":"none","typ":"JWT"})), claims);
    let (s, b) = get_apps(&url, Some(&none)).await;
    assert_error(s, &b, 401);

    // Another algorithm (HS512) and a wrong key, same claims.
    let payload: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&claims)
            .unwrap(),
    )
    .unwrap();
    for alg in [
        jsonwebtoken::Algorithm::HS256,
        jsonwebtoken::Algorithm::HS512,
    ] {
        let forged = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(alg),
            &payload,
            &jsonwebtoken::EncodingKey::from_secret(b"not-the-cluster-signing-key-at-all"),
        )
        .unwrap();
        let (s, b) = get_apps(&url, Some(&forged)).await;
        assert_error(s, &b, 401);
    }
    // A tampered signature.
    let mut tampered = admin.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let (s, b) = get_apps(&url, Some(&tampered)).await;
    assert_error(s, &b, 401);
    // Header tricks, truncation and a 16 KiB token: 401 with a JSON body, never a 500 (a head
    // past 64 KiB is refused before any of this: `tests/hostile.rs`).
    let kid = format!(
        "{}.{}.{}",
        b64(&json!({"alg":"HS256","kid":"../../../../dev/null"})),
        claims,
        admin.split('.').nth(2).unwrap()
    );
    let truncated = admin[..admin.len() / 2].to_string();
    let huge = format!(
        "{}.{}.x",
        b64(&json!({"alg":"HS256"})),
        "e".repeat(16 * 1024)
    );
    for bad in [kid, truncated, huge, "..".into(), "a.b.c.d".into()] {
        let (s, b) = get_apps(&url, Some(&bad)).await;
        assert_error(s, &b, 401);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_token_is_refused_by_every_server() {
    let mut c = Cluster::start(3).await;
    c.bootstrap().await;
    let (id, viewer) = token(&c, "viewer", None, None).await;
    for i in 0..3 {
        assert_eq!(get_apps(&c.url(i), Some(&viewer)).await.0, 200);
    }
    c.client(1).revoke_token(&id).await.expect("revoke");
    for i in 0..3 {
        let (s, b) = get_apps(&c.url(i), Some(&viewer)).await;
        assert_error(s, &b, 401);
        assert!(
            b["error"]["message"].as_str().unwrap().contains("revoked"),
            "{b}"
        );
    }
    // Revocation is replicated state: each server's own copy refuses it, too, once that
    // server has applied the revocation.
    c.wait_for_applied(Duration::from_secs(10)).await;
    for i in 0..3 {
        let resp = http()
            .get(format!("{}/v1/apps?stale=true", c.url(i)))
            .bearer_auth(&viewer)
            .send()
            .await
            .unwrap();
        let (s, b) = status_of(resp).await;
        assert_error(s, &b, 401);
    }
    // Unknown token id: 404.
    let err = c
        .client(0)
        .revoke_token("does-not-exist")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404));
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_bootstraps_have_exactly_one_winner() {
    let c = Cluster::start(3).await;
    let mut calls = Vec::new();
    for round in 0..6 {
        let url = c.url(round % 3);
        calls.push(tokio::spawn(async move {
            meridian_tests::client(&url, None).bootstrap().await
        }));
    }
    let mut won = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => won += 1,
            Err(e) => assert_eq!(e.status(), Some(409), "{e}"),
        }
    }
    assert_eq!(won, 1);
}
