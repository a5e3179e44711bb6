//! The read side: queries over the local `state.db`, for the API.

use std::sync::Arc;

use sqlx::SqlitePool;

use crate::auth_cache::{AuthCache, AuthView};
use crate::command::{AppRecord, RegionRecord, TokenRecord};
use crate::rows;
use crate::worker_records::{AuditRecord, ImageRecord, InstanceRecord, NodeRecord, ReleaseRecord};
use crate::worker_rows::{self, Which};
use meridian_core::schedule::Unplaced;
use meridian_core::JurisdictionCatalog;

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

    /// One node.
    pub async fn node(&self, name: &str) -> Result<Option<NodeRecord>, sqlx::Error> {
        worker_rows::node(&mut *self.pool.acquire().await?, name).await
    }

    /// Every node.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, sqlx::Error> {
        worker_rows::nodes(&mut *self.pool.acquire().await?).await
    }

    /// Releases of one app (every app when `None`), newest first.
    pub async fn releases(&self, app: Option<&str>) -> Result<Vec<ReleaseRecord>, sqlx::Error> {
        worker_rows::releases(&mut *self.pool.acquire().await?, app).await
    }

    /// Instances wanted running, of every app.
    pub async fn running_instances(&self) -> Result<Vec<InstanceRecord>, sqlx::Error> {
        worker_rows::instances(&mut *self.pool.acquire().await?, Which::Running).await
    }

    /// Instances wanted running on one node.
    pub async fn node_instances(&self, node: &str) -> Result<Vec<InstanceRecord>, sqlx::Error> {
        worker_rows::instances(&mut *self.pool.acquire().await?, Which::OnNode(node)).await
    }

    /// Every instance of an app, running ones first.
    pub async fn app_instances(&self, app: &str) -> Result<Vec<InstanceRecord>, sqlx::Error> {
        worker_rows::instances(&mut *self.pool.acquire().await?, Which::OfApp(app)).await
    }

    /// Per node: instances wanted running, and the CPU and memory they take.
    pub async fn node_usage(&self) -> Result<Vec<(String, u32, u32, u32)>, sqlx::Error> {
        worker_rows::node_usage(&mut *self.pool.acquire().await?).await
    }

    /// One pushed image.
    pub async fn image(&self, name: &str) -> Result<Option<ImageRecord>, sqlx::Error> {
        worker_rows::image(&mut *self.pool.acquire().await?, name).await
    }

    /// Every pushed image.
    pub async fn images(&self) -> Result<Vec<ImageRecord>, sqlx::Error> {
        worker_rows::images(&mut *self.pool.acquire().await?).await
    }

    /// What could not be placed, per app.
    pub async fn unplaced(&self) -> Result<Vec<(String, Vec<Unplaced>)>, sqlx::Error> {
        worker_rows::unplaced(&mut *self.pool.acquire().await?).await
    }

    /// Audit entries after `after`, oldest first.
    pub async fn audit(
        &self,
        app: Option<&str>,
        after: u64,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, sqlx::Error> {
        worker_rows::audit(&mut *self.pool.acquire().await?, app, after, limit).await
    }

    /// Instances routers may send to: (id, app, node, region, address).
    pub async fn routable_instances(
        &self,
    ) -> Result<Vec<(String, String, String, String, String)>, sqlx::Error> {
        worker_rows::routable_instances(&mut *self.pool.acquire().await?).await
    }

    /// Registered routers: (name, region, url).
    pub async fn routers(&self) -> Result<Vec<(String, String, String)>, sqlx::Error> {
        worker_rows::routers(&mut *self.pool.acquire().await?).await
    }

    /// The apps domain.
    pub async fn apps_domain(&self) -> Result<meridian_core::DomainName, sqlx::Error> {
        rows::apps_domain(&mut *self.pool.acquire().await?).await
    }

    /// The jurisdiction catalog.
    pub async fn catalog(&self) -> Result<JurisdictionCatalog, sqlx::Error> {
        rows::catalog(&mut *self.pool.acquire().await?).await
    }
}
