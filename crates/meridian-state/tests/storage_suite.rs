//! openraft's own storage conformance suite, run against the SQLite log and state machine.

use meridian_state::db;
use meridian_state::log_store::LogStore;
use meridian_state::snapshot::SnapshotDir;
use meridian_state::state_machine::StateMachine;
use meridian_state::TypeConfig;
use openraft::testing::{StoreBuilder, Suite};
use openraft::{AnyError, StorageError, StorageIOError};
use tempfile::TempDir;

struct SqliteBuilder;

fn fail(e: impl std::error::Error + 'static) -> StorageError<u64> {
    StorageIOError::write(AnyError::new(&e)).into()
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for SqliteBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().map_err(fail)?;
        let log = db::open_log(&dir.path().join("log.db"), 4)
            .await
            .map_err(fail)?;
        let writer = db::open_state(&dir.path().join("state.db"), 1)
            .await
            .map_err(fail)?;
        let readers = db::open_state(&dir.path().join("state.db"), 4)
            .await
            .map_err(fail)?;
        let snaps = SnapshotDir::open(dir.path().join("snapshots")).map_err(fail)?;
        Ok((
            dir,
            LogStore::new(log),
            StateMachine::new(writer, readers, snaps, Default::default()),
        ))
    }
}

#[test]
fn openraft_storage_suite() {
    if let Err(e) = Suite::test_all(SqliteBuilder) {
        panic!("storage suite failed: {e}");
    }
}
