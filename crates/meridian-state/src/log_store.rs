//! The Raft log and vote, in `log.db`, with the newest entries also kept in memory: the
//! leader's replication tasks read what was just appended, and serving that from memory spares
//! a query and a JSON decode per entry per follower.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex, PoisonError};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, StorageIOError, Vote,
};
use sqlx::{Connection, SqliteConnection, SqlitePool};

use crate::sql::{i, json, keep_prepared, push_rows, to_json, ROWS_PER_STATEMENT};
use crate::types::{Entry, LogId, NodeId, StorageError, TypeConfig};

/// The log store. Cloning shares the pool and the tail: openraft's replication tasks read
/// through clones while the Raft core appends.
#[derive(Debug, Clone)]
pub struct LogStore {
    pool: SqlitePool,
    /// The connection every write goes through, taken out of the pool on first use and held
    /// for good: a pooled connection is pinged on every return to its pool, one more round
    /// trip to SQLite's worker thread per append on the path of every Raft write.
    writer: Arc<tokio::sync::Mutex<Option<SqliteConnection>>>,
    tail: Arc<Mutex<Tail>>,
}

/// Entries per INSERT statement. openraft sends at most 300 entries per AppendEntries by
/// default, so one statement is the rule.
const APPEND_CHUNK: usize = ROWS_PER_STATEMENT;

/// Most bytes (of entry JSON) the in-memory tail keeps.
const TAIL_BYTES: usize = 4 * 1024 * 1024;

/// The newest durable entries, contiguous by index: appends add at the end, truncation cuts
/// the end, purging and the size limit cut the front.
#[derive(Debug, Default)]
struct Tail {
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
}

impl Tail {
    fn first(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.log_id.index)
    }

    fn last(&self) -> Option<u64> {
        self.entries.back().map(|(e, _)| e.log_id.index)
    }

    fn push(&mut self, entry: Entry, size: usize) {
        if self.last().is_some_and(|l| l + 1 != entry.log_id.index) {
            // Not contiguous (cannot happen after a truncate); start afresh.
            self.clear();
        }
        self.bytes += size;
        self.entries.push_back((entry, size));
        while self.bytes > TAIL_BYTES && self.entries.len() > 1 {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some((_, size)) = self.entries.pop_front() {
            self.bytes -= size;
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Drops entries from `index` on.
    fn truncate(&mut self, index: u64) {
        while self.last().is_some_and(|l| l >= index) {
            if let Some((_, size)) = self.entries.pop_back() {
                self.bytes -= size;
            }
        }
    }

    /// Drops entries up to `index`.
    fn purge(&mut self, index: u64) {
        while self.first().is_some_and(|f| f <= index) {
            self.pop_front();
        }
    }

    /// The entries `start..end` if all of them are here.
    fn range(&self, start: u64, end: u64) -> Option<Vec<Entry>> {
        let (first, last) = (self.first()?, self.last()?);
        if start < first || end.saturating_sub(1) > last {
            return None;
        }
        let skip = usize::try_from(start - first).ok()?;
        let take = usize::try_from(end - start).ok()?;
        Some(
            self.entries
                .iter()
                .skip(skip)
                .take(take)
                .map(|(e, _)| e.clone())
                .collect(),
        )
    }
}

fn lock(tail: &Mutex<Tail>) -> std::sync::MutexGuard<'_, Tail> {
    // Every Tail method leaves it consistent, so a poisoned lock is still usable.
    tail.lock().unwrap_or_else(PoisonError::into_inner)
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
        Self {
            pool,
            writer: Arc::default(),
            tail: Arc::default(),
        }
    }

    /// The writer connection, locked (every write is serial anyway).
    async fn writer(
        &self,
    ) -> Result<tokio::sync::MappedMutexGuard<'_, SqliteConnection>, sqlx::Error> {
        let mut slot = self.writer.lock().await;
        let c = match slot.take() {
            Some(c) => c,
            None => self.pool.acquire().await?.detach(),
        };
        Ok(tokio::sync::MutexGuard::map(slot, |s| s.insert(c)))
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
            .execute(&mut *self.writer().await?)
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
        if start >= end {
            return Ok(Vec::new());
        }
        if let Some(hit) = lock(&self.tail).range(start, end) {
            return Ok(hit);
        }
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
        let entries: Vec<(Entry, String)> = entries
            .into_iter()
            .map(|e| {
                let text = to_json(&e);
                (e, text)
            })
            .collect();
        // One multi-row statement (its own transaction) per batch; under synchronous=FULL it
        // returns once the WAL is fsynced, and only then is openraft told the entries are
        // durable. A batch too large for one statement gets a transaction around several.
        let mut conn = self.writer().await.map_err(write_err)?;
        let several = entries.len() > APPEND_CHUNK;
        if several {
            sqlx::query("BEGIN")
                .execute(&mut *conn)
                .await
                .map_err(write_err)?;
        }
        for chunk in entries.chunks(APPEND_CHUNK) {
            let mut insert = sqlx::QueryBuilder::new("");
            push_rows(
                &mut insert,
                "INSERT OR REPLACE INTO raft_log (idx, entry)",
                2,
                chunk,
                |row, (e, text)| {
                    row.push_bind(i(e.log_id.index)).push_bind(text.as_str());
                },
            );
            let insert = insert.build().persistent(keep_prepared(chunk.len()));
            if let Err(e) = insert.execute(&mut *conn).await {
                if several {
                    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                }
                return Err(write_err(e));
            }
        }
        if several {
            sqlx::query("COMMIT")
                .execute(&mut *conn)
                .await
                .map_err(write_err)?;
        }
        drop(conn);
        {
            let mut tail = lock(&self.tail);
            for (e, text) in entries {
                tail.push(e, text.len());
            }
        }
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        lock(&self.tail).truncate(log_id.index);
        sqlx::query("DELETE FROM raft_log WHERE idx >= ?")
            .bind(i(log_id.index))
            .execute(&mut *self.writer().await.map_err(write_err)?)
            .await
            .map_err(write_err)?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        lock(&self.tail).purge(log_id.index);
        let mut writer = self.writer().await.map_err(write_err)?;
        let mut tx = writer.begin().await.map_err(write_err)?;
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
