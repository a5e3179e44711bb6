//! Opening the SQLite files with the durability Meridian relies on.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

/// Migrations of the Raft log database.
pub static LOG_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/log");
/// Migrations of the state machine database (and of every snapshot, which is a copy of it).
pub static STATE_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/state");

/// Opens (creating if missing) a database in WAL mode with `synchronous=FULL`: a transaction
/// that returned from COMMIT is in the WAL and fsynced, so it survives a crash of the process
/// and of the machine. Then brings its schema up to date.
pub async fn open(
    path: &Path,
    max_connections: u32,
    migrations: &Migrator,
) -> Result<SqlitePool, sqlx::Error> {
    let options = SqliteConnectOptions::from_str("sqlite://")?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(max_connections)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(options)
        .await?;
    migrations.run(&pool).await?;
    Ok(pool)
}
