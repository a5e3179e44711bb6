//! What the scheduler precomputes once per call: node and region lookups, and per app the
//! regions its policy allows, so no placement re-checks residency or searches by name.

use crate::country::CountryCode;
use crate::name::Name;

use super::{ClusterView, Demand, NodeStatus, NodeView};

/// Lookups over a [`ClusterView`]. Node and region indices are positions in `view.nodes` and
/// in `view.regions` (name order).
pub(super) struct ClusterIndex<'a> {
    pub view: &'a ClusterView,
    pub region_names: Vec<&'a Name>,
    pub region_country: Vec<CountryCode>,
    /// Region index of each node, `None` if its region is unknown.
    pub node_region: Vec<Option<usize>>,
    /// Node indices in (name, index) order.
    pub by_name: Vec<usize>,
    /// Position of each node in `by_name`: the tie-break "by node name".
    pub rank: Vec<u32>,
    /// Ready nodes of each region, in `view.nodes` order.
    pub ready_in_region: Vec<Vec<usize>>,
}

impl<'a> ClusterIndex<'a> {
    pub fn new(view: &'a ClusterView) -> Self {
        let region_names: Vec<&Name> = view.regions.keys().collect();
        let region_country = view.regions.values().copied().collect();
        let node_region: Vec<Option<usize>> = view
            .nodes
            .iter()
            .map(|n| region_names.binary_search(&&n.region).ok())
            .collect();
        let mut by_name: Vec<usize> = (0..view.nodes.len()).collect();
        by_name.sort_by(|&a, &b| view.nodes[a].name.cmp(&view.nodes[b].name).then(a.cmp(&b)));
        let mut rank = vec![0u32; view.nodes.len()];
        for (pos, &n) in by_name.iter().enumerate() {
            rank[n] = pos as u32;
        }
        let mut ready_in_region = vec![Vec::new(); region_names.len()];
        for (n, node) in view.nodes.iter().enumerate() {
            if let (Some(r), NodeStatus::Ready) = (node_region[n], node.status) {
                ready_in_region[r].push(n);
            }
        }
        Self {
            view,
            region_names,
            region_country,
            node_region,
            by_name,
            rank,
            ready_in_region,
        }
    }

    pub fn node(&self, n: usize) -> &'a NodeView {
        &self.view.nodes[n]
    }

    /// The node called `name`; with duplicate names, the first in `view.nodes`.
    pub fn find_node(&self, name: &Name) -> Option<usize> {
        let nodes = &self.view.nodes;
        let pos = self.by_name.partition_point(|&n| nodes[n].name < *name);
        self.by_name
            .get(pos)
            .copied()
            .filter(|&n| nodes[n].name == *name)
    }
}

/// Where one app may run, resolved against the cluster's regions.
pub(super) struct Policy<'a> {
    pub demand: &'a Demand,
    /// Per region index: allowed by residency and by the pinned regions.
    pub allowed: Vec<bool>,
}

impl<'a> Policy<'a> {
    pub fn new(ix: &ClusterIndex<'_>, demand: &'a Demand) -> Self {
        let allowed = (0..ix.region_names.len())
            .map(|r| {
                let pinned = demand
                    .regions
                    .as_ref()
                    .is_none_or(|list| list.contains(ix.region_names[r]));
                pinned
                    && ix
                        .view
                        .catalog
                        .allows(&demand.residency, ix.region_country[r])
            })
            .collect();
        Self { demand, allowed }
    }

    /// Whether node `n` stands in a known region the policy allows.
    pub fn allows_node(&self, ix: &ClusterIndex<'_>, n: usize) -> bool {
        ix.node_region[n].is_some_and(|r| self.allowed[r])
    }

    /// Why node `n`'s region is outside the policy, or `None` if it is inside.
    pub fn region_refusal(&self, ix: &ClusterIndex<'_>, n: usize) -> Option<String> {
        let region = &ix.node(n).region;
        let Some(r) = ix.node_region[n] else {
            return Some(format!("unknown region {region}"));
        };
        if self.allowed[r] {
            return None;
        }
        let country = ix.region_country[r];
        if !ix.view.catalog.allows(&self.demand.residency, country) {
            return Some(format!(
                "region {region} ({country}) is outside residency {}",
                self.residency_list()
            ));
        }
        Some(format!(
            "region {region} is not one of the pinned regions {}",
            self.pinned_list()
        ))
    }

    /// `[EU, CH]`.
    pub fn residency_list(&self) -> String {
        bracketed(self.demand.residency.iter())
    }

    /// `[eu-fra, eu-ams]`, or `[]` if not pinned.
    pub fn pinned_list(&self) -> String {
        bracketed(self.demand.regions.iter().flatten())
    }

    /// Where the app may run, for messages: `in jurisdictions [EU] in regions [eu-fra]`, or
    /// `anywhere`.
    pub fn requirement(&self) -> String {
        let mut parts = Vec::new();
        if !self.demand.residency.is_empty() {
            parts.push(format!("in jurisdictions {}", self.residency_list()));
        }
        if self.demand.regions.is_some() {
            parts.push(format!("in regions {}", self.pinned_list()));
        }
        if parts.is_empty() {
            "anywhere".to_string()
        } else {
            parts.join(" ")
        }
    }
}

fn bracketed<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
    let items: Vec<String> = items.map(|i| i.to_string()).collect();
    format!("[{}]", items.join(", "))
}

/// Per-node counts of one app's instances, cleared in time proportional to what was touched.
pub(super) struct NodeCounts {
    counts: Vec<u32>,
    touched: Vec<usize>,
}

impl NodeCounts {
    pub fn new(nodes: usize) -> Self {
        Self {
            counts: vec![0; nodes],
            touched: Vec::new(),
        }
    }

    pub fn get(&self, n: usize) -> u32 {
        self.counts[n]
    }

    pub fn add(&mut self, n: usize) {
        if self.counts[n] == 0 {
            self.touched.push(n);
        }
        self.counts[n] += 1;
    }

    pub fn clear(&mut self) {
        for n in self.touched.drain(..) {
            self.counts[n] = 0;
        }
    }
}

/// Free CPU and memory per node. Signed: kept instances may already overcommit a node.
pub(super) struct Capacity {
    pub cpu: Vec<i64>,
    pub mem: Vec<i64>,
}

impl Capacity {
    pub fn new(view: &ClusterView) -> Self {
        Self {
            cpu: view.nodes.iter().map(|n| i64::from(n.cpu_millis)).collect(),
            mem: view.nodes.iter().map(|n| i64::from(n.memory_mb)).collect(),
        }
    }

    pub fn take(&mut self, n: usize, demand: &Demand) {
        self.cpu[n] -= i64::from(demand.cpu_millis);
        self.mem[n] -= i64::from(demand.memory_mb);
    }

    pub fn fits(&self, n: usize, demand: &Demand) -> bool {
        self.cpu[n] >= i64::from(demand.cpu_millis) && self.mem[n] >= i64::from(demand.memory_mb)
    }

    /// Why one more instance of `demand` does not fit on `n`, or `None` if it does.
    pub fn shortfall(&self, n: usize, demand: &Demand) -> Option<String> {
        let mut why = Vec::new();
        if self.cpu[n] < i64::from(demand.cpu_millis) {
            why.push(format!(
                "not enough cpu: needs {} millis, {} free",
                demand.cpu_millis,
                self.cpu[n].max(0)
            ));
        }
        if self.mem[n] < i64::from(demand.memory_mb) {
            why.push(format!(
                "not enough memory: needs {} MiB, {} free",
                demand.memory_mb,
                self.mem[n].max(0)
            ));
        }
        (!why.is_empty()).then(|| why.join("; "))
    }
}
