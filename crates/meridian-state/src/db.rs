//! Opening the SQLite files with the durability Meridian relies on.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, SqlitePool};

/// Migrations of the Raft log database.
pub static LOG_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/log");
/// Migrations of the state machine database (and of every snapshot, which is a copy of it).
pub static STATE_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/state");

/// Opens `log.db`: WAL with `synchronous=FULL`, so a transaction that returned from COMMIT is
/// fsynced and survives a crash of the process and of the machine. Raft relies on that for
/// every acknowledged entry and every vote.
///
/// A commit never checkpoints `log.db` itself: that would copy the WAL into the database
/// file and fsync it while Raft waits for the append. [`checkpoint`] does it beside.
pub async fn open_log(path: &Path, max_connections: u32) -> Result<SqlitePool, sqlx::Error> {
    open(
        path,
        max_connections,
        &LOG_MIGRATIONS,
        SqliteSynchronous::Full,
        0,
    )
    .await
}

/// How often [`checkpoint`] checkpoints.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// Checkpoints the database behind `pool` every [`CHECKPOINT_EVERY`] until the pool closes,
/// off the path of appends and applies. A passive checkpoint waits for no one and copies
/// what no reader still needs; once it has copied everything, the next commit writes the WAL
/// from its beginning again. `log.db` relies on it alone (hardly anything reads it, so each
/// pass copies the whole WAL); for `state.db` it keeps the commits that would pass
/// [`STATE_AUTOCHECKPOINT`] (and checkpoint inside an apply) rare.
pub async fn checkpoint(pool: SqlitePool, what: &'static str) {
    loop {
        tokio::time::sleep(CHECKPOINT_EVERY).await;
        if pool.is_closed() {
            return;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            if pool.is_closed() {
                return;
            }
            tracing::warn!(error = %e, db = what, "checkpointing failed; retrying");
        }
    }
}

/// Opens `state.db`: WAL with `synchronous=NORMAL`. A power cut may lose the last applied
/// batches (never corrupt the file); they are still in the log and are applied again, and
/// `StateMachine::recover` installs the local snapshot first when the log behind it is gone.
///
/// Both files keep SQLite's page size (4 KiB). Each create dirties a leaf of four B-trees
/// keyed by app name, and every dirtied page is written whole to the WAL and again at
/// checkpoint, so smaller pages wrote fewer bytes per create and made creates faster under
/// load; but they made bulk placements through Raft slower (1 KiB by 6-26 %, 2 KiB by about
/// a sixth), so the default stays (BENCHMARKS.md, 2026-12-03).
pub async fn open_state(path: &Path, max_connections: u32) -> Result<SqlitePool, sqlx::Error> {
    open(
        path,
        max_connections,
        &STATE_MIGRATIONS,
        SqliteSynchronous::Normal,
        STATE_AUTOCHECKPOINT,
    )
    .await
}

/// WAL pages after which the commit that passes them checkpoints `state.db` itself (SQLite's
/// default is 1,000): the backstop should [`checkpoint`] fall behind. While it keeps up, no
/// apply stalls on a checkpoint; with this as the only checkpoint, every apply that crossed it
/// did, and at 64 clients the slowest creates took twice as long.
const STATE_AUTOCHECKPOINT: u32 = 10_000;

/// Opens (creating if missing) a database in WAL mode and brings its schema up to date.
async fn open(
    path: &Path,
    max_connections: u32,
    migrations: &Migrator,
    synchronous: SqliteSynchronous,
    autocheckpoint: u32,
) -> Result<SqlitePool, sqlx::Error> {
    let options = SqliteConnectOptions::from_str("sqlite://")?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(synchronous)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true)
        // 1 MiB of page cache per connection instead of SQLite's 2 MiB: the working set is
        // small, and a server keeps several connections.
        .pragma("cache_size", "-1024")
        // Temporary files in memory: a multi-row statement inside a transaction keeps a
        // statement journal (to undo just that statement), which SQLite otherwise spills to
        // a new file in /var/tmp once it passes 64 KiB; a follower under load created and
        // deleted about 20 such files a second and wrote more to them than to its database.
        // Sorts and DISTINCTs of the readers' queries spill there too.
        .pragma("temp_store", "memory")
        .pragma("wal_autocheckpoint", autocheckpoint.to_string());
    // Switching a new file to WAL needs it to be open exactly once: a second connection
    // opened at the same moment (the pool's minimum) would fail with "database is locked",
    // which SQLite does not retry. One connection does the switch before the pool opens any.
    options.connect().await?.close().await?;
    let pool = SqlitePoolOptions::new()
        .max_connections(max_connections)
        .min_connections(1)
        // A local file cannot go stale the way a network connection can; a ping before every
        // acquire would cost a round trip to SQLite's worker thread per query.
        .test_before_acquire(false)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(options)
        .await?;
    migrations.run(&pool).await?;
    Ok(pool)
}
