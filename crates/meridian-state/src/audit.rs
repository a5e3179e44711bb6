//! The audit log of scheduling decisions: entries and their rows.

use meridian_core::Name;
use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use crate::sql::{i, keep_prepared, name, push_rows_of_apps, u};

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position; assigned on apply (0 in commands).
    pub seq: u64,
    /// Unix seconds.
    pub at: u64,
    /// The app.
    pub app: Name,
    /// `placed`, `stopped`, `refused` or `release`.
    pub kind: String,
    /// The instance concerned.
    pub instance: Option<String>,
    /// The node concerned.
    pub node: Option<String>,
    /// Its region.
    pub region: Option<String>,
    /// The region's country.
    pub country: Option<String>,
    /// The policy checked, e.g. `residency [EU]`.
    pub policy: String,
    /// What happened.
    pub detail: String,
}

pub(crate) fn audit_row(r: &SqliteRow) -> Result<AuditRecord, sqlx::Error> {
    Ok(AuditRecord {
        seq: u(r.try_get("seq")?),
        at: u(r.try_get("at")?),
        app: name("audit app", r.try_get("app")?)?,
        kind: r.try_get("kind")?,
        instance: r.try_get("instance")?,
        node: r.try_get("node")?,
        region: r.try_get("region")?,
        country: r.try_get("country")?,
        policy: r.try_get("policy")?,
        detail: r.try_get("detail")?,
    })
}

/// Which audit entries to read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditFilter<'a> {
    /// Only this app's.
    pub app: Option<&'a str>,
    /// Only entries after this sequence number.
    pub after: u64,
    /// Only entries made at or after this time, unix seconds.
    pub since: u64,
    /// At most this many.
    pub limit: u32,
    /// The newest `limit` entries that match instead of the oldest.
    pub newest: bool,
}

/// The audit entries `filter` selects, oldest first.
pub async fn audit(
    c: &mut SqliteConnection,
    filter: &AuditFilter<'_>,
) -> Result<Vec<AuditRecord>, sqlx::Error> {
    let mut q = sqlx::QueryBuilder::new("SELECT * FROM audit WHERE seq > ");
    q.push_bind(i(filter.after));
    if let Some(app) = filter.app {
        // Every id the name has had (a deleted app's entries stay), and entries written
        // without an id (none today), each through its index.
        q.push(" AND (app_id IN (SELECT id FROM apps WHERE name = ")
            .push_bind(app)
            .push(" UNION ALL SELECT id FROM deleted_apps WHERE name = ")
            .push_bind(app)
            .push(") OR (app_id IS NULL AND app = ")
            .push_bind(app)
            .push("))");
    }
    if filter.since > 0 {
        q.push(" AND at >= ").push_bind(i(filter.since));
    }
    q.push(if filter.newest {
        " ORDER BY seq DESC LIMIT "
    } else {
        " ORDER BY seq LIMIT "
    })
    .push_bind(i64::from(filter.limit));
    let rows = q.build().fetch_all(c).await?;
    let mut entries = rows.iter().map(audit_row).collect::<Result<Vec<_>, _>>()?;
    if filter.newest {
        entries.reverse();
    }
    Ok(entries)
}

pub(crate) async fn insert_audit(
    c: &mut SqliteConnection,
    rows: &[AuditRecord],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut insert = sqlx::QueryBuilder::new("");
    push_insert_audit(&mut insert, rows);
    insert
        .build()
        .persistent(keep_prepared(rows.len()))
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// Appends to `q` the statements that insert `rows`, each ending in `;`.
pub(crate) fn push_insert_audit<'a>(
    q: &mut sqlx::QueryBuilder<'a, sqlx::Sqlite>,
    rows: &'a [AuditRecord],
) {
    push_rows_of_apps(
        q,
        "INSERT OR FAIL INTO audit (app, app_id, at, kind, instance, node, region, country, \
         policy, detail)",
        9,
        rows,
        |row, a| {
            row.push_bind(a.app.as_str())
                .push_bind(i(a.at))
                .push_bind(&a.kind)
                .push_bind(&a.instance)
                .push_bind(&a.node)
                .push_bind(&a.region)
                .push_bind(&a.country)
                .push_bind(&a.policy)
                .push_bind(&a.detail);
        },
    );
}

/// The oldest entries, at most `limit`, up to the first one at or after `before` (unix
/// seconds): what an age limit lets go now, oldest first.
pub async fn older_than(
    c: &mut SqliteConnection,
    before: u64,
    limit: u32,
) -> Result<Vec<AuditRecord>, sqlx::Error> {
    let rows = sqlx::query("SELECT * FROM audit ORDER BY seq LIMIT ?")
        .bind(i64::from(limit))
        .fetch_all(c)
        .await?;
    let mut out = Vec::new();
    for r in &rows {
        let rec = audit_row(r)?;
        // Entries are in commit order; a leader's clock may step back at a change of leader,
        // so stop at the first young entry rather than skipping over it.
        if rec.at >= before {
            break;
        }
        out.push(rec);
    }
    Ok(out)
}

/// Forgets every entry up to `seq`, and the ids of deleted apps no entry names any more.
pub(crate) async fn forget_through(c: &mut SqliteConnection, seq: u64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM audit WHERE seq <= ?")
        .bind(i(seq))
        .execute(&mut *c)
        .await?;
    sqlx::query(
        "DELETE FROM deleted_apps \
         WHERE NOT EXISTS (SELECT 1 FROM audit WHERE audit.app_id = deleted_apps.id)",
    )
    .execute(c)
    .await?;
    Ok(())
}
