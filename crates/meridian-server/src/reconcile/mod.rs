//! The leader's reconcile loop. After entries are applied (and once a second) it plans the
//! apps something touched since its last round, and commits the round through Raft. Followers
//! run the loop too but only watch: they act once they lead.
//!
//! A round costs what changed, not what exists. Applied entries mark the apps and nodes they
//! touched (`meridian_state::changes`); the loop turns those marks into a set of dirty apps
//! (a node lost: the apps on it; a node gained: the apps waiting for room; regions changed:
//! every app) and plans at most [`MAX_APPS_PER_ROUND`] of them, read through one snapshot. The
//! room on every node comes from the [`World`] kept between rounds. On a one-second tick it
//! also expires silent nodes, plans apps whose rolling release passed its deadline, and sweeps
//! [`SWEEP_APPS`] more apps in name order, so anything a mark missed is planned again within
//! a bounded time. An app that cannot be placed keeps its reason in the state and is planned
//! again only when it changes, room appears, or the sweep reaches it.
//!
//! Architecture Invariant: the loop never writes anything `plan` did not decide, and apply
//! refuses a round that places outside an app's policy, so a stale leader's plan cannot land.

mod decide;
mod world;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use meridian_core::schedule;
use meridian_core::{Name, NodeStatus};
use meridian_state::{AppUnplaced, AuditRecord, Command, DbError, ReadSnapshot, Schedule};
use tokio::time::Instant;

use crate::ctx::{now, Ctx};
use crate::error::ApiError;

pub use decide::{demands, policy, read_round, to_round, RoundView};
pub use world::World;

/// How often the loop looks even when nothing was applied (heartbeat expiry, deadlines, the
/// sweep).
const TICK: Duration = Duration::from_secs(1);
/// Changes arriving within this window are planned together.
const DEBOUNCE: Duration = Duration::from_millis(20);
/// A round that would only record unplaced instances (and audit that) waits up to this long
/// for more of its kind, so a stream of apps the cluster cannot place costs one entry per
/// interval rather than one per round. Rounds that place, stop or move a release never wait.
/// What such a round decided is kept, not planned again: an app that changes meanwhile is
/// marked and planned anew (its kept result dropped), and new room or changed regions send
/// every kept app back to be planned.
const BOOKKEEPING_WAIT: Duration = Duration::from_millis(250);
/// Most new instances committed in one round. openraft gives each AppendEntries one heartbeat
/// interval (100 ms by default) to be shipped and made durable on a follower; a round of many
/// thousand placements is megabytes and never makes it, so large plans land in slices, each
/// applied round waking the next.
pub const MAX_PLACEMENTS_PER_ROUND: usize = 1000;
/// Most apps planned in one round; the rest stay dirty for the next.
pub const MAX_APPS_PER_ROUND: usize = 1000;
/// Apps the sweep plans again on each tick, whether or not anything marked them.
pub const SWEEP_APPS: usize = 100;
/// How often the world is loaded whole again, in case its upkeep drifted.
const RELOAD_EVERY: Duration = Duration::from_secs(600);

/// Runs until `stop` resolves.
pub async fn run(ctx: Ctx, stop: impl std::future::Future<Output = ()>) {
    let mut metrics = ctx.raft().metrics();
    let mut loop_state = Reconciler::default();
    tokio::pin!(stop);
    loop {
        let wait = if !loop_state.dirty.is_empty() {
            Duration::ZERO
        } else if let Some(since) = loop_state.held_since {
            BOOKKEEPING_WAIT.saturating_sub(since.elapsed())
        } else {
            TICK
        };
        tokio::select! {
            _ = &mut stop => return,
            changed = metrics.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(wait) => {}
        }
        if !ctx.is_leader() {
            ctx.0.leader_since.lock().map(|mut s| *s = None).ok();
            loop_state = Reconciler::default();
            continue;
        }
        tokio::time::sleep(DEBOUNCE).await;
        if let Err(e) = loop_state.round(&ctx).await {
            tracing::warn!(error = %e.message, "reconcile round failed; retrying");
            // Count the room on every node afresh: a refused round may have been planned
            // from a picture that drifted.
            loop_state.world = None;
        }
    }
}

/// What the loop keeps between rounds while it leads.
#[derive(Default)]
struct Reconciler {
    world: Option<World>,
    /// The applied index whose marks are already in `dirty`.
    seen: u64,
    /// Apps to plan.
    dirty: BTreeSet<Name>,
    /// What the last plan of each app decided when that only recorded it unplaced, waiting
    /// to be committed (see [`BOOKKEEPING_WAIT`]).
    held: BTreeMap<Name, Held>,
    /// When the oldest of `held` was held.
    held_since: Option<Instant>,
    /// Where the sweep goes on.
    sweep_after: Option<String>,
    last_tick: Option<Instant>,
    loaded_at: Option<Instant>,
}

/// One app's share of a bookkeeping-only round.
#[derive(Default)]
struct Held {
    unplaced: Vec<AppUnplaced>,
    audit: Vec<AuditRecord>,
}

impl Reconciler {
    /// One round on the leader.
    async fn round(&mut self, ctx: &Ctx) -> Result<(), ApiError> {
        let started = Instant::now();
        let st = ApiError::storage;
        let mut snap = ctx.reader().snapshot().await.map_err(st)?;
        let index = snap.applied();
        let reload = self.loaded_at.is_none_or(|t| t.elapsed() > RELOAD_EVERY);
        let mut everything = self.loaded_at.is_none();
        let mut release = false;
        match self.world.as_mut() {
            Some(world) if !reload => {
                let touched = ctx.reader().changes_since(self.seen, index);
                if touched.everything {
                    self.world = None;
                    everything = true;
                    release = true;
                } else {
                    if touched.regions {
                        release = true;
                        world.refresh_regions(&mut snap).await.map_err(st)?;
                        self.dirty
                            .extend(names(snap.app_names().await.map_err(st)?));
                    }
                    if !touched.nodes.is_empty() {
                        let nodes = world
                            .refresh_nodes(&mut snap, &touched.nodes)
                            .await
                            .map_err(st)?;
                        for lost in &nodes.lost {
                            let apps = snap.apps_on_node(lost.as_str()).await.map_err(st)?;
                            self.dirty.extend(names(apps));
                        }
                        if nodes.gained {
                            release = true;
                            self.dirty
                                .extend(names(snap.pending_apps().await.map_err(st)?));
                        }
                    }
                    self.dirty.extend(touched.apps);
                    world.applied = index;
                }
            }
            _ => self.world = None,
        }
        if release {
            self.release_held();
        }
        if self.world.is_none() {
            // Starting to lead or a snapshot installed: every app is planned once. The
            // periodic reload only recounts the room on each node.
            self.world = Some(World::load(&mut snap).await.map_err(st)?);
            self.loaded_at = Some(Instant::now());
            if everything {
                self.dirty
                    .extend(names(snap.app_names().await.map_err(st)?));
            }
        }
        self.seen = index;
        if self.last_tick.is_none_or(|t| t.elapsed() >= TICK) {
            self.last_tick = Some(Instant::now());
            if self.expire_nodes(ctx).await? {
                return Ok(());
            }
            self.on_tick(&mut snap).await.map_err(st)?;
        }
        let flush = self
            .held_since
            .is_some_and(|t| t.elapsed() >= BOOKKEEPING_WAIT);
        if self.dirty.is_empty() && !flush {
            return Ok(());
        }
        let batch = self.take_batch();
        // This round plans them again; what was kept of their last plan is superseded.
        for app in &batch {
            self.held.remove(app);
        }
        let at = now();
        let (view, mut round) = if batch.is_empty() {
            (None, Schedule::default())
        } else {
            let world = self.world.as_mut().expect("loaded above");
            let view = match read_round(&mut snap, world, &batch).await {
                Ok(view) => view,
                Err(e) => {
                    self.dirty.extend(batch);
                    return Err(st(e));
                }
            };
            let (demands, changes) = demands(&view, at);
            let mut plan = schedule::plan(&view.view, &demands);
            if plan.place.len() > MAX_PLACEMENTS_PER_ROUND {
                // The apps whose placements wait for a later round stay dirty.
                for p in plan.place.drain(MAX_PLACEMENTS_PER_ROUND..) {
                    self.dirty.insert(p.app);
                }
            }
            let round = to_round(&view, plan, changes, at);
            (Some(view), round)
        };
        drop(snap);
        let read = started.elapsed();
        let bookkeeping_only =
            round.place.is_empty() && round.stop.is_empty() && round.releases.is_empty();
        if bookkeeping_only && !flush {
            if !round.is_empty() {
                self.held_since.get_or_insert_with(Instant::now);
                self.hold(round);
            }
            return Ok(());
        }
        let flushed = if flush {
            self.take_held(&mut round)
        } else {
            Vec::new()
        };
        if round.is_empty() {
            return Ok(());
        }
        round.planned_at = index;
        let (placed, stopped) = match &view {
            Some(view) => moves(view, &round),
            None => (Vec::new(), Vec::new()),
        };
        let (n_placed, n_stopped, n_releases) =
            (round.place.len(), round.stop.len(), round.releases.len());
        let planned = started.elapsed();
        if let Err(e) = ctx.propose(Command::Schedule { round, at }).await {
            // Refused (the state moved under the plan) or not committed: plan them again.
            self.dirty.extend(batch);
            self.dirty.extend(flushed);
            return Err(e);
        }
        if let (Some(world), Some(view)) = (self.world.as_mut(), &view) {
            world.commit_round(&placed, &stopped, |app| {
                view.apps.get(app).map(|a| (a.cpu_millis, a.memory_mb))
            });
        }
        tracing::info!(
            apps = batch.len(),
            kept = flushed.len(),
            placed = n_placed,
            stopped = n_stopped,
            releases = n_releases,
            index,
            read_ms = read.as_millis() as u64,
            plan_ms = (planned - read).as_millis() as u64,
            commit_ms = (started.elapsed() - planned).as_millis() as u64,
            "committed a scheduling round"
        );
        Ok(())
    }

    /// Keeps what a bookkeeping-only round decided, per app.
    fn hold(&mut self, round: Schedule) {
        for u in round.unplaced {
            self.held.entry(u.app.clone()).or_default().unplaced.push(u);
        }
        for a in round.audit {
            self.held.entry(a.app.clone()).or_default().audit.push(a);
        }
    }

    /// Puts what was kept of up to [`MAX_APPS_PER_ROUND`] apps into `round`, ahead of what
    /// `round` decided itself, and answers those apps; the rest wait for the next round,
    /// which comes at once. Apps marked since they were kept are left to be planned again.
    fn take_held(&mut self, round: &mut Schedule) -> Vec<Name> {
        let mut apps = Vec::new();
        let (mut unplaced, mut audit) = (Vec::new(), Vec::new());
        while apps.len() < MAX_APPS_PER_ROUND {
            let Some((app, held)) = self.held.pop_first() else {
                break;
            };
            if self.dirty.contains(&app) {
                continue;
            }
            unplaced.extend(held.unplaced);
            audit.extend(held.audit);
            apps.push(app);
        }
        if self.held.is_empty() {
            self.held_since = None;
        }
        unplaced.append(&mut round.unplaced);
        audit.append(&mut round.audit);
        round.unplaced = unplaced;
        round.audit = audit;
        apps
    }

    /// Sends every kept app back to be planned: the room or the regions it was planned
    /// against changed.
    fn release_held(&mut self) {
        self.dirty
            .extend(std::mem::take(&mut self.held).into_keys());
        self.held_since = None;
    }

    /// The next apps to plan, in name order, taken out of `dirty`.
    fn take_batch(&mut self) -> BTreeSet<Name> {
        if self.dirty.len() <= MAX_APPS_PER_ROUND {
            return std::mem::take(&mut self.dirty);
        }
        let rest = self
            .dirty
            .iter()
            .nth(MAX_APPS_PER_ROUND)
            .cloned()
            .expect("more than the cap");
        let rest = self.dirty.split_off(&rest);
        std::mem::replace(&mut self.dirty, rest)
    }

    /// Once a second: apps whose rolling release passed its deadline, and the next slice of
    /// the sweep.
    async fn on_tick(&mut self, snap: &mut ReadSnapshot) -> Result<(), DbError> {
        self.dirty
            .extend(names(snap.rolling_past_deadline(now()).await?));
        let slice = snap
            .app_names_after(self.sweep_after.as_deref(), SWEEP_APPS)
            .await?;
        self.sweep_after = if slice.len() < SWEEP_APPS {
            None
        } else {
            slice.last().cloned()
        };
        self.dirty.extend(names(slice));
        Ok(())
    }

    /// Marks down every node silent for longer than the grace period. Answers whether it
    /// changed anything (the next round then plans with the new statuses).
    async fn expire_nodes(&self, ctx: &Ctx) -> Result<bool, ApiError> {
        let Some(world) = self.world.as_ref() else {
            return Ok(false);
        };
        let since = {
            let mut s = ctx.0.leader_since.lock().map_err(ApiError::storage)?;
            *s.get_or_insert_with(Instant::now)
        };
        let grace = ctx.0.node_grace;
        let silent: Vec<Name> = {
            let seen = ctx.0.heartbeats.lock().map_err(ApiError::storage)?;
            world
                .nodes()
                .filter(|n| n.status != NodeStatus::Down)
                .filter(|n| {
                    // A new leader gives every node a full grace period from its own start.
                    let last = seen
                        .get(n.name.as_str())
                        .copied()
                        .unwrap_or(since)
                        .max(since);
                    last.elapsed() > grace
                })
                .map(|n| n.name.clone())
                .collect()
        };
        for name in &silent {
            tracing::warn!(node = %name, grace_ms = grace.as_millis() as u64, "node missed its heartbeats; marking it down");
            ctx.propose(Command::SetNodeStatus {
                name: name.clone(),
                status: NodeStatus::Down,
                at: now(),
            })
            .await?;
        }
        Ok(!silent.is_empty())
    }
}

/// The (app, node) pairs a round places and stops, for the world's room count.
type Moves = Vec<(Name, Name)>;

fn moves(view: &RoundView, round: &Schedule) -> (Moves, Moves) {
    let placed = round
        .place
        .iter()
        .map(|p| (p.app.clone(), p.node.clone()))
        .collect();
    let stopped = round
        .stop
        .iter()
        .filter_map(|s| view.instances.iter().find(|i| i.id == s.id))
        .map(|i| (i.app.clone(), i.node.clone()))
        .collect();
    (placed, stopped)
}

/// Stored app names as names; one that does not parse cannot be an app.
fn names(list: Vec<String>) -> impl Iterator<Item = Name> {
    list.into_iter().filter_map(|n| Name::parse(&n).ok())
}
