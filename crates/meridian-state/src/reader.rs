//! The read side: queries over the local `state.db`, for the API.

use std::sync::Arc;

use sqlx::SqlitePool;

use crate::auth_cache::{AuthCache, AuthView};
use crate::command::{AppRecord, RegionRecord, TokenRecord};
use crate::rows;

/// Reads the state this server has applied. Whether that is fresh enough is the caller's
/// business (the API confirms leadership first unless asked for a stale read).
#[derive(Debug, Clone)]
pub struct StateReader {
    pool: SqlitePool,
    auth: Arc<AuthCache>,
}

impl StateReader {
    /// Reads through `pool`, a pool over `state.db`, and `auth`, kept by the state machine.
    pub fn new(pool: SqlitePool, auth: Arc<AuthCache>) -> Self {
        Self { pool, auth }
    }

    /// Tokens and the signing key, from memory.
    pub fn auth(&self) -> Arc<AuthView> {
        self.auth.view()
    }

    /// Every token.
    pub async fn tokens(&self) -> Result<Vec<TokenRecord>, sqlx::Error> {
        rows::tokens(&mut *self.pool.acquire().await?).await
    }

    /// The region with this name.
    pub async fn region(&self, name: &str) -> Result<Option<RegionRecord>, sqlx::Error> {
        rows::region(&mut *self.pool.acquire().await?, name).await
    }

    /// Every region.
    pub async fn regions(&self) -> Result<Vec<RegionRecord>, sqlx::Error> {
        rows::regions(&mut *self.pool.acquire().await?).await
    }

    /// The app with this name.
    pub async fn app(&self, name: &str) -> Result<Option<AppRecord>, sqlx::Error> {
        rows::app(&mut *self.pool.acquire().await?, name).await
    }

    /// Every app.
    pub async fn apps(&self) -> Result<Vec<AppRecord>, sqlx::Error> {
        rows::apps(&mut *self.pool.acquire().await?).await
    }
}
