//! The leader's reconcile loop: on any applied change (and once a second), read the state,
//! expire silent nodes, decide each app's rollout step, `plan`, and commit the round through
//! Raft. Followers run the loop too but only watch: they act once they lead.
//!
//! Architecture Invariant: the loop never writes anything `plan` did not decide, and apply
//! refuses a round that places outside an app's policy, so a stale leader's plan cannot land.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use meridian_core::rollout::{self, InstanceHealth, ReleaseChange, ReleaseInfo};
use meridian_core::schedule::{self, ClusterView, Demand, LiveInstance, NodeView, Plan};
use meridian_core::{AppSpec, InstanceState, Name, NodeStatus, ReleaseStatus};
use meridian_state::worker_records::{AppUnplaced, NewInstance, ReleaseUpdate, StopInstance};
use meridian_state::{AppRecord, AuditRecord, Command, InstanceRecord, ReleaseRecord, Schedule};
use tokio::time::Instant;

use crate::ctx::{now, Ctx};
use crate::error::ApiError;

/// How often the loop looks even when nothing was applied (heartbeat expiry, deadlines).
const TICK: Duration = Duration::from_secs(1);
/// Changes arriving within this window are planned together.
const DEBOUNCE: Duration = Duration::from_millis(20);
/// Most new instances committed in one round. openraft gives each AppendEntries one heartbeat
/// interval (100 ms by default) to be shipped and made durable on a follower; a round of many
/// thousand placements is megabytes and never makes it, so large plans land in slices, each
/// applied round waking the next.
pub const MAX_PLACEMENTS_PER_ROUND: usize = 1000;

/// Runs until `stop` resolves.
pub async fn run(ctx: Ctx, stop: impl std::future::Future<Output = ()>) {
    let mut metrics = ctx.raft().metrics();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            changed = metrics.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(TICK) => {}
        }
        if !ctx.is_leader() {
            ctx.0.leader_since.lock().map(|mut s| *s = None).ok();
            continue;
        }
        tokio::time::sleep(DEBOUNCE).await;
        if let Err(e) = round(&ctx).await {
            tracing::warn!(error = %e.message, "reconcile round failed; retrying");
        }
    }
}

/// Everything one round reads.
pub struct Snapshot {
    /// The scheduler's view.
    pub view: ClusterView,
    /// Apps by name.
    pub apps: BTreeMap<Name, AppRecord>,
    /// Releases by app, newest first.
    pub releases: BTreeMap<Name, Vec<ReleaseRecord>>,
    /// Live instances.
    pub instances: Vec<InstanceRecord>,
    /// Unplaced records by app.
    pub unplaced: BTreeMap<String, Vec<schedule::Unplaced>>,
}

/// Reads the applied state into a snapshot.
pub async fn snapshot(ctx: &Ctx) -> Result<Snapshot, ApiError> {
    let r = ctx.reader();
    let st = ApiError::storage;
    let regions = r.regions().await.map_err(st)?;
    let nodes = r.nodes().await.map_err(st)?;
    let instances = r.running_instances().await.map_err(st)?;
    let apps: BTreeMap<Name, AppRecord> = r
        .apps()
        .await
        .map_err(st)?
        .into_iter()
        .map(|a| (a.spec.name.clone(), a))
        .collect();
    let mut releases: BTreeMap<Name, Vec<ReleaseRecord>> = BTreeMap::new();
    for rel in r.releases(None).await.map_err(st)? {
        releases.entry(rel.app.clone()).or_default().push(rel);
    }
    let view = ClusterView {
        catalog: r.catalog().await.map_err(st)?,
        regions: regions
            .iter()
            .map(|r| (r.region.name.clone(), r.region.country))
            .collect(),
        nodes: nodes
            .iter()
            .map(|n| NodeView {
                name: n.name.clone(),
                region: n.region.clone(),
                status: n.status,
                cpu_millis: n.cpu_millis,
                memory_mb: n.memory_mb,
            })
            .collect(),
        instances: instances
            .iter()
            .map(|i| LiveInstance {
                id: i.id.clone(),
                app: i.app.clone(),
                release: i.release,
                node: i.node.clone(),
                healthy: i.state == InstanceState::Healthy,
                failed: i.state.is_failed(),
            })
            .collect(),
    };
    Ok(Snapshot {
        view,
        apps,
        releases,
        instances,
        unplaced: r.unplaced().await.map_err(st)?.into_iter().collect(),
    })
}

/// The policy an app is checked against, for the audit log.
pub fn policy(spec: &AppSpec) -> String {
    let mut p = format!("residency [{}]", spec.residency_text());
    if let Some(regions) = &spec.regions {
        let names: Vec<&str> = regions.iter().map(Name::as_str).collect();
        p.push_str(&format!(", regions [{}]", names.join(", ")));
    }
    p
}

/// Each app's rollout step and its demand on the scheduler, in app-name order.
pub fn demands(snap: &Snapshot, at: u64) -> (Vec<Demand>, Vec<(Name, ReleaseChange)>) {
    let mut by_app: HashMap<&Name, Vec<InstanceHealth>> = HashMap::new();
    for i in &snap.view.instances {
        by_app.entry(&i.app).or_default().push(InstanceHealth {
            release: i.release,
            healthy: i.healthy,
            failed: i.failed,
        });
    }
    let mut demands = Vec::with_capacity(snap.apps.len());
    let mut changes = Vec::new();
    for (name, app) in &snap.apps {
        let releases = snap.releases.get(name).map(Vec::as_slice).unwrap_or(&[]);
        let infos: Vec<ReleaseInfo> = releases
            .iter()
            .map(|r| ReleaseInfo {
                number: r.number,
                status: r.status,
            })
            .collect();
        let deadline_passed = releases
            .iter()
            .find(|r| r.status == ReleaseStatus::Rolling)
            .is_some_and(|r| at > r.deadline_at);
        let health = by_app.get(name).map(Vec::as_slice).unwrap_or(&[]);
        let step = rollout::step(app.spec.replicas, &infos, health, deadline_passed);
        if let Some(change) = step.change {
            changes.push((name.clone(), change));
        }
        demands.push(Demand {
            app: name.clone(),
            residency: app.spec.residency.clone(),
            regions: app.spec.regions.clone(),
            cpu_millis: app.spec.cpu_millis,
            memory_mb: app.spec.memory_mb,
            wants: step.wants,
        });
    }
    (demands, changes)
}

/// A new random instance id: 16 hex digits.
fn instance_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Turns a plan into the round to commit, with an audit entry for every decision.
pub fn to_round(
    snap: &Snapshot,
    plan: Plan,
    changes: Vec<(Name, ReleaseChange)>,
    at: u64,
) -> Schedule {
    let mut round = Schedule::default();
    let nodes: HashMap<&Name, &NodeView> = snap.view.nodes.iter().map(|n| (&n.name, n)).collect();
    let policy_of = |app: &Name| {
        snap.apps
            .get(app)
            .map(|a| policy(&a.spec))
            .unwrap_or_default()
    };
    let audit = |app: &Name, kind: &str, detail: String| AuditRecord {
        seq: 0,
        at,
        app: app.clone(),
        kind: kind.into(),
        instance: None,
        node: None,
        region: None,
        country: None,
        policy: policy_of(app),
        detail,
    };
    for p in plan.place {
        let id = instance_id();
        round.audit.push(AuditRecord {
            instance: Some(id.clone()),
            node: Some(p.node.to_string()),
            region: Some(p.region.to_string()),
            country: Some(p.country.to_string()),
            ..audit(
                &p.app,
                "placed",
                format!(
                    "release {} placed on {} in {} ({})",
                    p.release, p.node, p.region, p.country
                ),
            )
        });
        round.place.push(NewInstance {
            id,
            app: p.app,
            release: p.release,
            node: p.node,
        });
    }
    let live: HashMap<&str, &InstanceRecord> =
        snap.instances.iter().map(|i| (i.id.as_str(), i)).collect();
    for s in plan.stop {
        let (node, region) = live
            .get(s.id.as_str())
            .map(|i| {
                let region = nodes.get(&i.node).map(|n| n.region.to_string());
                (Some(i.node.to_string()), region)
            })
            .unwrap_or((None, None));
        round.audit.push(AuditRecord {
            instance: Some(s.id.clone()),
            node,
            region,
            ..audit(&s.app, "stopped", s.reason.clone())
        });
        round.stop.push(StopInstance {
            id: s.id,
            reason: s.reason,
        });
    }
    for (app, change) in changes {
        let (number, status, reason, detail) = match change {
            ReleaseChange::Promote { release } => (
                release,
                ReleaseStatus::Active,
                None,
                format!("release {release} is healthy everywhere and now serves"),
            ),
            ReleaseChange::Halt { release, reason } => (
                release,
                ReleaseStatus::Halted,
                Some(reason.clone()),
                format!("release {release} halted: {reason}; the previous release keeps serving"),
            ),
        };
        round.audit.push(audit(&app, "release", detail));
        round.releases.push(ReleaseUpdate {
            app,
            number,
            status,
            reason,
        });
    }
    let mut now_unplaced: BTreeMap<Name, Vec<schedule::Unplaced>> = BTreeMap::new();
    for u in plan.unplaced {
        now_unplaced.entry(u.app.clone()).or_default().push(u);
    }
    for app in snap.apps.keys() {
        let new = now_unplaced.remove(app).unwrap_or_default();
        let old = snap.unplaced.get(app.as_str()).cloned().unwrap_or_default();
        if new == old {
            continue;
        }
        for u in &new {
            round.audit.push(audit(
                app,
                "refused",
                format!(
                    "{} instance(s) of release {} unplaced: {}",
                    u.count, u.release, u.reason
                ),
            ));
        }
        round.unplaced.push(AppUnplaced {
            app: app.clone(),
            unplaced: new,
        });
    }
    round
}

/// One round on the leader.
async fn round(ctx: &Ctx) -> Result<(), ApiError> {
    let started = Instant::now();
    let snap = snapshot(ctx).await?;
    let read = started.elapsed();
    if expire_nodes(ctx, &snap).await? {
        return Ok(());
    }
    let at = now();
    let (demands, changes) = demands(&snap, at);
    let mut plan = schedule::plan(&snap.view, &demands);
    plan.place.truncate(MAX_PLACEMENTS_PER_ROUND);
    let round = to_round(&snap, plan, changes, at);
    if round.is_empty() {
        return Ok(());
    }
    let (placed, stopped, releases) = (round.place.len(), round.stop.len(), round.releases.len());
    let planned = started.elapsed();
    ctx.propose(Command::Schedule { round, at }).await?;
    tracing::info!(
        placed,
        stopped,
        releases,
        read_ms = read.as_millis() as u64,
        plan_ms = (planned - read).as_millis() as u64,
        commit_ms = (started.elapsed() - planned).as_millis() as u64,
        "committed a scheduling round"
    );
    Ok(())
}

/// Marks down every node silent for longer than the grace period. Answers whether it changed
/// anything (the next round then plans with the new statuses).
async fn expire_nodes(ctx: &Ctx, snap: &Snapshot) -> Result<bool, ApiError> {
    let since = {
        let mut s = ctx.0.leader_since.lock().map_err(ApiError::storage)?;
        *s.get_or_insert_with(Instant::now)
    };
    let grace = ctx.0.node_grace;
    let silent: Vec<Name> = {
        let seen = ctx.0.heartbeats.lock().map_err(ApiError::storage)?;
        snap.view
            .nodes
            .iter()
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
