//! The cluster's default residency, against a real server: set, shown, cleared and refused
//! when bad, through the CLI and the API; applied to apps created without a residency, shown
//! in the answer, and audited with where each app's residency came from.

use meridian_api::nodes::AuditEntry;
use meridian_tests::workers::create_app_args as create;
use meridian_tests::{http, Cluster};
use serde_json::{json, Value};

/// `meridian ... --json`, parsed; the note on stderr comes along.
fn cli_json(c: &Cluster, args: &[&str]) -> (Value, String) {
    let mut all = args.to_vec();
    all.push("--json");
    let (code, out, err) = c.cli(&all);
    assert_eq!(code, 0, "{args:?}: {err}");
    (
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}")),
        err,
    )
}

/// The `created` audit entry of `app`.
async fn created_entry(c: &Cluster, app: &str) -> AuditEntry {
    let entries = c.client(0).audit(Some(app)).await.expect("audit");
    entries
        .iter()
        .find(|e| e.kind == "created")
        .cloned()
        .unwrap_or_else(|| panic!("no created entry for {app}: {entries:?}"))
}

/// `PATCH /v1/cluster/settings` with `body`: the status and the answer.
async fn patch_settings(c: &Cluster, body: &str) -> (u16, Value) {
    let resp = http()
        .patch(format!("{}/v1/cluster/settings", c.url(0)))
        .bearer_auth(c.admin.clone().unwrap_or_default())
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("PATCH settings");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_residency_applies_to_apps_without_one_and_is_audited() {
    let mut c = Cluster::start(1).await;
    c.bootstrap().await;
    c.three_regions().await;

    // Empty by default: an app without a residency may run anywhere, and the CLI says how
    // to restrict it.
    let (code, out, err) = c.cli(&["cluster", "settings"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(
            "default residency:  none (apps created without a residency may run anywhere)"
        ),
        "{out}"
    );
    let (code, out, err) = c.cli(&create("free", &[]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("residency:  anywhere (none given, no cluster default)"),
        "{out}"
    );
    for says in [
        "App free may run in any region",
        "meridian apps update free --residency EU",
        "meridian cluster settings --default-residency EU",
    ] {
        assert!(out.contains(says), "{says:?} missing from:\n{out}");
    }
    let entry = created_entry(&c, "free").await;
    assert_eq!(entry.policy, "residency [anywhere]");
    assert!(
        entry
            .detail
            .contains("the cluster has no default residency"),
        "{entry:?}"
    );

    // Bad values: 422 with a JSON body naming the item, through the API and the CLI.
    for (body, field) in [
        (json!({"default_residency": ["XX"]}), "default_residency[0]"),
        (
            json!({"default_residency": ["EU", "eu"]}),
            "default_residency[1]",
        ),
        (
            json!({"default_residency": ["NORDICS"]}),
            "default_residency[0]",
        ),
        (
            json!({"default_residency": ["DE", ""]}),
            "default_residency[1]",
        ),
    ] {
        let (status, answer) = patch_settings(&c, &body.to_string()).await;
        assert_eq!(status, 422, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid", "{answer}");
        assert_eq!(answer["error"]["field"], field, "{body}: {answer}");
    }
    for body in [
        r#"{"default_residency":"EU"}"#,
        r#"{"default_residency":[1]}"#,
    ] {
        let (status, answer) = patch_settings(&c, body).await;
        assert_eq!(status, 422, "{body}: {answer}");
        assert!(answer["error"]["message"].is_string(), "{answer}");
    }
    let (code, _, err) = c.cli(&["cluster", "settings", "--default-residency", "EU,XX"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("default_residency[1]") && err.contains("HTTP 422"),
        "{err}"
    );

    // Set: shown, and applied to the next app created without a residency.
    let (code, out, err) = c.cli(&["cluster", "settings", "--default-residency", "EU, CH"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("default residency:  EU, CH\n"), "{out}");
    let (code, out, err) = c.cli(&create("web", &[]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("residency:  EU, CH (the cluster's default)"),
        "{out}"
    );
    assert!(!out.contains("may run in any region"), "{out}");
    let (app, note) = cli_json(&c, &create("shop", &[]));
    assert_eq!(app["residency"], json!(["EU", "CH"]));
    assert_eq!(app["residency_source"], "cluster_default");
    assert!(note.is_empty(), "{note}");
    let entry = created_entry(&c, "web").await;
    assert_eq!(entry.policy, "residency [EU, CH]");
    assert_eq!(
        entry.detail,
        "created without a residency; the cluster's default residency [EU, CH] applies"
    );

    // An app's own residency, or --anywhere, is its own.
    let (app, _) = cli_json(&c, &create("us", &["--residency", "US"]));
    assert_eq!(
        (&app["residency"], &app["residency_source"]),
        (&json!(["US"]), &json!("app"))
    );
    assert_eq!(
        created_entry(&c, "us").await.detail,
        "created with its own residency [US]"
    );
    let (app, note) = cli_json(&c, &create("any", &["--anywhere"]));
    assert_eq!(
        (&app["residency"], &app["residency_source"]),
        (&json!([]), &json!("app"))
    );
    assert!(note.is_empty(), "{note}");
    assert_eq!(
        created_entry(&c, "any").await.detail,
        "created to run anywhere, as its creator asked"
    );

    // Pinned outside the default: refused, saying the residency is the cluster's default.
    let (code, _, err) = c.cli(&create("pinned", &["--region", "us-iad"]));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("regions[0]")
            && err.contains("cluster's default residency")
            && err.contains("HTTP 422"),
        "{err}"
    );

    // Cleared: back to none; apps created meanwhile keep what they got.
    let (code, out, err) = c.cli(&["cluster", "settings", "--default-residency", ""]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("default residency:  none"), "{out}");
    let settings = c.client(0).settings().await.expect("settings");
    assert_eq!(settings.default_residency, Some(Vec::new()));
    let (app, note) = cli_json(&c, &["apps", "show", "web"]);
    assert_eq!(app["residency"], json!(["EU", "CH"]));
    assert!(note.is_empty(), "{note}");
    let (app, note) = cli_json(&c, &create("later", &[]));
    assert_eq!(
        (&app["residency"], &app["residency_source"]),
        (&json!([]), &json!("none"))
    );
    assert!(note.contains("App later may run in any region"), "{note}");
}
