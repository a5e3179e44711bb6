//! The simulated cluster: apps as the reconcile loop knows them, one round at a time through
//! `rollout::step` and `plan`, health checks, events, and the checks made along the way.

use super::*;

/// One app as the reconcile loop knows it.
pub struct App {
    pub demand: Demand,
    pub replicas: u32,
    pub releases: Vec<ReleaseInfo>,
    /// Releases whose instances fail instead of becoming healthy.
    pub bad: Vec<u64>,
    /// Its rolling release passed its deadline (set only when the cluster is stuck).
    pub deadline_passed: bool,
    /// Its rolling release was deployed after the last node status change.
    pub clean_rollout: bool,
    /// Its instances must be spread as a fresh plan would spread them.
    pub fresh: bool,
    /// It was scaled down while a release was rolling, and that rollout has not ended.
    pub shrunk_mid_rollout: bool,
    /// A rollout from the fresh spread, left alone so far: the new release and the floor per
    /// region.
    pub watch: Option<(u64, BTreeMap<Name, u32>)>,
}

pub struct World {
    pub view: ClusterView,
    pub apps: Vec<App>,
    pub next_id: u64,
    pub log: Vec<String>,
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
                    id: &i.id,
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
    pub fn settle(&mut self, rng: &mut Rng, cov: &mut Coverage) -> Result<(), String> {
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
    pub fn event(&mut self, rng: &mut Rng, cov: &mut Coverage) -> Result<(), String> {
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
