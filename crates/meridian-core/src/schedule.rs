//! The scheduler: where each app's instances should run, decided from a snapshot of the
//! cluster. Pure and synchronous: the leader's reconcile loop calls [`plan`] and commits what
//! it returns; the dry-run endpoint calls [`eligibility`].
//!
//! Architecture Invariant: a [`Placement`] returned by [`plan`] is always on a ready node whose
//! region is allowed by the app's residency (and pinned regions), with room for the app's CPU
//! and memory. There is no fallback that widens the policy: an app that cannot be placed inside
//! it gets an [`Unplaced`] entry with a reason instead.
//!
//! [`plan`] works in two passes. First, for every app, it decides which live instances stay
//! (`schedule/keep.rs`); capacity plays no part there. Then, with every kept instance's
//! resources taken, it places each app's missing instances in the order the demands are given
//! (`schedule/place.rs`), each in the region `schedule/spread.rs` chooses.
//!
//! A rollout replaces region by region. While an app wants two releases, the newest is the
//! one it keeps, decided first: its new instances count only each other toward the spread, so
//! they fill the spread a fresh plan would choose in that plan's own order, which from the
//! fresh spread sends each to a region where an old instance waits for its replacement; the
//! old instance let go as one becomes healthy is then one whose region has its replacement,
//! since the keep pass keeps the whole app evenly spread. A rollout ends on the fresh spread,
//! whatever spread it started from, when capacity allows (see `schedule/spread.rs`).
//!
//! What the scheduler cannot know: a live instance of an app that has no [`Demand`] is left
//! alone (neither kept nor stopped) and, since its size is unknown, counts as using no CPU or
//! memory. The caller should pass a demand for every app that has instances.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::country::CountryCode;
use crate::jurisdiction::{Jurisdiction, JurisdictionCatalog};
use crate::name::Name;

mod index;
mod keep;
mod place;
#[cfg(test)]
mod rollout_tests;
mod spread;
#[cfg(test)]
mod tests;

use index::{Capacity, ClusterIndex, NodeCounts, Policy};

/// Whether a node takes work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    /// Heartbeating and open for new instances.
    Ready,
    /// Heartbeating, but its instances are being moved away; nothing new is placed on it.
    Draining,
    /// Missed its heartbeats for longer than the grace period: its instances are lost.
    Down,
}

impl NodeStatus {
    /// `ready`, `draining` or `down`.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Ready => "ready",
            NodeStatus::Draining => "draining",
            NodeStatus::Down => "down",
        }
    }

    /// The inverse of [`NodeStatus::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [NodeStatus::Ready, NodeStatus::Draining, NodeStatus::Down]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// A worker node as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// Unique node name.
    pub name: Name,
    /// The region it belongs to.
    pub region: Name,
    /// Its status.
    pub status: NodeStatus,
    /// CPU it offers, in thousandths of a core.
    pub cpu_millis: u32,
    /// Memory it offers, in MiB.
    pub memory_mb: u32,
}

/// An instance the cluster already has (assigned and not yet stopped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveInstance {
    /// Its id.
    pub id: String,
    /// The app it belongs to.
    pub app: Name,
    /// The release it runs.
    pub release: u64,
    /// The node it is assigned to.
    pub node: Name,
    /// It passed its health check (or has none and is running).
    pub healthy: bool,
    /// It exited, failed its health check after the grace period, or its image is missing: it
    /// must be stopped and replaced.
    pub failed: bool,
}

/// The cluster as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct ClusterView {
    /// Jurisdiction groups.
    pub catalog: JurisdictionCatalog,
    /// Country of every region.
    pub regions: BTreeMap<Name, CountryCode>,
    /// Every node.
    pub nodes: Vec<NodeView>,
    /// Every live instance, of every app.
    pub instances: Vec<LiveInstance>,
}

/// How many instances of one release an app wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReleaseWant {
    /// Release number.
    pub release: u64,
    /// How many instances of it.
    pub count: u32,
}

/// What one app asks of the scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demand {
    /// The app.
    pub app: Name,
    /// Jurisdictions it may run in; empty means anywhere.
    pub residency: Vec<Jurisdiction>,
    /// Regions it is pinned to, if any.
    pub regions: Option<Vec<Name>>,
    /// CPU per instance, in thousandths of a core.
    pub cpu_millis: u32,
    /// Memory per instance, in MiB.
    pub memory_mb: u32,
    /// Instances wanted per release. A release not listed wants none.
    pub wants: Vec<ReleaseWant>,
}

/// A new instance to start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// The app.
    pub app: Name,
    /// The release it runs.
    pub release: u64,
    /// Where.
    pub node: Name,
    /// The node's region.
    pub region: Name,
    /// The region's country.
    pub country: CountryCode,
}

/// An existing instance to stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stop {
    /// Its id.
    pub id: String,
    /// The app.
    pub app: Name,
    /// Why, for people.
    pub reason: String,
}

/// Instances that could not be placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unplaced {
    /// The app.
    pub app: Name,
    /// The release.
    pub release: u64,
    /// How many instances are missing.
    pub count: u32,
    /// Why, for people, e.g. `no ready node with capacity in jurisdictions [EU]`.
    pub reason: String,
}

/// The scheduler's answer. Every live instance of a planned app is either kept or stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Ids of live instances that stay where they are.
    pub keep: Vec<String>,
    /// Live instances to stop.
    pub stop: Vec<Stop>,
    /// New instances to start.
    pub place: Vec<Placement>,
    /// What could not be placed.
    pub unplaced: Vec<Unplaced>,
}

/// Whether one node could take one more instance of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeVerdict {
    /// The node.
    pub node: Name,
    /// Its region.
    pub region: Name,
    /// `Ok` if eligible, else the reason it is not.
    pub verdict: Result<(), String>,
}

/// Plans every app in `demands` against `view`. Deterministic: the same arguments give the
/// same plan, whatever order `view.instances` lists instances in.
///
/// - Every live instance of an app in `demands` ends in exactly one of `keep` and `stop`.
///   Outside the app's policy (residency, pinned regions, unknown node or region), on a down
///   node, failed, of a release no longer wanted, or beyond the wanted count: stopped, with the
///   reason. On a draining node: kept while fewer than `count` healthy instances run on ready
///   nodes, as those do not count toward `count`.
/// - Each wanted release then gets `count` minus its kept instances on ready nodes as new
///   [`Placement`]s, each spread to the allowed region with the fewest instances of the app
///   (while the app wants several releases, the newest release's instances count only each
///   other, as the module docs say), or an [`Unplaced`] entry saying what was required and
///   what the nodes lacked.
/// - Of several wanted releases, the newest is kept first; the others keep, among their
///   instances, those that leave the whole app most evenly spread.
/// - Demands are placed in the order given, each with the capacity left by kept instances and
///   by the placements before it. Only the first demand for an app counts; within a demand, the
///   first [`ReleaseWant`] for a release.
pub fn plan(view: &ClusterView, demands: &[Demand]) -> Plan {
    let ix = ClusterIndex::new(view);
    let mut apps: Vec<(&Name, usize)> = demands
        .iter()
        .enumerate()
        .map(|(d, demand)| (&demand.app, d))
        .collect();
    apps.sort();
    apps.dedup_by_key(|(app, _)| *app);
    let mut instances: Vec<Vec<usize>> = vec![Vec::new(); demands.len()];
    let mut inst_node = Vec::with_capacity(view.instances.len());
    for (i, inst) in view.instances.iter().enumerate() {
        inst_node.push(ix.find_node(&inst.node));
        if let Ok(pos) = apps.binary_search_by(|(app, _)| (*app).cmp(&inst.app)) {
            instances[apps[pos].1].push(i);
        }
    }
    let mut first = vec![false; demands.len()];
    for &(_, d) in &apps {
        first[d] = true;
    }

    let mut plan = Plan::default();
    let mut cap = Capacity::new(view);
    let mut nodes = NodeCounts::new(view.nodes.len());
    let mut decided = Vec::new();
    for (d, demand) in demands.iter().enumerate() {
        if !first[d] {
            continue;
        }
        let policy = Policy::new(&ix, demand);
        let kept = keep::decide(
            &ix,
            &policy,
            &mut instances[d],
            &inst_node,
            &mut nodes,
            &mut plan,
        );
        for n in kept
            .ready
            .iter()
            .map(|k| k.node)
            .chain(kept.migrating.iter().copied())
        {
            cap.take(n, demand);
        }
        decided.push((policy, kept));
    }
    for (policy, kept) in &decided {
        place::place(&ix, policy, kept, &mut cap, &mut nodes, &mut plan);
    }
    plan
}

/// For every node (in `view.nodes` order): could it take one more instance of `demand`'s app
/// now? `Ok(())`, or the first reason it cannot: its region (unknown, outside residency, not
/// pinned), its status, then its free CPU and memory.
///
/// Free resources count every live instance, whatever its state, sized by its app's entry in
/// `demands` (`demand` itself is always known); instances of apps in neither count as using
/// nothing, as in [`plan`].
pub fn eligibility(view: &ClusterView, demands: &[Demand], demand: &Demand) -> Vec<NodeVerdict> {
    let ix = ClusterIndex::new(view);
    let policy = Policy::new(&ix, demand);
    let mut cap = Capacity::new(view);
    for inst in &view.instances {
        let size = if inst.app == demand.app {
            Some(demand)
        } else {
            demands.iter().find(|d| d.app == inst.app)
        };
        if let (Some(size), Some(n)) = (size, ix.find_node(&inst.node)) {
            cap.take(n, size);
        }
    }
    view.nodes
        .iter()
        .enumerate()
        .map(|(n, node)| {
            let refusal = policy.region_refusal(&ix, n).or_else(|| match node.status {
                NodeStatus::Ready => cap.shortfall(n, demand),
                status => Some(format!("node is {}", status.as_str())),
            });
            NodeVerdict {
                node: node.name.clone(),
                region: node.region.clone(),
                verdict: refusal.map_or(Ok(()), Err),
            }
        })
        .collect()
}
