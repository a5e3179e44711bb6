//! Images pushed to the control plane when there is no registry.
//!
//! `meridian images push IMAGE` streams `docker save IMAGE` to `POST /v1/images/blobs` on any
//! server (stored there, content-addressed), then registers the name with `POST /v1/images`.
//! Agents that lack the image fetch it with `GET /v1/agent/images?name=IMAGE`.

use serde::{Deserialize, Serialize};

/// Answer to `POST /v1/images/blobs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BlobStored {
    /// `sha256:<hex>` of the bytes received.
    pub digest: String,
    /// Bytes received.
    pub size: u64,
    /// The server that stored them.
    pub server: u64,
}

/// `POST /v1/images`: name a stored blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterImage {
    /// Image reference, e.g. `web:1.4`.
    pub name: String,
    /// `sha256:<hex>` from [`BlobStored`].
    pub digest: String,
    /// The server from [`BlobStored`].
    pub server: u64,
}

/// An image the control plane can hand to agents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImageView {
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

/// Whether `digest` is `sha256:` and 64 lowercase hex digits.
pub fn is_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}
