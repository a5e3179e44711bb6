//! The queries a reconcile round and the route table run on every refresh are served by an
//! index, never by a scan of a whole table that grows with the apps: SQLite's own plan for
//! each, on a migrated state database.

use meridian_state::{db, hot_queries};

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
    for (name, sql) in hot_queries::searched() {
        let steps = plan(&pool, &sql).await;
        report.push(format!("{name}: {}", steps.join(" | ")));
        assert!(
            !steps.iter().any(|s| scan(s)),
            "{name} scans a whole table or index: {steps:?}"
        );
    }
    for (name, sql) in hot_queries::live_reads() {
        let steps = plan(&pool, &sql).await;
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
