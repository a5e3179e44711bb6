//! Every operation of the OpenAPI document, called by every role (each with the certificate its
//! kind of client holds) and with no token, against a real server over TLS: the answer matches
//! the policy table below, and an operation missing from the table fails the test (default
//! deny: a new route must say who may call it).

use std::collections::BTreeSet;

use meridian_api::tokens::CreateToken;
use meridian_tests::{http, http_as, Cluster};
use meridian_tls::CertRole;
use serde_json::Value;

const ADMIN: &str = "admin";
const DEPLOYER: &str = "deployer";
const VIEWER: &str = "viewer";
const AGENT: &str = "agent";
const ROUTER: &str = "router";
/// Who reads.
const READERS: &[&str] = &[ADMIN, DEPLOYER, VIEWER];
/// Who changes apps and pushes images.
const DEPLOYERS: &[&str] = &[ADMIN, DEPLOYER];
/// Who manages tokens, regions, nodes and the cluster.
const ADMINS: &[&str] = &[ADMIN];
/// The routes of a server's peers: no token opens them (a server's certificate and the
/// cluster secret do).
const SERVERS: &[&str] = &[];
/// Open to anyone, token or not.
const ANYONE: Option<&[&str]> = None;

/// The policy: for each operation, the roles that may call it (`None`: no token needed).
const POLICY: &[(&str, &str, Option<&[&str]>)] = &[
    ("get", "/metrics", ANYONE),
    ("get", "/v1/health", ANYONE),
    ("get", "/v1/ready", ANYONE),
    ("get", "/v1/openapi.json", ANYONE),
    ("post", "/v1/auth/bootstrap", ANYONE),
    ("get", "/v1/agent/images", Some(&[AGENT])),
    ("put", "/v1/agent/nodes/{name}", Some(&[AGENT])),
    ("get", "/v1/agent/nodes/{name}/assignments", Some(&[AGENT])),
    ("post", "/v1/agent/nodes/{name}/heartbeat", Some(&[AGENT])),
    ("put", "/v1/agent/nodes/{name}/instances", Some(&[AGENT])),
    ("get", "/v1/apps", Some(READERS)),
    ("post", "/v1/apps", Some(DEPLOYERS)),
    ("get", "/v1/apps/{name}", Some(READERS)),
    ("delete", "/v1/apps/{name}", Some(DEPLOYERS)),
    ("patch", "/v1/apps/{name}", Some(DEPLOYERS)),
    ("post", "/v1/apps/{name}/deploy", Some(DEPLOYERS)),
    ("get", "/v1/apps/{name}/instances", Some(READERS)),
    ("get", "/v1/apps/{name}/plan", Some(READERS)),
    ("get", "/v1/apps/{name}/releases", Some(READERS)),
    ("get", "/v1/audit", Some(READERS)),
    ("get", "/v1/cluster", Some(READERS)),
    ("post", "/v1/cluster/join", Some(SERVERS)),
    ("delete", "/v1/cluster/members/{id}", Some(ADMINS)),
    ("get", "/v1/cluster/settings", Some(READERS)),
    ("patch", "/v1/cluster/settings", Some(ADMINS)),
    ("get", "/v1/images", Some(READERS)),
    ("post", "/v1/images", Some(DEPLOYERS)),
    ("post", "/v1/images/blobs", Some(DEPLOYERS)),
    ("get", "/v1/internal/images/{digest}", Some(SERVERS)),
    ("head", "/v1/internal/images/{digest}", Some(SERVERS)),
    ("post", "/v1/internal/raft/append", Some(SERVERS)),
    ("post", "/v1/internal/raft/snapshot", Some(SERVERS)),
    ("post", "/v1/internal/raft/vote", Some(SERVERS)),
    ("get", "/v1/nodes", Some(READERS)),
    ("get", "/v1/nodes/{name}", Some(READERS)),
    ("post", "/v1/nodes/{name}/drain", Some(ADMINS)),
    ("post", "/v1/nodes/{name}/undrain", Some(ADMINS)),
    ("get", "/v1/regions", Some(READERS)),
    ("post", "/v1/regions", Some(ADMINS)),
    ("get", "/v1/regions/{name}", Some(READERS)),
    ("delete", "/v1/regions/{name}", Some(ADMINS)),
    ("patch", "/v1/regions/{name}", Some(ADMINS)),
    ("get", "/v1/route", Some(READERS)),
    ("post", "/v1/router/register", Some(&[ROUTER])),
    ("get", "/v1/router/table", Some(&[ROUTER])),
    ("get", "/v1/tokens", Some(ADMINS)),
    ("post", "/v1/tokens", Some(ADMINS)),
    ("delete", "/v1/tokens/{id}", Some(ADMINS)),
];

/// The client a caller of `role` has: people call without a certificate; an agent with its
/// node's (named `x`, as the paths below name every node), a router with its own.
fn client_of(role: Option<&str>) -> reqwest::Client {
    match role {
        Some(AGENT) => http_as(CertRole::Agent, "eu-fra", "x"),
        Some(ROUTER) => http_as(CertRole::Router, "eu-fra", "x"),
        _ => http(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_answers_every_role_as_the_policy_says() {
    let mut c = Cluster::start(1).await;
    c.bootstrap().await;
    let url = c.url(0);
    let admin = c.client(0);
    let mut tokens = vec![(ADMIN, c.admin.clone().unwrap())];
    for role in [DEPLOYER, VIEWER, AGENT, ROUTER] {
        let t = admin
            .create_token(&CreateToken {
                role: role.into(),
                ttl_seconds: None,
                apps: None,
            })
            .await
            .expect("token");
        tokens.push((role, t.token));
    }
    let doc: Value = http()
        .get(format!("{url}/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    let mut seen = BTreeSet::new();
    let mut wrong = Vec::new();
    for (template, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            let policy = POLICY
                .iter()
                .find(|(m, p, _)| m == method && p == template)
                .unwrap_or_else(|| {
                    panic!("{method} {template} is not in the policy table: say who may call it")
                });
            seen.insert((method.clone(), template.clone()));
            let path: String = template
                .split('/')
                .map(|s| if s.starts_with('{') { "x" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            let callers = std::iter::once((None, None)).chain(
                tokens
                    .iter()
                    .map(|(role, token)| (Some(*role), Some(token.as_str()))),
            );
            for (role, token) in callers {
                let mut req = client_of(role).request(
                    method.to_uppercase().parse().unwrap(),
                    format!("{url}{path}"),
                );
                if let Some(t) = token {
                    req = req.bearer_auth(t);
                }
                if matches!(method.as_str(), "post" | "put" | "patch") {
                    req = req.header("content-type", "application/json").body("{}");
                }
                let resp = req.send().await.expect("request");
                let status = resp.status().as_u16();
                let allowed = match policy.2 {
                    None => true,
                    Some(roles) => role.is_some_and(|r| roles.contains(&r)),
                };
                let refused = status == 401 || status == 403;
                let fits = if allowed {
                    !refused && status < 500
                } else if role.is_none() {
                    status == 401
                } else {
                    refused
                };
                if !fits {
                    wrong.push(format!(
                        "{method} {template} as {}: {status} (policy: {})",
                        role.unwrap_or("no token"),
                        if allowed { "allowed" } else { "refused" }
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "answers against the policy:\n{}",
        wrong.join("\n")
    );
    let stale: Vec<_> = POLICY
        .iter()
        .filter(|(m, p, _)| !seen.contains(&(m.to_string(), p.to_string())))
        .collect();
    assert!(
        stale.is_empty(),
        "the policy names operations that do not exist: {stale:?}"
    );
}
