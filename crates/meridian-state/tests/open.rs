//! Opening fresh databases must never fail with "database is locked": switching a new file to
//! WAL while the pool opens a second connection used to, about once in 400 opens.

use meridian_state::db;

#[tokio::test]
async fn fresh_databases_open_without_lock_errors() {
    for i in 0..400 {
        let dir = tempfile::tempdir().unwrap();
        if let Err(e) = db::open_log(&dir.path().join("log.db"), 2).await {
            panic!("open {i} of a fresh log.db failed: {e}");
        }
        if let Err(e) = db::open_state(&dir.path().join("state.db"), 4).await {
            panic!("open {i} of a fresh state.db failed: {e}");
        }
    }
}

/// New databases get SQLite's default page size (see `db::open_state` for why `state.db`
/// does not take smaller pages); a database created before keeps the page size it has.
#[tokio::test]
async fn new_databases_get_their_page_sizes_and_old_ones_keep_theirs() {
    async fn page_size(pool: &sqlx::SqlitePool) -> i64 {
        sqlx::query_scalar("PRAGMA page_size")
            .fetch_one(pool)
            .await
            .unwrap()
    }
    let dir = tempfile::tempdir().unwrap();
    let state = db::open_state(&dir.path().join("state.db"), 1)
        .await
        .unwrap();
    let log = db::open_log(&dir.path().join("log.db"), 1).await.unwrap();
    assert_eq!(page_size(&state).await, 4096);
    assert_eq!(page_size(&log).await, 4096);

    let old = dir.path().join("old-state.db");
    let pool = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&old)
            .create_if_missing(true)
            .page_size(1024)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal),
    )
    .await
    .unwrap();
    sqlx::query("CREATE TABLE t (x)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let reopened = db::open_state(&old, 1).await.unwrap();
    assert_eq!(page_size(&reopened).await, 1024);
    let apps: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM apps")
        .fetch_one(&reopened)
        .await
        .unwrap();
    assert_eq!(apps, 0);
}
