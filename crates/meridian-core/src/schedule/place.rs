//! Placing an app's missing instances: the region with the fewest of the app's instances
//! first, then within it the node with the fewest, the most free memory, the lowest name. In a
//! rollout regions and nodes count only some instances (`spread.rs`): for a new-release
//! instance, the new release's, so that it takes the place of an old instance rather than
//! joining one already replaced; for an old-release one, those that serve.
//!
//! Each allowed region gets a max-heap of its eligible nodes keyed exactly by that order, so a
//! placement costs a scan of the few allowed regions and a heap pop, never a scan of the nodes.
//! While one app is placed nothing else changes the cluster, so the keys never go stale: the
//! popped node is the only one that changed, and it is pushed back if it still fits. Setting
//! up costs one pass over the ready nodes of each region the app places in (again for the
//! rare app that places instances of both releases of a rollout in one plan, as the two count
//! different instances).

use std::collections::BinaryHeap;

use super::index::{Capacity, ClusterIndex, NodeCounts, Policy};
use super::keep::Kept;
use super::spread::Spread;
use super::{NodeStatus, Placement, Plan, Unplaced};

/// Places what `kept.missing` asks for, taking from `cap`, or records it as unplaced.
pub(super) fn place(
    ix: &ClusterIndex<'_>,
    policy: &Policy<'_>,
    kept: &Kept,
    cap: &mut Capacity,
    nodes: &mut NodeCounts,
    plan: &mut Plan,
) {
    if kept.missing.iter().all(|&(_, m)| m == 0) {
        return;
    }
    let demand = policy.demand;
    let mut spread = Spread::new(ix, kept);
    let staying = kept.staying;
    let first_placement = plan.place.len();
    // A region's heap is built the first time the region is the best choice, so an app
    // placing a few instances pays for the nodes of one or two regions, not of all it may use.
    let mut heaps: Vec<Option<BinaryHeap<u128>>> = vec![None; ix.region_names.len()];
    // Whether `nodes` (and the heaps' keys) count as a staying instance does, or an outgoing one.
    let mut counting: Option<bool> = None;
    let mut shortfall: Option<String> = None;
    for &(release, missing) in &kept.missing {
        if missing == 0 {
            continue;
        }
        let is_staying = Some(release) == staying;
        if counting != Some(is_staying) {
            nodes.clear();
            let counts = |s: bool, healthy: bool| if is_staying { s } else { !s || healthy };
            for k in kept.ready.iter().filter(|k| counts(k.staying, k.healthy)) {
                nodes.add(k.node);
            }
            // Instances placed by this plan are not healthy yet.
            for p in &plan.place[first_placement..] {
                let counted = counts(Some(p.release) == staying, false);
                if let Some(n) = ix.find_node(&p.node).filter(|_| counted) {
                    nodes.add(n);
                }
            }
            heaps.iter_mut().for_each(|h| *h = None);
            counting = Some(is_staying);
        }
        let mut placed = 0;
        while placed < missing {
            let best = (0..heaps.len())
                .filter(|&r| policy.allowed[r] && heaps[r].as_ref().is_none_or(|h| !h.is_empty()))
                .min_by_key(|&r| spread.count(r, is_staying));
            let Some(r) = best else {
                let reason = shortfall.get_or_insert_with(|| shortfall_reason(ix, policy, cap));
                plan.unplaced.push(Unplaced {
                    app: demand.app.clone(),
                    release,
                    count: missing - placed,
                    reason: reason.clone(),
                });
                break;
            };
            let heap = heaps[r].get_or_insert_with(|| {
                let keys: Vec<u128> = ix.ready_in_region[r]
                    .iter()
                    .filter(|&&n| cap.fits(n, demand))
                    .map(|&n| key(ix, cap, nodes, n))
                    .collect();
                BinaryHeap::from(keys)
            });
            let Some(top) = heap.pop() else {
                continue; // Just built and empty: choose again.
            };
            placed += 1;
            let n = ix.by_name[(u32::MAX - top as u32) as usize];
            cap.take(n, demand);
            nodes.add(n);
            spread.add(r, is_staying);
            if cap.fits(n, demand) {
                heap.push(key(ix, cap, nodes, n));
            }
            let node = ix.node(n);
            plan.place.push(Placement {
                app: demand.app.clone(),
                release,
                node: node.name.clone(),
                region: node.region.clone(),
                country: ix.region_country[r],
            });
        }
    }
    nodes.clear();
}

/// Larger is better: fewest instances of the app, then most free memory, then lowest name
/// rank (from which the node is found again). Free memory of a node that fits lies between
/// the app's need and the node's capacity, so it fits in 32 bits.
fn key(ix: &ClusterIndex<'_>, cap: &Capacity, nodes: &NodeCounts, n: usize) -> u128 {
    let fewest = u128::from(u32::MAX - nodes.get(n));
    let free_mem = cap.mem[n].clamp(0, i64::from(u32::MAX)) as u128;
    let name = u128::from(u32::MAX - ix.rank[n]);
    (fewest << 64) | (free_mem << 32) | name
}

/// Why nothing more can be placed: the policy, and what every node inside it lacks.
fn shortfall_reason(ix: &ClusterIndex<'_>, policy: &Policy<'_>, cap: &Capacity) -> String {
    let demand = policy.demand;
    let (mut in_policy, mut down, mut draining) = (0, 0, 0);
    let (mut no_cpu, mut no_mem, mut no_both) = (0, 0, 0);
    for (n, node) in ix.view.nodes.iter().enumerate() {
        if !policy.allows_node(ix, n) {
            continue;
        }
        in_policy += 1;
        let cpu_short = cap.cpu[n] < i64::from(demand.cpu_millis);
        let mem_short = cap.mem[n] < i64::from(demand.memory_mb);
        match node.status {
            NodeStatus::Down => down += 1,
            NodeStatus::Draining => draining += 1,
            NodeStatus::Ready if cpu_short && mem_short => no_both += 1,
            NodeStatus::Ready if cpu_short => no_cpu += 1,
            NodeStatus::Ready if mem_short => no_mem += 1,
            NodeStatus::Ready => {}
        }
    }
    let breakdown = if in_policy == 0 {
        "no node in policy".to_string()
    } else {
        let parts: Vec<String> = [
            (down, "down"),
            (draining, "draining"),
            (no_cpu, "without enough cpu"),
            (no_mem, "without enough memory"),
            (no_both, "without enough cpu and memory"),
        ]
        .iter()
        .filter(|(k, _)| *k > 0)
        .map(|(k, what)| format!("{k} {what}"))
        .collect();
        let nodes = if in_policy == 1 { "node" } else { "nodes" };
        format!("{in_policy} {nodes} in policy: {}", parts.join(", "))
    };
    format!(
        "no ready node with capacity {} ({breakdown})",
        policy.requirement()
    )
}
