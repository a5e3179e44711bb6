//! Errors opening or running the replicated store.

use std::path::PathBuf;

/// Why the store could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// SQLite failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// A schema migration failed.
    #[error("database schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Snapshot files could not be handled.
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    /// The data directory cannot be used.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
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
