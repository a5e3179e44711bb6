//! Errors opening or running the replicated store.

use std::path::PathBuf;

/// Why the store could not be opened or used. Each message ends with its cause, which is
/// therefore not also returned as a `source`: handlers log these errors on one line.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// SQLite failed.
    #[error("database: {0}")]
    Db(sqlx::Error),
    /// A schema migration failed.
    #[error("database schema: {0}")]
    Migrate(sqlx::migrate::MigrateError),
    /// Snapshot files could not be handled.
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    /// The data directory cannot be used.
    #[error("data directory {path}: {error}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The data directory belongs to another node.
    #[error("data directory {path} belongs to node {found}, not node {given}")]
    NodeIdMismatch {
        /// The directory.
        path: PathBuf,
        /// The id recorded there.
        found: u64,
        /// The id this server was started with.
        given: u64,
    },
    /// The Raft settings are inconsistent.
    #[error("raft settings: {0}")]
    Config(String),
    /// Raft stopped with a fatal error.
    #[error("raft: {0}")]
    Raft(String),
}

impl From<sqlx::Error> for StateError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(e)
    }
}

impl From<sqlx::migrate::MigrateError> for StateError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Self::Migrate(e)
    }
}
