//! The words users see when something is refused or fails, read from the `meridian` CLI
//! against a real server: token refusals say what the token may do and why it was refused, a
//! halted release names its failed instance and check, and `meridian route` names the rule
//! that excludes a region before its health.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use meridian_api::agent::{InstanceReport, InstanceReports};
use meridian_api::tokens::CreateToken;
use meridian_api::ErrorCode;
use meridian_client::Client;
use meridian_core::InstanceState;
use meridian_tests::simulated_agent::{keep_beating, register, Agents};
use meridian_tests::workers::eventually;
use meridian_tests::{app_body, meridian_bin, Cluster};

/// Runs the CLI with `token` instead of the admin's; answers exit code and stderr.
fn cli_as(c: &Cluster, token: &str, args: &[&str]) -> (i32, String) {
    let mut argv = vec!["--token", token];
    argv.extend_from_slice(args);
    let (code, _, stderr) = c.cli(&argv);
    (code, stderr)
}

async fn token(c: &Cluster, role: &str, ttl: Option<u64>, apps: &[&str]) -> (String, String) {
    let t = c
        .client(0)
        .create_token(&CreateToken {
            role: role.into(),
            ttl_seconds: ttl,
            apps: (!apps.is_empty()).then(|| apps.iter().map(|a| a.to_string()).collect()),
        })
        .await
        .expect("create token");
    (t.id, t.token)
}

/// The admin token's claims signed with another key: what a token of another cluster is.
fn signed_elsewhere(token: &str) -> String {
    let claims = token.split('.').nth(1).expect("a JWT");
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .expect("base64 claims"),
    )
    .expect("JSON claims");
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"the-signing-key-of-another-cluster"),
    )
    .expect("sign")
}

/// What the CLI prints when the server refuses a call with `status`: the message with its
/// code and status, then the server's hint; and exit code 1.
fn refused(status: u16, message: &str, hint: &str) -> (i32, String) {
    let code = match status {
        401 => ErrorCode::Unauthorized,
        _ => ErrorCode::Forbidden,
    };
    (
        1,
        format!("error: {message} ({code}, HTTP {status})\nhint: {hint}\n"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn token_refusals_say_what_was_refused_and_why() {
    let mut c = Cluster::start(1).await;
    assert_eq!(
        cli_as(&c, "anything", &["apps", "list"]),
        refused(
            401,
            "the cluster is not bootstrapped yet",
            "bootstrapping it creates the first admin token"
        )
    );

    let admin = c.bootstrap().await;
    for app in ["hello", "web"] {
        c.client(0)
            .create_app(&app_body(app))
            .await
            .expect("create app");
    }

    let (_, hello_only) = token(&c, "deployer", None, &["hello"]).await;
    let update = |app| ["apps", "update", app, "--replicas", "2"];
    assert_eq!(
        cli_as(&c, &hello_only, &update("web")),
        refused(
            403,
            "this deployer token may deploy app hello only; it cannot change app web",
            "a deployer token for app web, or an admin token, may do this"
        )
    );
    let (code, stderr) = cli_as(&c, &hello_only, &update("hello"));
    assert_eq!(code, 0, "the token may change its own app: {stderr}");

    let (_, viewer) = token(&c, "viewer", None, &[]).await;
    let create = ["apps", "create", "api", "--image", "api:1", "--port", "80"];
    assert_eq!(
        cli_as(&c, &viewer, &create),
        refused(
            403,
            "this viewer token may only read; it cannot create apps",
            "a deployer token not limited to some apps, or an admin token, may do this"
        )
    );
    assert_eq!(
        cli_as(&c, &viewer, &["tokens", "list"]),
        refused(
            403,
            "this viewer token may only read; it cannot manage tokens",
            "only an admin token may do this"
        )
    );

    let list = ["apps", "list"];
    assert_eq!(
        cli_as(&c, &signed_elsewhere(&admin), &list),
        refused(
            401,
            "the token's signature does not match this cluster's signing key",
            "it was issued by another cluster, or changed since; use a token this cluster issued"
        )
    );
    assert_eq!(
        cli_as(&c, "bogus", &list),
        refused(
            401,
            "this is not a well-formed token",
            "a token is three base64 parts joined by dots; check that it was copied whole"
        )
    );

    let (revoked_id, revoked) = token(&c, "viewer", None, &[]).await;
    c.client(0).revoke_token(&revoked_id).await.expect("revoke");
    let (short_id, short) = token(&c, "viewer", Some(1), &[]).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for (token, message) in [
        (revoked, format!("token {revoked_id} was revoked")),
        (short, format!("token {short_id} has expired")),
    ] {
        assert_eq!(
            cli_as(&c, &token, &list),
            refused(401, &message, "ask an admin for a new token")
        );
    }
}

/// Reports every instance assigned to `node`: those of `release` as `bad` says, the others
/// healthy. Answers how many of `release` it reported.
async fn report(agent: &Client, node: &str, release: u64, bad: &InstanceReport) -> usize {
    let Ok(a) = agent.assignments(node, 0, 0).await else {
        return 0;
    };
    let instances: Vec<InstanceReport> = a
        .instances
        .iter()
        .map(|x| {
            if x.release == release {
                InstanceReport {
                    id: x.id.clone(),
                    ..bad.clone()
                }
            } else {
                InstanceReport {
                    id: x.id.clone(),
                    state: InstanceState::Healthy,
                    exit_code: None,
                    address: Some("127.0.0.1:20000".into()),
                    detail: None,
                }
            }
        })
        .collect();
    let of_release = a.instances.iter().filter(|x| x.release == release).count();
    let reports = InstanceReports {
        generation: a.generation,
        instances,
    };
    match agent.report_instances(node, &reports).await {
        Ok(()) => of_release,
        Err(_) => 0,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_halted_release_names_its_instance_node_region_and_check() {
    let mut c = Cluster::start(1).await;
    c.bootstrap().await;
    c.three_regions().await;
    let admin = c.client(0);
    let agents = Agents::new(&c, 0, c.token("agent").await);
    register(&agents, "fra-1", "eu-fra").await;
    let beating = keep_beating(&agents, &["fra-1"]);
    let agent = agents.of("fra-1");
    let app = serde_json::from_value(serde_json::json!({
        "name": "web", "image": "web:1", "port": 8080, "residency": ["EU"],
        "health": {"http": "/healthz"}
    }))
    .expect("app body");
    admin.create_app(&app).await.expect("create app");
    let healthy = InstanceReport {
        id: String::new(),
        state: InstanceState::Healthy,
        exit_code: None,
        address: Some("127.0.0.1:20000".into()),
        detail: None,
    };
    eventually("release 1 healthy", Duration::from_secs(20), || async {
        report(&agent, "fra-1", 1, &healthy).await == 1
    })
    .await;

    // `meridian deploy` follows release 2 while its instance fails its check.
    let deploy = Command::new(meridian_bin())
        .args(["deploy", "web", "--image", "web:2", "--wait", "60s"])
        .env("MERIDIAN_ADDR", c.url(0))
        .env("MERIDIAN_CA_FILE", meridian_tests::pki().ca_file())
        .env("MERIDIAN_TOKEN", c.admin.clone().unwrap_or_default())
        .env("MERIDIAN_CONFIG_DIR", c.dir.path().join("cli-config"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run meridian deploy");
    let failing = InstanceReport {
        state: InstanceState::Unhealthy,
        detail: Some("GET /healthz answered 503".into()),
        ..healthy.clone()
    };
    let mut deploy = deploy;
    let start = Instant::now();
    while deploy.try_wait().expect("wait for deploy").is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "meridian deploy did not end"
        );
        report(&agent, "fra-1", 2, &failing).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = deploy.wait_with_output().expect("deploy output");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let instances = admin.instances("web").await.expect("instances");
    let failed = instances
        .iter()
        .find(|i| i.release == 2)
        .expect("the instance of release 2");
    let reason = format!(
        "instance {} on node fra-1 in eu-fra failed its health check (HTTP GET /healthz), \
         last output: GET /healthz answered 503",
        failed.id
    );
    let last = stderr.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        format!("error: release 2 of web halted: {reason}; the previous release keeps serving"),
        "{stderr}"
    );

    let audit = admin.audit(Some("web")).await.expect("audit");
    let halt = audit
        .iter()
        .find(|a| a.kind == "release" && a.detail.starts_with("release 2 halted"))
        .unwrap_or_else(|| panic!("no halt in the audit: {audit:#?}"));
    assert_eq!(
        halt.detail,
        format!("release 2 halted: {reason}; the previous release keeps serving")
    );
    assert_eq!(halt.instance.as_deref(), Some(failed.id.as_str()));
    assert_eq!(halt.node.as_deref(), Some("fra-1"));
    assert_eq!(halt.region.as_deref(), Some("eu-fra"));
    assert_eq!(halt.country.as_deref(), Some("DE"));

    // An instance that exits is named with its exit code.
    let release = admin.deploy("web", "web:3").await.expect("deploy");
    let exited = InstanceReport {
        state: InstanceState::Exited,
        exit_code: Some(3),
        address: None,
        detail: None,
        ..healthy.clone()
    };
    eventually("release 3 halted", Duration::from_secs(20), || async {
        report(&agent, "fra-1", release.number, &exited).await;
        let releases = admin.releases("web").await.unwrap_or_default();
        releases
            .iter()
            .any(|r| r.number == release.number && r.status == "halted")
    })
    .await;
    let releases = admin.releases("web").await.expect("releases");
    let halted = releases
        .iter()
        .find(|r| r.number == release.number)
        .unwrap();
    let reason = halted.reason.as_deref().unwrap_or_default();
    assert!(
        reason.starts_with("instance ")
            && reason.ends_with(" on node fra-1 in eu-fra exited with code 3"),
        "{reason}"
    );
    beating.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn route_gives_the_residency_reason_before_health() {
    let mut c = Cluster::start(1).await;
    c.bootstrap().await;
    c.three_regions().await;
    let app = serde_json::from_value(serde_json::json!({
        "name": "eu", "image": "eu:1", "port": 8080, "residency": ["EU"]
    }))
    .expect("app body");
    c.client(0).create_app(&app).await.expect("create app");

    // No instance runs anywhere; us-iad is excluded by residency all the same.
    let (code, stdout, stderr) = c.cli(&["route", "eu", "192.0.2.1", "--region", "eu-fra"]);
    assert_eq!(code, 0, "{stderr}");
    let excluded = |region: &str| {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(region))
            .unwrap_or_else(|| panic!("no row for {region}: {stdout}"));
        row.split("  ")
            .filter(|cell| !cell.is_empty())
            .last()
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    assert_eq!(
        excluded("us-iad"),
        "US lies outside the app's residency (EU)",
        "{stdout}"
    );
    assert_eq!(excluded("eu-fra"), "no healthy instance", "{stdout}");
    assert!(
        stdout.contains("no region the app's residency allows (EU) holds a healthy instance"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn create_wait_says_why_an_app_cannot_be_placed() {
    let mut c = Cluster::start(1).await;
    c.bootstrap().await;
    c.three_regions().await;
    // Regions but no node: the scheduler refuses with its reason, and --wait says it at once
    // instead of waiting out its time.
    let start = Instant::now();
    let (code, out, err) = c.cli(&[
        "apps",
        "create",
        "waits",
        "--image",
        "x/y:1",
        "--port",
        "80",
        "--replicas",
        "2",
        "--residency",
        "EU",
        "--wait=60s",
    ]);
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains("error: 2 of 2 instances of waits cannot be placed: "),
        "{err}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "it waited: {err}"
    );
    // A bad duration is refused before anything is sent.
    let (code, _, err) = c.cli(&[
        "apps",
        "create",
        "late",
        "--image",
        "x/y:1",
        "--port",
        "80",
        "--wait=soon",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("expected a duration"), "{err}");
    assert!(c.client(0).app("late").await.is_err(), "late was created");
}
