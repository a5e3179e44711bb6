//! The Raft log and vote, in `log.db`.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, StorageIOError, Vote,
};
use sqlx::SqlitePool;

use crate::rows::{i, json, to_json};
use crate::types::{Entry, LogId, NodeId, StorageError, TypeConfig};

/// The log store. Cloning shares the pool: openraft's replication tasks read through clones
/// while the Raft core appends.
#[derive(Debug, Clone)]
pub struct LogStore {
    pool: SqlitePool,
}

fn err(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: &(impl std::error::Error + 'static),
) -> StorageError {
    StorageIOError::new(subject, verb, AnyError::new(e)).into()
}

fn read_err(e: sqlx::Error) -> StorageError {
    err(ErrorSubject::Logs, ErrorVerb::Read, &e)
}

fn write_err(e: sqlx::Error) -> StorageError {
    err(ErrorSubject::Logs, ErrorVerb::Write, &e)
}

impl LogStore {
    /// Wraps an open `log.db` pool.
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }

    async fn meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, sqlx::Error> {
        let v: Option<String> = sqlx::query_scalar("SELECT value FROM raft_meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        v.map(|s| json(key, &s)).transpose()
    }

    async fn set_meta<T: serde::Serialize>(&self, key: &str, v: &T) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT OR REPLACE INTO raft_meta (key, value) VALUES (?, ?)")
            .bind(key)
            .bind(to_json(v))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The node id this log belongs to, recorded on first start.
    pub async fn node_id(&self) -> Result<Option<NodeId>, sqlx::Error> {
        self.meta("node_id").await
    }

    /// Records the node id this log belongs to.
    pub async fn set_node_id(&self, id: NodeId) -> Result<(), sqlx::Error> {
        self.set_meta("node_id", &id).await
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(e) => e.saturating_add(1),
            Bound::Excluded(e) => *e,
            Bound::Unbounded => u64::MAX,
        };
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT entry FROM raft_log WHERE idx >= ? AND idx < ? ORDER BY idx",
        )
        .bind(i(start))
        .bind(i(end))
        .fetch_all(&self.pool)
        .await
        .map_err(read_err)?;
        rows.iter()
            .map(|s| json::<Entry>("log entry", s).map_err(read_err))
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = self.meta("last_purged").await.map_err(read_err)?;
        let last: Option<String> =
            sqlx::query_scalar("SELECT entry FROM raft_log ORDER BY idx DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await
                .map_err(read_err)?;
        let last_log_id = match last {
            Some(s) => Some(json::<Entry>("log entry", &s).map_err(read_err)?.log_id),
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.set_meta("vote", vote)
            .await
            .map_err(|e| err(ErrorSubject::Vote, ErrorVerb::Write, &e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.meta("vote")
            .await
            .map_err(|e| err(ErrorSubject::Vote, ErrorVerb::Read, &e))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // One transaction per batch; COMMIT under synchronous=FULL returns once the WAL is
        // fsynced, and only then is openraft told the entries are durable.
        let mut tx = self.pool.begin().await.map_err(write_err)?;
        for entry in entries {
            sqlx::query("INSERT OR REPLACE INTO raft_log (idx, entry) VALUES (?, ?)")
                .bind(i(entry.log_id.index))
                .bind(to_json(&entry))
                .execute(&mut *tx)
                .await
                .map_err(write_err)?;
        }
        tx.commit().await.map_err(write_err)?;
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM raft_log WHERE idx >= ?")
            .bind(i(log_id.index))
            .execute(&self.pool)
            .await
            .map_err(write_err)?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await.map_err(write_err)?;
        sqlx::query("INSERT OR REPLACE INTO raft_meta (key, value) VALUES ('last_purged', ?)")
            .bind(to_json(&log_id))
            .execute(&mut *tx)
            .await
            .map_err(write_err)?;
        sqlx::query("DELETE FROM raft_log WHERE idx <= ?")
            .bind(i(log_id.index))
            .execute(&mut *tx)
            .await
            .map_err(write_err)?;
        tx.commit().await.map_err(write_err)
    }
}
