//! The leader's standing picture of the cluster between rounds: regions, every node, and what
//! the live instances of every app take on each node. It is loaded whole when a server starts
//! to lead (and on a slow timer), then kept current from what applied entries touched, so a
//! round reads only the apps it plans.
//!
//! Apps themselves are not kept here: a round reads the apps it plans, their live releases
//! and instances from the state. Only their footprint stays, because planning one app needs
//! the room every other app's instances leave on each node.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use meridian_core::schedule::{ClusterView, LiveInstance, NodeView};
use meridian_core::{CountryCode, JurisdictionCatalog, Name, NodeStatus};
use meridian_state::{DbError, InstanceRecord, NodeRecord, ReadSnapshot};

/// What one app's live instances take: per instance, and on which nodes how many.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Footprint {
    cpu_millis: u32,
    memory_mb: u32,
    on: Vec<(Name, u32)>,
}

/// CPU and memory taken on one node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Used {
    cpu: i64,
    mem: i64,
}

/// How a refresh of some nodes changed the room for instances.
#[derive(Debug, Default)]
pub struct NodeChanges {
    /// Nodes that stopped taking work or lost capacity: their apps must be planned again.
    pub lost: Vec<Name>,
    /// A node became ready, appeared or grew: apps waiting for room may fit now.
    pub gained: bool,
}

/// Regions, nodes and footprints, as of the applied index `applied`.
#[derive(Debug)]
pub struct World {
    /// The applied index this picture reflects (footprints may run ahead of it by the rounds
    /// this leader committed since).
    pub applied: u64,
    catalog: JurisdictionCatalog,
    regions: BTreeMap<Name, CountryCode>,
    nodes: BTreeMap<Name, NodeView>,
    footprints: HashMap<Name, Footprint>,
    used: HashMap<Name, Used>,
}

fn node_view(n: &NodeRecord) -> NodeView {
    NodeView {
        name: n.name.clone(),
        region: n.region.clone(),
        status: n.status,
        cpu_millis: n.cpu_millis,
        memory_mb: n.memory_mb,
    }
}

impl World {
    /// Reads the whole picture through one snapshot.
    pub async fn load(snap: &mut ReadSnapshot) -> Result<Self, DbError> {
        let mut world = World {
            applied: snap.applied(),
            catalog: JurisdictionCatalog::built_in(),
            regions: BTreeMap::new(),
            nodes: BTreeMap::new(),
            footprints: HashMap::new(),
            used: HashMap::new(),
        };
        world.refresh_regions(snap).await?;
        world.nodes = snap
            .nodes()
            .await?
            .iter()
            .map(|n| (n.name.clone(), node_view(n)))
            .collect();
        for f in snap.footprints().await? {
            let (Ok(app), Ok(node)) = (Name::parse(&f.app), Name::parse(&f.node)) else {
                continue;
            };
            let entry = world.footprints.entry(app).or_default();
            entry.cpu_millis = f.cpu_millis;
            entry.memory_mb = f.memory_mb;
            entry.on.push((node, f.count));
        }
        let footprints = std::mem::take(&mut world.footprints);
        for fp in footprints.values() {
            world.add_use(fp, 1);
        }
        world.footprints = footprints;
        Ok(world)
    }

    /// Reads regions and jurisdiction groups again.
    pub async fn refresh_regions(&mut self, snap: &mut ReadSnapshot) -> Result<(), DbError> {
        self.catalog = snap.catalog().await?;
        self.regions = snap
            .regions()
            .await?
            .into_iter()
            .map(|r| (r.region.name, r.region.country))
            .collect();
        Ok(())
    }

    /// Reads the named nodes again and tells how the room for instances changed.
    pub async fn refresh_nodes(
        &mut self,
        snap: &mut ReadSnapshot,
        names: &BTreeSet<Name>,
    ) -> Result<NodeChanges, DbError> {
        let list: Vec<&str> = names.iter().map(Name::as_str).collect();
        let fresh: BTreeMap<Name, NodeView> = snap
            .nodes_named(&list)
            .await?
            .iter()
            .map(|n| (n.name.clone(), node_view(n)))
            .collect();
        let mut changes = NodeChanges::default();
        for name in names {
            let old = self.nodes.remove(name);
            let new = fresh.get(name).cloned();
            let ready = |n: &Option<NodeView>| {
                n.as_ref().is_some_and(|n| {
                    n.status == NodeStatus::Ready && self.regions.contains_key(&n.region)
                })
            };
            let grew = match (&old, &new) {
                (Some(o), Some(n)) => {
                    n.cpu_millis > o.cpu_millis || n.memory_mb > o.memory_mb || n.region != o.region
                }
                _ => false,
            };
            if ready(&new) && (!ready(&old) || grew) {
                changes.gained = true;
            }
            let shrank = match (&old, &new) {
                (Some(o), Some(n)) => {
                    n.cpu_millis < o.cpu_millis
                        || n.memory_mb < o.memory_mb
                        || n.region != o.region
                        || n.status != o.status
                }
                (Some(_), None) => true,
                _ => false,
            };
            if shrank {
                changes.lost.push(name.clone());
            }
            if let Some(n) = new {
                self.nodes.insert(name.clone(), n);
            }
        }
        Ok(changes)
    }

    /// Every node, for heartbeat expiry.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeView> {
        self.nodes.values()
    }

    /// A node's region.
    pub fn region_of(&self, node: &Name) -> Option<&Name> {
        self.nodes.get(node).map(|n| &n.region)
    }

    fn add_use(&mut self, fp: &Footprint, sign: i64) {
        for (node, count) in &fp.on {
            let u = self.used.entry(node.clone()).or_default();
            u.cpu += sign * i64::from(fp.cpu_millis) * i64::from(*count);
            u.mem += sign * i64::from(fp.memory_mb) * i64::from(*count);
        }
    }

    /// Replaces what `app` takes with what `instances` (all its live ones) take at the given
    /// size; an app with none, or a deleted one, takes nothing.
    pub fn set_app(
        &mut self,
        app: &Name,
        cpu_millis: u32,
        memory_mb: u32,
        instances: &[&InstanceRecord],
    ) {
        if let Some(old) = self.footprints.remove(app) {
            self.add_use(&old, -1);
        }
        if instances.is_empty() {
            return;
        }
        let mut on: BTreeMap<&Name, u32> = BTreeMap::new();
        for i in instances {
            *on.entry(&i.node).or_default() += 1;
        }
        let fp = Footprint {
            cpu_millis,
            memory_mb,
            on: on.into_iter().map(|(n, c)| (n.clone(), c)).collect(),
        };
        self.add_use(&fp, 1);
        self.footprints.insert(app.clone(), fp);
    }

    /// Counts a committed round at once, so the rounds that follow see the room it took and
    /// freed before its apps are read again. `placed` and `stopped` are (app, node) pairs;
    /// `size` gives the CPU and memory per instance of each app in the round.
    pub fn commit_round(
        &mut self,
        placed: &[(Name, Name)],
        stopped: &[(Name, Name)],
        size: impl Fn(&Name) -> Option<(u32, u32)>,
    ) {
        let mut delta: BTreeMap<&Name, Vec<(&Name, i64)>> = BTreeMap::new();
        for (app, node) in placed {
            delta.entry(app).or_default().push((node, 1));
        }
        for (app, node) in stopped {
            delta.entry(app).or_default().push((node, -1));
        }
        for (app, changes) in delta {
            let mut fp = match self.footprints.remove(app) {
                Some(fp) => {
                    self.add_use(&fp, -1);
                    fp
                }
                None => {
                    let Some((cpu_millis, memory_mb)) = size(app) else {
                        continue;
                    };
                    Footprint {
                        cpu_millis,
                        memory_mb,
                        on: Vec::new(),
                    }
                }
            };
            for (node, d) in changes {
                match fp.on.iter_mut().find(|(n, _)| n == node) {
                    Some((_, c)) => *c = u32::try_from((i64::from(*c) + d).max(0)).unwrap_or(0),
                    None if d > 0 => fp.on.push((node.clone(), 1)),
                    None => {}
                }
            }
            fp.on.retain(|(_, c)| *c > 0);
            if !fp.on.is_empty() {
                self.add_use(&fp, 1);
                self.footprints.insert(app.clone(), fp);
            }
        }
    }

    /// The scheduler's view for planning `apps`, whose live instances are `instances`: every
    /// node offers what the instances of all other apps leave free.
    pub fn view(&self, apps: &BTreeSet<Name>, instances: Vec<LiveInstance>) -> ClusterView {
        let mut used = self.used.clone();
        for app in apps {
            if let Some(fp) = self.footprints.get(app) {
                for (node, count) in &fp.on {
                    let u = used.entry(node.clone()).or_default();
                    u.cpu -= i64::from(fp.cpu_millis) * i64::from(*count);
                    u.mem -= i64::from(fp.memory_mb) * i64::from(*count);
                }
            }
        }
        let left = |capacity: u32, taken: i64| {
            u32::try_from((i64::from(capacity) - taken).max(0)).unwrap_or(0)
        };
        ClusterView {
            catalog: self.catalog.clone(),
            regions: self.regions.clone(),
            nodes: self
                .nodes
                .values()
                .map(|n| {
                    let u = used.get(&n.name).copied().unwrap_or_default();
                    NodeView {
                        cpu_millis: left(n.cpu_millis, u.cpu),
                        memory_mb: left(n.memory_mb, u.mem),
                        ..n.clone()
                    }
                })
                .collect(),
            instances,
        }
    }

    /// Whether `other`, loaded afresh, holds the same picture (for tests of the upkeep).
    pub fn same_as(&self, other: &World) -> bool {
        let norm = |w: &World| {
            let mut used: Vec<(Name, Used)> = w
                .used
                .iter()
                .filter(|(_, u)| u.cpu != 0 || u.mem != 0)
                .map(|(n, u)| (n.clone(), *u))
                .collect();
            used.sort_by(|a, b| a.0.cmp(&b.0));
            used
        };
        self.nodes == other.nodes && self.regions == other.regions && norm(self) == norm(other)
    }
}
