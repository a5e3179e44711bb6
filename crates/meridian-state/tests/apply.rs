//! `apply` on a real SQLite file: outcomes, refusals that change nothing, batches.

use meridian_core::{AppSpec, CountryCode, Jurisdiction, Name, Region, Role};
use meridian_state::apply::apply;
use meridian_state::db;
use meridian_state::{rows, Applied, Command, CommandResult, Refusal, TokenRecord};
use sqlx::SqlitePool;

async fn state() -> (tempfile::TempDir, SqlitePool) {
    let dir = tempfile::tempdir().unwrap();
    let pool = db::open_state(&dir.path().join("state.db"), 1)
        .await
        .unwrap();
    (dir, pool)
}

async fn run(pool: &SqlitePool, cmd: Command) -> CommandResult {
    let mut tx = pool.begin().await.unwrap();
    let out = apply(&mut tx, &cmd).await.unwrap();
    tx.commit().await.unwrap();
    out
}

fn n(s: &str) -> Name {
    Name::parse(s).unwrap()
}

fn app(name: &str, residency: &[&str], regions: Option<&[&str]>) -> AppSpec {
    AppSpec {
        name: n(name),
        image: "web:1".into(),
        replicas: 1,
        port: 80,
        residency: residency
            .iter()
            .map(|j| Jurisdiction::parse(j).unwrap())
            .collect(),
        regions: regions.map(|r| r.iter().map(|s| n(s)).collect()),
        env: Default::default(),
        health: None,
        cpu_millis: 100,
        memory_mb: 128,
    }
}

fn region(name: &str, country: &str) -> Region {
    Region {
        name: n(name),
        country: CountryCode::parse(country).unwrap(),
        latitude: 0.0,
        longitude: 0.0,
    }
}

fn token(id: &str) -> TokenRecord {
    TokenRecord {
        id: id.into(),
        role: Role::Admin,
        apps: None,
        created_at: 1,
        expires_at: 2,
        revoked_at: None,
    }
}

async fn app_names(pool: &SqlitePool) -> Vec<String> {
    let mut c = pool.acquire().await.unwrap();
    rows::apps(&mut c)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.spec.name.to_string())
        .collect()
}

#[tokio::test]
async fn bootstrap_works_once() {
    let (_d, pool) = state().await;
    let first = run(
        &pool,
        Command::Bootstrap {
            signing_key: "k1".into(),
            admin: token("a"),
        },
    )
    .await;
    assert!(matches!(first, Ok(Applied::Token(_))));
    let second = run(
        &pool,
        Command::Bootstrap {
            signing_key: "k2".into(),
            admin: token("b"),
        },
    )
    .await;
    assert_eq!(second, Err(Refusal::AlreadyBootstrapped));
    let mut c = pool.acquire().await.unwrap();
    assert_eq!(
        rows::setting(&mut c, "signing_key")
            .await
            .unwrap()
            .as_deref(),
        Some("k1")
    );
    assert!(
        rows::token(&mut c, "b").await.unwrap().is_none(),
        "a refused bootstrap wrote nothing"
    );
}

#[tokio::test]
async fn a_batch_answers_each_command_and_refusals_change_nothing() {
    let (_d, pool) = state().await;
    run(
        &pool,
        Command::CreateRegion {
            region: region("us-iad", "US"),
            at: 1,
        },
    )
    .await
    .unwrap();
    let out = run(
        &pool,
        Command::Batch {
            commands: vec![
                Command::CreateApp {
                    spec: app("a", &[], None),
                    at: 1,
                },
                Command::CreateApp {
                    spec: app("a", &[], None),
                    at: 1,
                },
                Command::CreateApp {
                    spec: app("gdpr", &["EU"], Some(&["us-iad"])),
                    at: 1,
                },
                Command::CreateApp {
                    spec: app("b", &["US"], Some(&["us-iad"])),
                    at: 1,
                },
                Command::DeleteApp {
                    name: n("missing"),
                    at: 0,
                },
            ],
        },
    )
    .await;
    let Ok(Applied::Batch(results)) = out else {
        panic!("{out:?}")
    };
    assert_eq!(results.len(), 5);
    assert!(matches!(results[0], Ok(Applied::App(_))));
    assert!(matches!(results[1], Err(Refusal::AlreadyExists { .. })));
    assert!(
        matches!(&results[2], Err(Refusal::Invalid { field, message }) if field == "regions[0]" && message.contains("outside")),
        "{:?}",
        results[2]
    );
    assert!(matches!(results[3], Ok(Applied::App(_))));
    assert!(matches!(results[4], Err(Refusal::NotFound { .. })));
    assert_eq!(app_names(&pool).await, ["a", "b"]);
}

#[tokio::test]
async fn regions_in_use_are_protected() {
    let (_d, pool) = state().await;
    run(
        &pool,
        Command::CreateRegion {
            region: region("eu-fra", "DE"),
            at: 1,
        },
    )
    .await
    .unwrap();
    run(
        &pool,
        Command::CreateApp {
            spec: app("web", &["EU"], Some(&["eu-fra"])),
            at: 1,
        },
    )
    .await
    .unwrap();
    let del = run(&pool, Command::DeleteRegion { name: n("eu-fra") }).await;
    assert!(matches!(del, Err(Refusal::Conflict { .. })), "{del:?}");
    let moved = run(
        &pool,
        Command::UpdateRegion {
            region: region("eu-fra", "US"),
            expected_version: 1,
            at: 2,
        },
    )
    .await;
    assert!(matches!(moved, Err(Refusal::Conflict { .. })), "{moved:?}");
    let within_eu = run(
        &pool,
        Command::UpdateRegion {
            region: region("eu-fra", "NL"),
            expected_version: 1,
            at: 2,
        },
    )
    .await;
    assert!(
        matches!(within_eu, Ok(Applied::Region(ref r)) if r.version == 2),
        "{within_eu:?}"
    );
    let stale = run(
        &pool,
        Command::UpdateRegion {
            region: region("eu-fra", "BE"),
            expected_version: 1,
            at: 3,
        },
    )
    .await;
    assert!(matches!(stale, Err(Refusal::Stale { .. })), "{stale:?}");
}

#[tokio::test]
async fn nested_batches_are_refused() {
    let (_d, pool) = state().await;
    let out = run(
        &pool,
        Command::Batch {
            commands: vec![Command::Batch {
                commands: vec![Command::CreateApp {
                    spec: app("x", &[], None),
                    at: 1,
                }],
            }],
        },
    )
    .await;
    let Ok(Applied::Batch(results)) = out else {
        panic!("{out:?}")
    };
    assert!(matches!(results[0], Err(Refusal::Conflict { .. })));
    assert!(app_names(&pool).await.is_empty());
}
