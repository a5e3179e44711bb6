//! What the state tests share: a fresh state file, applying one command, specs and regions.

#![allow(dead_code)] // each test file uses its own part

use meridian_core::{AppSpec, CountryCode, Jurisdiction, Name, Region};
use meridian_state::apply::apply;
use meridian_state::{apps, audit, db, AuditFilter, AuditRecord, Command, CommandResult};
use sqlx::SqlitePool;

pub async fn state() -> (tempfile::TempDir, SqlitePool) {
    let dir = tempfile::tempdir().unwrap();
    let pool = db::open_state(&dir.path().join("state.db"), 1)
        .await
        .unwrap();
    (dir, pool)
}

pub async fn run(pool: &SqlitePool, cmd: Command) -> CommandResult {
    let mut tx = pool.begin().await.unwrap();
    let out = apply(&mut tx, &cmd).await.unwrap();
    tx.commit().await.unwrap();
    out
}

pub fn n(s: &str) -> Name {
    Name::parse(s).unwrap()
}

pub fn app(name: &str, residency: &[&str], regions: Option<&[&str]>) -> AppSpec {
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
        origin_bound: Vec::new(),
        domains: Vec::new(),
    }
}

pub fn region(name: &str, country: &str) -> Region {
    Region {
        name: n(name),
        country: CountryCode::parse(country).unwrap(),
        latitude: 0.0,
        longitude: 0.0,
    }
}

/// Creates region `name` in `country`, at time 1.
pub async fn create_region(pool: &SqlitePool, name: &str, country: &str) {
    run(
        pool,
        Command::CreateRegion {
            region: region(name, country),
            at: 1,
        },
    )
    .await
    .unwrap();
}

pub async fn app_names(pool: &SqlitePool) -> Vec<String> {
    let mut c = pool.acquire().await.unwrap();
    apps::apps(&mut c)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.spec.name.to_string())
        .collect()
}

pub async fn everything_audited(c: &mut sqlx::SqliteConnection) -> Vec<AuditRecord> {
    let all = AuditFilter {
        limit: 1000,
        ..AuditFilter::default()
    };
    audit::audit(c, &all).await.unwrap()
}
