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

// Lists of names (for `IN`) go in as one bound JSON array read with `json_each`, so the
// statement's text is the same for any length and it stays prepared. Multi-row writes bind a
// placeholder per value (reading whole rows out of JSON costs SQLite more than parsing the
// statement), padded to a few row counts (see [`shape`]) so that their texts repeat too.
// Parsing a statement for every batch cost a twentieth of the cluster's CPU under load;
// keeping every row count prepared cost about 10 MB per connection.

/// Rows a multi-row write is built for when it writes `rows`: that many up to 4, then the
/// next power of two, the rest padded with rows of NULLs that the statement skips. A dozen
/// texts serve every count.
pub(crate) fn shape(rows: usize) -> usize {
    if rows <= 4 {
        rows
    } else {
        rows.next_power_of_two()
    }
}

/// Whether a statement [`push_rows`] built for `rows` rows (the most of any statement in
/// it) stays prepared on its connection: every shape repeats under load, and only the
/// largest (over 64 rows) are too big to keep, with thousands of bound values each.
pub(crate) fn keep_prepared(rows: usize) -> bool {
    rows <= 64
}

/// Appends to `q` the statements `insert` (which names the table and its columns) writing
/// `rows`, each ending in `;`: per [`ROWS_PER_STATEMENT`] rows, one `VALUES` list of
/// [`shape`] rows of `columns` values, each row bound by `bind`, whose first value must not
/// be NULL (padding rows are told apart by it).
pub(crate) fn push_rows<'a, T>(
    q: &mut sqlx::QueryBuilder<'a, sqlx::Sqlite>,
    insert: &str,
    columns: usize,
    rows: &'a [T],
    mut bind: impl FnMut(&mut Separated<'_, 'a>, &'a T),
) {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let shape = shape(chunk.len());
        q.push(insert);
        if shape == chunk.len() {
            q.push(" ");
            q.push_values(chunk, |mut row, r| bind(&mut row, r));
        } else {
            q.push(" SELECT * FROM (");
            push_padded_values(q, chunk, columns, &mut bind);
            // Every written row's first value is NOT NULL.
            q.push(") WHERE column1 IS NOT NULL");
        }
        q.push("; ");
    }
}

/// A `VALUES` list of [`shape`] rows: `chunk`'s, then rows of `columns` NULLs.
fn push_padded_values<'a, T>(
    q: &mut sqlx::QueryBuilder<'a, sqlx::Sqlite>,
    chunk: &'a [T],
    columns: usize,
    bind: &mut impl FnMut(&mut Separated<'_, 'a>, &'a T),
) {
    let padding = std::iter::repeat_n(None, shape(chunk.len()) - chunk.len());
    q.push_values(
        chunk.iter().map(Some).chain(padding),
        |mut row, r| match r {
            Some(r) => bind(&mut row, r),
            None => {
                for _ in 0..columns {
                    row.push_bind(None::<i64>);
                }
            }
        },
    );
}

/// One row's values, as [`push_rows`] binds them.
pub(crate) type Separated<'q, 'a> =
    sqlx::query_builder::Separated<'q, 'a, sqlx::Sqlite, &'static str>;

/// As [`push_rows`], into a table keyed by app id (`releases`, `audit`): each row's first
/// value is an app's name, and the statement puts the app's id after it: the id of the app of
/// that name, else the last id of a deleted app of that name (a scheduling round planned
/// before an app was deleted may be committed after). `insert` names the columns in that
/// order (`app`, `app_id`, then the `columns - 1` other bound values).
///
/// The ids are joined in, not looked up by a subquery per row: a `VALUES` row that holds a
/// subquery makes the list a compound `SELECT`, which SQLite refuses beyond 500 rows.
pub(crate) fn push_rows_of_apps<'a, T>(
    q: &mut sqlx::QueryBuilder<'a, sqlx::Sqlite>,
    insert: &str,
    columns: usize,
    rows: &'a [T],
    mut bind: impl FnMut(&mut Separated<'_, 'a>, &'a T),
) {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        q.push(insert);
        q.push(
            " SELECT v.column1, COALESCE(a.id, \
             (SELECT MAX(d.id) FROM deleted_apps d WHERE d.name = v.column1))",
        );
        for k in 2..=columns {
            q.push(format_args!(", v.column{k}"));
        }
        q.push(" FROM (");
        push_padded_values(q, chunk, columns, &mut bind);
        // Every written row's first value (the app's name) is NOT NULL.
        q.push(") AS v LEFT JOIN apps a ON a.name = v.column1 WHERE v.column1 IS NOT NULL; ");
    }
}

/// `values` as the JSON array a statement reads with `json_each(?)`.
pub(crate) fn json_list<T: serde::Serialize>(values: &[T]) -> String {
    to_json(&values)
}

/// Rows of `select` (which ends in `IN (`) for every name in `names`, followed by `tail`
/// (which starts with `)`), in one statement whatever the number of names.
pub(crate) async fn fetch_in(
    c: &mut SqliteConnection,
    select: &str,
    names: &[&str],
    tail: &str,
) -> Result<Vec<SqliteRow>, sqlx::Error> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!("{select}SELECT value FROM json_each(?){tail}");
    sqlx::query(&sql)
        .bind(json_list(names))
        .fetch_all(&mut *c)
        .await
}

/// Rows per multi-row statement (a [`shape`]): well under SQLite's limit of 32,766 bound
/// values.
pub(crate) const ROWS_PER_STATEMENT: usize = 512;

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Connection;

    #[test]
    fn a_dozen_shapes_serve_every_row_count() {
        let shapes: std::collections::BTreeSet<usize> =
            (1..=ROWS_PER_STATEMENT).map(shape).collect();
        assert_eq!(
            shapes.into_iter().collect::<Vec<_>>(),
            [1, 2, 3, 4, 8, 16, 32, 64, 128, 256, 512]
        );
        assert!((1..=ROWS_PER_STATEMENT).all(|n| shape(n) >= n));
    }

    /// A connection to a new in-memory database after `schema`.
    async fn with(schema: &str) -> SqliteConnection {
        let mut c = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        sqlx::raw_sql(schema).execute(&mut c).await.unwrap();
        c
    }

    #[tokio::test]
    async fn padded_statements_write_every_row_once_in_order() {
        let mut c = with("CREATE TABLE t (n INTEGER NOT NULL, s TEXT)").await;
        for count in [1usize, 3, 4, 5, 8, 9, 33, 600, 1100] {
            sqlx::query("DELETE FROM t").execute(&mut c).await.unwrap();
            let rows: Vec<(i64, Option<String>)> = (0..count)
                .map(|n| (n as i64, (n % 2 == 0).then(|| format!("row {n}"))))
                .collect();
            let mut q = sqlx::QueryBuilder::new("");
            push_rows(&mut q, "INSERT INTO t (n, s)", 2, &rows, |row, (n, s)| {
                row.push_bind(*n).push_bind(s.as_deref());
            });
            q.build().execute(&mut c).await.unwrap();
            let got: Vec<(i64, Option<String>)> =
                sqlx::query_as("SELECT n, s FROM t ORDER BY rowid")
                    .fetch_all(&mut c)
                    .await
                    .unwrap();
            assert_eq!(got, rows, "{count} rows");
        }
    }

    #[tokio::test]
    async fn lists_of_names_select_with_one_statement_for_any_length() {
        let mut c = with(
            "CREATE TABLE t (name TEXT PRIMARY KEY); \
             INSERT INTO t VALUES ('a'), ('b\"quoted\"'), ('c')",
        )
        .await;
        let rows = fetch_in(
            &mut c,
            "SELECT name FROM t WHERE name IN (",
            &["b\"quoted\"", "c", "zz"],
            ") ORDER BY name",
        )
        .await
        .unwrap();
        let names: Vec<String> = rows.iter().map(|r| sqlx::Row::get(r, "name")).collect();
        assert_eq!(names, ["b\"quoted\"", "c"]);
        assert!(
            fetch_in(&mut c, "SELECT name FROM t WHERE name IN (", &[], ")")
                .await
                .unwrap()
                .is_empty()
        );
    }
}
