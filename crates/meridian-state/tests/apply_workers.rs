//! The worker commands on a real SQLite file: a scheduling round outside an app's policy is
//! refused whole and changes nothing; generations move; reports only land on their own node;
//! a halted release gives the app back the serving release's config.

use std::collections::BTreeMap;

use meridian_core::{InstanceState, NodeStatus, ReleaseStatus};
use meridian_state::{Applied, Command, Observed, Refusal, ReleaseUpdate, Schedule, StateReader};
use meridian_state::{NewInstance, StopInstance};
use sqlx::SqlitePool;

mod support;

use support::{create_region, n, run};

async fn state() -> (tempfile::TempDir, SqlitePool, StateReader) {
    let (dir, pool) = support::state().await;
    let reader = StateReader::new(pool.clone(), std::sync::Arc::new(Default::default()));
    (dir, pool, reader)
}

fn register(name: &str, region: &str) -> Command {
    Command::RegisterNode {
        name: n(name),
        region: n(region),
        cpu_millis: 1000,
        memory_mb: 1024,
        labels: BTreeMap::new(),
        advertise_host: "127.0.0.1".into(),
        at: 1,
    }
}

fn place(id: &str, node: &str, release: u64) -> NewInstance {
    NewInstance {
        id: id.into(),
        app: n("web"),
        release,
        node: n(node),
    }
}

async fn setup(pool: &SqlitePool) {
    for (name, cc) in [("eu-fra", "DE"), ("us-iad", "US")] {
        create_region(pool, name, cc).await;
    }
    let refused = run(pool, register("x-1", "nowhere")).await;
    assert!(
        matches!(refused, Err(Refusal::Invalid { .. })),
        "{refused:?}"
    );
    run(pool, register("fra-1", "eu-fra")).await.unwrap();
    run(pool, register("iad-1", "us-iad")).await.unwrap();
    let spec = support::app("web", &["EU"], None);
    run(
        pool,
        Command::CreateApp {
            spec,
            at: 1,
            default_residency: false,
        },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_round_outside_policy_is_refused_whole() {
    let (_dir, pool, reader) = state().await;
    setup(&pool).await;
    let round = Schedule {
        place: vec![place("a", "fra-1", 1), place("b", "iad-1", 1)],
        ..Default::default()
    };
    let refused = run(&pool, Command::Schedule { round, at: 2 }).await;
    assert!(
        matches!(&refused, Err(Refusal::Conflict { message }) if message.contains("outside its policy")),
        "{refused:?}"
    );
    assert!(reader.running_instances().await.unwrap().is_empty());
    assert_eq!(reader.node("fra-1").await.unwrap().unwrap().generation, 0);

    // A release that does not exist, or a node that is not ready, is refused too.
    let round = Schedule {
        place: vec![place("a", "fra-1", 7)],
        ..Default::default()
    };
    assert!(run(&pool, Command::Schedule { round, at: 2 })
        .await
        .is_err());
    let down = Command::SetNodeStatus {
        name: n("fra-1"),
        status: NodeStatus::Down,
        at: 2,
    };
    run(&pool, down).await.unwrap();
    let round = Schedule {
        place: vec![place("a", "fra-1", 1)],
        ..Default::default()
    };
    assert!(run(
        &pool,
        Command::Schedule {
            round: round.clone(),
            at: 2
        }
    )
    .await
    .is_err());

    // Back up (a new registration), the same round lands and bumps the generation.
    run(&pool, register("fra-1", "eu-fra")).await.unwrap();
    run(&pool, Command::Schedule { round, at: 3 })
        .await
        .unwrap();
    let fra = reader.node("fra-1").await.unwrap().unwrap();
    assert_eq!((fra.status, fra.generation), (NodeStatus::Ready, 1));

    // Reports land only from the instance's own node.
    let report = |node: &str| Command::ReportInstances {
        node: n(node),
        reports: vec![Observed {
            id: "a".into(),
            state: InstanceState::Healthy,
            exit_code: None,
            address: Some("127.0.0.1:1".into()),
            detail: None,
        }],
        at: 4,
    };
    run(&pool, report("iad-1")).await.unwrap();
    assert_eq!(
        reader.running_instances().await.unwrap()[0].state,
        InstanceState::Starting
    );
    run(&pool, report("fra-1")).await.unwrap();
    assert_eq!(
        reader.running_instances().await.unwrap()[0].state,
        InstanceState::Healthy
    );

    // Stopping bumps the generation again.
    let round = Schedule {
        stop: vec![StopInstance {
            id: "a".into(),
            reason: "scaled down".into(),
        }],
        ..Default::default()
    };
    run(&pool, Command::Schedule { round, at: 5 })
        .await
        .unwrap();
    assert!(reader.running_instances().await.unwrap().is_empty());
    assert_eq!(reader.node("fra-1").await.unwrap().unwrap().generation, 2);
}

#[tokio::test]
async fn a_halted_release_gives_the_app_back_its_serving_config() {
    let (_dir, pool, reader) = state().await;
    setup(&pool).await;
    let deploy = Command::Deploy {
        app: n("web"),
        image: "web:2".into(),
        deadline_s: 60,
        at: 2,
    };
    let Ok(Applied::Release(r)) = run(&pool, deploy).await else {
        panic!("deploy refused");
    };
    assert_eq!((r.number, r.status), (2, ReleaseStatus::Rolling));
    assert_eq!(
        reader.app("web").await.unwrap().unwrap().spec.image,
        "web:2"
    );
    let round = Schedule {
        releases: vec![ReleaseUpdate {
            app: n("web"),
            number: 2,
            status: ReleaseStatus::Halted,
            reason: Some("failed".into()),
        }],
        ..Default::default()
    };
    run(&pool, Command::Schedule { round, at: 3 })
        .await
        .unwrap();
    assert_eq!(
        reader.app("web").await.unwrap().unwrap().spec.image,
        "web:1"
    );
    let releases = reader.releases(Some("web")).await.unwrap();
    let statuses: Vec<_> = releases.iter().map(|r| (r.number, r.status)).collect();
    assert_eq!(
        statuses,
        vec![(2, ReleaseStatus::Halted), (1, ReleaseStatus::Active)]
    );
    let missing = Command::Deploy {
        app: n("nope"),
        image: "x:1".into(),
        deadline_s: 60,
        at: 4,
    };
    assert!(matches!(
        run(&pool, missing).await,
        Err(Refusal::NotFound { .. })
    ));
}

#[tokio::test]
async fn forget_lets_go_only_of_what_still_qualifies() {
    use meridian_state::{nodes, releases, routing, tokens, Forget, Forgotten, TokenRecord};
    let (_dir, pool, reader) = state().await;
    setup(&pool).await;
    for (n, image) in [(2, "web:2"), (3, "web:3")] {
        let deploy = Command::Deploy {
            app: self::n("web"),
            image: image.into(),
            deadline_s: 60,
            at: n,
        };
        run(&pool, deploy).await.unwrap();
    }
    // fra-1 goes down at 10, iad-1 goes down and comes back.
    for (node, status) in [
        ("fra-1", NodeStatus::Down),
        ("iad-1", NodeStatus::Down),
        ("iad-1", NodeStatus::Ready),
    ] {
        let cmd = Command::SetNodeStatus {
            name: n(node),
            status,
            at: 10,
        };
        run(&pool, cmd).await.unwrap();
    }
    for (name, at) in [("old", 5), ("fresh", 50)] {
        let cmd = Command::RegisterRouter {
            name: n(name),
            region: n("eu-fra"),
            url: "http://127.0.0.1:9".into(),
            at,
        };
        run(&pool, cmd).await.unwrap();
    }
    for (id, expires_at) in [("expired", 5), ("valid", 1_000)] {
        let token = TokenRecord {
            id: id.into(),
            role: meridian_core::Role::Viewer,
            apps: None,
            created_at: 1,
            expires_at,
            revoked_at: None,
        };
        run(&pool, Command::CreateToken { token }).await.unwrap();
    }
    // The leader's picks, some of which no longer qualify by the time the command applies:
    // release 1 serves, release 3 rolls out, iad-1 is up, "fresh" registered after the
    // cut-off, "valid" has not expired.
    let forget = Forget {
        audit_through: 0,
        releases: vec![(n("web"), 1), (n("web"), 2), (n("web"), 3)],
        nodes: vec![n("fra-1"), n("iad-1")],
        routers: vec![n("old"), n("fresh")],
        gone_before: 20,
        tokens: vec!["expired".into(), "valid".into()],
        tokens_before: 20,
    };
    let done = run(&pool, Command::Forget(forget)).await.unwrap();
    assert_eq!(
        done,
        Applied::Forgotten(Forgotten {
            audit: 0,
            releases: 1,
            nodes: 1,
            routers: 1,
            tokens: 1,
        })
    );
    let mut c = pool.acquire().await.unwrap();
    let left: Vec<u64> = releases::releases(&mut c, Some("web"))
        .await
        .unwrap()
        .iter()
        .map(|r| r.number)
        .collect();
    assert_eq!(left, vec![3, 1]);
    assert!(nodes::node(&mut c, "fra-1").await.unwrap().is_none());
    assert!(nodes::node(&mut c, "iad-1").await.unwrap().is_some());
    let routers: Vec<String> = routing::routers(&mut c)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(routers, vec!["fresh".to_string()]);
    assert!(tokens::token(&mut c, "expired").await.unwrap().is_none());
    assert!(tokens::token(&mut c, "valid").await.unwrap().is_some());
    drop(c);
    assert!(reader.running_instances().await.unwrap().is_empty());
}

fn set_drain(name: &str, drain: bool, at: u64) -> Command {
    Command::SetNodeDrain {
        name: n(name),
        drain,
        at,
    }
}

fn set_status(name: &str, status: NodeStatus, at: u64) -> Command {
    Command::SetNodeStatus {
        name: n(name),
        status,
        at,
    }
}

/// A drain is kept apart from whether the node answers: it outlives a restart of the agent
/// and a silence, and only an undrain ends it.
#[tokio::test]
async fn a_drain_lasts_through_silence_and_restart_until_undrained() {
    let (_d, pool, reader) = state().await;
    setup(&pool).await;
    let node = || async { reader.node("fra-1").await.unwrap().unwrap() };
    let steps: Vec<(Command, NodeStatus, bool)> = vec![
        (set_drain("fra-1", true, 2), NodeStatus::Draining, true),
        // The agent restarts within its grace: it registers again.
        (register("fra-1", "eu-fra"), NodeStatus::Draining, true),
        // It falls silent, then heartbeats again.
        (
            set_status("fra-1", NodeStatus::Down, 3),
            NodeStatus::Down,
            true,
        ),
        (
            set_status("fra-1", NodeStatus::Ready, 4),
            NodeStatus::Draining,
            true,
        ),
        // Silent again, and registers after the host came back.
        (
            set_status("fra-1", NodeStatus::Down, 5),
            NodeStatus::Down,
            true,
        ),
        (register("fra-1", "eu-fra"), NodeStatus::Draining, true),
        // Undrained while down: it comes back ready.
        (
            set_status("fra-1", NodeStatus::Down, 6),
            NodeStatus::Down,
            true,
        ),
        (set_drain("fra-1", false, 7), NodeStatus::Down, false),
        (
            set_status("fra-1", NodeStatus::Ready, 8),
            NodeStatus::Ready,
            false,
        ),
        // Undrained twice, drained by an entry written before drains were their own command.
        (set_drain("fra-1", false, 9), NodeStatus::Ready, false),
        (
            set_status("fra-1", NodeStatus::Draining, 10),
            NodeStatus::Draining,
            true,
        ),
        (set_drain("fra-1", false, 11), NodeStatus::Ready, false),
    ];
    for (i, (cmd, status, drain)) in steps.into_iter().enumerate() {
        let out = run(&pool, cmd).await;
        assert!(
            matches!(&out, Ok(Applied::Node(n)) if n.status == status && n.drain == drain),
            "step {i}: {out:?}"
        );
        let stored = node().await;
        assert_eq!((stored.status, stored.drain), (status, drain), "step {i}");
    }
    let before = node().await;
    let unknown = run(&pool, set_drain("nope-1", false, 12)).await;
    assert!(
        matches!(&unknown, Err(Refusal::NotFound { what, .. }) if what == "node"),
        "{unknown:?}"
    );
    assert_eq!(node().await, before);
}

#[tokio::test]
async fn unplaced_records_land_only_for_apps_that_exist() {
    let (_dir, pool, reader) = state().await;
    setup(&pool).await;
    let unplaced = |app: &str| meridian_state::AppUnplaced {
        app: n(app),
        unplaced: vec![meridian_core::schedule::Unplaced {
            app: n(app),
            release: 1,
            count: 1,
            reason: "no ready node with capacity in jurisdictions [EU]".into(),
        }],
    };
    // Planned while `old` existed, committed after it was deleted (or never created).
    let round = Schedule {
        unplaced: vec![unplaced("web"), unplaced("old")],
        ..Default::default()
    };
    run(&pool, Command::Schedule { round, at: 2 })
        .await
        .unwrap();
    let apps: Vec<String> = reader
        .unplaced()
        .await
        .unwrap()
        .into_iter()
        .map(|(app, _)| app)
        .collect();
    assert_eq!(apps, vec!["web".to_string()]);
}
