//! The [`Reconciler`] against the in-memory fake engine: adoption after a restart, removal of
//! its own unassigned containers only, image trouble, images fetched from the control plane, an
//! engine that is down.

use std::sync::Arc;

use meridian_api::agent::{Assignment, Assignments, InstanceReports};
use meridian_core::InstanceState;
use tokio::sync::Notify;

use crate::fake::{assignment, container, FakeImages, FakeRuntime};
use crate::images::ImageSource;
use crate::reconcile::{Reconciler, ReconcilerConfig, CREATE_RETRY};
use crate::runtime::{ContainerEvent, ContainerStatus, RuntimeError};

const IMAGE: &str = "meridian-hello:latest";

fn reconciler(rt: &FakeRuntime) -> Reconciler<FakeRuntime> {
    let config = ReconcilerConfig {
        node: "w1".into(),
        advertise_host: "10.1.2.3".into(),
        pull_images: false,
        network: None,
    };
    Reconciler::new(Arc::new(rt.clone()), config, Arc::new(Notify::new()))
}

/// A reconciler that fetches missing images from `source`, pulling first when `pull` is set.
fn fetching_reconciler(
    rt: &FakeRuntime,
    source: &Arc<FakeImages>,
    pull: bool,
) -> Reconciler<FakeRuntime> {
    let config = ReconcilerConfig {
        node: "w1".into(),
        advertise_host: "10.1.2.3".into(),
        pull_images: pull,
        network: None,
    };
    let source: Arc<dyn ImageSource> = source.clone();
    Reconciler::new(Arc::new(rt.clone()), config, Arc::new(Notify::new())).with_image_source(source)
}

fn assignments(generation: u64, instances: Vec<Assignment>) -> Assignments {
    Assignments {
        node: "w1".into(),
        generation,
        instances,
    }
}

/// A pass, then another once the tasks it started have ended.
async fn converge(rec: &mut Reconciler<FakeRuntime>, desired: &Assignments) -> InstanceReports {
    rec.pass(desired).await.expect("first pass");
    rec.settle().await;
    rec.pass(desired).await.expect("second pass")
}

fn states(r: &InstanceReports) -> Vec<(String, InstanceState)> {
    r.instances
        .iter()
        .map(|i| (i.id.clone(), i.state))
        .collect()
}

#[tokio::test]
async fn missing_instances_are_created_started_and_reported() {
    let rt = FakeRuntime::with_images(&[IMAGE]);
    let mut rec = reconciler(&rt);
    let desired = assignments(1, vec![assignment("a", 1), assignment("b", 1)]);
    let first = rec.pass(&desired).await.unwrap();
    assert_eq!(first.generation, 1);
    assert!(first
        .instances
        .iter()
        .all(|i| i.state == InstanceState::Starting));
    rec.settle().await;
    let r = rec.pass(&desired).await.unwrap();
    assert_eq!(
        states(&r),
        [
            ("a".to_string(), InstanceState::Healthy),
            ("b".to_string(), InstanceState::Healthy)
        ]
    );
    assert!(r.instances.iter().all(|i| i
        .address
        .as_deref()
        .is_some_and(|a| a.starts_with("10.1.2.3:"))));
    let engine = rt.engine();
    assert_eq!(engine.creates, 2);
    let names: Vec<_> = engine.containers.values().map(|c| c.name.clone()).collect();
    assert_eq!(names, ["meridian-w1-a", "meridian-w1-b"]);
}

#[tokio::test]
async fn a_restarted_agent_adopts_its_containers() {
    let rt = FakeRuntime::with_images(&[IMAGE]);
    let desired = assignments(4, vec![assignment("a", 1)]);
    {
        let mut first_run = reconciler(&rt);
        converge(&mut first_run, &desired).await;
        first_run.shutdown().await;
    }
    let before: Vec<_> = rt.engine().containers.keys().cloned().collect();
    let mut second_run = reconciler(&rt);
    let r = converge(&mut second_run, &desired).await;
    assert_eq!(states(&r), [("a".to_string(), InstanceState::Healthy)]);
    let engine = rt.engine();
    assert_eq!(engine.creates, 1, "no second create");
    assert_eq!(
        engine.containers.keys().cloned().collect::<Vec<_>>(),
        before
    );
    assert!(engine.removed.is_empty());
}

#[tokio::test]
async fn a_create_interrupted_before_start_is_finished() {
    let rt = FakeRuntime::with_images(&[IMAGE]);
    rt.insert(container("w1", "a", 1, ContainerStatus::Created));
    let mut rec = reconciler(&rt);
    let r = converge(&mut rec, &assignments(1, vec![assignment("a", 1)])).await;
    assert_eq!(states(&r), [("a".to_string(), InstanceState::Healthy)]);
    assert_eq!(rt.engine().creates, 0);
}

#[tokio::test]
async fn only_own_unassigned_containers_are_removed() {
    let rt = FakeRuntime::with_images(&[IMAGE]);
    rt.insert(container("w1", "old", 1, ContainerStatus::Running));
    rt.insert(container("w1", "a", 1, ContainerStatus::Running));
    rt.insert(container("w2", "theirs", 1, ContainerStatus::Running));
    let mut rec = reconciler(&rt);
    let r = converge(&mut rec, &assignments(2, vec![assignment("a", 1)])).await;
    assert_eq!(states(&r), [("a".to_string(), InstanceState::Healthy)]);
    let engine = rt.engine();
    assert_eq!(engine.removed, ["c-w1-old-1"]);
    assert!(engine.containers.contains_key("c-w2-theirs-1"));
    assert!(engine.containers.contains_key("c-w1-a-1"));
}

#[tokio::test]
async fn nothing_assigned_means_nothing_of_ours_runs() {
    let rt = FakeRuntime::with_images(&[IMAGE]);
    let mut rec = reconciler(&rt);
    converge(&mut rec, &assignments(1, vec![assignment("a", 1)])).await;
    let r = converge(&mut rec, &assignments(2, vec![])).await;
    assert!(r.instances.is_empty());
    assert!(rt.engine().containers.is_empty());
}

#[tokio::test]
async fn a_new_release_replaces_the_container() {
    let rt = FakeRuntime::with_images(&[IMAGE]);
    let mut rec = reconciler(&rt);
    converge(&mut rec, &assignments(1, vec![assignment("a", 1)])).await;
    let desired = assignments(2, vec![assignment("a", 2)]);
    converge(&mut rec, &desired).await;
    let r = converge(&mut rec, &desired).await;
    assert_eq!(states(&r), [("a".to_string(), InstanceState::Healthy)]);
    let engine = rt.engine();
    let c = engine.containers.values().next().unwrap();
    assert_eq!(c.release(), Some(2));
    assert_eq!(engine.removed.len(), 1);
}

#[tokio::test]
async fn exited_instances_are_reported_not_restarted() {
    let rt = FakeRuntime::with_images(&[IMAGE]);
    let mut c = container("w1", "a", 1, ContainerStatus::Exited);
    c.exit_code = Some(3);
    rt.insert(c);
    let mut rec = reconciler(&rt);
    let r = converge(&mut rec, &assignments(1, vec![assignment("a", 1)])).await;
    assert_eq!(r.instances[0].state, InstanceState::Exited);
    assert_eq!(r.instances[0].exit_code, Some(3));
    assert_eq!(rt.engine().creates, 0);
}

#[tokio::test(start_paused = true)]
async fn a_missing_image_is_reported_and_retried() {
    let rt = FakeRuntime::with_images(&[]);
    let mut rec = reconciler(&rt);
    let desired = assignments(1, vec![assignment("a", 1)]);
    let r = converge(&mut rec, &desired).await;
    assert_eq!(r.instances[0].state, InstanceState::ImageMissing);
    assert!(r.instances[0].detail.is_some());
    // Not retried at once...
    rec.pass(&desired).await.unwrap();
    assert!(rec.pass(&desired).await.unwrap().instances[0].state == InstanceState::ImageMissing);
    // ...but after a while, and then it works.
    rt.engine().images.insert(IMAGE.into());
    tokio::time::sleep(CREATE_RETRY).await;
    let r = rec.pass(&desired).await.unwrap();
    assert_eq!(
        r.instances[0].state,
        InstanceState::ImageMissing,
        "no flapping while retrying"
    );
    rec.settle().await;
    let r = rec.pass(&desired).await.unwrap();
    assert_eq!(r.instances[0].state, InstanceState::Healthy);
}

#[tokio::test]
async fn an_engine_that_is_down_changes_nothing() {
    let rt = FakeRuntime::with_images(&[IMAGE]);
    rt.insert(container("w1", "old", 1, ContainerStatus::Running));
    rt.engine().down = true;
    let mut rec = reconciler(&rt);
    let err = rec.pass(&assignments(1, vec![])).await.unwrap_err();
    assert!(matches!(err, RuntimeError::Unavailable(_)));
    rt.engine().down = false;
    converge(&mut rec, &assignments(1, vec![])).await;
    assert_eq!(rt.engine().removed, ["c-w1-old-1"]);
}

#[tokio::test]
async fn a_name_taken_by_a_lost_create_is_not_an_error() {
    let rt = FakeRuntime::with_images(&[IMAGE]);
    let mut rec = reconciler(&rt);
    let desired = assignments(1, vec![assignment("a", 1)]);
    rec.pass(&desired).await.unwrap();
    // Another create of the same name slipped in first (e.g. the previous agent process).
    rt.insert(container("w1", "a", 1, ContainerStatus::Created));
    rec.settle().await;
    let r = converge(&mut rec, &desired).await;
    assert_eq!(r.instances[0].state, InstanceState::Healthy);
    assert_eq!(rt.engine().containers.len(), 1);
}

#[tokio::test]
async fn an_exit_event_beats_a_lagging_list() {
    let rt = FakeRuntime::with_images(&[IMAGE]);
    let mut c = container("w1", "a", 1, ContainerStatus::Exited);
    c.exit_code = Some(137);
    rt.insert(c.clone());
    rt.engine().list_lags.insert(c.id.clone());
    let mut rec = reconciler(&rt);
    let desired = assignments(1, vec![assignment("a", 1)]);
    let r = rec.pass(&desired).await.unwrap();
    assert_eq!(
        r.instances[0].state,
        InstanceState::Healthy,
        "the list still says running"
    );
    rec.note_event(&ContainerEvent {
        action: "die".into(),
        container: c.id.clone(),
        instance: Some("a".into()),
    });
    let r = rec.pass(&desired).await.unwrap();
    assert_eq!(r.instances[0].state, InstanceState::Exited);
    assert_eq!(r.instances[0].exit_code, Some(137));
    assert_eq!(
        rt.engine().creates,
        0,
        "an exited instance is not restarted"
    );
}

#[tokio::test]
async fn a_container_that_will_not_start_is_starting_with_the_reason() {
    let rt = FakeRuntime::with_images(&[IMAGE]);
    rt.engine().fail_starts = Some("port is already allocated".into());
    let mut rec = reconciler(&rt);
    let desired = assignments(1, vec![assignment("a", 1)]);
    let r = converge(&mut rec, &desired).await;
    assert_eq!(r.instances[0].state, InstanceState::Starting);
    let detail = r.instances[0].detail.clone().unwrap_or_default();
    assert!(detail.contains("port is already allocated"), "{detail}");
    assert_eq!(
        rt.engine().creates,
        1,
        "the container is kept, only its start retried"
    );
    rt.engine().fail_starts = None;
    let r = converge(&mut rec, &desired).await;
    assert_eq!(r.instances[0].state, InstanceState::Healthy);
    assert_eq!(r.instances[0].detail, None);
}

fn detail(r: &InstanceReports) -> String {
    r.instances[0].detail.clone().unwrap_or_default()
}

#[tokio::test]
async fn a_missing_image_is_fetched_once_for_all_its_instances() {
    let rt = FakeRuntime::with_images(&[]);
    let source = FakeImages::with_images(&[IMAGE]);
    let mut rec = fetching_reconciler(&rt, &source, false);
    let desired = assignments(1, vec![assignment("a", 1), assignment("b", 1)]);
    let r = converge(&mut rec, &desired).await;
    assert_eq!(
        states(&r),
        [
            ("a".to_string(), InstanceState::Healthy),
            ("b".to_string(), InstanceState::Healthy)
        ]
    );
    assert_eq!(source.state().fetches, [IMAGE], "one fetch for both");
    let engine = rt.engine();
    assert_eq!(engine.loads, 1);
    assert!(engine.images.contains(IMAGE));
    assert_eq!(engine.creates, 2);
}

#[tokio::test]
async fn an_image_the_control_plane_lacks_is_image_missing() {
    let rt = FakeRuntime::with_images(&[]);
    let source = FakeImages::with_images(&["other:1"]);
    let mut rec = fetching_reconciler(&rt, &source, false);
    let r = converge(&mut rec, &assignments(1, vec![assignment("a", 1)])).await;
    assert_eq!(r.instances[0].state, InstanceState::ImageMissing);
    assert_eq!(
        detail(&r),
        "not on the engine, not pushed to the control plane (meridian images push \
         meridian-hello:latest), and pulling is off"
    );
    assert_eq!(rt.engine().loads, 0);
    assert_eq!(rt.engine().creates, 0);
}

#[tokio::test(start_paused = true)]
async fn a_failed_load_is_retried_on_a_backoff() {
    let rt = FakeRuntime::with_images(&[]);
    rt.engine().fail_loads = Some("no space left on device".into());
    let source = FakeImages::with_images(&[IMAGE]);
    let mut rec = fetching_reconciler(&rt, &source, false);
    let desired = assignments(1, vec![assignment("a", 1)]);
    let r = converge(&mut rec, &desired).await;
    assert_eq!(r.instances[0].state, InstanceState::ImageMissing);
    let first = detail(&r);
    assert!(first.contains("no space left on device"), "{first}");
    assert!(first.contains("from the control plane failed"), "{first}");
    assert_eq!(source.state().fetches.len(), 1);
    // Not again at once...
    let r = converge(&mut rec, &desired).await;
    assert_eq!(r.instances[0].state, InstanceState::ImageMissing);
    assert_eq!(source.state().fetches.len(), 1);
    // ...but after the first backoff (as long as the create retry)...
    tokio::time::sleep(CREATE_RETRY).await;
    converge(&mut rec, &desired).await;
    assert_eq!(source.state().fetches.len(), 2);
    assert_eq!(rt.engine().loads, 2);
    // ...then after a doubled one: a create retry in between ends with the last failure.
    tokio::time::sleep(CREATE_RETRY).await;
    let r = converge(&mut rec, &desired).await;
    assert_eq!(source.state().fetches.len(), 2, "still backing off");
    assert_eq!(r.instances[0].state, InstanceState::ImageMissing);
    assert_eq!(detail(&r), first);
    rt.engine().fail_loads = None;
    tokio::time::sleep(CREATE_RETRY).await;
    let r = converge(&mut rec, &desired).await;
    assert_eq!(source.state().fetches.len(), 3);
    assert_eq!(r.instances[0].state, InstanceState::Healthy);
}

#[tokio::test]
async fn a_broken_transfer_or_unreachable_control_plane_is_image_missing_with_the_reason() {
    let rt = FakeRuntime::with_images(&[]);
    let source = FakeImages::with_images(&[IMAGE]);
    source.state().break_transfers = true;
    let mut rec = fetching_reconciler(&rt, &source, false);
    let r = converge(&mut rec, &assignments(1, vec![assignment("a", 1)])).await;
    assert_eq!(r.instances[0].state, InstanceState::ImageMissing);
    let d = detail(&r);
    assert!(
        d.contains("the transfer broke off after 1 bytes: connection reset"),
        "{d}"
    );
    assert!(!rt.engine().images.contains(IMAGE));

    let rt = FakeRuntime::with_images(&[]);
    let source = FakeImages::with_images(&[IMAGE]);
    source.state().down = Some("cannot reach http://cp:7001".into());
    let mut rec = fetching_reconciler(&rt, &source, false);
    let r = converge(&mut rec, &assignments(1, vec![assignment("a", 1)])).await;
    assert_eq!(r.instances[0].state, InstanceState::ImageMissing);
    let d = detail(&r);
    assert!(d.contains("cannot reach http://cp:7001"), "{d}");
    assert_eq!(rt.engine().loads, 0);
}

#[tokio::test]
async fn with_a_registry_the_pull_comes_first_and_the_control_plane_is_the_fallback() {
    // The pull works: nothing is fetched.
    let rt = FakeRuntime::with_images(&[]);
    rt.engine().registry.insert(IMAGE.into());
    let source = FakeImages::with_images(&[IMAGE]);
    let mut rec = fetching_reconciler(&rt, &source, true);
    let r = converge(&mut rec, &assignments(1, vec![assignment("a", 1)])).await;
    assert_eq!(r.instances[0].state, InstanceState::Healthy);
    assert_eq!(rt.engine().pulls, 1);
    assert!(source.state().fetches.is_empty());

    // The pull fails: the control plane has it.
    let rt = FakeRuntime::with_images(&[]);
    let mut rec = fetching_reconciler(&rt, &source, true);
    let r = converge(&mut rec, &assignments(1, vec![assignment("a", 1)])).await;
    assert_eq!(r.instances[0].state, InstanceState::Healthy);
    assert_eq!(source.state().fetches, [IMAGE]);
    assert_eq!(rt.engine().loads, 1);

    // Neither has it: both reasons are told.
    let rt = FakeRuntime::with_images(&[]);
    let source = FakeImages::with_images(&[]);
    let mut rec = fetching_reconciler(&rt, &source, true);
    let r = converge(&mut rec, &assignments(1, vec![assignment("a", 1)])).await;
    assert_eq!(r.instances[0].state, InstanceState::ImageMissing);
    assert_eq!(
        detail(&r),
        "pull failed: not in the fake registry; not pushed to the control plane either \
         (meridian images push meridian-hello:latest)"
    );
}
