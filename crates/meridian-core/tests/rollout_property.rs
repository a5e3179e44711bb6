//! Random clusters and apps, then random deploys, scale changes and node status changes
//! driven through `rollout::step` and `plan` with simulated health, one reconcile round at a
//! time. Checked after every round and whenever the cluster settles:
//!
//! - once a rollout that started after the last node status change is promoted, and after
//!   any scale changes since, the app's instances per region are those of a fresh plan of the
//!   app on the same nodes (capacity is ample here, so the fresh spread is always possible).
//!   Two exceptions, checked again only after the next rollout: a scale-down while some of
//!   the app's instances are starting keeps the healthy ones wherever they are; and a rollout
//!   that halts after the app was scaled down mid-way leaves the old release with the
//!   instances it kept around the new ones (when the count left is exactly right, nothing
//!   moves them back);
//! - during a rollout started from the fresh spread and left alone (no scale or node change),
//!   no region serves fewer instances than its share: old ones, and new ones once healthy;
//! - a rollout stalls only when the app cannot be placed at all.
//!
//! `MERIDIAN_ROLLOUT_CASES` sets the number of cases (default 50,000),
//! `MERIDIAN_ROLLOUT_SEED` fixes the seed (default: from the clock, printed),
//! `MERIDIAN_ROLLOUT_CASE` replays one case. A failure prints the seed, the case number and
//! what happened; add the pair to `REGRESSIONS` to keep it.

use std::collections::BTreeMap;

use meridian_core::rollout::{self, InstanceHealth, ReleaseChange, ReleaseInfo, ReleaseStatus};
use meridian_core::schedule::{
    plan, ClusterView, Demand, LiveInstance, NodeStatus, NodeView, Plan, ReleaseWant,
};
use meridian_core::{CountryCode, Jurisdiction, JurisdictionCatalog, Name};

mod support;
use support::Rng;

/// (seed, case) pairs that once failed; run before the random cases.
const REGRESSIONS: &[(u64, u64)] = &[
    // Scaled up as a release that then failed was deployed: old instances placed beside a
    // starting new one counted it, and the old release was left off the fresh spread.
    (1796218714754389570, 46),
    // Rolled out from a lopsided spread, then scaled down mid-way.
    (1796218833768074665, 7519),
    // Scaled down while instances were starting.
    (1796218753750068528, 733),
    (1796218793398113317, 19374),
    // Deployed as a node began draining.
    (1796218916898686002, 11493),
    // Superseded mid-rollout, scaled down, then halted.
    (1796218914247972117, 248708),
];

const REGIONS: [&str; 4] = ["r-a", "r-b", "r-c", "r-d"];
const COUNTRIES: [&str; 6] = ["DE", "NL", "FR", "US", "JP", "CH"];
const RESIDENCIES: [&[&str]; 5] = [&[], &[], &["EU"], &["US"], &["EU", "JP"]];
const STATUSES: [NodeStatus; 5] = [
    NodeStatus::Ready,
    NodeStatus::Ready,
    NodeStatus::Ready,
    NodeStatus::Draining,
    NodeStatus::Down,
];
/// Rounds a case may take to settle after its last event.
const MAX_ROUNDS: usize = 500;

fn name(s: &str) -> Name {
    Name::parse(s).unwrap()
}

#[path = "rollout_property/world.rs"]
mod world;
use world::{App, World};

#[derive(Default)]
struct Coverage {
    promoted: u64,
    halted: u64,
    /// Promotions checked against the fresh spread.
    checked: u64,
    /// Of which the app was not on the fresh spread when the rollout started.
    repaired: u64,
    /// Rounds checked for every region's share during a rollout.
    share_rounds: u64,
    /// Scale changes made while a release was rolling.
    scaled_mid_rollout: u64,
    /// Scale-downs while some instances were starting (the spread is not checked until the
    /// next rollout).
    scaled_down_starting: u64,
    /// Halts of a rollout during which the app was scaled down (likewise).
    halted_after_shrink: u64,
}

fn generate(rng: &mut Rng) -> World {
    let mut regions = BTreeMap::new();
    for r in REGIONS.iter().take(1 + rng.below(REGIONS.len())) {
        regions.insert(name(r), CountryCode::parse(rng.pick(&COUNTRIES)).unwrap());
    }
    let known: Vec<Name> = regions.keys().cloned().collect();
    let nodes = (0..1 + rng.below(8))
        .map(|k| NodeView {
            name: name(&format!("n{k}")),
            region: known[rng.below(known.len())].clone(),
            status: rng.pick(&STATUSES),
            // Ample: every app fits many times over on any node.
            cpu_millis: 64_000,
            memory_mb: 65_536,
        })
        .collect();
    let apps = (0..1 + rng.below(3))
        .map(|k| App {
            demand: Demand {
                app: name(&format!("a{k}")),
                residency: rng
                    .pick(&RESIDENCIES)
                    .iter()
                    .map(|j| Jurisdiction::parse(j).unwrap())
                    .collect(),
                regions: rng
                    .percent(20)
                    .then(|| known.iter().filter(|_| rng.percent(50)).cloned().collect()),
                cpu_millis: 100,
                memory_mb: 64,
                wants: Vec::new(),
            },
            replicas: rng.below(7) as u32,
            // The first release is active from the start, as the state stores it.
            releases: vec![ReleaseInfo {
                number: 1,
                status: ReleaseStatus::Active,
            }],
            bad: Vec::new(),
            deadline_passed: false,
            clean_rollout: false,
            fresh: true,
            shrunk_mid_rollout: false,
            watch: None,
        })
        .collect();
    World {
        view: ClusterView {
            catalog: JurisdictionCatalog::built_in(),
            regions,
            nodes,
            instances: Vec::new(),
        },
        apps,
        next_id: 0,
        log: Vec::new(),
    }
}

fn run_case(seed: u64, case: u64, cov: &mut Coverage) {
    let mut rng = Rng::for_case(seed, case);
    let mut world = generate(&mut rng);
    let mut verdict = world.settle(&mut rng, cov);
    for _ in 0..1 + rng.below(8) {
        if verdict.is_err() {
            break;
        }
        verdict = world.event(&mut rng, cov);
        // Half the time the next event comes before this one has played out.
        if verdict.is_ok() && rng.percent(50) {
            verdict = world.settle(&mut rng, cov);
        }
    }
    if verdict.is_ok() {
        verdict = world.settle(&mut rng, cov);
    }
    if let Err(why) = verdict {
        panic!(
            "{why}\nreplay: MERIDIAN_ROLLOUT_SEED={seed} MERIDIAN_ROLLOUT_CASE={case}\n\
             what happened:\n{}\nregions: {:?}\nnodes: {:#?}\ninstances: {:#?}",
            world.log.join("\n"),
            world.view.regions,
            world.view.nodes,
            world.view.instances
        );
    }
}

fn env_u64(key: &str) -> Option<u64> {
    std::env::var(key).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{key} must be a number"))
    })
}

#[test]
fn rollouts_return_to_the_fresh_spread() {
    let mut cov = Coverage::default();
    for &(seed, case) in REGRESSIONS {
        run_case(seed, case, &mut cov);
    }
    let seed = env_u64("MERIDIAN_ROLLOUT_SEED").unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        t.as_nanos() as u64
    });
    if let Some(case) = env_u64("MERIDIAN_ROLLOUT_CASE") {
        println!("rollout property: replaying seed {seed} case {case}");
        return run_case(seed, case, &mut cov);
    }
    let cases = env_u64("MERIDIAN_ROLLOUT_CASES").unwrap_or(50_000);
    println!(
        "rollout property: seed {seed}, {cases} cases (MERIDIAN_ROLLOUT_SEED={seed} to replay)"
    );
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
        cov.promoted += c.promoted;
        cov.halted += c.halted;
        cov.checked += c.checked;
        cov.repaired += c.repaired;
        cov.share_rounds += c.share_rounds;
        cov.scaled_mid_rollout += c.scaled_mid_rollout;
        cov.scaled_down_starting += c.scaled_down_starting;
        cov.halted_after_shrink += c.halted_after_shrink;
    }
    let Coverage {
        promoted,
        halted,
        checked,
        repaired,
        share_rounds,
        scaled_mid_rollout,
        scaled_down_starting,
        halted_after_shrink,
    } = cov;
    println!(
        "rollout property: {promoted} releases promoted ({repaired} of them from another \
         spread), {halted} halted, {checked} settled apps checked against a fresh plan, \
         {share_rounds} rollout rounds checked for every region's share, \
         {scaled_mid_rollout} scale changes mid-rollout, {scaled_down_starting} scale-downs \
         while instances were starting, {halted_after_shrink} halts after a scale-down"
    );
}
