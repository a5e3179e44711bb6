//! The state machine: applies committed entries to `state.db` and builds and installs
//! snapshots of it.

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder,
    StorageIOError,
};
use sqlx::{Connection, Row, SqliteConnection, SqlitePool};

use crate::apply::Applier;
use crate::auth_cache::AuthCache;
use crate::changes::{ChangeLog, Touched};
use crate::command::{Applied, Command, CommandResult};
use crate::db::STATE_MIGRATIONS;
use crate::snapshot::{copy_options, open_copy, read_applied, SnapshotDir, SnapshotError};
use crate::sql::to_json;
use crate::types::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};

/// The state machine over `state.db`.
#[derive(Debug)]
pub struct StateMachine {
    writer: Writer,
    /// Readers, used here for `VACUUM INTO`.
    readers: SqlitePool,
    snapshots: SnapshotDir,
    auth: Arc<AuthCache>,
    changes: Arc<ChangeLog>,
    /// The cluster's default residency as of the last applied entry, when an apply read it
    /// and nothing since may have changed it.
    default_residency: Option<Vec<meridian_core::Jurisdiction>>,
    /// The last index handed to an apply: committed, applied or being applied.
    committed: tokio::sync::watch::Sender<u64>,
}

/// Builds snapshots concurrently with applies.
#[derive(Debug)]
pub struct SnapshotBuilder {
    readers: SqlitePool,
    snapshots: SnapshotDir,
}

fn sm_err(verb: ErrorVerb, e: &(impl std::error::Error + 'static)) -> StorageError {
    StorageIOError::new(ErrorSubject::StateMachine, verb, AnyError::new(e)).into()
}

fn snap_err(verb: ErrorVerb, e: &(impl std::error::Error + 'static)) -> StorageError {
    StorageIOError::new(ErrorSubject::Snapshot(None), verb, AnyError::new(e)).into()
}

impl StateMachine {
    /// Wraps the writer and reader pools of `state.db` and the snapshot directory, keeping
    /// `auth` in step with the tokens table.
    pub fn new(
        writer: SqlitePool,
        readers: SqlitePool,
        snapshots: SnapshotDir,
        auth: Arc<AuthCache>,
    ) -> Self {
        Self::with_changes(writer, readers, snapshots, auth, Arc::default())
    }

    /// As [`StateMachine::new`], recording what each applied entry touched in `changes`.
    pub fn with_changes(
        writer: SqlitePool,
        readers: SqlitePool,
        snapshots: SnapshotDir,
        auth: Arc<AuthCache>,
        changes: Arc<ChangeLog>,
    ) -> Self {
        Self {
            writer: Writer {
                pool: writer,
                conn: None,
                open: false,
            },
            readers,
            snapshots,
            auth,
            changes,
            default_residency: None,
            committed: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Follows the last log index this state machine was given to apply, which is known to
    /// be committed: it moves when an apply starts, before its writes.
    pub fn committed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.committed.subscribe()
    }

    /// Called at start, before Raft: after a power cut `state.db` (synchronous=NORMAL) may
    /// be behind the local snapshot, whose log may be purged. Installing the snapshot first
    /// puts the state back at or after the start of the log; the log does the rest.
    pub async fn recover(&mut self) -> Result<(), SnapshotError> {
        {
            let _guard = self.snapshots.lock().await;
            if let Some((meta, path)) = self.snapshots.current()? {
                let c = self.writer.idle().await?;
                let (applied, _) = read_applied(c).await?;
                if meta.last_log_id > applied {
                    tracing::warn!(
                        snapshot = %meta.snapshot_id,
                        "state is behind the local snapshot (lost writes after a crash?); installing it"
                    );
                    install(c, &path, &meta, &self.changes).await?;
                }
            }
        }
        self.reload_auth().await?;
        Ok(())
    }

    async fn reload_auth(&mut self) -> Result<(), sqlx::Error> {
        let c = self.writer.idle().await?;
        self.auth.reload(c).await
    }

    /// Applies `entries` in one transaction and answers their results and whether any
    /// changed tokens.
    ///
    /// Each statement is a round trip to SQLite's worker thread, and on a loaded server
    /// each costs more than the work it carries; an apply is on the path of every write.
    /// So the held-back writes, the applied position and the commit go in one round trip,
    /// which also begins the next apply's transaction: an empty deferred transaction takes
    /// no lock and sees no snapshot until its first statement.
    async fn apply_entries(
        &mut self,
        entries: Vec<Entry>,
    ) -> Result<(Vec<CommandResult>, bool), sqlx::Error> {
        let names = created_names(&entries);
        // Creates nearly always take new names, and the default residency changes only by
        // its own command: while it is known, the run assumes both instead of asking SQLite,
        // one round trip fewer on every server. A name that turns out taken fails the write
        // with a unique-constraint violation; the run is rolled back and applied again
        // reading the tables, which refuse that create.
        // An apply without creates neither reads nor assumes, and leaves what is known.
        let known = if names.is_empty() {
            None
        } else {
            self.default_residency.take()
        };
        if let Some(default) = known {
            match self.apply_run(&entries, &names, Some(default)).await {
                Err(e) if is_unique_violation(&e) => self.writer.abandon().await,
                done => return done,
            }
        }
        self.apply_run(&entries, &names, None).await
    }

    /// One attempt at [`Self::apply_entries`]: reading which names are taken and the
    /// default residency, or assuming `assume` (see there). Remembers the default residency
    /// the run read or assumed, and forgets it when a command in the run may have changed it.
    async fn apply_run(
        &mut self,
        entries: &[Entry],
        names: &[&str],
        assume: Option<Vec<meridian_core::Jurisdiction>>,
    ) -> Result<(Vec<CommandResult>, bool), sqlx::Error> {
        let c = self.writer.in_transaction().await?;
        let mut applier = Applier::default();
        match assume {
            Some(default) => applier.assume_creates(default),
            None => applier.expect_creates(c, names).await?,
        }
        let default = applier.known_default_residency().map(<[_]>::to_vec);
        let mut results = Vec::new();
        let mut last = None;
        let mut membership = None;
        let mut auth_changed = false;
        let mut default_changed = false;
        let mut marks = Vec::new();
        for entry in entries {
            last = Some(entry.log_id);
            match &entry.payload {
                EntryPayload::Blank => results.push(Ok(Applied::Done)),
                EntryPayload::Normal(cmd) => {
                    auth_changed |= cmd.touches_auth();
                    default_changed |= cmd.touches_default_residency();
                    let mut touched = Touched::default();
                    results.push(applier.apply(c, cmd, &mut touched).await?);
                    marks.push((entry.log_id.index, touched));
                }
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(entry.log_id), m.clone()));
                    results.push(Ok(Applied::Done));
                }
            }
        }
        let held = applier.take_held();
        let rows = held.most_rows();
        let last = last.map(|l| to_json(&Some(l)));
        let membership = membership.map(|m| to_json(&m));
        let mut close = sqlx::QueryBuilder::new("");
        held.push(&mut close);
        for (key, value) in [("last_applied", &last), ("last_membership", &membership)] {
            if let Some(value) = value {
                close
                    .push("INSERT OR REPLACE INTO sm_meta (key, value) VALUES (")
                    .push_bind(key)
                    .push(", ")
                    .push_bind(value.as_str())
                    .push("); ");
            }
        }
        close.push("COMMIT; BEGIN");
        // Recorded before the commit: a reader whose snapshot shows these entries finds their
        // marks (see `changes`). A run rolled back and applied again records them twice,
        // which merges to the same marks.
        for (index, touched) in marks {
            self.changes.record(index, touched);
        }
        // The text varies with the shape of the rows held back and with which keys change: a
        // few dozen texts, kept prepared but for the largest shapes.
        close
            .build()
            .persistent(crate::sql::keep_prepared(rows))
            .execute(&mut *c)
            .await?;
        if default_changed {
            self.default_residency = None;
        } else if default.is_some() {
            self.default_residency = default;
        }
        Ok((results, auth_changed))
    }
}

/// Whether `e` is SQLite refusing a row whose key or unique column is taken.
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.kind() == sqlx::error::ErrorKind::UniqueViolation)
}

/// The names of the apps `entries` create, batches included.
fn created_names(entries: &[Entry]) -> Vec<&str> {
    let mut names = Vec::new();
    for entry in entries {
        if let EntryPayload::Normal(cmd) = &entry.payload {
            let commands = match cmd {
                Command::Batch { commands } => commands.as_slice(),
                one => std::slice::from_ref(one),
            };
            names.extend(commands.iter().filter_map(|c| match c {
                Command::CreateApp { spec, .. } => Some(spec.name.as_str()),
                _ => None,
            }));
        }
    }
    names
}

/// The state machine's one writing connection, held for good: applies and installs are
/// serial by construction, and a pooled connection is pinged on every return to its pool,
/// one more round trip to SQLite's worker thread per applied batch.
#[derive(Debug)]
struct Writer {
    /// A pool of one connection, taken out of it on first use.
    pool: SqlitePool,
    conn: Option<SqliteConnection>,
    /// Whether `conn` is inside the (empty) transaction an apply leaves open.
    open: bool,
}

impl Writer {
    async fn conn(&mut self) -> Result<&mut SqliteConnection, sqlx::Error> {
        let c = match self.conn.take() {
            Some(c) => c,
            None => self.pool.acquire().await?.detach(),
        };
        Ok(self.conn.insert(c))
    }

    /// The connection outside any transaction: commits the empty one an apply leaves open
    /// (see [`StateMachine::apply_entries`]).
    async fn idle(&mut self) -> Result<&mut SqliteConnection, sqlx::Error> {
        let open = std::mem::take(&mut self.open);
        let c = self.conn().await?;
        if open {
            sqlx::query("COMMIT").execute(&mut *c).await?;
        }
        Ok(c)
    }

    /// The connection inside a transaction: the one the last apply left open, or a new one.
    async fn in_transaction(&mut self) -> Result<&mut SqliteConnection, sqlx::Error> {
        let open = std::mem::replace(&mut self.open, true);
        let c = self.conn().await?;
        if !open {
            sqlx::query("BEGIN").execute(&mut *c).await?;
        }
        Ok(c)
    }

    /// After a failed apply: rolls back whatever it left (best effort; Raft stops on the
    /// error anyway).
    async fn abandon(&mut self) {
        if let Some(c) = self.conn.as_mut() {
            let _ = sqlx::query("ROLLBACK").execute(&mut *c).await;
        }
        self.open = false;
    }
}

async fn set_meta(c: &mut SqliteConnection, key: &str, value: String) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT OR REPLACE INTO sm_meta (key, value) VALUES (?, ?)")
        .bind(key)
        .bind(value)
        .execute(c)
        .await?;
    Ok(())
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let _guard = self.snapshots.lock().await;
        let built = build(&self.readers, &self.snapshots).await;
        built.map_err(|e| snap_err(ErrorVerb::Write, &e))
    }
}

async fn build(readers: &SqlitePool, dir: &SnapshotDir) -> Result<Snapshot, SnapshotError> {
    let tmp = dir.temp_path("building");
    let tmp_text = tmp.to_string_lossy().into_owned();
    // A read transaction: the copy is one consistent point, sm_meta included.
    sqlx::query("VACUUM INTO ?")
        .bind(&tmp_text)
        .execute(readers)
        .await?;
    let mut copy = open_copy(&tmp).await?;
    let (last_log_id, last_membership) = read_applied(&mut copy).await?;
    copy.close().await?;
    let meta = SnapshotMeta {
        snapshot_id: SnapshotDir::new_id(last_log_id.as_ref()),
        last_log_id,
        last_membership,
    };
    dir.commit(&tmp, &meta)?;
    let (_, path) = dir.current()?.ok_or_else(|| SnapshotError::Meta {
        path: tmp.clone(),
        detail: "vanished after commit".into(),
    })?;
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|error| SnapshotError::Io { path, error })?;
    Ok(Snapshot {
        meta,
        snapshot: Box::new(Cursor::new(bytes)),
    })
}

/// Replaces every state table's rows with those of the snapshot at `file`, in one transaction.
async fn install(
    c: &mut SqliteConnection,
    file: &std::path::Path,
    meta: &SnapshotMeta,
    changes: &ChangeLog,
) -> Result<(), SnapshotError> {
    // Bring an older snapshot's schema up to ours; a newer one is refused here.
    {
        // A pool, not a bare connection: `Migrator::run` on a connection is not `Send` here.
        let copy = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(copy_options(file))
            .await?;
        STATE_MIGRATIONS.run(&copy).await?;
        copy.close().await;
    }
    sqlx::query("ATTACH DATABASE ? AS snap")
        .bind(file.to_string_lossy().into_owned())
        .execute(&mut *c)
        .await?;
    // Recorded before the copy commits, like every applied entry's marks.
    changes.record(
        meta.last_log_id.map_or(0, |l| l.index),
        Touched {
            everything: true,
            ..Touched::default()
        },
    );
    let copied = copy_tables(c, meta).await;
    let detached = sqlx::query("DETACH DATABASE snap").execute(&mut *c).await;
    copied?;
    detached?;
    Ok(())
}

async fn copy_tables(c: &mut SqliteConnection, meta: &SnapshotMeta) -> Result<(), sqlx::Error> {
    let mut tx = c.begin().await?;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM main.sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name != '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(&mut *tx)
    .await?;
    for t in tables {
        // Table names come from our own schema, never from input.
        let cols: Vec<String> = sqlx::query(&format!("PRAGMA main.table_info(\"{t}\")"))
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>("name").map(|n| format!("\"{n}\"")))
            .collect::<Result<_, _>>()?;
        let cols = cols.join(", ");
        sqlx::query(&format!("DELETE FROM main.\"{t}\""))
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!(
            "INSERT INTO main.\"{t}\" ({cols}) SELECT {cols} FROM snap.\"{t}\""
        ))
        .execute(&mut *tx)
        .await?;
    }
    set_meta(&mut tx, "last_applied", to_json(&meta.last_log_id)).await?;
    set_meta(&mut tx, "last_membership", to_json(&meta.last_membership)).await?;
    tx.commit().await
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let c = self
            .writer
            .idle()
            .await
            .map_err(|e| sm_err(ErrorVerb::Read, &e))?;
        read_applied(c)
            .await
            .map_err(|e| sm_err(ErrorVerb::Read, &e))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let w = |e: sqlx::Error| sm_err(ErrorVerb::Write, &e);
        let entries: Vec<Entry> = entries.into_iter().collect();
        if let Some(last) = entries.last() {
            let last = last.log_id.index;
            self.committed.send_if_modified(|c| {
                let later = last > *c;
                if later {
                    *c = last;
                }
                later
            });
        }
        let applied = self.apply_entries(entries).await;
        if applied.is_err() {
            self.writer.abandon().await;
        }
        let (results, auth_changed) = applied.map_err(w)?;
        if auth_changed {
            self.reload_auth().await.map_err(w)?;
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            readers: self.readers.clone(),
            snapshots: self.snapshots.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        // The installed state has a default residency of its own.
        self.default_residency = None;
        let Self {
            writer,
            snapshots,
            auth,
            changes,
            ..
        } = self;
        let _guard = snapshots.lock().await;
        let file = snapshots.temp_path("incoming");
        let installed = async {
            tokio::fs::write(&file, snapshot.into_inner())
                .await
                .map_err(|error| SnapshotError::Io {
                    path: file.clone(),
                    error,
                })?;
            let c = writer.idle().await?;
            install(c, &file, meta, changes).await?;
            auth.reload(c).await?;
            snapshots.commit(&file, meta)
        }
        .await;
        if installed.is_err() {
            let _ = tokio::fs::remove_file(&file).await;
        }
        installed.map_err(|e| snap_err(ErrorVerb::Write, &e))
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let _guard = self.snapshots.lock().await;
        let r = |e: &dyn std::fmt::Display| {
            snap_err(ErrorVerb::Read, &std::io::Error::other(e.to_string()))
        };
        let Some((meta, path)) = self.snapshots.current().map_err(|e| r(&e))? else {
            return Ok(None);
        };
        let bytes = tokio::fs::read(&path).await.map_err(|e| r(&e))?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}
