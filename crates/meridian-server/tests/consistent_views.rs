//! Views built from several reads while writes land: each must show one applied state.
//!
//! A single-server Raft node applies a steady stream of app creates, placements, health
//! reports, deploys and deletes. Meanwhile the route table's rows and the reconcile round's
//! view are built again and again, each through one `ReadSnapshot`, and checked for things
//! no applied state contains: an instance of an app the same view does not hold, or an app
//! whose image is not its newest live release's.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use meridian_core::{AppSpec, CountryCode, InstanceState, Name, Region};
use meridian_server::raft_network::HttpNetwork;
use meridian_server::reconcile::{read_round, RoundView, World};
use meridian_server::routes::routing::RouteRows;
use meridian_state::{Command, MemberNode, NewInstance, Node, Observed, RaftSettings, Schedule};

const APPS: usize = 6;

fn n(s: &str) -> Name {
    Name::parse(s).unwrap()
}

fn spec(name: &str, image: &str) -> AppSpec {
    AppSpec {
        name: n(name),
        image: image.into(),
        replicas: 1,
        port: 80,
        residency: Vec::new(),
        regions: None,
        env: Default::default(),
        health: None,
        cpu_millis: 10,
        memory_mb: 16,
        origin_bound: Vec::new(),
        domains: Vec::new(),
    }
}

async fn start(dir: &std::path::Path) -> Node {
    let node = meridian_state::open(
        dir,
        1,
        &RaftSettings::default(),
        HttpNetwork::new("s", &meridian_tls::config::web_client_config(&[]).unwrap()).unwrap(),
    )
    .await
    .unwrap();
    let member = MemberNode {
        addr: "http://127.0.0.1:9".into(),
        region: None,
    };
    node.raft
        .initialize(BTreeMap::from([(1, member)]))
        .await
        .unwrap();
    node.raft
        .wait(Some(Duration::from_secs(10)))
        .current_leader(1, "leader")
        .await
        .unwrap();
    node
}

async fn write(node: &Node, cmd: Command) {
    let out = node.proposer.propose(cmd.clone()).await.unwrap();
    assert!(out.is_ok(), "{cmd:?} refused: {out:?}");
}

/// One app's life: created, placed, healthy, deployed, deleted.
async fn churn(node: Node, stop: Arc<AtomicBool>) -> u64 {
    write(
        &node,
        Command::CreateRegion {
            region: Region {
                name: n("r1"),
                country: CountryCode::parse("DE").unwrap(),
                latitude: 50.0,
                longitude: 8.0,
            },
            at: 1,
        },
    )
    .await;
    write(
        &node,
        Command::RegisterNode {
            name: n("n1"),
            region: n("r1"),
            cpu_millis: 1_000_000,
            memory_mb: 1_000_000,
            labels: Default::default(),
            advertise_host: "127.0.0.1".into(),
            at: 1,
        },
    )
    .await;
    let mut cycles = 0;
    while !stop.load(Ordering::Relaxed) {
        let app = format!("a{}", cycles % APPS as u64);
        let id = format!("{cycles:016x}");
        write(
            &node,
            Command::CreateApp {
                spec: spec(&app, "img:1"),
                at: 2,
                default_residency: false,
            },
        )
        .await;
        let round = Schedule {
            place: vec![NewInstance {
                id: id.clone(),
                app: n(&app),
                release: 1,
                node: n("n1"),
            }],
            ..Schedule::default()
        };
        write(&node, Command::Schedule { round, at: 3 }).await;
        let healthy = Observed {
            id,
            state: InstanceState::Healthy,
            exit_code: None,
            address: Some("127.0.0.1:1".into()),
            detail: None,
        };
        write(
            &node,
            Command::ReportInstances {
                node: n("n1"),
                reports: vec![healthy],
                at: 4,
            },
        )
        .await;
        write(
            &node,
            Command::Deploy {
                app: n(&app),
                image: "img:2".into(),
                deadline_s: 60,
                at: 5,
            },
        )
        .await;
        write(
            &node,
            Command::DeleteApp {
                name: n(&app),
                at: 6,
            },
        )
        .await;
        cycles += 1;
    }
    cycles
}

fn check_round(v: &RoundView) -> Result<(), String> {
    for i in &v.instances {
        if !v.apps.contains_key(&i.app) {
            return Err(format!(
                "index {}: instance {} of app {} the view does not hold",
                v.index, i.id, i.app
            ));
        }
        let newest = v.releases.get(&i.app).and_then(|r| r.first());
        if newest.is_none_or(|r| r.number < i.release) {
            return Err(format!(
                "index {}: instance {} runs release {} of {}, newer than its newest {:?}",
                v.index,
                i.id,
                i.release,
                i.app,
                newest.map(|r| r.number)
            ));
        }
    }
    for (name, app) in &v.apps {
        let newest = v.releases.get(name).and_then(|r| r.first());
        if newest.is_none_or(|r| r.image != app.image) {
            return Err(format!(
                "index {}: app {name} runs {} but its newest live release is {:?}",
                v.index,
                app.image,
                newest.map(|r| (r.number, &r.image))
            ));
        }
    }
    Ok(())
}

fn check_routes(rows: &RouteRows) -> Result<(), String> {
    let apps: BTreeSet<&str> = rows.apps.iter().map(|a| a.spec.name.as_str()).collect();
    for (id, app, ..) in &rows.instances {
        if !apps.contains(app.as_str()) {
            return Err(format!(
                "index {}: routable instance {id} of app {app} the table does not hold",
                rows.applied
            ));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_built_during_writes_show_one_applied_state() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(churn(node.clone(), stop.clone()));
    let names: BTreeSet<Name> = (0..APPS).map(|i| n(&format!("a{i}"))).collect();
    let (mut views, mut indexes) = (0, BTreeSet::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    let mut failures = Vec::new();
    while tokio::time::Instant::now() < deadline && failures.is_empty() {
        let mut snap = node.reader.snapshot().await.unwrap();
        let mut world = World::load(&mut snap).await.unwrap();
        let round = read_round(&mut snap, &mut world, &names).await.unwrap();
        let rows = RouteRows::read(&mut snap).await.unwrap();
        assert_eq!(round.index, snap.applied());
        assert_eq!(rows.applied, snap.applied());
        drop(snap);
        failures.extend(check_round(&round).err());
        failures.extend(check_routes(&rows).err());
        indexes.insert(round.index);
        views += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let cycles = writer.await.unwrap();
    node.shutdown().await;
    assert!(failures.is_empty(), "inconsistent views: {failures:?}");
    // The check means something only if the views saw the state move under them.
    assert!(cycles >= 20, "only {cycles} write cycles ran");
    assert!(
        indexes.len() >= 20,
        "only {} distinct applied indexes among {views} views",
        indexes.len()
    );
    eprintln!(
        "{views} views at {} applied indexes during {cycles} write cycles, all consistent",
        indexes.len()
    );
}
