//! Images pushed without a registry: the name -> digest record and who holds the blob.

use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use crate::command::{Applied, CommandResult};
use crate::sql::{i, json, to_json, u};

/// An image pushed to the control plane, as the state keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Image reference.
    pub name: String,
    /// `sha256:<hex>` of the tar.
    pub digest: String,
    /// Bytes.
    pub size: u64,
    /// Servers holding the blob.
    pub holders: Vec<u64>,
    /// Unix seconds.
    pub pushed_at: u64,
}

pub(crate) fn image_row(r: &SqliteRow) -> Result<ImageRecord, sqlx::Error> {
    Ok(ImageRecord {
        name: r.try_get("name")?,
        digest: r.try_get("digest")?,
        size: u(r.try_get("size")?),
        holders: json("image holders", r.try_get("holders")?)?,
        pushed_at: u(r.try_get("pushed_at")?),
    })
}

/// One pushed image by reference.
pub async fn image(
    c: &mut SqliteConnection,
    name: &str,
) -> Result<Option<ImageRecord>, sqlx::Error> {
    let row = sqlx::query("SELECT * FROM images WHERE name = ?")
        .bind(name)
        .fetch_optional(c)
        .await?;
    row.as_ref().map(image_row).transpose()
}

/// Every pushed image, by name.
pub async fn images(c: &mut SqliteConnection) -> Result<Vec<ImageRecord>, sqlx::Error> {
    let rows = sqlx::query("SELECT * FROM images ORDER BY name")
        .fetch_all(c)
        .await?;
    rows.iter().map(image_row).collect()
}

/// `Command::RegisterImage`.
pub(crate) async fn register_image(
    c: &mut SqliteConnection,
    name: &str,
    digest: &str,
    size: u64,
    holder: u64,
    at: u64,
) -> Result<CommandResult, sqlx::Error> {
    let old = image(c, name).await?;
    let mut holders = match old {
        Some(o) if o.digest == digest => o.holders,
        _ => Vec::new(),
    };
    if !holders.contains(&holder) {
        holders.push(holder);
    }
    let rec = ImageRecord {
        name: name.to_string(),
        digest: digest.to_string(),
        size,
        holders,
        pushed_at: at,
    };
    sqlx::query(
        "INSERT OR REPLACE INTO images (name, digest, size, holders, pushed_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&rec.name)
    .bind(&rec.digest)
    .bind(i(rec.size))
    .bind(to_json(&rec.holders))
    .bind(i(rec.pushed_at))
    .execute(&mut *c)
    .await?;
    Ok(Ok(Applied::Image(rec)))
}
