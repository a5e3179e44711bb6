//! The scheduler: where each app's instances should run, decided from a snapshot of the
//! cluster. Pure and synchronous: the leader's reconcile loop calls [`plan`] and commits what
//! it returns; the dry-run endpoint calls [`eligibility`].
//!
//! Architecture Invariant: a [`Placement`] returned by [`plan`] is always on a ready node whose
//! region is allowed by the app's residency (and pinned regions), with room for the app's CPU
//! and memory. There is no fallback that widens the policy: an app that cannot be placed inside
//! it gets an [`Unplaced`] entry with a reason instead.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::country::CountryCode;
use crate::jurisdiction::{Jurisdiction, JurisdictionCatalog};
use crate::name::Name;

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
