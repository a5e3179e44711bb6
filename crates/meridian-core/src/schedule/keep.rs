//! Which of an app's live instances stay and which stop. Capacity plays no part here: an
//! instance already running is never stopped to make room, only for policy, health, node
//! status or scale.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::index::{ClusterIndex, NodeCounts, Policy};
use super::{NodeStatus, Plan, ReleaseWant, Stop};

/// What the keep pass decided for one app, for the placement pass.
pub(super) struct Kept {
    /// Kept instances on ready nodes, one entry per instance: they count toward `count` and
    /// toward spread.
    pub ready: Vec<KeptInstance>,
    /// Nodes of kept instances on draining nodes: they use resources but count for nothing.
    pub migrating: Vec<usize>,
    /// Per wanted release, in want order: how many new instances it needs.
    pub missing: Vec<(u64, u32)>,
    /// The newest wanted release: the one the app keeps. The other wanted releases are on
    /// their way out, each instance until one of this release replaces it.
    pub staying: Option<u64>,
}

/// One kept instance on a ready node.
#[derive(Debug, Clone, Copy)]
pub(super) struct KeptInstance {
    /// Its node.
    pub node: usize,
    /// It runs the staying release.
    pub staying: bool,
    /// It passed its health check.
    pub healthy: bool,
}

/// Decides keep or stop for every live instance of `policy.demand`'s app. `instances` are
/// indices into `view.instances` (all of this app); `inst_node` maps every instance to its
/// node. `nodes` is scratch space and is left cleared.
pub(super) fn decide(
    ix: &ClusterIndex<'_>,
    policy: &Policy<'_>,
    instances: &mut [usize],
    inst_node: &[Option<usize>],
    nodes: &mut NodeCounts,
    plan: &mut Plan,
) -> Kept {
    let demand = policy.demand;
    let all = &ix.view.instances;
    // A fixed order makes the plan independent of the order instances were listed in.
    let node_rank = |i: usize| inst_node[i].map_or(u32::MAX, |n| ix.rank[n]);
    instances.sort_by(|&a, &b| {
        (all[a].release, node_rank(a), &all[a].id).cmp(&(all[b].release, node_rank(b), &all[b].id))
    });
    let mut wants: Vec<ReleaseWant> = Vec::with_capacity(demand.wants.len());
    for w in &demand.wants {
        // A release listed twice: the first entry counts.
        if !wants.iter().any(|seen| seen.release == w.release) {
            wants.push(*w);
        }
    }
    let mut stop = |i: usize, reason: String| {
        plan.stop.push(Stop {
            id: all[i].id.clone(),
            app: demand.app.clone(),
            reason,
        });
    };
    for &i in instances.iter() {
        let release = all[i].release;
        if !wants.iter().any(|w| w.release == release) {
            stop(i, format!("release {release} is no longer wanted"));
        }
    }

    // The staying release is decided first, so that which instances of an outgoing release
    // stay is chosen around it: an outgoing instance whose region already has its replacement
    // is the one let go.
    let staying = wants.iter().map(|w| w.release).max();
    let order = wants
        .iter()
        .enumerate()
        .filter(|(_, w)| Some(w.release) == staying)
        .chain(
            wants
                .iter()
                .enumerate()
                .filter(|(_, w)| Some(w.release) != staying),
        );
    let mut kept = Kept {
        ready: Vec::new(),
        migrating: Vec::new(),
        missing: wants.iter().map(|w| (w.release, 0)).collect(),
        staying,
    };
    let mut region_counts = vec![0u32; ix.region_names.len()];
    for (k, want) in order {
        let lo = instances.partition_point(|&i| all[i].release < want.release);
        let hi = instances.partition_point(|&i| all[i].release <= want.release);
        let mut ready = Vec::new();
        let mut migrating = Vec::new();
        for &i in &instances[lo..hi] {
            let Some(n) = inst_node[i] else {
                stop(i, format!("node {} is unknown", all[i].node));
                continue;
            };
            if let Some(why) = policy.region_refusal(ix, n) {
                stop(i, why);
                continue;
            }
            match ix.node(n).status {
                NodeStatus::Down => stop(i, format!("node {} is down", all[i].node)),
                _ if all[i].failed => stop(i, "instance failed".to_string()),
                NodeStatus::Draining => migrating.push(i),
                NodeStatus::Ready => ready.push(i),
            }
        }

        let count = want.count as usize;
        let (keep, excess) = if ready.len() <= count {
            (ready, Vec::new())
        } else {
            choose_spread(ix, &ready, count, inst_node, &region_counts, nodes)
        };
        for &i in &excess {
            stop(i, "scaled down".to_string());
        }
        let mut healthy = 0;
        for &i in &keep {
            let n = inst_node[i].expect("kept instances are on known nodes");
            let r = ix.node_region[n].expect("kept instances are in known regions");
            region_counts[r] += 1;
            nodes.add(n);
            healthy += usize::from(all[i].healthy);
            plan.keep.push(all[i].id.clone());
            kept.ready.push(KeptInstance {
                node: n,
                staying: Some(want.release) == staying,
                healthy: all[i].healthy,
            });
        }

        // Migrating instances stay until enough healthy replacements run elsewhere.
        migrating.sort_by_key(|&i| !all[i].healthy);
        let keep_migrating = migrating.len().min(count.saturating_sub(healthy));
        for (k, &i) in migrating.iter().enumerate() {
            if k < keep_migrating {
                plan.keep.push(all[i].id.clone());
                kept.migrating
                    .push(inst_node[i].expect("migrating instances are on known nodes"));
            } else if healthy > 0 {
                stop(
                    i,
                    format!("node {} is draining; replacement healthy", all[i].node),
                );
            } else {
                stop(i, "scaled down".to_string());
            }
        }
        kept.missing[k].1 = (count - keep.len()) as u32;
    }
    nodes.clear();
    kept
}

/// Picks `take` of `cands` (more than `take` instances on ready, in-policy nodes): healthy
/// ones first, then each from the region with the fewest kept instances of the app so far,
/// within it from the node with the fewest. Returns (kept, not kept), each in `cands` order.
fn choose_spread(
    ix: &ClusterIndex<'_>,
    cands: &[usize],
    take: usize,
    inst_node: &[Option<usize>],
    region_counts: &[u32],
    nodes: &NodeCounts,
) -> (Vec<usize>, Vec<usize>) {
    let all = &ix.view.instances;
    let mut region_counts = region_counts.to_vec();
    // Counts of this release's picks only; `nodes` holds earlier releases'.
    let mut picked_on = std::collections::BTreeMap::<usize, u32>::new();
    let mut chosen = vec![false; cands.len()];
    let mut left = take;
    for healthy_tier in [true, false] {
        // Per region, a min-heap of (node count when pushed, position in cands).
        let mut heaps: Vec<BinaryHeap<Reverse<(u32, usize)>>> =
            vec![BinaryHeap::new(); region_counts.len()];
        for (pos, &i) in cands.iter().enumerate() {
            if all[i].healthy == healthy_tier {
                let n = inst_node[i].expect("candidates are on known nodes");
                let r = ix.node_region[n].expect("candidates are in known regions");
                heaps[r].push(Reverse((nodes.get(n), pos)));
            }
        }
        while left > 0 {
            let Some(r) = (0..heaps.len())
                .filter(|&r| !heaps[r].is_empty())
                .min_by_key(|&r| region_counts[r])
            else {
                break;
            };
            let Reverse((stale, pos)) = heaps[r].pop().expect("region has candidates");
            let n = inst_node[cands[pos]].expect("candidates are on known nodes");
            let now = nodes.get(n) + picked_on.get(&n).copied().unwrap_or(0);
            if now != stale {
                // Another pick landed on this node since it was pushed: re-queue it.
                heaps[r].push(Reverse((now, pos)));
                continue;
            }
            chosen[pos] = true;
            *picked_on.entry(n).or_default() += 1;
            region_counts[r] += 1;
            left -= 1;
        }
    }
    let (mut keep, mut excess) = (Vec::new(), Vec::new());
    for (pos, &i) in cands.iter().enumerate() {
        if chosen[pos] {
            keep.push(i);
        } else {
            excess.push(i);
        }
    }
    (keep, excess)
}
