//! [`DockerRuntime`] against the real Docker engine, with the `meridian-hello` image (built by
//! `deploy/images/hello-image.sh` when missing). Every container is removed at the end, also
//! when a test fails.

mod support;

use std::time::Duration;

use futures::StreamExt;
use meridian_agent::{
    ContainerEvent, ContainerRuntime, ContainerSpec, ContainerStatus, DockerRuntime, RuntimeError,
};
use support::control_plane::assignment;
use support::{containers_of, ensure_hello_images, http_get_soon, unique_node, Cleanup, IMAGE};

/// The instance name of the container that proves an event subscription live.
const PROBE: &str = "probe";

fn docker() -> DockerRuntime {
    DockerRuntime::connect("unix:///var/run/docker.sock", Duration::from_secs(2))
        .expect("the Docker socket is there")
}

type Events = tokio::sync::mpsc::UnboundedReceiver<Result<ContainerEvent, RuntimeError>>;

/// `rt`'s event stream for `node`, once it is live, and the task forwarding it.
async fn live_events(rt: &DockerRuntime, node: &str) -> (Events, tokio::task::JoinHandle<()>) {
    // The subscription is made on the first poll: poll from a task of its own.
    let mut stream = rt.events(node);
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let forward = tokio::spawn(async move {
        while let Some(ev) = stream.next().await {
            if tx.send(ev).is_err() {
                break;
            }
        }
    });
    // It is live once it delivers an event: until then, a probe container of the node makes
    // some (created and removed again).
    let probe = ContainerSpec::for_assignment(node, &assignment(PROBE, IMAGE, &[]));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let probe_id = rt.create(&probe).await.expect("probe created");
        rt.remove(&probe_id).await.expect("probe removed");
        let round = tokio::time::Instant::now() + Duration::from_millis(200);
        if let Ok(ev) = tokio::time::timeout_at(round, events.recv()).await {
            let ev = ev.expect("stream open").expect("event");
            assert_eq!(ev.instance.as_deref(), Some(PROBE), "{ev:?}");
            return (events, forward);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the event subscription delivered nothing within 10 s"
        );
    }
}

#[tokio::test]
async fn runs_a_labelled_container_that_answers_on_its_published_port() {
    ensure_hello_images();
    let node = unique_node("run");
    let other = unique_node("other");
    let _cleanup = Cleanup(vec![node.clone(), other.clone()]);
    let rt = docker();

    let spec = ContainerSpec::for_assignment(&node, &assignment("i1", IMAGE, &[]));
    rt.ensure_image(IMAGE, false).await.expect("image present");
    let id = rt.create(&spec).await.expect("created");
    rt.start(&id).await.expect("started");
    // Another node's container on the same engine.
    let theirs = ContainerSpec::for_assignment(&other, &assignment("i1", IMAGE, &[]));
    let their_id = rt.create(&theirs).await.expect("created");

    let mine = rt.list(&node).await.expect("listed");
    assert_eq!(mine.len(), 1, "{mine:#?}");
    let c = &mine[0];
    assert_eq!(c.id, id);
    assert_eq!(c.name, format!("meridian-{node}-i1"));
    assert_eq!(c.status, ContainerStatus::Running);
    assert_eq!(c.instance(), Some("i1"));
    assert_eq!(c.node(), Some(node.as_str()));
    assert_eq!(c.release(), Some(1));
    assert!(c.ip.is_some(), "a bridge address: {c:?}");
    let port = c.host_port.expect("published");

    let (status, body) =
        http_get_soon(&format!("127.0.0.1:{port}"), "/", Duration::from_secs(10)).await;
    assert_eq!(status, 200);
    assert_eq!(body, "hello from web release 1 instance i1\n");
    // And directly on the container's own address, as the health checks probe it.
    let direct = format!("{}:8080", c.ip.unwrap());
    let (status, _) = http_get_soon(&direct, "/health", Duration::from_secs(10)).await;
    assert_eq!(status, 200);

    let theirs_listed = rt.list(&other).await.expect("listed");
    assert_eq!(theirs_listed.len(), 1);
    assert_eq!(theirs_listed[0].id, their_id);
    assert_eq!(theirs_listed[0].status, ContainerStatus::Created);

    // The deterministic name makes a repeated create collide instead of duplicating.
    assert!(matches!(
        rt.create(&spec).await,
        Err(RuntimeError::Conflict(_))
    ));

    rt.remove(&id).await.expect("removed");
    assert!(rt.list(&node).await.expect("listed").is_empty());
    rt.remove(&id).await.expect("removing twice is fine");
    assert_eq!(containers_of(&other), [their_id]);
}

#[tokio::test]
async fn agents_of_two_clusters_on_one_engine_never_see_each_others_containers() {
    ensure_hello_images();
    let node = unique_node("shared");
    let _cleanup = Cleanup(vec![node.clone()]);
    let blue = docker().scoped_to(Some("blue".into()));
    let green = docker().scoped_to(Some("green".into()));
    let unscoped = docker();
    blue.ensure_image(IMAGE, false)
        .await
        .expect("image present");

    // The same node name and instance in each: only the cluster label tells them apart.
    let blue_spec = ContainerSpec::for_assignment(&node, &assignment("b1", IMAGE, &[]));
    let blue_id = blue.create(&blue_spec).await.expect("created");
    let green_spec = ContainerSpec::for_assignment(&node, &assignment("g1", IMAGE, &[]));
    let green_id = green.create(&green_spec).await.expect("created");
    let plain_spec = ContainerSpec::for_assignment(&node, &assignment("p1", IMAGE, &[]));
    let plain_id = unscoped.create(&plain_spec).await.expect("created");

    let ids = |list: Vec<meridian_agent::ContainerInfo>| -> Vec<String> {
        list.into_iter().map(|c| c.id).collect()
    };
    assert_eq!(
        ids(blue.list(&node).await.expect("listed")),
        [blue_id.as_str()]
    );
    assert_eq!(
        ids(green.list(&node).await.expect("listed")),
        [green_id.as_str()]
    );
    assert_eq!(
        ids(unscoped.list(&node).await.expect("listed")),
        [plain_id.as_str()]
    );
    let labels = &blue.list(&node).await.expect("listed")[0].labels;
    assert_eq!(
        labels.get("meridian.cluster").map(String::as_str),
        Some("blue")
    );

    // Events of another cluster's containers do not reach this one's stream: blue's start
    // and removal happen before green's marker, and the engine sends events in order.
    let (mut green_events, forward) = live_events(&green, &node).await;
    blue.start(&blue_id).await.expect("started");
    blue.remove(&blue_id).await.expect("removed");
    let marker = ContainerSpec::for_assignment(&node, &assignment("marker", IMAGE, &[]));
    let marker_id = green.create(&marker).await.expect("created");
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), green_events.recv())
            .await
            .expect("the marker's event within 10 s")
            .expect("stream open")
            .expect("event");
        assert_ne!(ev.container, blue_id, "green saw blue's event: {ev:?}");
        if ev.container == marker_id {
            break;
        }
    }
    forward.abort();
}

#[tokio::test]
async fn a_missing_image_is_image_missing() {
    ensure_hello_images();
    let node = unique_node("missing");
    let _cleanup = Cleanup(vec![node.clone()]);
    let rt = docker();
    let image = "meridian-nope:missing";
    let err = rt.ensure_image(image, false).await.unwrap_err();
    assert!(matches!(err, RuntimeError::ImageMissing { .. }), "{err:?}");
    // With --registry a pull is tried; there is no registry here, so it fails the same way.
    let err = rt.ensure_image(image, true).await.unwrap_err();
    assert!(matches!(err, RuntimeError::ImageMissing { .. }), "{err:?}");
    let spec = ContainerSpec::for_assignment(&node, &assignment("i1", image, &[]));
    let err = rt.create(&spec).await.unwrap_err();
    assert!(matches!(err, RuntimeError::ImageMissing { .. }), "{err:?}");
    assert!(containers_of(&node).is_empty());
}

#[tokio::test]
async fn exit_codes_and_events_are_observed() {
    ensure_hello_images();
    let node = unique_node("exit");
    let _cleanup = Cleanup(vec![node.clone()]);
    let rt = docker();
    let (mut events, forward) = live_events(&rt, &node).await;
    let spec =
        ContainerSpec::for_assignment(&node, &assignment("i1", IMAGE, &[("HELLO_EXIT", "3")]));
    let id = rt.create(&spec).await.expect("created");
    rt.start(&id).await.expect("started");

    let mut actions = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !actions.contains(&"die".to_string()) {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("a die event within 10 s")
            .expect("stream open")
            .expect("event");
        if ev.instance.as_deref() == Some(PROBE) {
            continue; // the rest of the probe's events
        }
        assert_eq!(ev.instance.as_deref(), Some("i1"));
        assert_eq!(ev.container, id);
        actions.push(ev.action);
    }

    assert!(actions.contains(&"start".to_string()), "{actions:?}");
    // The engine's list catches up with a die event a moment later.
    let seen_die = tokio::time::Instant::now();
    let listed = loop {
        let listed = rt.list(&node).await.expect("listed");
        assert_eq!(listed.len(), 1);
        if listed[0].status == ContainerStatus::Exited
            || seen_die.elapsed() > Duration::from_secs(5)
        {
            break listed;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!(
        "list showed the exit {:?} after the die event",
        seen_die.elapsed()
    );
    assert_eq!(listed[0].status, ContainerStatus::Exited);
    assert_eq!(listed[0].exit_code, Some(3));
    assert_eq!(listed[0].host_port, None);
    rt.remove(&id).await.expect("removed");
    assert!(containers_of(&node).is_empty());
    forward.abort();
}

#[tokio::test]
async fn limits_and_environment_reach_the_container() {
    ensure_hello_images();
    let node = unique_node("limits");
    let _cleanup = Cleanup(vec![node.clone()]);
    let rt = docker();
    let spec = ContainerSpec::for_assignment(&node, &assignment("i1", IMAGE, &[("A", "b")]));
    let id = rt.create(&spec).await.expect("created");
    let out = std::process::Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}} {{.HostConfig.RestartPolicy.Name}} {{json .Config.Env}}",
            &id,
        ])
        .output()
        .expect("docker inspect runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("100000000 33554432 no "), "{text}");
    for var in [
        "A=b",
        "PORT=8080",
        "MERIDIAN_INSTANCE=i1",
        "MERIDIAN_APP=web",
        "MERIDIAN_RELEASE=1",
    ] {
        assert!(text.contains(var), "{var} missing in {text}");
    }
    rt.remove(&id).await.expect("removed");
}

#[tokio::test]
async fn an_archive_the_engine_cannot_read_is_load_failed() {
    let rt = docker();
    let garbage = futures::stream::iter([Ok(bytes::Bytes::from_static(b"not a tar archive"))]);
    let err = rt.load_image(garbage.boxed()).await.unwrap_err();
    assert!(matches!(err, RuntimeError::LoadFailed(_)), "{err:?}");
}
