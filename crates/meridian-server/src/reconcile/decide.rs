//! What one round decides for the apps it plans: their view (read through one snapshot),
//! each app's rollout step and demand, and the round to commit with an audit entry for every
//! decision.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use meridian_core::app::Probe;
use meridian_core::rollout::{self, HaltCause, InstanceHealth, ReleaseChange, ReleaseInfo};
use meridian_core::schedule::{self, ClusterView, Demand, LiveInstance, NodeView, Plan};
use meridian_core::{HealthCheck, InstanceState, Name, ReleaseStatus};
use meridian_state::{
    AppPlacement, AuditRecord, DbError, InstanceRecord, ReadSnapshot, ReleaseState, Schedule,
};
use meridian_state::{AppUnplaced, NewInstance, ReleaseUpdate, StopInstance};

use super::world::World;

/// Everything one round knows of the apps it plans.
pub struct RoundView {
    /// The applied index it was read at.
    pub index: u64,
    /// The scheduler's view: every node, with the room other apps leave, and the planned apps'
    /// live instances.
    pub view: ClusterView,
    /// What scheduling needs of the planned apps that exist, by name.
    pub apps: BTreeMap<Name, AppPlacement>,
    /// Their live (rolling or active) releases, newest first.
    pub releases: BTreeMap<Name, Vec<ReleaseState>>,
    /// Their live instances.
    pub instances: Vec<InstanceRecord>,
    /// Their unplaced records.
    pub unplaced: BTreeMap<String, Vec<schedule::Unplaced>>,
    /// The health check of each rolling release (app, number) with a failed instance, to
    /// say which check failed when the release halts.
    pub checks: BTreeMap<(Name, u64), Option<HealthCheck>>,
}

/// Reads the apps in `names` through `snap`, brings their footprints in `world` up to date,
/// and builds the view to plan them in. Apps that no longer exist are dropped from `world`.
pub async fn read_round(
    snap: &mut ReadSnapshot,
    world: &mut World,
    names: &BTreeSet<Name>,
) -> Result<RoundView, DbError> {
    let list: Vec<&str> = names.iter().map(Name::as_str).collect();
    let apps: BTreeMap<Name, AppPlacement> = snap
        .placements_of(&list)
        .await?
        .into_iter()
        .map(|a| (a.name.clone(), a))
        .collect();
    let mut releases: BTreeMap<Name, Vec<ReleaseState>> = BTreeMap::new();
    for rel in snap.live_states_of(&list).await? {
        releases.entry(rel.app.clone()).or_default().push(rel);
    }
    let instances = snap.running_instances_of(&list).await?;
    let checks = failed_checks(snap, &releases, &instances).await?;
    let unplaced = snap.unplaced_of(&list).await?.into_iter().collect();
    let mut by_app: BTreeMap<&Name, Vec<&InstanceRecord>> = BTreeMap::new();
    for i in &instances {
        by_app.entry(&i.app).or_default().push(i);
    }
    for name in names {
        let (cpu, mem) = apps
            .get(name)
            .map_or((0, 0), |a| (a.cpu_millis, a.memory_mb));
        let live = by_app.get(name).map(Vec::as_slice).unwrap_or(&[]);
        world.set_app(name, cpu, mem, live);
    }
    let live = instances
        .iter()
        .map(|i| LiveInstance {
            id: i.id.clone(),
            app: i.app.clone(),
            release: i.release,
            node: i.node.clone(),
            healthy: i.state == InstanceState::Healthy,
            failed: i.state.is_failed(),
        })
        .collect();
    Ok(RoundView {
        index: snap.applied(),
        view: world.view(names, live),
        apps,
        releases,
        instances,
        unplaced,
        checks,
    })
}

/// The health checks of the rolling releases that have a failed instance. Such a release
/// halts in this round, so its full record is read only then.
async fn failed_checks(
    snap: &mut ReadSnapshot,
    releases: &BTreeMap<Name, Vec<ReleaseState>>,
    instances: &[InstanceRecord],
) -> Result<BTreeMap<(Name, u64), Option<HealthCheck>>, DbError> {
    let mut checks = BTreeMap::new();
    for i in instances.iter().filter(|i| i.state.is_failed()) {
        let rolling = releases.get(&i.app).is_some_and(|rs| {
            rs.iter()
                .any(|r| r.number == i.release && r.status == ReleaseStatus::Rolling)
        });
        let key = (i.app.clone(), i.release);
        if rolling && !checks.contains_key(&key) {
            let record =
                meridian_state::releases::release(snap.conn(), i.app.as_str(), i.release).await?;
            checks.insert(key, record.and_then(|r| r.config.health));
        }
    }
    Ok(checks)
}

/// What a failed instance did, in words: where it ran, and what its agent last reported.
fn failure_text(i: &InstanceRecord, region: Option<&Name>, check: Option<&HealthCheck>) -> String {
    let mut text = format!("instance {} on node {}", i.id, i.node);
    if let Some(region) = region {
        text.push_str(&format!(" in {region}"));
    }
    let output = i.detail.as_deref().map(str::trim).filter(|d| !d.is_empty());
    let with_output = |what: String| match output {
        Some(output) => format!("{what}: {output}"),
        None => what,
    };
    let what = match (i.state, check) {
        (InstanceState::Exited, _) => with_output(match i.exit_code {
            Some(code) => format!("exited with code {code}"),
            None => "exited".to_string(),
        }),
        (InstanceState::ImageMissing, _) => with_output("could not get its image".to_string()),
        (_, Some(check)) => {
            let probe = match &check.probe {
                Probe::Http { path } => format!("HTTP GET {path}"),
                Probe::Tcp => "TCP connection to the app's port".to_string(),
            };
            format!(
                "failed its health check ({probe}), last output: {}",
                output.unwrap_or("none")
            )
        }
        (_, None) => with_output("became unhealthy".to_string()),
    };
    format!("{text} {what}")
}

/// The policy an app is checked against, for the audit log.
pub fn policy(app: &AppPlacement) -> String {
    meridian_core::residency::policy_text(&app.residency, app.regions.as_deref())
}

/// Each app's rollout step and its demand on the scheduler, in app-name order.
pub fn demands(snap: &RoundView, at: u64) -> (Vec<Demand>, Vec<(Name, ReleaseChange)>) {
    let mut by_app: HashMap<&Name, Vec<InstanceHealth>> = HashMap::new();
    for i in &snap.view.instances {
        by_app.entry(&i.app).or_default().push(InstanceHealth {
            id: &i.id,
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
        let step = rollout::step(app.replicas, &infos, health, deadline_passed);
        if let Some(change) = step.change {
            changes.push((name.clone(), change));
        }
        demands.push(Demand {
            app: name.clone(),
            residency: app.residency.clone(),
            regions: app.regions.clone(),
            cpu_millis: app.cpu_millis,
            memory_mb: app.memory_mb,
            wants: step.wants,
        });
    }
    (demands, changes)
}

/// A new instance id: 24 hex digits, the Unix second it was made in, then 64 random bits.
/// Ids made close together sort together, so the rows of a round land in a few pages of the
/// id index instead of one page each; the random part keeps them unique.
fn instance_id(at: u64) -> String {
    format!("{:08x}{:016x}", at & 0xffff_ffff, rand::random::<u64>())
}

/// Turns a plan into the round to commit, with an audit entry for every decision.
pub fn to_round(
    snap: &RoundView,
    plan: Plan,
    changes: Vec<(Name, ReleaseChange)>,
    at: u64,
) -> Schedule {
    let mut round = Schedule {
        planned_at: snap.index,
        ..Schedule::default()
    };
    let nodes: HashMap<&Name, &NodeView> = snap.view.nodes.iter().map(|n| (&n.name, n)).collect();
    let policy_of = |app: &Name| snap.apps.get(app).map(policy).unwrap_or_default();
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
        let id = instance_id(at);
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
        let (number, status, reason, entry) = match change {
            ReleaseChange::Promote { release } => (
                release,
                ReleaseStatus::Active,
                None,
                audit(
                    &app,
                    "release",
                    format!("release {release} is healthy everywhere and now serves"),
                ),
            ),
            ReleaseChange::Halt { release, cause } => {
                let failed = match &cause {
                    HaltCause::InstanceFailed { instance } => live.get(instance.as_str()),
                    HaltCause::Deadline => None,
                };
                let region = failed.and_then(|i| nodes.get(&i.node)).map(|n| &n.region);
                let reason = match failed {
                    Some(i) => {
                        let check = snap
                            .checks
                            .get(&(app.clone(), release))
                            .and_then(Option::as_ref);
                        failure_text(i, region, check)
                    }
                    None => cause.to_string(),
                };
                let detail = format!(
                    "release {release} halted: {reason}; the previous release keeps serving"
                );
                let entry = AuditRecord {
                    instance: failed.map(|i| i.id.clone()),
                    node: failed.map(|i| i.node.to_string()),
                    region: region.map(ToString::to_string),
                    country: region
                        .and_then(|r| snap.view.regions.get(r))
                        .map(ToString::to_string),
                    ..audit(&app, "release", detail)
                };
                (release, ReleaseStatus::Halted, Some(reason), entry)
            }
        };
        round.audit.push(entry);
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
