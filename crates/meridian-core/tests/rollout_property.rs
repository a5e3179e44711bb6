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

/// One app as the reconcile loop knows it.
struct App {
    demand: Demand,
    replicas: u32,
    releases: Vec<ReleaseInfo>,
    /// Releases whose instances fail instead of becoming healthy.
    bad: Vec<u64>,
    /// Its rolling release passed its deadline (set only when the cluster is stuck).
    deadline_passed: bool,
    /// Its rolling release was deployed after the last node status change.
    clean_rollout: bool,
    /// Its instances must be spread as a fresh plan would spread them.
    fresh: bool,
    /// It was scaled down while a release was rolling, and that rollout has not ended.
    shrunk_mid_rollout: bool,
    /// A rollout from the fresh spread, left alone so far: the new release and the floor per
    /// region.
    watch: Option<(u64, BTreeMap<Name, u32>)>,
}

struct World {
    view: ClusterView,
    apps: Vec<App>,
    next_id: u64,
    log: Vec<String>,
}

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

impl World {
    fn region_of(&self, node: &Name) -> Option<&Name> {
        self.view
            .nodes
            .iter()
            .find(|n| n.name == *node)
            .map(|n| &n.region)
    }

    /// Instances of app `a` per region; with `serving_new`, a release-`serving_new` instance
    /// counts only once healthy.
    fn spread(&self, a: usize, serving_new: Option<u64>) -> BTreeMap<Name, u32> {
        let app = &self.apps[a].demand.app;
        let mut out = BTreeMap::new();
        for i in self.view.instances.iter().filter(|i| i.app == *app) {
            if serving_new.is_some_and(|new| i.release == new && !i.healthy) {
                continue;
            }
            if let Some(r) = self.region_of(&i.node) {
                *out.entry(r.clone()).or_default() += 1;
            }
        }
        out
    }

    /// What a fresh plan of app `a` alone gives per region, and how many it cannot place.
    fn fresh_spread(&self, a: usize) -> (BTreeMap<Name, u32>, u32) {
        let app = &self.apps[a];
        let d = Demand {
            wants: vec![ReleaseWant {
                release: 1,
                count: app.replicas,
            }],
            ..app.demand.clone()
        };
        let empty = ClusterView {
            instances: Vec::new(),
            ..self.view.clone()
        };
        let p = plan(&empty, &[d]);
        let mut out = BTreeMap::new();
        for pl in p.place {
            *out.entry(pl.region).or_default() += 1;
        }
        (out, p.unplaced.iter().map(|u| u.count).sum())
    }

    fn rolling(&self, a: usize) -> Option<u64> {
        let app = &self.apps[a];
        app.releases
            .iter()
            .find(|r| r.status == ReleaseStatus::Rolling)
            .map(|r| r.number)
    }

    fn deploy(&mut self, a: usize, bad: bool) {
        // Watched only from the fresh spread, with nothing else under way: every instance
        // healthy on a ready node (none starting, none migrating off a draining node).
        let floor = self.fresh_spread(a).0;
        let app = &self.apps[a].demand.app;
        let ready = |node: &Name| {
            self.view
                .nodes
                .iter()
                .any(|n| n.name == *node && n.status == NodeStatus::Ready)
        };
        let settled = self.rolling(a).is_none()
            && self
                .view
                .instances
                .iter()
                .all(|i| i.app != *app || (i.healthy && ready(&i.node)))
            && self.spread(a, None) == floor;
        let app = &mut self.apps[a];
        let number = app.releases.iter().map(|r| r.number).max().unwrap_or(0) + 1;
        for r in &mut app.releases {
            if r.status == ReleaseStatus::Rolling {
                r.status = ReleaseStatus::Superseded;
            }
        }
        app.releases.push(ReleaseInfo {
            number,
            status: ReleaseStatus::Rolling,
        });
        if bad {
            app.bad.push(number);
        }
        app.deadline_passed = false;
        app.clean_rollout = true;
        app.watch = settled.then_some((number, floor));
        self.log.push(format!(
            "deploy {} release {number}{}",
            app.demand.app,
            if bad { " (fails)" } else { "" }
        ));
    }

    /// One reconcile round; answers whether it changed anything.
    fn round(&mut self, cov: &mut Coverage) -> bool {
        let mut demands = Vec::new();
        let mut changes = Vec::new();
        for app in &self.apps {
            let health: Vec<InstanceHealth> = self
                .view
                .instances
                .iter()
                .filter(|i| i.app == app.demand.app)
                .map(|i| InstanceHealth {
                    release: i.release,
                    healthy: i.healthy,
                    failed: i.failed,
                })
                .collect();
            let step = rollout::step(app.replicas, &app.releases, &health, app.deadline_passed);
            changes.push(step.change);
            demands.push(Demand {
                wants: step.wants,
                ..app.demand.clone()
            });
        }
        let p = plan(&self.view, &demands);
        let changed =
            !p.place.is_empty() || !p.stop.is_empty() || changes.iter().any(Option::is_some);
        self.apply(&p);
        for (a, change) in changes.into_iter().enumerate() {
            let Some(change) = change else { continue };
            let app = &mut self.apps[a];
            app.deadline_passed = false;
            app.watch = None;
            match change {
                ReleaseChange::Promote { release } => {
                    cov.promoted += 1;
                    for r in &mut app.releases {
                        if r.number == release {
                            r.status = ReleaseStatus::Active;
                        } else if matches!(r.status, ReleaseStatus::Active | ReleaseStatus::Rolling)
                        {
                            r.status = ReleaseStatus::Superseded;
                        }
                    }
                    // Only a release with no instances to fail is promoted while bad; from
                    // here on it would fail forever, which is no question for the scheduler.
                    app.bad.retain(|&b| b != release);
                    if app.clean_rollout {
                        cov.repaired += u64::from(!app.fresh);
                        app.fresh = true;
                    }
                    app.shrunk_mid_rollout = false;
                    self.log
                        .push(format!("{} promoted {release}", app.demand.app));
                }
                ReleaseChange::Halt { release, .. } => {
                    cov.halted += 1;
                    if let Some(r) = app.releases.iter_mut().find(|r| r.number == release) {
                        r.status = ReleaseStatus::Halted;
                    }
                    // Its old instances were kept around the new ones, and a scale-down
                    // chose among them so; nothing moves them back.
                    if app.shrunk_mid_rollout {
                        cov.halted_after_shrink += 1;
                        app.fresh = false;
                    }
                    app.shrunk_mid_rollout = false;
                    self.log
                        .push(format!("{} halted {release}", app.demand.app));
                }
            }
        }
        changed
    }

    fn apply(&mut self, p: &Plan) {
        self.view
            .instances
            .retain(|i| !p.stop.iter().any(|s| s.id == i.id));
        for pl in &p.place {
            self.next_id += 1;
            self.view.instances.push(LiveInstance {
                id: format!("i{}", self.next_id),
                app: pl.app.clone(),
                release: pl.release,
                node: pl.node.clone(),
                healthy: false,
                failed: false,
            });
        }
        let mut placed: BTreeMap<&Name, Vec<String>> = BTreeMap::new();
        for pl in &p.place {
            placed
                .entry(&pl.app)
                .or_default()
                .push(format!("{}@{}", pl.release, pl.region));
        }
        for (app, list) in placed {
            self.log.push(format!("  {app}: placed {}", list.join(" ")));
        }
        let mut stopped: BTreeMap<&Name, usize> = BTreeMap::new();
        for s in &p.stop {
            *stopped.entry(&s.app).or_default() += 1;
        }
        for (app, n) in stopped {
            self.log.push(format!("  {app}: stopped {n}"));
        }
        let touched: Vec<Name> = p
            .place
            .iter()
            .map(|pl| pl.app.clone())
            .chain(p.stop.iter().map(|s| s.app.clone()))
            .collect();
        for a in 0..self.apps.len() {
            if touched.contains(&self.apps[a].demand.app) {
                let now = self.instances_text(a);
                self.log.push(format!("    now {now}"));
            }
        }
    }

    /// `1@r-a 1@r-a 2@r-b*`: release@region of each instance of app `a`, `*` if starting.
    fn instances_text(&self, a: usize) -> String {
        let mut list: Vec<String> = self
            .view
            .instances
            .iter()
            .filter(|i| i.app == self.apps[a].demand.app)
            .map(|i| {
                let region = self.region_of(&i.node).map_or("?", |r| r.as_str());
                let star = if i.healthy { "" } else { "*" };
                format!("{}@{region}{star}", i.release)
            })
            .collect();
        list.sort();
        list.join(" ")
    }

    /// Health checks: each new instance passes (or, of a bad release, fails) with some luck.
    fn heal(&mut self, rng: &mut Rng) {
        let bad: Vec<(Name, Vec<u64>)> = self
            .apps
            .iter()
            .map(|a| (a.demand.app.clone(), a.bad.clone()))
            .collect();
        for i in &mut self.view.instances {
            if i.healthy || i.failed || !rng.percent(70) {
                continue;
            }
            let fails = bad
                .iter()
                .any(|(app, bad)| *app == i.app && bad.contains(&i.release));
            if fails {
                i.failed = true;
            } else {
                i.healthy = true;
            }
        }
    }

    fn pending(&self) -> bool {
        self.view.instances.iter().any(|i| !i.healthy && !i.failed)
    }

    /// Every round's checks: each watched rollout keeps every region's share.
    fn check_round(&mut self, cov: &mut Coverage) -> Result<(), String> {
        for a in 0..self.apps.len() {
            let Some((new, floor)) = self.apps[a].watch.clone() else {
                continue;
            };
            cov.share_rounds += 1;
            let serving = self.spread(a, Some(new));
            for (region, share) in &floor {
                let now = serving.get(region).copied().unwrap_or(0);
                if now < *share {
                    return Err(format!(
                        "{} serves {now} in {region} during the rollout of release {new}, \
                         below its share {share}: {serving:?}",
                        self.apps[a].demand.app
                    ));
                }
            }
        }
        Ok(())
    }

    /// When nothing more happens: every app that should be on the fresh spread is.
    fn check_settled(&self, cov: &mut Coverage) -> Result<(), String> {
        for a in 0..self.apps.len() {
            let app = &self.apps[a];
            if !app.fresh || self.rolling(a).is_some() {
                continue;
            }
            cov.checked += 1;
            let (want, _) = self.fresh_spread(a);
            let got = self.spread(a, None);
            if got != want {
                return Err(format!(
                    "{} settled on {got:?}, a fresh plan gives {want:?}",
                    app.demand.app
                ));
            }
        }
        Ok(())
    }

    /// Runs rounds until nothing changes and nothing is pending. A release still rolling then
    /// cannot progress: its deadline passes, which is allowed only if the app cannot be placed
    /// at all.
    fn settle(&mut self, rng: &mut Rng, cov: &mut Coverage) -> Result<(), String> {
        for _ in 0..MAX_ROUNDS {
            let changed = self.round(cov);
            self.check_round(cov)?;
            let pending = self.pending();
            self.heal(rng);
            if changed || pending {
                continue;
            }
            let stuck: Vec<usize> = (0..self.apps.len())
                .filter(|&a| self.rolling(a).is_some())
                .collect();
            if stuck.is_empty() {
                return self.check_settled(cov);
            }
            for a in stuck {
                let (placed, unplaced) = self.fresh_spread(a);
                if unplaced == 0 && !placed.is_empty() {
                    return Err(format!(
                        "the rollout of {} stalled although it can be placed",
                        self.apps[a].demand.app
                    ));
                }
                self.apps[a].deadline_passed = true;
            }
        }
        Err(format!("nothing settles within {MAX_ROUNDS} rounds"))
    }

    /// A random event, then a few rounds (the next event may come mid-rollout).
    fn event(&mut self, rng: &mut Rng, cov: &mut Coverage) -> Result<(), String> {
        let a = rng.below(self.apps.len());
        match rng.below(100) {
            0..40 => self.deploy(a, rng.percent(10)),
            40..50 => {
                for a in 0..self.apps.len() {
                    self.deploy(a, false);
                }
            }
            50..70 => {
                let replicas = rng.below(7) as u32;
                cov.scaled_mid_rollout += u64::from(self.rolling(a).is_some());
                let starting = self
                    .view
                    .instances
                    .iter()
                    .any(|i| i.app == self.apps[a].demand.app && !i.healthy);
                let rolling = self.rolling(a).is_some();
                let app = &mut self.apps[a];
                if replicas < app.replicas && rolling {
                    app.shrunk_mid_rollout = true;
                }
                // Scaled down while some of its instances are starting, an app keeps the
                // healthy ones wherever they are: availability first. The next rollout
                // restores the fresh spread.
                if replicas < app.replicas && starting {
                    cov.scaled_down_starting += 1;
                    app.fresh = false;
                    app.clean_rollout = false;
                }
                app.replicas = replicas;
                app.watch = None;
                self.log
                    .push(format!("scale {} to {replicas}", app.demand.app));
            }
            70..85 => {
                let n = rng.below(self.view.nodes.len());
                let status = rng.pick(&STATUSES);
                self.view.nodes[n].status = status;
                for app in &mut self.apps {
                    app.fresh = false;
                    app.clean_rollout = false;
                    app.watch = None;
                }
                self.log.push(format!(
                    "node {} is {}",
                    self.view.nodes[n].name,
                    status.as_str()
                ));
            }
            _ => {}
        }
        for _ in 0..rng.below(4) {
            self.round(cov);
            self.check_round(cov)?;
            self.heal(rng);
        }
        Ok(())
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
