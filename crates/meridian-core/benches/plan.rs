//! Scheduler throughput: `cargo bench -p meridian-core --bench plan`.
//!
//! 1. Fresh placement: 10,000 ready nodes in 5 regions, 2,000 apps each with a residency,
//!    about 100,000 instances to place.
//! 2. The same with 20,000 apps of 5 instances: the worst case for the per-app set-up, which
//!    is proportional to the number of nodes the app may use.
//! 3. Steady-state re-plan: the cluster running what (1) placed, with 1% of the nodes down and
//!    1% draining, so most instances are kept and the lost ones replaced.
//!
//! Prints the best of several runs next to the goal of 20,000 placements/s on one core.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use meridian_core::schedule::{
    plan, ClusterView, Demand, LiveInstance, NodeStatus, NodeView, Plan, ReleaseWant,
};
use meridian_core::{CountryCode, Jurisdiction, JurisdictionCatalog, Name};

const GOAL_PLACEMENTS_PER_SEC: f64 = 20_000.0;
const NODES: usize = 10_000;
const RUNS: usize = 5;

const REGIONS: [(&str, &str); 5] = [
    ("eu-fra", "DE"),
    ("eu-ams", "NL"),
    ("eu-par", "FR"),
    ("us-iad", "US"),
    ("ap-tyo", "JP"),
];
const RESIDENCIES: [&[&str]; 6] = [
    &["EU"],
    &["US"],
    &["JP"],
    &["EU", "US"],
    &["DE", "FR"],
    &["EEA"],
];

fn name(s: &str) -> Name {
    Name::parse(s).expect("bench names are valid")
}

fn cluster() -> ClusterView {
    let regions: BTreeMap<Name, CountryCode> = REGIONS
        .iter()
        .map(|(r, c)| (name(r), CountryCode::parse(c).expect("valid country")))
        .collect();
    let nodes = (0..NODES)
        .map(|k| NodeView {
            name: name(&format!("node-{k:05}")),
            region: name(REGIONS[k % REGIONS.len()].0),
            status: NodeStatus::Ready,
            cpu_millis: 32_000,
            memory_mb: 65_536,
        })
        .collect();
    ClusterView {
        catalog: JurisdictionCatalog::built_in(),
        regions,
        nodes,
        instances: Vec::new(),
    }
}

/// `apps` apps; app `k` wants `count(k)` instances.
fn make_demands(apps: usize, count: impl Fn(usize) -> u32) -> Vec<Demand> {
    (0..apps)
        .map(|k| Demand {
            app: name(&format!("app-{k:04}")),
            residency: RESIDENCIES[k % RESIDENCIES.len()]
                .iter()
                .map(|j| Jurisdiction::parse(j).expect("valid jurisdiction"))
                .collect(),
            regions: None,
            cpu_millis: [100, 250, 500][k % 3],
            memory_mb: [128, 256, 512, 1024][k % 4],
            wants: vec![ReleaseWant {
                release: 1,
                count: count(k),
            }],
        })
        .collect()
}

/// Runs `plan` `RUNS` times and returns the fastest time and the plan.
fn best_of(view: &ClusterView, demands: &[Demand]) -> (Duration, Plan) {
    let mut best = Duration::MAX;
    let mut out = Plan::default();
    for _ in 0..RUNS {
        let start = Instant::now();
        let p = plan(black_box(view), black_box(demands));
        best = best.min(start.elapsed());
        out = p;
    }
    (best, out)
}

fn report(scenario: &str, took: Duration, p: &Plan, live: usize) {
    let secs = took.as_secs_f64();
    let per_sec = p.place.len() as f64 / secs;
    println!("{scenario}");
    println!(
        "  live {live}, kept {}, stopped {}, placed {}, unplaced {}",
        p.keep.len(),
        p.stop.len(),
        p.place.len(),
        p.unplaced.iter().map(|u| u64::from(u.count)).sum::<u64>()
    );
    if live == 0 {
        println!(
            "  best of {RUNS}: {secs:.3} s, {per_sec:.0} placements/s \
             (goal {GOAL_PLACEMENTS_PER_SEC:.0}/s: {:.1}x)",
            per_sec / GOAL_PLACEMENTS_PER_SEC
        );
    } else {
        println!(
            "  best of {RUNS}: {secs:.3} s for the whole re-plan, {:.0} live instances/s",
            live as f64 / secs
        );
    }
}

fn main() {
    let mut view = cluster();
    println!("{NODES} nodes in {} regions", REGIONS.len());

    // 26 to 76 instances each, 101,975 in all.
    let demands = make_demands(2_000, |k| 26 + (k * 37 % 51) as u32);
    let (took, fresh) = best_of(&view, &demands);
    report("fresh placement, 2,000 apps", took, &fresh, 0);

    let small = make_demands(20_000, |_| 5);
    let (took, p) = best_of(&view, &small);
    report("fresh placement, 20,000 apps of 5", took, &p, 0);

    view.instances = fresh
        .place
        .iter()
        .enumerate()
        .map(|(k, pl)| LiveInstance {
            id: format!("inst-{k:06}"),
            app: pl.app.clone(),
            release: pl.release,
            node: pl.node.clone(),
            healthy: true,
            failed: false,
        })
        .collect();
    for (k, node) in view.nodes.iter_mut().enumerate() {
        node.status = match k % 100 {
            0 => NodeStatus::Down,
            1 => NodeStatus::Draining,
            _ => NodeStatus::Ready,
        };
    }
    let (took, steady) = best_of(&view, &demands);
    report(
        "steady-state re-plan, 2,000 apps (1% of nodes down, 1% draining)",
        took,
        &steady,
        view.instances.len(),
    );
}
