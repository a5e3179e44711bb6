//! Image blobs on this server's disk: `docker save` tars, named by the SHA-256 of their bytes,
//! in `<data dir>/images/`. Written to a temporary file while hashing, then renamed, so a blob
//! is either whole or absent.

use std::path::PathBuf;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// Why a blob could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The upload exceeded the limit.
    #[error("the image is larger than {0} bytes")]
    TooLarge(u64),
    /// The upload was empty.
    #[error("the upload is empty")]
    Empty,
    /// The client's stream broke off.
    #[error("the upload broke off: {0}")]
    Upload(String),
    /// The disk failed. The cause is in the message (and not a `source`): it is logged on
    /// one line.
    #[error("cannot store the image: {0}")]
    Disk(std::io::Error),
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        Self::Disk(e)
    }
}

/// The blobs of one server.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
    max_bytes: u64,
}

impl ImageStore {
    /// Blobs under `dir`, each at most `max_bytes`.
    pub fn new(dir: PathBuf, max_bytes: u64) -> Self {
        Self { dir, max_bytes }
    }

    fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{}.tar", digest.replace(':', "-")))
    }

    /// The file of a blob this server holds, if it holds it. `digest` must be checked by the
    /// caller (`meridian_api::images::is_digest`).
    pub async fn open(&self, digest: &str) -> Option<tokio::fs::File> {
        tokio::fs::File::open(self.path(digest)).await.ok()
    }

    /// Stores a stream; answers its digest and size.
    pub async fn put<S, E>(&self, mut body: S) -> Result<(String, u64), StoreError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        tokio::fs::create_dir_all(&self.dir).await?;
        let tmp = self
            .dir
            .join(format!("upload-{:016x}.part", rand::random::<u64>()));
        let result = self.write(&tmp, &mut body).await;
        let (digest, size) = match result {
            Ok(v) => v,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        tokio::fs::rename(&tmp, self.path(&digest)).await?;
        Ok((digest, size))
    }

    async fn write<S, E>(&self, tmp: &PathBuf, body: &mut S) -> Result<(String, u64), StoreError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut file = tokio::fs::File::create(tmp).await?;
        let mut hash = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| StoreError::Upload(e.to_string()))?;
            size += chunk.len() as u64;
            if size > self.max_bytes {
                return Err(StoreError::TooLarge(self.max_bytes));
            }
            hash.update(&chunk);
            file.write_all(&chunk).await?;
        }
        if size == 0 {
            return Err(StoreError::Empty);
        }
        file.sync_all().await?;
        let hex: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok((format!("sha256:{hex}"), size))
    }
}
