//! Applying one committed command to the state tables. Deterministic: the outcome depends only
//! on the command and the rows already there, so every server reaches the same state. The
//! work itself lives with each entity (`apps`, `releases`, `instances`, ...); this file only
//! dispatches.

use sqlx::SqliteConnection;

use crate::changes::Touched;
use crate::command::{Applied, Command, CommandResult, Forget, Forgotten};
use crate::{
    apps, audit, images, instances, nodes, regions, releases, routing, schedule, settings, tokens,
};

/// Applies `cmd` inside the caller's transaction, a `Command::Batch` one command at a time.
pub async fn apply(c: &mut SqliteConnection, cmd: &Command) -> Result<CommandResult, sqlx::Error> {
    let mut applier = Applier::default();
    let result = applier.apply(c, cmd, &mut Touched::default()).await?;
    applier.finish(c).await?;
    Ok(result)
}

/// Applies a run of commands in order inside one transaction, holding back the writes no
/// command in between reads so that a run of them goes in as one statement: the first
/// releases of apps created one after another. [`Applier::finish`] writes what is held back
/// and must run before the transaction commits.
#[derive(Debug, Default)]
pub struct Applier {
    held: apps::HeldCreates,
}

impl Applier {
    /// Applies `cmd` (a `Command::Batch` one command at a time), adding to `touched` what it
    /// changed (nothing when refused).
    pub async fn apply(
        &mut self,
        c: &mut SqliteConnection,
        cmd: &Command,
        touched: &mut Touched,
    ) -> Result<CommandResult, sqlx::Error> {
        let Command::Batch { commands } = cmd else {
            return self.apply_marked(c, cmd, touched).await;
        };
        let mut results = Vec::with_capacity(commands.len());
        for sub in commands {
            results.push(self.apply_marked(c, sub, touched).await?);
        }
        Ok(Ok(Applied::Batch(results)))
    }

    /// Writes what is held back.
    pub async fn finish(&mut self, c: &mut SqliteConnection) -> Result<(), sqlx::Error> {
        self.held.write(c).await
    }

    /// Before a run of commands that creates the apps named `names` (and may do anything
    /// else): reads which names are taken in one query, so that the creates can hold back
    /// their app rows as well as their first releases.
    pub async fn expect_creates(
        &mut self,
        c: &mut SqliteConnection,
        names: &[&str],
    ) -> Result<(), sqlx::Error> {
        if names.is_empty() {
            return Ok(());
        }
        self.held.expect(c, names).await
    }

    /// As [`Applier::expect_creates`] without reading: assumes that no name the creates
    /// would take exists and that the default residency is `default` (see
    /// `HeldCreates::assume`).
    pub(crate) fn assume_creates(&mut self, default: Vec<meridian_core::Jurisdiction>) {
        self.held.assume(default);
    }

    /// The default residency the run read or assumed, while no command that might change
    /// it has run.
    pub(crate) fn known_default_residency(&self) -> Option<&[meridian_core::Jurisdiction]> {
        self.held.known_default_residency()
    }

    /// Hands over what is held back instead of writing it, for the caller to write before
    /// the transaction commits: the state machine sends those statements and the commit to
    /// SQLite in one round trip.
    pub(crate) fn take_held(&mut self) -> apps::HeldCreates {
        std::mem::take(&mut self.held)
    }

    /// Applies one command and marks what it changed.
    async fn apply_marked(
        &mut self,
        c: &mut SqliteConnection,
        cmd: &Command,
        t: &mut Touched,
    ) -> Result<CommandResult, sqlx::Error> {
        // Creating an app reads no releases and, unless it has custom domains, no other app
        // (`apps::create` keeps those in order), so the writes of a run of creates can wait;
        // anything else may read them.
        if !matches!(cmd, Command::CreateApp { .. }) {
            self.finish(c).await?;
        }
        let result = apply_one(c, cmd, t, &mut self.held).await?;
        if result.is_err() {
            return Ok(result);
        }
        mark(cmd, t);
        Ok(result)
    }
}

/// Marks what a command that was not refused changed.
fn mark(cmd: &Command, t: &mut Touched) {
    match cmd {
        Command::CreateApp { spec, .. } | Command::UpdateApp { spec, .. } => t.app(&spec.name),
        Command::DeleteApp { name, .. } => t.app(name),
        Command::Deploy { app, .. } => t.app(app),
        Command::RegisterNode { name, .. }
        | Command::SetNodeStatus { name, .. }
        | Command::SetNodeDrain { name, .. } => t.node(name),
        Command::CreateRegion { .. }
        | Command::UpdateRegion { .. }
        | Command::DeleteRegion { .. } => t.regions = true,
        Command::RegisterRouter { .. } | Command::SetAppsDomain { .. } => t.routing = true,
        Command::Forget(f) => {
            for n in &f.nodes {
                t.node(n);
            }
            t.routing |= !f.routers.is_empty();
        }
        // Reports and rounds mark the apps whose rows they changed as they write them.
        Command::ReportInstances { .. } | Command::Schedule { .. } => {}
        Command::Bootstrap { .. }
        | Command::SetDefaultResidency { .. }
        | Command::CreateToken { .. }
        | Command::RevokeToken { .. }
        | Command::RegisterImage { .. }
        | Command::Batch { .. } => {}
    }
}

/// Applies one command.
///
/// Every command decides whether to refuse before its first write, so a refusal leaves the
/// tables untouched without a savepoint. An `Err` means the database failed and the whole
/// entry must be abandoned.
async fn apply_one(
    c: &mut SqliteConnection,
    cmd: &Command,
    t: &mut Touched,
    held: &mut apps::HeldCreates,
) -> Result<CommandResult, sqlx::Error> {
    match cmd {
        Command::Bootstrap { signing_key, admin } => tokens::bootstrap(c, signing_key, admin).await,
        Command::CreateToken { token } => tokens::insert_token(c, token).await,
        Command::RevokeToken { id, at } => tokens::revoke(c, id, *at).await,
        Command::CreateRegion { region, at } => regions::create(c, region, *at).await,
        Command::UpdateRegion {
            region,
            expected_version,
            at,
        } => regions::update(c, region, *expected_version, *at).await,
        Command::DeleteRegion { name } => regions::delete(c, name).await,
        Command::RegisterRouter {
            name,
            region,
            url,
            at,
        } => routing::register_router(c, name, region, url, *at).await,
        Command::SetAppsDomain { domain } => settings::set_apps_domain(c, domain).await,
        Command::SetDefaultResidency { residency } => {
            settings::set_default_residency(c, residency).await
        }
        Command::CreateApp {
            spec,
            at,
            default_residency,
        } => apps::create(c, spec, *at, *default_residency, held).await,
        Command::UpdateApp {
            spec,
            expected_version,
            at,
        } => apps::update(c, spec, *expected_version, *at).await,
        Command::DeleteApp { name, at } => apps::delete(c, name, *at).await,
        Command::Batch { .. } => Ok(Err(crate::command::Refusal::Conflict {
            message: "batches cannot be nested".into(),
        })),
        Command::RegisterNode {
            name,
            region,
            cpu_millis,
            memory_mb,
            labels,
            advertise_host,
            at,
        } => {
            nodes::register_node(
                c,
                name,
                region,
                *cpu_millis,
                *memory_mb,
                labels,
                advertise_host,
                *at,
            )
            .await
        }
        Command::SetNodeStatus { name, status, at } => {
            nodes::set_node_status(c, name, *status, *at).await
        }
        Command::SetNodeDrain { name, drain, at } => {
            nodes::set_node_drain(c, name, *drain, *at).await
        }
        Command::ReportInstances { node, reports, at } => {
            instances::report_instances(c, node, reports, *at, t).await
        }
        Command::Deploy {
            app,
            image,
            deadline_s,
            at,
        } => releases::deploy(c, app, image, *deadline_s, *at).await,
        Command::Schedule { round, at } => schedule::schedule(c, round, *at, t).await,
        Command::RegisterImage {
            name,
            digest,
            size,
            holder,
            at,
        } => images::register_image(c, name, digest, *size, *holder, *at).await,
        Command::Forget(f) => forget(c, f).await,
    }
}

/// `Command::Forget`: each entity lets go of what still qualifies.
async fn forget(c: &mut SqliteConnection, f: &Forget) -> Result<CommandResult, sqlx::Error> {
    let mut done = Forgotten::default();
    if f.audit_through > 0 {
        let before: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit WHERE seq <= ?")
            .bind(crate::sql::i(f.audit_through))
            .fetch_one(&mut *c)
            .await?;
        audit::forget_through(c, f.audit_through).await?;
        done.audit = crate::sql::u(before);
    }
    for (app, number) in &f.releases {
        done.releases += u64::from(releases::forget(c, app, *number).await?);
    }
    for node in &f.nodes {
        done.nodes += u64::from(nodes::forget(c, node, f.gone_before).await?);
    }
    for router in &f.routers {
        done.routers += u64::from(routing::forget_router(c, router, f.gone_before).await?);
    }
    for id in &f.tokens {
        done.tokens += u64::from(tokens::forget(c, id, f.tokens_before).await?);
    }
    Ok(Ok(Applied::Forgotten(done)))
}
