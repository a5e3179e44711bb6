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
