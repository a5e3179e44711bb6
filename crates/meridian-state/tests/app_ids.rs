//! Releases, unplaced reasons and the audit are keyed by app id (migration 0007): what an app
//! name reads must not change, across updates, deletes, a new app of the same name, and the
//! migration of a state written before ids.

mod support;

use meridian_core::ReleaseStatus;
use meridian_state::{audit, db, releases, schedule, Applied, AuditFilter, Command, Forget};
use support::*;

async fn audit_of(pool: &sqlx::SqlitePool, app: &str) -> Vec<(String, String)> {
    let mut c = pool.acquire().await.unwrap();
    let filter = AuditFilter {
        app: Some(app),
        limit: 100,
        ..AuditFilter::default()
    };
    audit::audit(&mut c, &filter)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.app.to_string(), a.kind))
        .collect()
}

async fn release_numbers(pool: &sqlx::SqlitePool, app: &str) -> Vec<(u64, ReleaseStatus)> {
    let mut c = pool.acquire().await.unwrap();
    releases::releases(&mut c, Some(app))
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.number, r.status))
        .collect()
}

async fn create(pool: &sqlx::SqlitePool, name: &str, at: u64) {
    let out = run(
        pool,
        Command::CreateApp {
            spec: app(name, &[], None),
            at,
            default_residency: false,
        },
    )
    .await;
    assert!(matches!(out, Ok(Applied::App(_))), "{out:?}");
}

async fn ids(pool: &sqlx::SqlitePool, sql: &str) -> Vec<i64> {
    sqlx::query_scalar(sql).fetch_all(pool).await.unwrap()
}

async fn delete(pool: &sqlx::SqlitePool, name: &str, at: u64) {
    let out = run(pool, Command::DeleteApp { name: n(name), at }).await;
    assert!(out.is_ok(), "{out:?}");
}

#[tokio::test]
async fn an_app_keeps_its_releases_through_updates_and_a_new_app_of_its_name_starts_afresh() {
    let (_d, pool) = state().await;
    create(&pool, "web", 1).await;
    create(&pool, "api", 1).await;
    // An update rewrites the app's row; its id, and so its releases, stay.
    let mut spec = app("web", &[], None);
    spec.image = "web:2".into();
    let out = run(
        &pool,
        Command::UpdateApp {
            spec,
            expected_version: 1,
            at: 2,
        },
    )
    .await;
    assert!(matches!(out, Ok(Applied::App(_))), "{out:?}");
    assert_eq!(
        release_numbers(&pool, "web").await,
        [(2, ReleaseStatus::Rolling), (1, ReleaseStatus::Active)]
    );
    assert_eq!(
        release_numbers(&pool, "api").await,
        [(1, ReleaseStatus::Active)]
    );

    delete(&pool, "web", 3).await;
    assert!(release_numbers(&pool, "web").await.is_empty());
    create(&pool, "web", 4).await;
    assert_eq!(
        release_numbers(&pool, "web").await,
        [(1, ReleaseStatus::Active)]
    );
    // The audit of the name holds both apps that had it, and nothing of the other app.
    assert_eq!(
        audit_of(&pool, "web").await,
        [
            ("web".into(), "created".into()),
            ("web".into(), "created".into())
        ]
    );
    assert_eq!(
        audit_of(&pool, "api").await,
        [("api".into(), "created".into())]
    );
    assert!(audit_of(&pool, "never").await.is_empty());
}

#[tokio::test]
async fn a_state_written_before_app_ids_keeps_what_each_name_reads() {
    // A state.db as the migrations before 0007 left it.
    let dir = tempfile::tempdir().unwrap();
    let before = tempfile::tempdir().unwrap();
    let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations/state");
    for entry in std::fs::read_dir(&all).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_str().unwrap().to_string();
        if file.as_str() < "0007" {
            std::fs::copy(&path, before.path().join(&file)).unwrap();
        }
    }
    let path = dir.path().join("state.db");
    let old = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal),
    )
    .await
    .unwrap();
    sqlx::migrate::Migrator::new(before.path())
        .await
        .unwrap()
        .run(&old)
        .await
        .unwrap();
    for sql in [
        "INSERT INTO apps (name, image, replicas, port, residency, env, version, created_at, \
         updated_at) VALUES ('web', 'web:2', 1, 80, '[]', '{}', 2, 10, 20), \
         ('api', 'api:1', 1, 80, '[]', '{}', 1, 5, 5)",
        "INSERT INTO releases (app, number, config, status, deadline_at, created_at, updated_at) \
         VALUES ('web', 1, '{\"image\":\"web:1\",\"port\":80,\"env\":{},\"health\":null,\
         \"cpu_millis\":100,\"memory_mb\":128}', 'active', 0, 10, 10), \
         ('web', 2, '{\"image\":\"web:2\",\"port\":80,\"env\":{},\"health\":null,\
         \"cpu_millis\":100,\"memory_mb\":128}', 'rolling', 400, 20, 20), \
         ('api', 1, '{\"image\":\"api:1\",\"port\":80,\"env\":{},\"health\":null,\
         \"cpu_millis\":100,\"memory_mb\":128}', 'active', 0, 5, 5)",
        "INSERT INTO app_status (app, unplaced) VALUES ('api', '[]')",
        "INSERT INTO audit (at, app, kind, policy, detail) VALUES \
         (5, 'api', 'created', 'p', 'd'), (8, 'gone', 'created', 'p', 'd'), \
         (9, 'gone', 'refused', 'p', 'd'), (10, 'web', 'created', 'p', 'd')",
    ] {
        sqlx::query(sql).execute(&old).await.unwrap();
    }
    old.close().await;

    let pool = db::open_state(&path, 1).await.unwrap();
    assert_eq!(
        release_numbers(&pool, "web").await,
        [(2, ReleaseStatus::Rolling), (1, ReleaseStatus::Active)]
    );
    assert_eq!(
        release_numbers(&pool, "api").await,
        [(1, ReleaseStatus::Active)]
    );
    let mut c = pool.acquire().await.unwrap();
    let unplaced = schedule::unplaced_of(&mut c, &["api", "web"])
        .await
        .unwrap();
    assert_eq!(unplaced, [("api".to_string(), Vec::new())]);
    drop(c);
    // A name whose app was deleted before ids still reads its audit.
    assert_eq!(
        audit_of(&pool, "gone").await,
        [
            ("gone".into(), "created".into()),
            ("gone".into(), "refused".into())
        ]
    );
    // A new app of that name adds to it, with an id none of the former ones has.
    create(&pool, "gone", 30).await;
    assert_eq!(audit_of(&pool, "gone").await.len(), 3);
    // Old apps in creation order, then the deleted name, then the new app.
    assert_eq!(
        ids(
            &pool,
            "SELECT id FROM apps UNION ALL SELECT id FROM deleted_apps ORDER BY 1"
        )
        .await,
        [1, 2, 3, 4]
    );
    assert_eq!(
        ids(&pool, "SELECT id FROM apps WHERE name = 'api'").await,
        [1]
    );
}

#[tokio::test]
async fn forgetting_a_deleted_apps_audit_forgets_its_id_but_never_hands_it_out_again() {
    let (_d, pool) = state().await;
    create(&pool, "old", 1).await;
    delete(&pool, "old", 2).await;
    create(&pool, "kept", 3).await;
    assert_eq!(ids(&pool, "SELECT id FROM deleted_apps").await, [1]);
    // The first entry (old's) goes; kept's stays.
    let forget = Forget {
        audit_through: 1,
        ..Forget::default()
    };
    let out = run(&pool, Command::Forget(forget)).await;
    assert!(out.is_ok(), "{out:?}");
    assert!(ids(&pool, "SELECT id FROM deleted_apps").await.is_empty());
    assert!(audit_of(&pool, "old").await.is_empty());
    create(&pool, "new", 4).await;
    assert_eq!(ids(&pool, "SELECT id FROM apps ORDER BY id").await, [2, 3]);
}
