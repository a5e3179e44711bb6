//! `state.db` runs with synchronous=NORMAL, so a power cut can take it back in time. If the
//! local snapshot is newer than what survived, start-up must install it before Raft runs.

use std::path::Path;

use meridian_state::db;
use meridian_state::snapshot::SnapshotDir;
use meridian_state::state_machine::StateMachine;
use meridian_state::{apps, Command, TypeConfig};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftSnapshotBuilder};

mod support;

fn create(i: u64) -> Entry<TypeConfig> {
    let spec = support::app(&format!("app-{i}"), &[], None);
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), i),
        payload: EntryPayload::Normal(Command::CreateApp {
            spec,
            at: i,
            default_residency: false,
        }),
    }
}

async fn machine(dir: &Path) -> StateMachine {
    let writer = db::open_state(&dir.join("state.db"), 1).await.unwrap();
    let readers = db::open_state(&dir.join("state.db"), 2).await.unwrap();
    let snaps = SnapshotDir::open(dir.join("snapshots")).unwrap();
    StateMachine::new(writer, readers, snaps, Default::default())
}

/// The one number `sql` answers, read through another connection than the state machine's.
async fn count(other: &sqlx::SqlitePool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(other).await.unwrap()
}

/// Builds a snapshot; answers the index it is at.
async fn snapshot(sm: &mut StateMachine) -> Option<u64> {
    let snap = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    snap.meta.last_log_id.map(|l| l.index)
}

#[tokio::test]
async fn a_state_older_than_the_snapshot_is_replaced_by_it() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old-state.db");
    {
        let mut sm = machine(dir.path()).await;
        sm.apply((1..=5).map(create)).await.unwrap();
        // What a power cut could leave behind: the state as of entry 5.
        let readers = db::open_state(&dir.path().join("state.db"), 1)
            .await
            .unwrap();
        sqlx::query("VACUUM INTO ?")
            .bind(old.to_string_lossy().into_owned())
            .execute(&readers)
            .await
            .unwrap();
        readers.close().await;
        sm.apply((6..=10).map(create)).await.unwrap();
        assert_eq!(snapshot(&mut sm).await, Some(10));
    }
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("state.db{suffix}")));
    }
    std::fs::rename(&old, dir.path().join("state.db")).unwrap();

    let mut sm = machine(dir.path()).await;
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(
        applied.map(|l| l.index),
        Some(5),
        "the state went back in time"
    );
    sm.recover().await.unwrap();
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied.map(|l| l.index), Some(10));
    let pool = db::open_state(&dir.path().join("state.db"), 1)
        .await
        .unwrap();
    let apps = apps::apps(&mut pool.acquire().await.unwrap())
        .await
        .unwrap();
    assert_eq!(apps.len(), 10);
}

#[tokio::test]
async fn an_up_to_date_state_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut sm = machine(dir.path()).await;
    sm.apply((1..=3).map(create)).await.unwrap();
    snapshot(&mut sm).await;
    sm.apply((4..=6).map(create)).await.unwrap();
    sm.recover().await.unwrap();
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(
        applied.map(|l| l.index),
        Some(6),
        "recover never moves the state backwards"
    );
}

/// The state machine keeps its writing connection between applies and sends an apply's last
/// writes and its commit together: whatever an apply wrote must be committed when it returns,
/// visible to other connections and there after the process is gone.
#[tokio::test]
async fn every_apply_is_committed_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let other = db::open_state(&dir.path().join("state.db"), 1)
        .await
        .unwrap();
    let count = |sql: &'static str| count(&other, sql);
    let mut sm = machine(dir.path()).await;
    let results = sm.apply((1..=3).map(create)).await.unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(count("SELECT COUNT(*) FROM apps").await, 3);
    assert_eq!(count("SELECT COUNT(*) FROM releases").await, 3);

    // A create of a name that exists is refused, and the refusal still moves the position.
    let mut again = create(1);
    again.log_id.index = 4;
    let results = sm.apply([again]).await.unwrap();
    assert!(results[0].is_err(), "{results:?}");
    assert_eq!(count("SELECT COUNT(*) FROM apps").await, 3);
    assert_eq!(
        count("SELECT json_extract(value, '$.index') FROM sm_meta WHERE key = 'last_applied'")
            .await,
        4
    );

    // A snapshot taken between applies holds everything applied so far.
    assert_eq!(snapshot(&mut sm).await, Some(4));

    sm.apply((5..=6).map(create)).await.unwrap();
    drop(sm);
    let mut sm = machine(dir.path()).await;
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied.map(|l| l.index), Some(6));
    assert_eq!(count("SELECT COUNT(*) FROM apps").await, 5);
}

/// The proposer starts the next entry once the state machine is handed a later index than it
/// had seen: `committed` must move when an apply starts, and only forwards.
#[tokio::test]
async fn the_committed_index_moves_when_an_apply_starts() {
    let dir = tempfile::tempdir().unwrap();
    let mut sm = machine(dir.path()).await;
    let mut committed = sm.committed();
    assert_eq!(*committed.borrow_and_update(), 0);
    sm.apply((1..=3).map(create)).await.unwrap();
    assert!(committed.has_changed().unwrap());
    assert_eq!(*committed.borrow_and_update(), 3);
    sm.apply(std::iter::empty()).await.unwrap();
    assert!(!committed.has_changed().unwrap());
    sm.apply([create(4)]).await.unwrap();
    assert_eq!(*committed.borrow_and_update(), 4);
}

fn entry(index: u64, command: Command) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(command),
    }
}

fn create_named(name: &str, default_residency: bool) -> Command {
    Command::CreateApp {
        spec: support::app(name, &[], None),
        at: 1,
        default_residency,
    }
}

/// Once an apply has read the default residency, later runs of creates assume it and assume
/// their names are new. A taken name must still be refused (the run is applied again,
/// reading the tables) without losing the other creates of its run, and a changed default
/// must reach the next create that leaves its residency out.
#[tokio::test]
async fn creates_that_assume_still_refuse_taken_names_and_see_a_new_default() {
    let dir = tempfile::tempdir().unwrap();
    let mut sm = machine(dir.path()).await;
    let results = sm.apply([entry(1, create_named("a", true))]).await.unwrap();
    assert!(results[0].is_ok(), "{results:?}");

    let batch = Command::Batch {
        commands: vec![
            create_named("b", true),
            create_named("a", true),
            create_named("c", false),
        ],
    };
    let results = sm.apply([entry(2, batch)]).await.unwrap();
    let Ok(meridian_state::Applied::Batch(each)) = &results[0] else {
        panic!("{results:?}");
    };
    assert!(each[0].is_ok() && each[2].is_ok(), "{each:?}");
    assert!(
        matches!(&each[1], Err(meridian_state::Refusal::AlreadyExists { .. })),
        "{each:?}"
    );
    let other = db::open_state(&dir.path().join("state.db"), 1)
        .await
        .unwrap();
    let count = |sql: &'static str| count(&other, sql);
    assert_eq!(count("SELECT COUNT(*) FROM apps").await, 3);
    assert_eq!(count("SELECT COUNT(*) FROM releases").await, 3);
    assert_eq!(
        count("SELECT COUNT(*) FROM audit WHERE kind = 'created'").await,
        3
    );

    let eu = vec![meridian_core::Jurisdiction::parse("EU").unwrap()];
    let set = Command::SetDefaultResidency {
        residency: eu.clone(),
    };
    let results = sm.apply([entry(3, set)]).await.unwrap();
    assert!(results[0].is_ok(), "{results:?}");
    let results = sm.apply([entry(4, create_named("d", true))]).await.unwrap();
    let Ok(meridian_state::Applied::App(rec)) = &results[0] else {
        panic!("{results:?}");
    };
    assert_eq!(rec.spec.residency, eu, "the new default reached the create");
}
