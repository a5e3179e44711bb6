//! Random clusters against an independent checker of what every plan must satisfy.
//!
//! `MERIDIAN_PLAN_CASES` sets the number of cases (default 1,000,000), `MERIDIAN_PLAN_SEED`
//! fixes the seed (default: from the clock, printed), `MERIDIAN_PLAN_CASE` replays one case.
//! A failure prints the seed and case number; add them to `REGRESSIONS` to keep them.

use std::collections::BTreeMap;

use meridian_core::schedule::{
    eligibility, plan, ClusterView, Demand, LiveInstance, NodeStatus, NodeView, Plan, ReleaseWant,
};
use meridian_core::{CountryCode, Jurisdiction, JurisdictionCatalog, Name};

mod support;
use support::Rng;

/// (seed, case) pairs that once failed; run before the random cases.
const REGRESSIONS: &[(u64, u64)] = &[];

fn name(s: &str) -> Name {
    Name::parse(s).unwrap()
}

const REGIONS: [&str; 5] = ["r-a", "r-b", "r-c", "r-d", "r-e"];
const UNKNOWN_REGION: &str = "r-x";
const COUNTRIES: [&str; 8] = ["DE", "NL", "FR", "NO", "US", "JP", "GB", "CH"];
const RESIDENCIES: [&[&str]; 7] = [
    &[],
    &["EU"],
    &["US"],
    &["DE", "FR"],
    &["EEA"],
    &["JP", "NL"],
    &["EU", "US"],
];
const STATUSES: [NodeStatus; 5] = [
    NodeStatus::Ready,
    NodeStatus::Ready,
    NodeStatus::Ready,
    NodeStatus::Draining,
    NodeStatus::Down,
];

fn generate(rng: &mut Rng) -> (ClusterView, Vec<Demand>) {
    let mut regions = BTreeMap::new();
    for r in REGIONS.iter().take(rng.below(REGIONS.len() + 1)) {
        regions.insert(name(r), CountryCode::parse(rng.pick(&COUNTRIES)).unwrap());
    }
    let known: Vec<Name> = regions.keys().cloned().collect();
    let nodes: Vec<NodeView> = (0..rng.below(9))
        .map(|k| NodeView {
            name: name(&format!("n{k}")),
            region: if known.is_empty() || rng.percent(10) {
                name(UNKNOWN_REGION)
            } else {
                known[rng.below(known.len())].clone()
            },
            status: rng.pick(&STATUSES),
            cpu_millis: rng.pick(&[0, 300, 1000, 2000, 4000]),
            memory_mb: rng.pick(&[0, 128, 512, 1024, 4096]),
        })
        .collect();
    let mut apps = ["a0", "a1", "a2", "a3", "a4"];
    rng.shuffle(&mut apps);
    let demands: Vec<Demand> = apps[..rng.below(5)]
        .iter()
        .map(|app| {
            let mut releases = [1u64, 2, 3, 4];
            rng.shuffle(&mut releases);
            Demand {
                app: name(app),
                residency: rng
                    .pick(&RESIDENCIES)
                    .iter()
                    .map(|j| Jurisdiction::parse(j).unwrap())
                    .collect(),
                regions: rng.percent(25).then(|| {
                    REGIONS
                        .iter()
                        .chain(&[UNKNOWN_REGION])
                        .filter(|_| rng.percent(40))
                        .map(|r| name(r))
                        .collect()
                }),
                cpu_millis: rng.pick(&[0, 100, 250, 500, 1000]),
                memory_mb: rng.pick(&[0, 64, 128, 256, 512]),
                wants: releases[..rng.below(4)]
                    .iter()
                    .map(|&release| ReleaseWant {
                        release,
                        count: rng.below(5) as u32,
                    })
                    .collect(),
            }
        })
        .collect();
    // Mostly instances of planned apps, wanted releases and existing nodes, so that many are
    // kept; the rest exercise every reason to stop.
    let instances = (0..rng.below(13))
        .map(|k| {
            let d = (!demands.is_empty() && rng.percent(85))
                .then(|| &demands[rng.below(demands.len())]);
            let app = d.map_or_else(|| name(&format!("a{}", rng.below(6))), |d| d.app.clone());
            let release = match d {
                Some(d) if !d.wants.is_empty() && rng.percent(80) => {
                    d.wants[rng.below(d.wants.len())].release
                }
                _ => rng.below(5) as u64,
            };
            let node = if nodes.is_empty() || rng.percent(5) {
                name("n9")
            } else {
                nodes[rng.below(nodes.len())].name.clone()
            };
            LiveInstance {
                id: format!("i{k}"),
                app,
                release,
                node,
                healthy: rng.percent(70),
                failed: rng.percent(10),
            }
        })
        .collect();
    let view = ClusterView {
        catalog: JurisdictionCatalog::built_in(),
        regions,
        nodes,
        instances,
    };
    (view, demands)
}

/// Everything a plan must satisfy, checked from the inputs alone.
fn check(view: &ClusterView, demands: &[Demand], p: &Plan) -> Result<(), String> {
    let demand_of = |app: &Name| demands.iter().find(|d| d.app == *app);
    let node_of = |n: &Name| view.nodes.iter().position(|node| node.name == *n);
    let in_policy = |d: &Demand, node: &NodeView| {
        view.regions
            .get(&node.region)
            .is_some_and(|c| view.catalog.allows(&d.residency, *c))
            && d.regions
                .as_ref()
                .is_none_or(|pinned| pinned.contains(&node.region))
    };
    let wanted = |d: &Demand, release: u64| {
        d.wants
            .iter()
            .find(|w| w.release == release)
            .map(|w| w.count)
    };

    // Every live instance of a planned app exactly once in keep or stop; nothing else there.
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for id in p.keep.iter().chain(p.stop.iter().map(|s| &s.id)) {
        *seen.entry(id).or_default() += 1;
    }
    for inst in &view.instances {
        let want = usize::from(demand_of(&inst.app).is_some());
        let got = seen.remove(inst.id.as_str()).unwrap_or(0);
        if got != want {
            return Err(format!(
                "instance {} appears {got} times in keep+stop, not {want}",
                inst.id
            ));
        }
    }
    if let Some(id) = seen.keys().next() {
        return Err(format!("{id} in keep/stop is no live instance"));
    }
    if let Some(s) = p.stop.iter().find(|s| s.reason.is_empty()) {
        return Err(format!("stop of {} has no reason", s.id));
    }

    let mut cpu: Vec<i64> = view.nodes.iter().map(|n| i64::from(n.cpu_millis)).collect();
    let mut mem: Vec<i64> = view.nodes.iter().map(|n| i64::from(n.memory_mb)).collect();
    // (app, release) -> [kept on ready nodes, of which healthy, kept on draining nodes,
    //                    placed, unplaced]
    let mut tally: BTreeMap<(&Name, u64), [u64; 5]> = BTreeMap::new();
    for id in &p.keep {
        let inst = view.instances.iter().find(|i| i.id == *id).unwrap();
        let d = demand_of(&inst.app).unwrap();
        let Some(n) = node_of(&inst.node) else {
            return Err(format!("kept {id} is on unknown node {}", inst.node));
        };
        let node = &view.nodes[n];
        if node.status == NodeStatus::Down || !in_policy(d, node) || inst.failed {
            return Err(format!(
                "kept {id} is failed, on a down node or outside policy"
            ));
        }
        if wanted(d, inst.release).is_none() {
            return Err(format!("kept {id} runs unwanted release {}", inst.release));
        }
        cpu[n] -= i64::from(d.cpu_millis);
        mem[n] -= i64::from(d.memory_mb);
        let t = tally.entry((&inst.app, inst.release)).or_default();
        if node.status == NodeStatus::Ready {
            t[0] += 1;
            t[1] += u64::from(inst.healthy);
        } else {
            t[2] += 1;
        }
    }
    let mut placed_on = vec![false; view.nodes.len()];
    for pl in &p.place {
        let Some(d) = demand_of(&pl.app) else {
            return Err(format!("placement of unplanned app {}", pl.app));
        };
        let Some(n) = node_of(&pl.node) else {
            return Err(format!("placement on unknown node {}", pl.node));
        };
        let node = &view.nodes[n];
        if node.status != NodeStatus::Ready
            || !in_policy(d, node)
            || pl.region != node.region
            || view.regions.get(&pl.region) != Some(&pl.country)
            || wanted(d, pl.release).is_none()
        {
            return Err(format!("bad placement {pl:?}"));
        }
        cpu[n] -= i64::from(d.cpu_millis);
        mem[n] -= i64::from(d.memory_mb);
        placed_on[n] = true;
        tally.entry((&pl.app, pl.release)).or_default()[3] += 1;
    }
    if let Some(n) = (0..view.nodes.len()).find(|&n| placed_on[n] && (cpu[n] < 0 || mem[n] < 0)) {
        return Err(format!(
            "node {} over capacity after placements",
            view.nodes[n].name
        ));
    }
    for u in &p.unplaced {
        if u.count == 0 || !u.reason.starts_with("no ready node with capacity") {
            return Err(format!("bad unplaced {u:?}"));
        }
        let d = demand_of(&u.app).ok_or("unplaced for unplanned app")?;
        let t = tally.entry((&u.app, u.release)).or_default();
        if t[4] > 0 {
            return Err(format!(
                "two unplaced entries for {} release {}",
                u.app, u.release
            ));
        }
        t[4] = u64::from(u.count);
        // No needless refusal: after the plan, no node could take one more.
        if let Some(n) = (0..view.nodes.len()).find(|&n| {
            view.nodes[n].status == NodeStatus::Ready
                && in_policy(d, &view.nodes[n])
                && cpu[n] >= i64::from(d.cpu_millis)
                && mem[n] >= i64::from(d.memory_mb)
        }) {
            return Err(format!(
                "{} unplaced although {} could take it",
                u.app, view.nodes[n].name
            ));
        }
    }
    for d in demands {
        for w in &d.wants {
            let [ready, healthy, draining, placed, unplaced] =
                tally.remove(&(&d.app, w.release)).unwrap_or_default();
            let count = u64::from(w.count);
            if ready + placed + unplaced != count {
                return Err(format!(
                    "{} release {}: {ready} kept + {placed} placed + {unplaced} unplaced != {count}",
                    d.app, w.release
                ));
            }
            if draining > count.saturating_sub(healthy) {
                return Err(format!(
                    "{} release {}: {draining} migrating kept beside {healthy} healthy",
                    d.app, w.release
                ));
            }
        }
    }
    check_eligibility(view, demands)
}

/// `eligibility` against the same rules, counting only the app's own live instances (the
/// other apps' sizes are not passed here).
fn check_eligibility(view: &ClusterView, demands: &[Demand]) -> Result<(), String> {
    for d in demands {
        let verdicts = eligibility(view, &[], d);
        if verdicts.len() != view.nodes.len() {
            return Err("eligibility skipped nodes".into());
        }
        for (node, v) in view.nodes.iter().zip(&verdicts) {
            let mine = view
                .instances
                .iter()
                .filter(|i| i.app == d.app && i.node == node.name)
                .count() as i64;
            let fits = i64::from(node.cpu_millis) - mine * i64::from(d.cpu_millis)
                >= i64::from(d.cpu_millis)
                && i64::from(node.memory_mb) - mine * i64::from(d.memory_mb)
                    >= i64::from(d.memory_mb);
            let ok = node.status == NodeStatus::Ready
                && view
                    .regions
                    .get(&node.region)
                    .is_some_and(|c| view.catalog.allows(&d.residency, *c))
                && d.regions
                    .as_ref()
                    .is_none_or(|pinned| pinned.contains(&node.region))
                && fits;
            if v.node != node.name
                || v.verdict.is_ok() != ok
                || v.verdict.as_ref().is_err_and(|e| e.is_empty())
            {
                return Err(format!(
                    "eligibility of {} for {}: {:?}, expected ok={ok}",
                    node.name, d.app, v.verdict
                ));
            }
        }
    }
    Ok(())
}

/// How often the interesting paths were hit, to show the generator reaches them.
#[derive(Default)]
struct Coverage {
    placed: u64,
    unplaced: u64,
    kept: u64,
    stopped: u64,
    migrating_kept: u64,
}

fn run_case(seed: u64, case: u64, cov: &mut Coverage) {
    let (view, demands) = generate(&mut Rng::for_case(seed, case));
    let p = plan(&view, &demands);
    let again = plan(&view, &demands);
    let verdict = if p != again {
        Err("plan is not deterministic".to_string())
    } else {
        check(&view, &demands, &p)
    };
    if let Err(why) = verdict {
        panic!(
            "{why}\nreplay: MERIDIAN_PLAN_SEED={seed} MERIDIAN_PLAN_CASE={case}\n\
             view: {view:#?}\ndemands: {demands:#?}\nplan: {p:#?}"
        );
    }
    cov.placed += u64::from(!p.place.is_empty());
    cov.unplaced += u64::from(!p.unplaced.is_empty());
    cov.kept += u64::from(!p.keep.is_empty());
    cov.stopped += u64::from(!p.stop.is_empty());
    cov.migrating_kept += u64::from(p.keep.iter().any(|id| {
        let inst = view.instances.iter().find(|i| i.id == *id).unwrap();
        view.nodes
            .iter()
            .any(|n| n.name == inst.node && n.status == NodeStatus::Draining)
    }));
}

fn env_u64(key: &str) -> Option<u64> {
    std::env::var(key).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{key} must be a number"))
    })
}

#[test]
fn plans_satisfy_their_invariants() {
    let mut cov = Coverage::default();
    for &(seed, case) in REGRESSIONS {
        run_case(seed, case, &mut cov);
    }
    let seed = env_u64("MERIDIAN_PLAN_SEED").unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        t.as_nanos() as u64
    });
    if let Some(case) = env_u64("MERIDIAN_PLAN_CASE") {
        println!("plan property: replaying seed {seed} case {case}");
        return run_case(seed, case, &mut cov);
    }
    let cases = env_u64("MERIDIAN_PLAN_CASES").unwrap_or(1_000_000);
    println!("plan property: seed {seed}, {cases} cases (MERIDIAN_PLAN_SEED={seed} to replay)");
    // Cases are independent: split them over the cores. A failing case panics its thread with
    // the seed and case number, and the scope passes the panic on.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let covs: Vec<Coverage> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut cov = Coverage::default();
                    for case in (t..cases).step_by(threads as usize) {
                        run_case(seed, case, &mut cov);
                    }
                    cov
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    for c in covs {
        cov.placed += c.placed;
        cov.unplaced += c.unplaced;
        cov.kept += c.kept;
        cov.stopped += c.stopped;
        cov.migrating_kept += c.migrating_kept;
    }
    let Coverage {
        placed,
        unplaced,
        kept,
        stopped,
        migrating_kept,
    } = cov;
    println!(
        "plan property: cases with placements {placed}, unplaced {unplaced}, kept {kept}, \
         stopped {stopped}, kept on a draining node {migrating_kept}"
    );
}
