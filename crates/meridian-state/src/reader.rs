//! The read side: queries over the local `state.db`, for the API.
//!
//! A single query sees one applied state by itself. A view built from several queries (the
//! route table, a scheduling round) reads through a [`ReadSnapshot`] instead: one read
//! transaction, stamped with the applied index it sees, so no view mixes two states.

use std::sync::Arc;

use sqlx::{Sqlite, SqliteConnection, SqlitePool, Transaction};

use crate::apps::{self, AppRecord};
use crate::audit::{self, AuditRecord};
use crate::auth_cache::{AuthCache, AuthView};
use crate::changes::{ChangeLog, Touched};
use crate::images::{self, ImageRecord};
use crate::instances::{self, Footprint, InstanceRecord, Which};
use crate::nodes::{self, NodeRecord};
use crate::regions::{self, RegionRecord};
use crate::releases::{self, ReleaseRecord};
use crate::tokens::{self, TokenRecord};
use crate::{routing, schedule, settings};
use meridian_core::schedule::Unplaced;
use meridian_core::JurisdictionCatalog;

/// Reads the state this server has applied. Whether that is fresh enough is the caller's
/// business (the API confirms leadership first unless asked for a stale read).
#[derive(Debug, Clone)]
pub struct StateReader {
    pool: SqlitePool,
    auth: Arc<AuthCache>,
    changes: Arc<ChangeLog>,
}

impl StateReader {
    /// Reads through `pool`, a pool over `state.db`, and `auth`, kept by the state machine.
    pub fn new(pool: SqlitePool, auth: Arc<AuthCache>) -> Self {
        Self::with_changes(pool, auth, Arc::default())
    }

    /// As [`StateReader::new`], with the log of what applied entries touched.
    pub fn with_changes(pool: SqlitePool, auth: Arc<AuthCache>, changes: Arc<ChangeLog>) -> Self {
        Self {
            pool,
            auth,
            changes,
        }
    }

    /// Opens a read transaction: everything read through it sees the state as of one applied
    /// index, whatever is applied meanwhile.
    pub async fn snapshot(&self) -> Result<ReadSnapshot, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        // In WAL mode the first read fixes what the whole transaction sees.
        let (applied, _) = crate::snapshot::read_applied(&mut tx).await?;
        Ok(ReadSnapshot {
            tx,
            applied: applied.map_or(0, |l| l.index),
        })
    }

    /// What entries after index `after` up to `upto` touched (see [`ChangeLog::since`]).
    pub fn changes_since(&self, after: u64, upto: u64) -> Touched {
        self.changes.since(after, upto)
    }

    /// Tokens and the signing key, from memory.
    pub fn auth(&self) -> Arc<AuthView> {
        self.auth.view()
    }

    /// Every token.
    pub async fn tokens(&self) -> Result<Vec<TokenRecord>, sqlx::Error> {
        tokens::tokens(&mut *self.pool.acquire().await?).await
    }

    /// The region with this name.
    pub async fn region(&self, name: &str) -> Result<Option<RegionRecord>, sqlx::Error> {
        regions::region(&mut *self.pool.acquire().await?, name).await
    }

    /// Every region.
    pub async fn regions(&self) -> Result<Vec<RegionRecord>, sqlx::Error> {
        regions::regions(&mut *self.pool.acquire().await?).await
    }

    /// The app with this name.
    pub async fn app(&self, name: &str) -> Result<Option<AppRecord>, sqlx::Error> {
        apps::app(&mut *self.pool.acquire().await?, name).await
    }

    /// Every app.
    pub async fn apps(&self) -> Result<Vec<AppRecord>, sqlx::Error> {
        apps::apps(&mut *self.pool.acquire().await?).await
    }

    /// One node.
    pub async fn node(&self, name: &str) -> Result<Option<NodeRecord>, sqlx::Error> {
        nodes::node(&mut *self.pool.acquire().await?, name).await
    }

    /// Every node.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, sqlx::Error> {
        nodes::nodes(&mut *self.pool.acquire().await?).await
    }

    /// Releases of one app (every app when `None`), newest first.
    pub async fn releases(&self, app: Option<&str>) -> Result<Vec<ReleaseRecord>, sqlx::Error> {
        releases::releases(&mut *self.pool.acquire().await?, app).await
    }

    /// Instances wanted running, of every app.
    pub async fn running_instances(&self) -> Result<Vec<InstanceRecord>, sqlx::Error> {
        instances::instances(&mut *self.pool.acquire().await?, Which::Running).await
    }

    /// Instances wanted running on one node.
    pub async fn node_instances(&self, node: &str) -> Result<Vec<InstanceRecord>, sqlx::Error> {
        instances::instances(&mut *self.pool.acquire().await?, Which::OnNode(node)).await
    }

    /// Every instance of an app, running ones first.
    pub async fn app_instances(&self, app: &str) -> Result<Vec<InstanceRecord>, sqlx::Error> {
        instances::instances(&mut *self.pool.acquire().await?, Which::OfApp(app)).await
    }

    /// Per node: instances wanted running, and the CPU and memory they take.
    pub async fn node_usage(&self) -> Result<Vec<(String, u32, u32, u32)>, sqlx::Error> {
        instances::node_usage(&mut *self.pool.acquire().await?).await
    }

    /// One pushed image.
    pub async fn image(&self, name: &str) -> Result<Option<ImageRecord>, sqlx::Error> {
        images::image(&mut *self.pool.acquire().await?, name).await
    }

    /// Every pushed image.
    pub async fn images(&self) -> Result<Vec<ImageRecord>, sqlx::Error> {
        images::images(&mut *self.pool.acquire().await?).await
    }

    /// What could not be placed, per app.
    pub async fn unplaced(&self) -> Result<Vec<(String, Vec<Unplaced>)>, sqlx::Error> {
        schedule::unplaced(&mut *self.pool.acquire().await?).await
    }

    /// The audit entries `filter` selects, oldest first.
    pub async fn audit(
        &self,
        filter: &audit::AuditFilter<'_>,
    ) -> Result<Vec<AuditRecord>, sqlx::Error> {
        audit::audit(&mut *self.pool.acquire().await?, filter).await
    }

    /// The residency apps created without one get (empty: none).
    pub async fn default_residency(&self) -> Result<Vec<meridian_core::Jurisdiction>, sqlx::Error> {
        settings::default_residency(&mut *self.pool.acquire().await?).await
    }

    /// Instances routers may send to: (id, app, node, region, address).
    pub async fn routable_instances(
        &self,
    ) -> Result<Vec<(String, String, String, String, String)>, sqlx::Error> {
        routing::routable_instances(&mut *self.pool.acquire().await?).await
    }

    /// Registered routers: (name, region, url).
    pub async fn routers(&self) -> Result<Vec<(String, String, String)>, sqlx::Error> {
        routing::routers(&mut *self.pool.acquire().await?).await
    }

    /// The apps domain.
    pub async fn apps_domain(&self) -> Result<meridian_core::DomainName, sqlx::Error> {
        settings::apps_domain(&mut *self.pool.acquire().await?).await
    }

    /// The jurisdiction catalog.
    pub async fn catalog(&self) -> Result<JurisdictionCatalog, sqlx::Error> {
        regions::catalog(&mut *self.pool.acquire().await?).await
    }
}

/// A consistent view of the applied state: one read transaction. Dropping it ends the
/// transaction; keep it no longer than the view takes to build, since it holds a pooled
/// connection and keeps SQLite from checkpointing past it.
pub struct ReadSnapshot {
    tx: Transaction<'static, Sqlite>,
    applied: u64,
}

impl ReadSnapshot {
    /// The index of the last entry applied in the state this snapshot sees (0 before any).
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// The connection inside the transaction, for the row functions.
    pub fn conn(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }

    /// Every region.
    pub async fn regions(&mut self) -> Result<Vec<RegionRecord>, sqlx::Error> {
        regions::regions(&mut self.tx).await
    }

    /// The app with this name.
    pub async fn app(&mut self, name: &str) -> Result<Option<AppRecord>, sqlx::Error> {
        apps::app(&mut self.tx, name).await
    }

    /// Every app.
    pub async fn apps(&mut self) -> Result<Vec<AppRecord>, sqlx::Error> {
        apps::apps(&mut self.tx).await
    }

    /// What scheduling reads of the apps with these names (those that exist).
    pub async fn placements_of(
        &mut self,
        names: &[&str],
    ) -> Result<Vec<apps::AppPlacement>, sqlx::Error> {
        apps::placements_of(&mut self.tx, names).await
    }

    /// The names of every app, in order.
    pub async fn app_names(&mut self) -> Result<Vec<String>, sqlx::Error> {
        apps::app_names(&mut self.tx).await
    }

    /// Up to `limit` app names after `after` (from the first when `None`), in order.
    pub async fn app_names_after(
        &mut self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, sqlx::Error> {
        apps::app_names_after(&mut self.tx, after, limit).await
    }

    /// Every node.
    pub async fn nodes(&mut self) -> Result<Vec<NodeRecord>, sqlx::Error> {
        nodes::nodes(&mut self.tx).await
    }

    /// The nodes with these names (those that exist).
    pub async fn nodes_named(&mut self, names: &[&str]) -> Result<Vec<NodeRecord>, sqlx::Error> {
        nodes::nodes_named(&mut self.tx, names).await
    }

    /// Releases of one app (every app when `None`), newest first.
    pub async fn releases(&mut self, app: Option<&str>) -> Result<Vec<ReleaseRecord>, sqlx::Error> {
        releases::releases(&mut self.tx, app).await
    }

    /// The live releases (rolling or active) of these apps, by app, newest first.
    pub async fn live_states_of(
        &mut self,
        apps: &[&str],
    ) -> Result<Vec<releases::ReleaseState>, sqlx::Error> {
        releases::live_states_of(&mut self.tx, apps).await
    }

    /// Apps with a release still rolling out after `at`, its deadline.
    pub async fn rolling_past_deadline(&mut self, at: u64) -> Result<Vec<String>, sqlx::Error> {
        releases::rolling_past_deadline(&mut self.tx, at).await
    }

    /// Instances wanted running, of every app.
    pub async fn running_instances(&mut self) -> Result<Vec<InstanceRecord>, sqlx::Error> {
        instances::instances(&mut self.tx, Which::Running).await
    }

    /// Instances wanted running of these apps, by app.
    pub async fn running_instances_of(
        &mut self,
        apps: &[&str],
    ) -> Result<Vec<InstanceRecord>, sqlx::Error> {
        instances::running_instances_of(&mut self.tx, apps).await
    }

    /// Apps with an instance wanted running on this node.
    pub async fn apps_on_node(&mut self, node: &str) -> Result<Vec<String>, sqlx::Error> {
        instances::apps_on_node(&mut self.tx, node).await
    }

    /// Per app and node: instances wanted running there, and the app's CPU and memory per
    /// instance.
    pub async fn footprints(&mut self) -> Result<Vec<Footprint>, sqlx::Error> {
        instances::footprints(&mut self.tx).await
    }

    /// What could not be placed, per app.
    pub async fn unplaced(&mut self) -> Result<Vec<(String, Vec<Unplaced>)>, sqlx::Error> {
        schedule::unplaced(&mut self.tx).await
    }

    /// What could not be placed, of these apps.
    pub async fn unplaced_of(
        &mut self,
        apps: &[&str],
    ) -> Result<Vec<(String, Vec<Unplaced>)>, sqlx::Error> {
        schedule::unplaced_of(&mut self.tx, apps).await
    }

    /// Apps with something unplaced.
    pub async fn pending_apps(&mut self) -> Result<Vec<String>, sqlx::Error> {
        schedule::pending_apps(&mut self.tx).await
    }

    /// Instances routers may send to: (id, app, node, region, address).
    pub async fn routable_instances(
        &mut self,
    ) -> Result<Vec<(String, String, String, String, String)>, sqlx::Error> {
        routing::routable_instances(&mut self.tx).await
    }

    /// Registered routers: (name, region, url).
    pub async fn routers(&mut self) -> Result<Vec<(String, String, String)>, sqlx::Error> {
        routing::routers(&mut self.tx).await
    }

    /// The apps domain.
    pub async fn apps_domain(&mut self) -> Result<meridian_core::DomainName, sqlx::Error> {
        settings::apps_domain(&mut self.tx).await
    }

    /// The jurisdiction catalog.
    pub async fn catalog(&mut self) -> Result<JurisdictionCatalog, sqlx::Error> {
        regions::catalog(&mut self.tx).await
    }
}
