//! Bad input gets a clear 4xx with a JSON error body, never a 500, a hang or a panic.

use meridian_tests::{http, http_as, Cluster};
use meridian_tls::CertRole;
use serde_json::Value;

/// The OpenAPI document committed beside the server crate.
fn committed_document() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crates/meridian-server/openapi.json"
    );
    let text = std::fs::read_to_string(path).expect("read openapi.json");
    serde_json::from_str(&text).expect("openapi.json is JSON")
}

/// The documented operation a request reaches: its path template, with `{param}` segments
/// matching any one segment.
fn operation<'a>(doc: &'a Value, method: &str, path: &str) -> Option<&'a Value> {
    let path = path.split('?').next().unwrap_or(path);
    let segments: Vec<&str> = path.split('/').collect();
    let (_, item) = doc["paths"].as_object()?.iter().find(|(template, _)| {
        let t: Vec<&str> = template.split('/').collect();
        t.len() == segments.len()
            && t.iter()
                .zip(&segments)
                .all(|(t, s)| t == s || (t.starts_with('{') && t.ends_with('}')))
    })?;
    item.get(method.to_lowercase())
}

/// Fails unless the document lists `status` among the answers of the operation `path` reaches.
/// Requests no route serves (404, 405 from the fallbacks) are not checked.
fn assert_documented(doc: &Value, method: &str, path: &str, status: u16) {
    let Some(op) = operation(doc, method, path) else {
        assert!(
            matches!(status, 404 | 405),
            "{method} {path} is not documented, yet answered {status}"
        );
        return;
    };
    assert!(
        op["responses"][status.to_string()].is_object(),
        "{method} {path} answered {status}, which its operation does not document: {}",
        op["responses"]
    );
}

/// The client an agent or router endpoint's real caller would use (its certificate names the
/// node or router the request is about), else a client without a certificate.
fn client_for(path: &str, body: Option<&str>) -> reqwest::Client {
    if let Some(rest) = path.strip_prefix("/v1/agent/nodes/") {
        let node = rest.split('/').next().unwrap_or_default();
        return http_as(CertRole::Agent, "eu-fra", node);
    }
    if path.starts_with("/v1/agent/") {
        return http_as(CertRole::Agent, "eu-fra", "fra-1");
    }
    if path.starts_with("/v1/router/") {
        let parsed: Value = body
            .and_then(|b| serde_json::from_str(b).ok())
            .unwrap_or(Value::Null);
        let label = |key: &str, default: &str| {
            parsed[key]
                .as_str()
                .filter(|v| meridian_tls::names::is_label(v))
                .unwrap_or(default)
                .to_string()
        };
        return http_as(
            CertRole::Router,
            &label("region", "eu-fra"),
            &label("name", "r1"),
        );
    }
    http()
}

async fn send(
    c: &Cluster,
    method: &str,
    path: &str,
    body: Option<&str>,
    content_type: &str,
) -> (u16, Value) {
    let url = format!("{}{path}", c.url(1));
    let mut req = client_for(path, body)
        .request(method.parse().unwrap(), url)
        .bearer_auth(c.admin.clone().unwrap());
    if let Some(b) = body {
        req = req.header("content-type", content_type).body(b.to_string());
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_invalid_requests_get_json_errors() {
    let mut c = Cluster::start(3).await;
    c.bootstrap().await;
    let json = "application/json";
    // (method, path, body, content type, expected status, expected error field)
    type Case<'a> = (
        &'a str,
        &'a str,
        Option<String>,
        &'a str,
        u16,
        Option<&'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/v1/apps",
            Some("{not json".into()),
            json,
            400,
            None,
        ),
        ("POST", "/v1/apps", Some("".into()), json, 400, None),
        (
            "POST",
            "/v1/apps",
            Some(r#"{"name":"web"}"#.into()),
            json,
            422,
            None,
        ),
        (
            "POST",
            "/v1/apps",
            Some(r#"{"name":"web","image":"w","port":"eighty"}"#.into()),
            json,
            422,
            None,
        ),
        (
            "POST",
            "/v1/apps",
            Some(r#"{"name":"Bad_Name","image":"w","port":80}"#.into()),
            json,
            422,
            Some("name"),
        ),
        (
            "POST",
            "/v1/apps",
            Some(format!(
                r#"{{"name":"{}","image":"w","port":80}}"#,
                "a".repeat(64)
            )),
            json,
            422,
            Some("name"),
        ),
        (
            "POST",
            "/v1/apps",
            Some(r#"{"name":"web","image":"w","port":0}"#.into()),
            json,
            422,
            Some("port"),
        ),
        (
            "POST",
            "/v1/apps",
            Some(r#"{"name":"web","image":"w","port":80,"residency":["XX"]}"#.into()),
            json,
            422,
            Some("residency[0]"),
        ),
        (
            "POST",
            "/v1/apps",
            Some(r#"{"name":"web","image":"w","port":80,"regions":["nowhere"]}"#.into()),
            json,
            422,
            Some("regions[0]"),
        ),
        (
            "POST",
            "/v1/apps",
            Some(r#"{"name":"web","image":"w","port":80,"extra":1}"#.into()),
            json,
            422,
            None,
        ),
        (
            "POST",
            "/v1/apps",
            Some(r#"{"name":"web","image":"w","port":80}"#.into()),
            "text/plain",
            415,
            None,
        ),
        (
            "POST",
            "/v1/regions",
            Some(r#"{"name":"eu-fra","country":"Germany","latitude":50,"longitude":8}"#.into()),
            json,
            422,
            Some("country"),
        ),
        (
            "POST",
            "/v1/regions",
            Some(r#"{"name":"eu-fra","country":"DE","latitude":91,"longitude":8}"#.into()),
            json,
            422,
            Some("latitude"),
        ),
        (
            "POST",
            "/v1/tokens",
            Some(r#"{"role":"root"}"#.into()),
            json,
            422,
            Some("role"),
        ),
        (
            "POST",
            "/v1/tokens",
            Some(r#"{"role":"viewer","ttl_seconds":0}"#.into()),
            json,
            422,
            Some("ttl_seconds"),
        ),
        ("GET", "/v1/apps/Not-A-Name", None, json, 404, None),
        ("GET", "/v1/apps/missing", None, json, 404, None),
        ("DELETE", "/v1/apps/missing", None, json, 404, None),
        ("GET", "/v1/nothing-here", None, json, 404, None),
        (
            "DELETE",
            "/v1/cluster/members/not-a-number",
            None,
            json,
            404,
            None,
        ),
        ("PUT", "/v1/apps", None, json, 405, None),
        // Edge routing.
        (
            "POST",
            "/v1/apps",
            Some(r#"{"name":"web","image":"w","port":80,"domains":["not a domain"]}"#.into()),
            json,
            422,
            Some("domains[0]"),
        ),
        (
            "POST",
            "/v1/apps",
            Some(
                r#"{"name":"web","image":"w","port":80,"domains":["a.example","A.example."]}"#
                    .into(),
            ),
            json,
            422,
            Some("domains[1]"),
        ),
        (
            "POST",
            "/v1/apps",
            Some(r#"{"name":"web","image":"w","port":80,"origin_bound":["XX"]}"#.into()),
            json,
            422,
            Some("origin_bound[0]"),
        ),
        (
            "POST",
            "/v1/apps",
            Some(r#"{"name":"web","image":"w","port":80,"origin_bound":["NORDIC"]}"#.into()),
            json,
            422,
            Some("origin_bound[0]"),
        ),
        (
            "POST",
            "/v1/apps",
            Some(
                r#"{"name":"web","image":"w","port":80,"domains":["x.meridian.localhost"]}"#.into(),
            ),
            json,
            422,
            Some("domains[0]"),
        ),
        (
            "PATCH",
            "/v1/cluster/settings",
            Some(r#"{"apps_domain":"no spaces.example"}"#.into()),
            json,
            422,
            Some("apps_domain"),
        ),
        (
            "PATCH",
            "/v1/cluster/settings",
            Some(r#"{"apps_domain":"a.example","extra":1}"#.into()),
            json,
            422,
            None,
        ),
        (
            "POST",
            "/v1/router/register",
            Some(r#"{"name":"r1","region":"nowhere","url":"http://10.0.0.1:8080"}"#.into()),
            json,
            422,
            Some("region"),
        ),
        (
            "POST",
            "/v1/router/register",
            Some(r#"{"name":"r1","region":"eu-fra","url":"ftp://x"}"#.into()),
            json,
            422,
            Some("url"),
        ),
        (
            "POST",
            "/v1/router/register",
            Some(r#"{"name":"R 1","region":"eu-fra","url":"http://x"}"#.into()),
            json,
            422,
            Some("name"),
        ),
        ("GET", "/v1/route?app=web", None, json, 400, Some("ip")),
        ("GET", "/v1/route?ip=1.2.3.4", None, json, 400, Some("app")),
        (
            "GET",
            "/v1/route?app=web&ip=not-an-ip",
            None,
            json,
            400,
            Some("ip"),
        ),
        (
            "GET",
            "/v1/route?app=missing&ip=1.2.3.4",
            None,
            json,
            404,
            None,
        ),
        // Query parameters: missing, malformed or out of range is a 400 naming the parameter.
        (
            "GET",
            "/v1/router/table?after=x",
            None,
            json,
            400,
            Some("after"),
        ),
        (
            "GET",
            "/v1/router/table?after=-1",
            None,
            json,
            400,
            Some("after"),
        ),
        (
            "GET",
            "/v1/router/table?wait_ms=60001",
            None,
            json,
            400,
            Some("wait_ms"),
        ),
        (
            "GET",
            "/v1/router/table?wait_ms=1.5",
            None,
            json,
            400,
            Some("wait_ms"),
        ),
        (
            "GET",
            "/v1/router/table?wait_ms=",
            None,
            json,
            400,
            Some("wait_ms"),
        ),
        (
            "GET",
            "/v1/apps?stale=garbage",
            None,
            json,
            400,
            Some("stale"),
        ),
        ("GET", "/v1/apps?stale=1", None, json, 400, Some("stale")),
        ("GET", "/v1/nodes?stale=", None, json, 400, Some("stale")),
        (
            "GET",
            "/v1/cluster?stale=TRUE",
            None,
            json,
            400,
            Some("stale"),
        ),
        (
            "GET",
            "/v1/agent/nodes/n1/assignments?wait_ms=99999999",
            None,
            json,
            400,
            Some("wait_ms"),
        ),
        (
            "GET",
            "/v1/agent/nodes/n1/assignments?index=%2B1",
            None,
            json,
            400,
            Some("index"),
        ),
        (
            "GET",
            "/v1/agent/nodes/n1/assignments?index=18446744073709551616",
            None,
            json,
            400,
            Some("index"),
        ),
        (
            "GET",
            "/v1/audit?limit=10001",
            None,
            json,
            400,
            Some("limit"),
        ),
        ("GET", "/v1/audit?after=abc", None, json, 400, Some("after")),
        // Sequence numbers and generations are int64 in the document, as in the state.
        (
            "GET",
            "/v1/audit?after=9223372036854775808",
            None,
            json,
            400,
            Some("after"),
        ),
        (
            "GET",
            "/v1/agent/nodes/n1/assignments?index=9223372036854775808",
            None,
            json,
            400,
            Some("index"),
        ),
        (
            "GET",
            "/v1/audit?app=Bad_Name",
            None,
            json,
            400,
            Some("app"),
        ),
        ("GET", "/v1/audit?since=1h", None, json, 400, Some("since")),
        (
            "GET",
            "/v1/audit?newest=yes",
            None,
            json,
            400,
            Some("newest"),
        ),
        ("POST", "/v1/nodes/missing/undrain", None, json, 404, None),
        ("POST", "/v1/nodes/Bad_Name/undrain", None, json, 404, None),
        (
            "PATCH",
            "/v1/cluster/settings",
            Some(r#"{"default_residency":["EU","XX"]}"#.into()),
            json,
            422,
            Some("default_residency[1]"),
        ),
        (
            "PATCH",
            "/v1/cluster/settings",
            Some(r#"{"default_residency":["NORDICS"]}"#.into()),
            json,
            422,
            Some("default_residency[0]"),
        ),
        ("GET", "/v1/agent/images", None, json, 400, Some("name")),
        (
            "GET",
            "/v1/agent/images?name=",
            None,
            json,
            400,
            Some("name"),
        ),
    ];
    let doc = committed_document();
    for (method, path, body, ct, want, field) in cases {
        let (status, b) = send(&c, method, path, body.as_deref(), ct).await;
        assert_eq!(status, want, "{method} {path} {body:?} -> {b}");
        assert!(
            b["error"]["code"].is_string() && b["error"]["message"].is_string(),
            "{method} {path}: {b}"
        );
        if let Some(f) = field {
            assert_eq!(
                b["error"]["field"].as_str(),
                Some(f),
                "{method} {path}: {b}"
            );
        }
        assert_documented(&doc, method, path, status);
    }

    // Well-formed parameters are taken.
    for path in [
        "/v1/apps?stale=true",
        "/v1/apps?stale=false",
        "/v1/router/table?after=0&wait_ms=60000&stale=true",
        // The table's version is any u64.
        "/v1/router/table?after=18446744073709551615&stale=true",
        "/v1/audit?after=9223372036854775807",
        "/v1/audit?limit=10000&after=0&app=web",
        "/v1/audit?since=9223372036854775807&newest=true&limit=1",
    ] {
        let (status, b) = send(&c, "GET", path, None, json).await;
        assert_eq!(status, 200, "GET {path} -> {b}");
        assert_documented(&doc, "GET", path, status);
    }

    // A body over the limit: 413, through a follower and on the leader alike.
    let big = format!(
        r#"{{"name":"web","image":"w","port":80,"env":{{"A":"{}"}}}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    for i in 0..3 {
        let resp = http()
            .post(format!("{}/v1/apps", c.url(i)))
            .bearer_auth(c.admin.clone().unwrap())
            .header("content-type", json)
            .body(big.clone())
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status().as_u16(), 413);
        assert_documented(&doc, "POST", "/v1/apps", 413);
        let b: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(b["error"]["code"].is_string(), "{b}");
    }

    // Duplicates and conflicts: 409.
    let app = r#"{"name":"web","image":"w","port":80}"#;
    assert_eq!(send(&c, "POST", "/v1/apps", Some(app), json).await.0, 201);
    let (s, b) = send(&c, "POST", "/v1/apps", Some(app), json).await;
    assert_eq!(s, 409, "{b}");
    assert_documented(&doc, "POST", "/v1/apps", s);

    // Residency: a region outside the app's jurisdictions is refused with the reason.
    let us = r#"{"name":"us-iad","country":"US","latitude":38.9,"longitude":-77.4}"#;
    assert_eq!(send(&c, "POST", "/v1/regions", Some(us), json).await.0, 201);
    let eu_app = r#"{"name":"gdpr","image":"w","port":80,"residency":["EU"],"regions":["us-iad"]}"#;
    let (s, b) = send(&c, "POST", "/v1/apps", Some(eu_app), json).await;
    assert_eq!(s, 422, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("outside the app's residency [EU]"),
        "{b}"
    );

    // A pinned region cannot be deleted or moved out of the app's residency.
    let fra = r#"{"name":"eu-fra","country":"DE","latitude":50.1,"longitude":8.7}"#;
    assert_eq!(
        send(&c, "POST", "/v1/regions", Some(fra), json).await.0,
        201
    );
    let pinned = r#"{"name":"gdpr","image":"w","port":80,"residency":["EU"],"regions":["eu-fra"]}"#;
    assert_eq!(
        send(&c, "POST", "/v1/apps", Some(pinned), json).await.0,
        201
    );
    assert_eq!(
        send(&c, "DELETE", "/v1/regions/eu-fra", None, json).await.0,
        409
    );
    let (s, b) = send(
        &c,
        "PATCH",
        "/v1/regions/eu-fra",
        Some(r#"{"country":"US"}"#),
        json,
    )
    .await;
    assert_eq!(s, 409, "{b}");

    // PATCH validates too.
    let (s, b) = send(
        &c,
        "PATCH",
        "/v1/apps/web",
        Some(r#"{"replicas":100000}"#),
        json,
    )
    .await;
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (422, Some("replicas")),
        "{b}"
    );
    let (s, b) = send(&c, "PATCH", "/v1/apps/web", Some(r#"{"replicas":3}"#), json).await;
    assert_eq!(
        (s, b["replicas"].as_u64(), b["version"].as_u64()),
        (200, Some(3), Some(2)),
        "{b}"
    );

    // Nothing above crashed a server.
    for i in 0..3 {
        assert_eq!(
            http()
                .get(format!("{}/v1/health", c.url(i)))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
}

/// Every operation in the committed document is served by a real server (no fallback 404 or
/// 405), the server serves exactly that document, and what it answers a request without
/// credentials is among the answers the document lists.
#[tokio::test(flavor = "multi_thread")]
async fn the_document_is_what_the_server_serves() {
    let mut c = Cluster::start(1).await;
    c.bootstrap().await;
    let doc = committed_document();
    let served: Value = http()
        .get(format!("{}/v1/openapi.json", c.url(0)))
        .send()
        .await
        .expect("GET /v1/openapi.json")
        .json()
        .await
        .expect("the served document is JSON");
    assert!(
        served == doc,
        "GET /v1/openapi.json differs from crates/meridian-server/openapi.json; regenerate \
         the file with MERIDIAN_BLESS=1 cargo test -p meridian-server --test openapi"
    );
    let mut checked = 0;
    for (template, item) in doc["paths"].as_object().expect("paths") {
        // Any value reaches the handler; "x" is not a node, app, region or blob.
        let path: String = template
            .split('/')
            .map(|s| if s.starts_with('{') { "x" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        for method in item.as_object().expect("path item").keys() {
            let resp = http()
                .request(method.to_uppercase().parse().unwrap(), c.url(0) + &path)
                .send()
                .await
                .expect("request");
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            assert!(
                !(status == 404 && body["error"]["message"] == "no such route") && status != 405,
                "{method} {template} is documented but not served: {status} {body}"
            );
            if status >= 400 && method != "head" {
                assert!(
                    body["error"]["code"].is_string(),
                    "{method} {template}: {status} {body}"
                );
            }
            // Without credentials, a route that needs some refuses before reading anything.
            if item[method]["security"].is_array() {
                assert_eq!(status, 401, "{method} {template}: {body}");
            }
            assert_documented(&doc, method, &path, status);
            checked += 1;
        }
    }
    assert!(checked > 40, "only {checked} operations in the document");
}
