//! Helpers every entity module shares: decoding stored values, binding numbers, and `IN (...)` lists.

use meridian_core::Name;
use serde::de::DeserializeOwned;
use sqlx::sqlite::SqliteRow;
use sqlx::SqliteConnection;

pub(crate) fn corrupt(what: &str, detail: impl std::fmt::Display) -> sqlx::Error {
    sqlx::Error::Decode(format!("stored {what} cannot be read: {detail}").into())
}

pub(crate) fn json<T: DeserializeOwned>(what: &str, text: &str) -> Result<T, sqlx::Error> {
    serde_json::from_str(text).map_err(|e| corrupt(what, e))
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> String {
    // Serialising plain data structs into a String cannot fail.
    serde_json::to_string(v).unwrap_or_default()
}

pub(crate) fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(crate) fn small(what: &str, v: i64) -> Result<u32, sqlx::Error> {
    u32::try_from(v).map_err(|e| corrupt(what, e))
}

pub(crate) fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn name(what: &str, s: &str) -> Result<Name, sqlx::Error> {
    Name::parse(s).map_err(|e| corrupt(what, e))
}

// Statements built with a varying number of rows or names run with `persistent(false)`: every
// count is a different statement to SQLite, and sqlx would keep up to 100 of them prepared on
// each connection, some with hundreds of placeholders. The leader held about 10 MB more after
// a load of creates that way. The smallest shapes are the exception (see [`keep_prepared`]).

/// Whether a statement built for `rows` rows or names stays prepared on its connection. The
/// shapes of one create or one entry repeat on every write of a lightly loaded server, and
/// parsing them again each time cost a tenth of a follower's CPU; there are few of them and
/// they are small.
pub(crate) fn keep_prepared(rows: usize) -> bool {
    rows <= 4
}

/// Names per `IN (...)` list: well under SQLite's limit of 32,766 bound values.
pub(crate) const NAMES_PER_STATEMENT: usize = 500;

/// Rows of `select` (which ends in `IN (`) for every name in `names`, one statement per
/// [`NAMES_PER_STATEMENT`] names, each followed by `tail` (which starts with `)`).
pub(crate) async fn fetch_in(
    c: &mut SqliteConnection,
    select: &str,
    names: &[&str],
    tail: &str,
) -> Result<Vec<SqliteRow>, sqlx::Error> {
    let mut out = Vec::new();
    for chunk in names.chunks(NAMES_PER_STATEMENT) {
        let mut q = sqlx::QueryBuilder::new(select);
        let mut list = q.separated(", ");
        for n in chunk {
            list.push_bind(*n);
        }
        q.push(tail);
        out.extend(
            q.build()
                .persistent(keep_prepared(chunk.len()))
                .fetch_all(&mut *c)
                .await?,
        );
    }
    Ok(out)
}

/// Rows per multi-row statement: well under SQLite's limit of 32,766 bound values.
pub(crate) const ROWS_PER_STATEMENT: usize = 500;
