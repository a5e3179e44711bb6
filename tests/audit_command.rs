//! `meridian audit` against a real server: a table for people, JSON for programs, filtered
//! by app and by time, the newest entries first to go when there are more.

use meridian_tests::workers::create_app_args;
use meridian_tests::Cluster;
use serde_json::Value;

/// `meridian audit ... --json`, parsed.
fn audit_json(c: &Cluster, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["audit", "--json"];
    all.extend_from_slice(args);
    let (code, out, err) = c.cli(&all);
    assert_eq!(code, 0, "{args:?}: {err}");
    serde_json::from_str::<Vec<Value>>(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn apps_of(entries: &[Value]) -> Vec<&str> {
    entries.iter().filter_map(|e| e["app"].as_str()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_reads_as_a_table_or_json_filtered_by_app_and_time() {
    let mut c = Cluster::start(1).await;
    c.bootstrap().await;
    for args in [
        create_app_args("web", &["--residency", "EU"]),
        create_app_args("api", &["--anywhere"]),
    ] {
        let (code, _, err) = c.cli(&args);
        assert_eq!(code, 0, "{err}");
    }

    // For people: a table, oldest first, each create with its policy and where it came from.
    let (code, out, err) = c.cli(&["audit"]);
    assert_eq!(code, 0, "{err}");
    let mut lines = out.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["TIME", "APP", "KIND", "NODE", "REGION", "POLICY", "DETAIL"]
    );
    let web = out
        .lines()
        .find(|l| l.contains(" web "))
        .expect("a row of web");
    assert!(
        web.contains("created")
            && web.contains("residency [EU]")
            && web.contains("created with its own residency [EU]"),
        "{out}"
    );
    assert!(
        out.contains("created to run anywhere, as its creator asked"),
        "{out}"
    );

    // For programs: JSON, the same entries.
    let all = audit_json(&c, &[]);
    let created: Vec<&str> = all
        .iter()
        .filter(|e| e["kind"] == "created")
        .filter_map(|e| e["app"].as_str())
        .collect();
    assert_eq!(created, ["web", "api"]);
    assert!(all
        .iter()
        .all(|e| e["seq"].is_u64() && e["policy"].is_string()));

    // By app.
    let web = audit_json(&c, &["--app", "web"]);
    assert!(
        !web.is_empty() && apps_of(&web).iter().all(|a| *a == "web"),
        "{web:?}"
    );

    // By time: a duration back from now, or an RFC 3339 time.
    assert_eq!(audit_json(&c, &["--since", "1h"]).len(), all.len());
    assert_eq!(
        audit_json(&c, &["--since", "2000-01-01T00:00:00Z"]).len(),
        all.len()
    );
    assert!(audit_json(&c, &["--since", "2999-01-01T00:00:00+02:00"]).is_empty());
    let (code, out, err) = c.cli(&["audit", "--since", "2999-01-01T00:00:00Z"]);
    assert_eq!((code, out.lines().count()), (0, 1), "{out}{err}");

    // The newest N, saying when older ones match too (on stderr with --json).
    let (code, out, err) = c.cli(&["audit", "--limit", "1"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 3, "a header, a row, a note: {out}");
    assert!(out.contains("Older entries match too"), "{out}");
    let (code, out, err) = c.cli(&["audit", "--limit", "1", "--json"]);
    assert_eq!(code, 0, "{err}");
    let newest: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0]["seq"], all[all.len() - 1]["seq"]);
    assert!(err.contains("Older entries match too"), "{err}");

    // Bad input: the CLI names what it accepts; the server answers 400, never a 500.
    for (args, says) in [
        (&["audit", "--since", "yesterday"][..], "RFC 3339"),
        (&["audit", "--since", "2024-02-30T00:00:00Z"][..], "10m"),
        (&["audit", "--limit", "0"][..], "--limit"),
        (&["audit", "--limit", "10001"][..], "--limit"),
    ] {
        let (code, _, err) = c.cli(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let (code, _, err) = c.cli(&["audit", "--app", "Not_An_App"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("HTTP 400") && err.contains("Not_An_App"),
        "{err}"
    );
}
