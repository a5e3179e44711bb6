//! Snapshot files: `snap-<id>.db` (a copy of `state.db` made by `VACUUM INTO`) beside
//! `snap-<id>.json` (its openraft metadata). The JSON is written last, so a snapshot without
//! one is an unfinished write and is ignored.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{ConnectOptions, SqliteConnection};
use tokio::sync::Mutex;

use crate::sql::json;
use crate::types::{LogId, SnapshotMeta, StoredMembership};

/// The snapshot directory, with a lock so building, installing and reading never interleave.
#[derive(Debug, Clone)]
pub struct SnapshotDir {
    dir: PathBuf,
    lock: Arc<Mutex<()>>,
}

/// Why a snapshot file could not be written or read. Each message ends with its cause, which
/// is therefore not also returned as a `source`: these errors are mostly logged on one line.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// File system trouble.
    #[error("snapshot file {path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
    /// SQLite trouble inside the snapshot.
    #[error("snapshot database: {0}")]
    Db(sqlx::Error),
    /// Its schema could not be brought to this version.
    #[error("snapshot schema: {0}")]
    Migrate(sqlx::migrate::MigrateError),
    /// Its metadata file cannot be read.
    #[error("snapshot metadata {path}: {detail}")]
    Meta {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

impl From<sqlx::Error> for SnapshotError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(e)
    }
}

impl From<sqlx::migrate::MigrateError> for SnapshotError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Self::Migrate(e)
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |error| SnapshotError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Opens a snapshot copy as a plain rollback-journal database: one self-contained file.
pub(crate) async fn open_copy(path: &Path) -> Result<SqliteConnection, sqlx::Error> {
    copy_options(path).connect().await
}

/// Connection options for a snapshot copy.
pub(crate) fn copy_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Delete)
}

/// Reads `last_applied` and `last_membership` from a state database connection.
pub(crate) async fn read_applied(
    c: &mut SqliteConnection,
) -> Result<(Option<LogId>, StoredMembership), sqlx::Error> {
    let applied: Option<String> =
        sqlx::query_scalar("SELECT value FROM sm_meta WHERE key = 'last_applied'")
            .fetch_optional(&mut *c)
            .await?;
    let membership: Option<String> =
        sqlx::query_scalar("SELECT value FROM sm_meta WHERE key = 'last_membership'")
            .fetch_optional(&mut *c)
            .await?;
    Ok((
        applied
            .map(|s| json("last_applied", &s))
            .transpose()?
            .flatten(),
        membership
            .map(|s| json("last_membership", &s))
            .transpose()?
            .unwrap_or_default(),
    ))
}

fn unique_suffix() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

impl SnapshotDir {
    /// Uses (creating) `dir`.
    pub fn open(dir: PathBuf) -> Result<Self, SnapshotError> {
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        // Leftovers of interrupted builds or installs.
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("building-") || name.starts_with("incoming-") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(Self {
            dir,
            lock: Arc::new(Mutex::new(())),
        })
    }

    /// Takes the directory lock.
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.lock.lock().await
    }

    /// A fresh path for a temporary file with `prefix`.
    pub fn temp_path(&self, prefix: &str) -> PathBuf {
        self.dir.join(format!("{prefix}-{}.db", unique_suffix()))
    }

    /// A new snapshot id for a snapshot ending at `last`.
    pub fn new_id(last: Option<&LogId>) -> String {
        let (term, index) = last.map(|l| (l.leader_id.term, l.index)).unwrap_or((0, 0));
        format!("{term}-{index}-{}", unique_suffix())
    }

    fn db_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("snap-{id}.db"))
    }

    fn meta_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("snap-{id}.json"))
    }

    /// Moves a finished database file in as snapshot `meta.snapshot_id`, records its metadata
    /// and removes every older snapshot. Call with the lock held.
    pub fn commit(&self, file: &Path, meta: &SnapshotMeta) -> Result<(), SnapshotError> {
        let id = &meta.snapshot_id;
        let db = self.db_path(id);
        std::fs::File::open(file)
            .and_then(|f| f.sync_all())
            .map_err(io(file))?;
        std::fs::rename(file, &db).map_err(io(&db))?;
        let meta_path = self.meta_path(id);
        let tmp = self.dir.join(format!("meta-{}.tmp", unique_suffix()));
        let text = serde_json::to_vec(meta).unwrap_or_default();
        std::fs::write(&tmp, text).map_err(io(&tmp))?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io(&tmp))?;
        std::fs::rename(&tmp, &meta_path).map_err(io(&meta_path))?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        for e in std::fs::read_dir(&self.dir)
            .map_err(io(&self.dir))?
            .flatten()
        {
            let p = e.path();
            if p != db && p != meta_path && e.file_name().to_string_lossy().starts_with("snap-") {
                let _ = std::fs::remove_file(p);
            }
        }
        Ok(())
    }

    /// The newest complete snapshot: its metadata and database file. Call with the lock held.
    pub fn current(&self) -> Result<Option<(SnapshotMeta, PathBuf)>, SnapshotError> {
        let mut best: Option<(SnapshotMeta, PathBuf)> = None;
        for e in std::fs::read_dir(&self.dir)
            .map_err(io(&self.dir))?
            .flatten()
        {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if !(name.starts_with("snap-") && name.ends_with(".json")) {
                continue;
            }
            let text = std::fs::read(&p).map_err(io(&p))?;
            let meta: SnapshotMeta =
                serde_json::from_slice(&text).map_err(|e| SnapshotError::Meta {
                    path: p.clone(),
                    detail: e.to_string(),
                })?;
            let db = self.db_path(&meta.snapshot_id);
            if !db.exists() {
                continue;
            }
            if best
                .as_ref()
                .is_none_or(|(b, _)| b.last_log_id < meta.last_log_id)
            {
                best = Some((meta, db));
            }
        }
        Ok(best)
    }
}
