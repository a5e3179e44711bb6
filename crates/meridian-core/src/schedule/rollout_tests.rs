//! Rolling deploys stepped by hand: `rollout::step`, then `plan`, then its stops, placements
//! and release changes applied, then the new instances marked healthy, until the release is
//! promoted. Every region keeps its share of the app throughout, and the rollout ends on the
//! spread a fresh plan would choose.

use std::collections::BTreeMap;

use super::*;
use crate::rollout::{self, InstanceHealth, ReleaseChange, ReleaseInfo, ReleaseStatus};

fn name(s: &str) -> Name {
    Name::parse(s).unwrap()
}

/// One app as the reconcile loop knows it.
struct App {
    demand: Demand,
    replicas: u32,
    releases: Vec<ReleaseInfo>,
}

/// A cluster and its apps, stepped one reconcile round at a time.
struct Sim {
    view: ClusterView,
    apps: Vec<App>,
    next_id: u32,
}

impl Sim {
    /// Regions eu-fra (DE), eu-ams (NL), us-iad (US) with `nodes` (name, region), all ready
    /// and large.
    fn new(nodes: &[(&str, &str)]) -> Self {
        let regions = [("eu-fra", "DE"), ("eu-ams", "NL"), ("us-iad", "US")]
            .iter()
            .map(|(r, c)| (name(r), CountryCode::parse(c).unwrap()))
            .collect();
        let nodes = nodes
            .iter()
            .map(|(n, r)| NodeView {
                name: name(n),
                region: name(r),
                status: NodeStatus::Ready,
                cpu_millis: 4000,
                memory_mb: 4096,
            })
            .collect();
        Sim {
            view: ClusterView {
                catalog: JurisdictionCatalog::built_in(),
                regions,
                nodes,
                instances: Vec::new(),
            },
            apps: Vec::new(),
            next_id: 0,
        }
    }

    /// Creates an app with release 1 and rolls it out (all at once: nothing serves yet).
    fn create(&mut self, app: &str, residency: &[&str], replicas: u32) {
        self.apps.push(App {
            demand: Demand {
                app: name(app),
                residency: residency
                    .iter()
                    .map(|j| Jurisdiction::parse(j).unwrap())
                    .collect(),
                regions: None,
                cpu_millis: 100,
                memory_mb: 64,
                wants: Vec::new(),
            },
            replicas,
            releases: vec![ReleaseInfo {
                number: 1,
                status: ReleaseStatus::Rolling,
            }],
        });
        while !self.settled() {
            self.round();
            self.heal();
        }
    }

    /// Stores a new rolling release of `app`.
    fn deploy(&mut self, app: &str) -> u64 {
        let a = self.app_mut(app);
        let number = a.releases.iter().map(|r| r.number).max().unwrap_or(0) + 1;
        a.releases.push(ReleaseInfo {
            number,
            status: ReleaseStatus::Rolling,
        });
        number
    }

    fn app_mut(&mut self, app: &str) -> &mut App {
        self.apps
            .iter_mut()
            .find(|a| a.demand.app.as_str() == app)
            .unwrap()
    }

    /// One reconcile round: every app's rollout step, one plan, and the plan applied.
    fn round(&mut self) -> Plan {
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
            let step = rollout::step(app.replicas, &app.releases, &health, false);
            changes.push(step.change);
            demands.push(Demand {
                wants: step.wants,
                ..app.demand.clone()
            });
        }
        let p = plan(&self.view, &demands);
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
        for (app, change) in self.apps.iter_mut().zip(changes) {
            if let Some(ReleaseChange::Promote { release }) = change {
                for r in &mut app.releases {
                    if r.number == release {
                        r.status = ReleaseStatus::Active;
                    } else if matches!(r.status, ReleaseStatus::Active | ReleaseStatus::Rolling) {
                        r.status = ReleaseStatus::Superseded;
                    }
                }
            }
        }
        p
    }

    /// Every running instance passes its health check.
    fn heal(&mut self) {
        for i in &mut self.view.instances {
            i.healthy = true;
        }
    }

    /// No release rolling, and a round would change nothing.
    fn settled(&self) -> bool {
        let rolling = self.apps.iter().any(|a| {
            a.releases
                .iter()
                .any(|r| r.status == ReleaseStatus::Rolling)
        });
        !rolling && self.view.instances.iter().all(|i| i.healthy)
    }

    fn region_of(&self, node: &Name) -> &str {
        let n = self.view.nodes.iter().find(|n| n.name == *node).unwrap();
        n.region.as_str()
    }

    /// Instances of `app` per region; only those of `release` if given.
    fn spread(&self, app: &str, release: Option<u64>) -> BTreeMap<&str, u32> {
        let mut out = BTreeMap::new();
        for i in &self.view.instances {
            if i.app.as_str() == app && release.is_none_or(|r| r == i.release) {
                *out.entry(self.region_of(&i.node)).or_default() += 1;
            }
        }
        out
    }

    /// Instances of `app` per node.
    fn per_node(&self, app: &str) -> BTreeMap<&str, u32> {
        let mut out = BTreeMap::new();
        for i in &self.view.instances {
            if i.app.as_str() == app {
                *out.entry(i.node.as_str()).or_default() += 1;
            }
        }
        out
    }

    /// What a fresh plan gives `app` per region on these nodes.
    fn fresh_spread(&self, app: &str) -> BTreeMap<&str, u32> {
        let a = self
            .apps
            .iter()
            .find(|a| a.demand.app.as_str() == app)
            .unwrap();
        let d = Demand {
            wants: vec![ReleaseWant {
                release: 1,
                count: a.replicas,
            }],
            ..a.demand.clone()
        };
        let empty = ClusterView {
            instances: Vec::new(),
            ..self.view.clone()
        };
        let mut out = BTreeMap::new();
        for pl in plan(&empty, &[d]).place {
            let region = self.region_of(&pl.node);
            *out.entry(region).or_default() += 1;
        }
        out
    }

    /// Serving instances of `app` per region: the old release's, and the new one's that are
    /// healthy.
    fn serving(&self, app: &str, new: u64) -> BTreeMap<&str, u32> {
        let mut out = BTreeMap::new();
        for i in &self.view.instances {
            if i.app.as_str() == app && (i.release != new || i.healthy) {
                *out.entry(self.region_of(&i.node)).or_default() += 1;
            }
        }
        out
    }

    /// Deploys a new release of every app in `apps` at once and steps until all are promoted.
    /// Answers, per app, the region of each new-release instance in the order it was placed.
    /// Checks after every round that no region of any of them serves fewer instances than its
    /// share of the fresh spread, or than it served before the deploy if that was fewer.
    fn roll_out(&mut self, apps: &[&str]) -> Vec<Vec<String>> {
        let releases: Vec<u64> = apps.iter().map(|a| self.deploy(a)).collect();
        let shares: Vec<BTreeMap<String, u32>> = apps
            .iter()
            .map(|a| {
                self.fresh_spread(a)
                    .into_iter()
                    .map(|(r, c)| (r.to_string(), c))
                    .collect()
            })
            .collect();
        let before: Vec<BTreeMap<String, u32>> = apps
            .iter()
            .map(|a| {
                self.spread(a, None)
                    .into_iter()
                    .map(|(r, c)| (r.to_string(), c))
                    .collect()
            })
            .collect();
        let mut placed = vec![Vec::new(); apps.len()];
        for round in 0.. {
            assert!(round < 100, "the rollout does not finish");
            let p = self.round();
            for (k, app) in apps.iter().enumerate() {
                for pl in p.place.iter().filter(|pl| pl.app.as_str() == *app) {
                    assert_eq!(pl.release, releases[k]);
                    placed[k].push(pl.region.to_string());
                }
                let serving = self.serving(app, releases[k]);
                for (region, share) in &shares[k] {
                    let now = serving.get(region.as_str()).copied().unwrap_or(0);
                    let had = before[k].get(region).copied().unwrap_or(0);
                    assert!(
                        now >= had.min(*share),
                        "round {round}: {app} serves {now} in {region}, below its share \
                         {share}: {serving:?}"
                    );
                }
            }
            self.heal();
            if self.settled() {
                break;
            }
        }
        for (k, app) in apps.iter().enumerate() {
            let spread: BTreeMap<String, u32> = self
                .spread(app, Some(releases[k]))
                .into_iter()
                .map(|(r, c)| (r.to_string(), c))
                .collect();
            assert_eq!(spread, shares[k], "{app} after the rollout");
            assert_eq!(
                self.spread(app, None).values().sum::<u32>(),
                self.replicas(app)
            );
        }
        placed
    }

    fn replicas(&self, app: &str) -> u32 {
        let a = self.apps.iter().find(|a| a.demand.app.as_str() == app);
        a.unwrap().replicas
    }
}

fn counts<'a>(list: &[(&'a str, u32)]) -> BTreeMap<&'a str, u32> {
    list.iter().copied().collect()
}

#[test]
fn a_rollout_replaces_one_instance_per_region() {
    let mut sim = Sim::new(&[
        ("fra-1", "eu-fra"),
        ("ams-1", "eu-ams"),
        ("iad-1", "us-iad"),
    ]);
    sim.create("web", &[], 3);
    let one_each = counts(&[("eu-ams", 1), ("eu-fra", 1), ("us-iad", 1)]);
    assert_eq!(sim.spread("web", None), one_each);

    let placed = sim.roll_out(&["web"]);
    assert_eq!(placed[0], ["eu-ams", "eu-fra", "us-iad"]);
    assert_eq!(sim.spread("web", Some(2)), one_each);

    // And again: every deploy keeps the spread.
    let placed = sim.roll_out(&["web"]);
    assert_eq!(placed[0], ["eu-ams", "eu-fra", "us-iad"]);
    assert_eq!(sim.spread("web", Some(3)), one_each);
}

#[test]
fn rollouts_keep_each_region_share_with_two_nodes_per_eu_region() {
    let mut sim = Sim::new(&[
        ("fra-1", "eu-fra"),
        ("fra-2", "eu-fra"),
        ("ams-1", "eu-ams"),
        ("ams-2", "eu-ams"),
        ("iad-1", "us-iad"),
    ]);
    sim.create("eu", &["EU"], 4);
    sim.create("global", &[], 3);
    let eu = counts(&[("eu-ams", 2), ("eu-fra", 2)]);
    let global = counts(&[("eu-ams", 1), ("eu-fra", 1), ("us-iad", 1)]);
    assert_eq!(sim.spread("eu", None), eu);
    assert_eq!(sim.spread("global", None), global);

    for _ in 0..2 {
        let placed = sim.roll_out(&["eu", "global"]);
        assert_eq!(placed[0], ["eu-ams", "eu-fra", "eu-ams", "eu-fra"]);
        assert_eq!(placed[1], ["eu-ams", "eu-fra", "us-iad"]);
        assert_eq!(sim.spread("eu", None), eu);
        assert_eq!(sim.spread("global", None), global);
        // Each new instance took an old one's node too: one per EU node, as before.
        let one_per_node = counts(&[("ams-1", 1), ("ams-2", 1), ("fra-1", 1), ("fra-2", 1)]);
        assert_eq!(sim.per_node("eu"), one_per_node);
    }
}

#[test]
fn a_rollout_returns_a_lopsided_app_to_the_fresh_spread() {
    let mut sim = Sim::new(&[
        ("fra-1", "eu-fra"),
        ("ams-1", "eu-ams"),
        ("iad-1", "us-iad"),
    ]);
    // eu-ams was down when the app was placed: eu-fra and us-iad took its instance.
    sim.view.nodes[1].status = NodeStatus::Down;
    sim.create("web", &[], 4);
    assert_eq!(
        sim.spread("web", None),
        counts(&[("eu-fra", 2), ("us-iad", 2)])
    );
    sim.view.nodes[1].status = NodeStatus::Ready;
    // Nothing moves a running instance...
    let p = sim.round();
    assert!(p.place.is_empty() && p.stop.is_empty());
    // ...but a deploy ends on the spread a fresh plan would choose, eu-ams served first.
    let placed = sim.roll_out(&["web"]);
    assert_eq!(placed[0], ["eu-ams", "eu-fra", "us-iad", "eu-ams"]);
    assert_eq!(
        sim.spread("web", None),
        counts(&[("eu-ams", 2), ("eu-fra", 1), ("us-iad", 1)])
    );
}
