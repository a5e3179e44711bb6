use super::*;

fn name(s: &str) -> Name {
    Name::parse(s).unwrap()
}

fn juris(list: &[&str]) -> Vec<Jurisdiction> {
    list.iter()
        .map(|j| Jurisdiction::parse(j).unwrap())
        .collect()
}

/// Regions `eu-fra` (DE), `eu-ams` (NL), `us-iad` (US); no nodes yet.
fn view() -> ClusterView {
    let regions = [("eu-fra", "DE"), ("eu-ams", "NL"), ("us-iad", "US")]
        .iter()
        .map(|(r, c)| (name(r), CountryCode::parse(c).unwrap()))
        .collect();
    ClusterView {
        catalog: JurisdictionCatalog::built_in(),
        regions,
        nodes: Vec::new(),
        instances: Vec::new(),
    }
}

fn node(v: &mut ClusterView, n: &str, region: &str, status: NodeStatus, cpu: u32, mem: u32) {
    v.nodes.push(NodeView {
        name: name(n),
        region: name(region),
        status,
        cpu_millis: cpu,
        memory_mb: mem,
    });
}

fn live(v: &mut ClusterView, id: &str, release: u64, n: &str, healthy: bool, failed: bool) {
    v.instances.push(LiveInstance {
        id: id.to_string(),
        app: name("web"),
        release,
        node: name(n),
        healthy,
        failed,
    });
}

fn web(residency: &[&str], count: u32) -> Demand {
    Demand {
        app: name("web"),
        residency: juris(residency),
        regions: None,
        cpu_millis: 250,
        memory_mb: 128,
        wants: vec![ReleaseWant { release: 1, count }],
    }
}

/// Standard cluster: one big ready node per region.
fn three_regions() -> ClusterView {
    let mut v = view();
    node(&mut v, "fra-1", "eu-fra", NodeStatus::Ready, 4000, 4096);
    node(&mut v, "ams-1", "eu-ams", NodeStatus::Ready, 4000, 4096);
    node(&mut v, "iad-1", "us-iad", NodeStatus::Ready, 64000, 65536);
    v
}

fn regions_of(p: &Plan) -> Vec<&str> {
    let mut r: Vec<&str> = p.place.iter().map(|p| p.region.as_str()).collect();
    r.sort();
    r
}

fn stop_reason<'a>(p: &'a Plan, id: &str) -> &'a str {
    &p.stop.iter().find(|s| s.id == id).unwrap().reason
}

#[test]
fn eu_app_never_lands_in_the_us() {
    let p = plan(&three_regions(), &[web(&["EU"], 6)]);
    assert_eq!(p.place.len(), 6);
    assert!(p.unplaced.is_empty());
    assert!(p.place.iter().all(|pl| pl.country.as_str() != "US"));
    assert_eq!(
        regions_of(&p),
        ["eu-ams"; 3]
            .iter()
            .chain(&["eu-fra"; 3])
            .copied()
            .collect::<Vec<_>>()
    );
}

#[test]
fn spreads_across_regions_then_nodes() {
    let mut v = three_regions();
    node(&mut v, "fra-2", "eu-fra", NodeStatus::Ready, 4000, 4096);
    // Regions take turns in name order; within eu-fra the emptier node goes first.
    let p = plan(&v, &[web(&[], 5)]);
    assert_eq!(
        regions_of(&p),
        ["eu-ams", "eu-ams", "eu-fra", "eu-fra", "us-iad"]
    );
    let fra: Vec<&str> = p
        .place
        .iter()
        .filter(|pl| pl.region.as_str() == "eu-fra")
        .map(|pl| pl.node.as_str())
        .collect();
    assert_eq!(fra.len(), 2);
    assert_ne!(fra[0], fra[1], "both nodes of eu-fra get one");
}

#[test]
fn spread_counts_kept_instances() {
    let mut v = three_regions();
    live(&mut v, "a", 1, "fra-1", true, false);
    live(&mut v, "b", 1, "ams-1", true, false);
    let p = plan(&v, &[web(&[], 3)]);
    assert_eq!(p.keep, ["b", "a"]);
    assert_eq!(regions_of(&p), ["us-iad"]);
}

#[test]
fn capacity_is_respected() {
    let mut v = view();
    node(&mut v, "fra-1", "eu-fra", NodeStatus::Ready, 1000, 4096);
    node(&mut v, "fra-2", "eu-fra", NodeStatus::Ready, 600, 4096);
    let mut d = web(&["EU"], 5);
    d.cpu_millis = 400;
    let p = plan(&v, &[d]);
    let on = |n: &str| p.place.iter().filter(|pl| pl.node.as_str() == n).count();
    assert_eq!((on("fra-1"), on("fra-2")), (2, 1));
    assert_eq!(p.unplaced.len(), 1);
    assert_eq!(p.unplaced[0].count, 2);
    assert_eq!(
        p.unplaced[0].reason,
        "no ready node with capacity in jurisdictions [EU] (2 nodes in policy: 2 without enough cpu)"
    );
}

#[test]
fn earlier_demands_and_kept_instances_take_capacity_first() {
    let mut v = view();
    node(&mut v, "fra-1", "eu-fra", NodeStatus::Ready, 1000, 1000);
    let mut api = web(&[], 1);
    api.app = name("api");
    api.memory_mb = 600;
    let mut d = web(&[], 2);
    d.memory_mb = 600;
    live(&mut v, "w1", 1, "fra-1", true, false);
    // web's kept instance (600) leaves 400 although api comes first: neither fits.
    let p = plan(&v, &[api, d]);
    assert!(p.place.is_empty());
    assert_eq!(p.keep, ["w1"]);
    assert_eq!(
        p.unplaced
            .iter()
            .map(|u| u.app.as_str())
            .collect::<Vec<_>>(),
        ["api", "web"]
    );
    assert!(p.unplaced[0]
        .reason
        .ends_with("(1 node in policy: 1 without enough memory)"));
}

#[test]
fn down_node_instances_are_stopped_and_replaced() {
    let mut v = three_regions();
    v.nodes[0].status = NodeStatus::Down;
    live(&mut v, "a", 1, "fra-1", true, false);
    live(&mut v, "b", 1, "ams-1", true, false);
    let p = plan(&v, &[web(&["EU"], 2)]);
    assert_eq!(p.keep, ["b"]);
    assert_eq!(stop_reason(&p, "a"), "node fra-1 is down");
    assert_eq!(regions_of(&p), ["eu-ams"]);
}

#[test]
fn outside_policy_failed_and_unwanted_instances_are_stopped() {
    let mut v = three_regions();
    live(&mut v, "us", 1, "iad-1", true, false);
    live(&mut v, "bad", 1, "fra-1", false, true);
    live(&mut v, "old", 0, "ams-1", true, false);
    live(&mut v, "lost", 1, "nowhere-9", true, false);
    let mut d = web(&["EU"], 1);
    // Residency wins over availability: the only healthy instance of release 1 still stops.
    let p = plan(&v, std::slice::from_ref(&d));
    assert!(p.keep.is_empty());
    assert_eq!(
        stop_reason(&p, "us"),
        "region us-iad (US) is outside residency [EU]"
    );
    assert_eq!(stop_reason(&p, "bad"), "instance failed");
    assert_eq!(stop_reason(&p, "old"), "release 0 is no longer wanted");
    assert_eq!(stop_reason(&p, "lost"), "node nowhere-9 is unknown");
    assert_eq!(p.place.len(), 1);

    d.residency.clear();
    d.regions = Some(vec![name("eu-ams")]);
    let p = plan(&v, &[d]);
    assert_eq!(
        stop_reason(&p, "us"),
        "region us-iad is not one of the pinned regions [eu-ams]"
    );
    assert_eq!(p.place[0].node.as_str(), "ams-1");
}

#[test]
fn scaling_down_keeps_healthy_and_spread() {
    let mut v = three_regions();
    live(&mut v, "f1", 1, "fra-1", true, false);
    live(&mut v, "f2", 1, "fra-1", true, false);
    live(&mut v, "a1", 1, "ams-1", false, false);
    live(&mut v, "a2", 1, "ams-1", true, false);
    let p = plan(&v, &[web(&["EU"], 2)]);
    let mut keep = p.keep.clone();
    keep.sort();
    assert_eq!(keep, ["a2", "f1"]);
    assert_eq!(stop_reason(&p, "a1"), "scaled down");
    assert_eq!(stop_reason(&p, "f2"), "scaled down");
    assert!(p.place.is_empty());
}

#[test]
fn draining_node_is_left_once_its_replacement_is_healthy() {
    let mut v = three_regions();
    v.nodes[0].status = NodeStatus::Draining;
    live(&mut v, "old", 1, "fra-1", true, false);
    let d = web(&["EU"], 1);

    // 1: the migrating instance stays; a replacement is placed elsewhere.
    let p = plan(&v, std::slice::from_ref(&d));
    assert_eq!(p.keep, ["old"]);
    assert_eq!(regions_of(&p), ["eu-ams"]);

    // 2: the replacement runs but is not healthy yet: both stay, nothing new.
    live(&mut v, "new", 1, "ams-1", false, false);
    let p = plan(&v, std::slice::from_ref(&d));
    assert_eq!(p.keep, ["new", "old"]);
    assert!(p.place.is_empty() && p.stop.is_empty());

    // 3: the replacement is healthy: the migrating instance stops.
    v.instances[1].healthy = true;
    let p = plan(&v, &[d]);
    assert_eq!(p.keep, ["new"]);
    assert_eq!(
        stop_reason(&p, "old"),
        "node fra-1 is draining; replacement healthy"
    );
}

#[test]
fn eu_app_without_eu_capacity_is_unplaced_with_reasons() {
    let mut v = three_regions();
    v.nodes[0].status = NodeStatus::Down;
    v.nodes[1].status = NodeStatus::Draining;
    let p = plan(&v, &[web(&["EU"], 2)]);
    assert!(p.place.is_empty());
    assert_eq!(p.unplaced.len(), 1);
    let u = &p.unplaced[0];
    assert_eq!((u.release, u.count), (1, 2));
    assert!(u
        .reason
        .contains("no ready node with capacity in jurisdictions [EU]"));
    assert!(
        u.reason
            .ends_with("(2 nodes in policy: 1 down, 1 draining)"),
        "{}",
        u.reason
    );

    let mut d = web(&["EU", "JP"], 1);
    d.regions = Some(vec![name("ap-tyo")]);
    let p = plan(&v, &[d]);
    assert_eq!(
        p.unplaced[0].reason,
        "no ready node with capacity in jurisdictions [EU, JP] in regions [ap-tyo] (no node in policy)"
    );
}

#[test]
fn instances_of_apps_without_demand_are_untouched() {
    let mut v = three_regions();
    live(&mut v, "other", 1, "fra-1", true, false);
    v.instances[0].app = name("other");
    let p = plan(&v, &[web(&[], 1)]);
    assert!(p.keep.is_empty() && p.stop.is_empty());
    assert_eq!(p.place.len(), 1);
}

#[test]
fn eligibility_gives_reasons() {
    let mut v = three_regions();
    node(&mut v, "fra-2", "eu-fra", NodeStatus::Down, 4000, 4096);
    node(&mut v, "ams-2", "eu-ams", NodeStatus::Draining, 4000, 4096);
    node(&mut v, "fra-3", "eu-fra", NodeStatus::Ready, 200, 64);
    node(&mut v, "xxx-1", "eu-xxx", NodeStatus::Ready, 4000, 4096);
    node(&mut v, "fra-4", "eu-fra", NodeStatus::Ready, 300, 4096);
    live(&mut v, "a", 1, "fra-4", true, false);
    let mut d = web(&["EU"], 1);
    d.cpu_millis = 200;
    let verdicts = eligibility(&v, &[], &d);
    let got: Vec<(&str, Result<(), &str>)> = verdicts
        .iter()
        .map(|nv| {
            (
                nv.node.as_str(),
                nv.verdict.as_ref().map(|_| ()).map_err(|e| e.as_str()),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("fra-1", Ok(())),
            ("ams-1", Ok(())),
            ("iad-1", Err("region us-iad (US) is outside residency [EU]")),
            ("fra-2", Err("node is down")),
            ("ams-2", Err("node is draining")),
            ("fra-3", Err("not enough memory: needs 128 MiB, 64 free")),
            ("xxx-1", Err("unknown region eu-xxx")),
            ("fra-4", Err("not enough cpu: needs 200 millis, 100 free")),
        ]
    );
    d.regions = Some(vec![name("eu-fra")]);
    assert_eq!(
        eligibility(&v, &[], &d)[1].verdict,
        Err("region eu-ams is not one of the pinned regions [eu-fra]".to_string())
    );
}

#[test]
fn plan_is_deterministic_and_ignores_instance_order() {
    let mut v = three_regions();
    for (k, n) in ["fra-1", "ams-1", "iad-1", "fra-1", "ams-1"]
        .iter()
        .enumerate()
    {
        live(&mut v, &format!("i{k}"), 1, n, k % 2 == 0, false);
    }
    let d = [web(&["EU"], 3)];
    let a = plan(&v, &d);
    assert_eq!(a, plan(&v, &d));
    v.instances.reverse();
    assert_eq!(a, plan(&v, &d));
}
