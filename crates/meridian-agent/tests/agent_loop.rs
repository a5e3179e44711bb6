//! The whole agent (`meridian_agent::run`) against a fake control plane and the real Docker
//! engine: assignments become containers, reports reach the control plane, a killed container
//! is noticed through events, a restarted agent adopts its containers, a forgotten node
//! registers again, and unassigned containers go.

mod support;

use std::time::Duration;

use meridian_agent::{AgentConfig, AgentError};
use meridian_api::agent::{Assignment, InstanceReport, InstanceReports};
use meridian_core::app::Probe;
use meridian_core::{HealthCheck, InstanceState};
use support::control_plane::{assignment, FakeControlPlane, REGION};
use support::engine_proxy::EngineProxy;
use support::{
    containers_of, ensure_hello_images, http_get_soon, init_logs, unique_node, Cleanup, IMAGE,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const TOKEN: &str = "agent-secret";

/// A port on loopback where nothing listens: connections are refused at once.
const DEAD_SERVER: &str = "http://127.0.0.1:9";

fn config(node: &str, cp: &FakeControlPlane) -> AgentConfig {
    let servers = vec![DEAD_SERVER.to_string(), cp.url.clone()];
    let mut c = AgentConfig::new(node, REGION, servers, TOKEN);
    c.heartbeat = Duration::from_millis(200);
    c.report_interval = Duration::from_secs(2);
    c.watch_wait = Duration::from_secs(2);
    c.stop_timeout = Duration::from_secs(1);
    // No periodic resync to speak of: everything below must be noticed through Docker events,
    // health verdicts and the ends of creates and removals.
    c.resync_interval = Duration::from_secs(3600);
    c
}

struct Agent {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), AgentError>>,
}

fn start(config: AgentConfig) -> Agent {
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(meridian_agent::run(config, async {
        let _ = stopped.await;
    }));
    Agent { stop, task }
}

impl Agent {
    async fn stop(self) {
        let _ = self.stop.send(());
        let result = tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("the agent stops within 20 s")
            .expect("the agent task did not panic");
        assert!(result.is_ok(), "{result:?}");
    }
}

fn http_check() -> Option<HealthCheck> {
    Some(HealthCheck {
        probe: Probe::Http {
            path: "/health".into(),
        },
        interval_ms: 200,
        timeout_ms: 150,
        grace_ms: 0,
    })
}

fn checked(id: &str, image: &str) -> Assignment {
    Assignment {
        health: http_check(),
        ..assignment(id, image, &[])
    }
}

fn find<'a>(r: Option<&'a InstanceReports>, id: &str) -> Option<&'a InstanceReport> {
    r?.instances.iter().find(|i| i.id == id)
}

fn in_state(r: Option<&InstanceReports>, id: &str, state: InstanceState) -> Option<InstanceReport> {
    find(r, id).filter(|i| i.state == state).cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assignments_become_containers_and_reports() {
    init_logs();
    ensure_hello_images();
    let cp = FakeControlPlane::start(TOKEN).await;
    let node = unique_node("loop");
    let _cleanup = Cleanup(vec![node.clone()]);
    let agent = start(config(&node, &cp));
    let limit = Duration::from_secs(20);

    cp.assign(
        &node,
        vec![
            checked("web-1", IMAGE),
            checked("sick-1", "meridian-hello:unhealthy"),
            assignment("crash-1", IMAGE, &[("HELLO_EXIT", "3")]),
            assignment("ghost-1", "meridian-nope:missing", &[]),
            assignment("plain-1", IMAGE, &[]),
        ],
    );
    let web = cp
        .wait_for(&node, limit, "web-1 healthy", |r| {
            in_state(r, "web-1", InstanceState::Healthy)
        })
        .await;
    let address = web.address.expect("a healthy instance has an address");
    let (status, body) = http_get_soon(&address, "/", Duration::from_secs(5)).await;
    assert_eq!(status, 200);
    assert_eq!(body, "hello from web release 1 instance web-1\n");
    let sick = cp
        .wait_for(&node, limit, "sick-1 unhealthy", |r| {
            in_state(r, "sick-1", InstanceState::Unhealthy)
        })
        .await;
    assert!(sick.detail.unwrap_or_default().contains("500"));
    let crashed = cp
        .wait_for(&node, limit, "crash-1 exited", |r| {
            in_state(r, "crash-1", InstanceState::Exited)
        })
        .await;
    assert_eq!(crashed.exit_code, Some(3));
    cp.wait_for(&node, limit, "ghost-1 image_missing", |r| {
        in_state(r, "ghost-1", InstanceState::ImageMissing)
    })
    .await;
    cp.wait_for(&node, limit, "plain-1 healthy", |r| {
        in_state(r, "plain-1", InstanceState::Healthy)
    })
    .await;
    assert_eq!(
        containers_of(&node).len(),
        4,
        "no container for the missing image"
    );

    // A container without a health check dying: only its Docker events can tell.
    let killed = std::process::Command::new("docker")
        .args(["kill", &format!("meridian-{node}-plain-1")])
        .output()
        .expect("docker kill runs");
    assert!(killed.status.success());
    let exited = cp
        .wait_for(&node, limit, "plain-1 exited after the kill", |r| {
            in_state(r, "plain-1", InstanceState::Exited)
        })
        .await;
    assert_eq!(exited.exit_code, Some(137));

    // A restarted agent adopts what runs instead of starting duplicates.
    let before = sorted(containers_of(&node));
    agent.stop().await;
    assert_eq!(
        sorted(containers_of(&node)),
        before,
        "containers outlive the agent"
    );
    let registrations = cp.registrations(&node);
    let agent = start(config(&node, &cp));
    cp.wait_for(&node, limit, "the new agent's first report", |_| {
        (cp.registrations(&node) > registrations).then_some(())
    })
    .await;
    let generation = cp.assign(
        &node,
        vec![
            checked("sick-1", "meridian-hello:unhealthy"),
            assignment("crash-1", IMAGE, &[("HELLO_EXIT", "3")]),
            checked("web-2", "meridian-hello:v2"),
        ],
    );
    let web2 = cp
        .wait_for(&node, limit, "web-2 healthy", |r| {
            r.filter(|r| r.generation == generation)?;
            in_state(r, "web-2", InstanceState::Healthy)
        })
        .await;
    let (_, body) = http_get_soon(&web2.address.unwrap(), "/", Duration::from_secs(5)).await;
    assert!(body.contains("version 2"), "{body}");
    let after = containers_of(&node);
    assert_eq!(
        after.len(),
        3,
        "sick-1, crash-1 and web-2; web-1 and plain-1 removed"
    );
    let survivors = before.iter().filter(|id| after.contains(id)).count();
    assert_eq!(
        survivors, 2,
        "sick-1 and crash-1 were adopted, not recreated"
    );

    // A control plane that forgot the node gets a fresh registration.
    let registrations = cp.registrations(&node);
    cp.forget(&node);
    cp.wait_for(&node, limit, "a new registration", |_| {
        (cp.registrations(&node) > registrations).then_some(())
    })
    .await;

    // Nothing assigned: every container of the node goes.
    cp.assign(&node, vec![]);
    cp.wait_for(&node, limit, "an empty report", |r| {
        r.filter(|r| r.instances.is_empty()).map(|_| ())
    })
    .await;
    let deadline = tokio::time::Instant::now() + limit;
    while !containers_of(&node).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "containers left behind"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(cp.heartbeats(&node) > 0);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_restart_is_survived() {
    init_logs();
    ensure_hello_images();
    let cp = FakeControlPlane::start(TOKEN).await;
    let node = unique_node("restart");
    let _cleanup = Cleanup(vec![node.clone()]);
    let dir = std::env::temp_dir().join(format!("meridian-agent-{node}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut engine = EngineProxy::new(&dir.join("docker.sock"));
    let mut c = config(&node, &cp);
    c.docker_host = engine.url();
    let limit = Duration::from_secs(20);

    // The agent starts before the engine's socket exists, and waits for it.
    let agent = start(c);
    cp.assign(&node, vec![checked("web-1", IMAGE)]);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(containers_of(&node).is_empty());
    engine.up();
    cp.wait_for(&node, limit, "web-1 healthy", |r| {
        in_state(r, "web-1", InstanceState::Healthy)
    })
    .await;

    // The engine goes away for a while; the agent keeps going and catches up after.
    engine.down();
    let generation = cp.assign(
        &node,
        vec![checked("web-1", IMAGE), assignment("web-2", IMAGE, &[])],
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!agent.task.is_finished(), "the agent survives the outage");
    assert_eq!(
        containers_of(&node).len(),
        1,
        "nothing could be created meanwhile"
    );
    engine.up();
    cp.wait_for(&node, limit, "web-2 healthy after the outage", |r| {
        r.filter(|r| r.generation == generation)?;
        in_state(r, "web-2", InstanceState::Healthy)
    })
    .await;
    assert_eq!(containers_of(&node).len(), 2);

    // Events flow again: web-2 has no health check, so only its events tell of the kill.
    let killed = std::process::Command::new("docker")
        .args(["kill", &format!("meridian-{node}-web-2")])
        .output()
        .expect("docker kill runs");
    assert!(killed.status.success());
    cp.wait_for(&node, limit, "web-2 exited", |r| {
        in_state(r, "web-2", InstanceState::Exited)
    })
    .await;
    agent.stop().await;
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_unknown_region_stops_the_agent_with_a_clear_error() {
    let cp = FakeControlPlane::start(TOKEN).await;
    let node = unique_node("refused");
    let mut c = config(&node, &cp);
    c.region = "nowhere".into();
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        meridian_agent::run(c, std::future::pending()),
    )
    .await
    .expect("gives up at once");
    let err = result.unwrap_err();
    assert!(
        matches!(err, AgentError::Refused { status: 404, .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("no region nowhere"), "{text}");
    assert!(text.contains(&node), "{text}");
}

#[tokio::test]
async fn a_bad_token_stops_the_agent() {
    let cp = FakeControlPlane::start(TOKEN).await;
    let node = unique_node("badtoken");
    let mut c = config(&node, &cp);
    c.token = "wrong".into();
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        meridian_agent::run(c, std::future::pending()),
    )
    .await
    .expect("gives up at once");
    assert!(
        matches!(result, Err(AgentError::Refused { status: 401, .. })),
        "{result:?}"
    );
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}
