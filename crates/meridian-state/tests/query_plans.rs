//! The queries a reconcile round and the route table run on every refresh are served by an
//! index, never by a scan of a whole table that grows with the apps: SQLite's own plan for
//! each, on a migrated state database.

use meridian_state::db;

/// Each query as the code runs it (with `?` for its parameters), named by the function.
const HOT: &[(&str, &str)] = &[
    (
        "instances::running_instances_of",
        "SELECT * FROM instances WHERE desired = 'run' AND app IN (?, ?)",
    ),
    (
        "instances::apps_on_node",
        "SELECT DISTINCT app FROM instances WHERE node = ? AND desired = 'run' ORDER BY app",
    ),
    (
        "instances::instances (one node)",
        "SELECT * FROM instances WHERE node = ? AND desired = 'run' ORDER BY id",
    ),
    (
        "releases::live_states_of",
        "SELECT app, number, status, deadline_at, json_extract(config, '$.image') AS image \
         FROM releases WHERE status IN ('rolling', 'active') AND app IN (?, ?) \
         ORDER BY app, number DESC",
    ),
    (
        "releases::rolling_past_deadline",
        "SELECT app FROM releases WHERE status = 'rolling' AND deadline_at < ?",
    ),
    (
        "apps::placements_of",
        "SELECT name, image, replicas, residency, regions, cpu_millis, memory_mb FROM apps \
         WHERE name IN (?, ?)",
    ),
    (
        "schedule::unplaced_of",
        "SELECT app, unplaced FROM app_status WHERE app IN (?, ?)",
    ),
];

/// Whole-table reads that are meant to be whole (the world loaded when a server starts to
/// lead, the route table): they must at least read only the live rows, through the partial
/// index `instances_live`.
const LIVE_ONLY: &[(&str, &str)] = &[
    (
        "instances::instances (all)",
        "SELECT * FROM instances WHERE desired = 'run' ORDER BY app, id",
    ),
    (
        "instances::footprints",
        "SELECT i.app AS app, i.node AS node, COUNT(*) AS n, a.cpu_millis AS cpu, \
         a.memory_mb AS mem FROM instances i JOIN apps a ON a.name = i.app \
         WHERE i.desired = 'run' GROUP BY i.app, i.node",
    ),
    (
        "routing::routable_instances",
        "SELECT i.id, i.app, i.node, n.region, i.address FROM instances i \
         JOIN nodes n ON n.name = i.node \
         WHERE i.desired = 'run' AND i.state = 'healthy' AND i.address IS NOT NULL \
         AND n.status != 'down' ORDER BY i.app, i.id",
    ),
];

async fn plan(pool: &sqlx::SqlitePool, sql: &str) -> Vec<String> {
    let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(&format!("EXPLAIN QUERY PLAN {sql}"))
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.into_iter().map(|r| r.3).collect()
}

/// A step that reads every row of a table or of one of its indexes.
fn scan(step: &str) -> bool {
    step.starts_with("SCAN ")
}

#[tokio::test]
async fn hot_queries_use_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let pool = db::open_state(&dir.path().join("state.db"), 1)
        .await
        .unwrap();
    let mut report = Vec::new();
    for (name, sql) in HOT {
        let steps = plan(&pool, sql).await;
        report.push(format!("{name}: {}", steps.join(" | ")));
        assert!(
            !steps.iter().any(|s| scan(s)),
            "{name} scans a whole table or index: {steps:?}"
        );
    }
    for (name, sql) in LIVE_ONLY {
        let steps = plan(&pool, sql).await;
        report.push(format!("{name}: {}", steps.join(" | ")));
        assert!(
            steps.iter().any(|s| s.contains("instances_live")),
            "{name} does not read through instances_live: {steps:?}"
        );
        assert!(
            !steps
                .iter()
                .any(|s| scan(s) && !s.contains("USING INDEX instances_live")),
            "{name} scans more than the live instances: {steps:?}"
        );
    }
    // The plans, for BENCHMARKS.md and for whoever changes a query or an index.
    println!("{}", report.join("\n"));
}
