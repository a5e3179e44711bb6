//! An agent without a registry fetches an image it lacks from the (fake) control plane and
//! `docker load`s it, against the real Docker engine: `meridian-hello:latest` re-tagged to a
//! name of this test's own, saved, and untagged again before the agent starts.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use meridian_agent::{AgentConfig, AgentError};
use meridian_api::agent::InstanceReports;
use meridian_core::InstanceState;
use support::control_plane::{assignment, FakeControlPlane, REGION};
use support::{containers_of, ensure_hello_images, init_logs, unique_node, Cleanup, IMAGE};
use tokio::sync::oneshot;

const TOKEN: &str = "agent-secret";

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs")
}

fn image_exists(image: &str) -> bool {
    docker(&["image", "inspect", image]).status.success()
}

/// Removes the test's image tag and archive when dropped, also when the test panics.
struct ImageCleanup {
    image: String,
    archive: PathBuf,
}

impl Drop for ImageCleanup {
    fn drop(&mut self) {
        let _ = docker(&["rmi", &self.image]);
        let _ = std::fs::remove_file(&self.archive);
    }
}

fn state_of(r: Option<&InstanceReports>, id: &str) -> Option<(InstanceState, Option<String>)> {
    let i = r?.instances.iter().find(|i| i.id == id)?;
    Some((i.state, i.detail.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_is_fetched_from_the_control_plane_and_loaded() {
    init_logs();
    ensure_hello_images();
    let image = format!("meridian-fetch-test-{}:1", std::process::id());
    let archive =
        std::env::temp_dir().join(format!("meridian-fetch-test-{}.tar", std::process::id()));
    let _image_cleanup = ImageCleanup {
        image: image.clone(),
        archive: archive.clone(),
    };
    assert!(docker(&["tag", IMAGE, &image]).status.success());
    let saved = docker(&["save", "-o", archive.to_str().unwrap(), &image]);
    assert!(saved.status.success(), "{saved:?}");
    assert!(docker(&["rmi", &image]).status.success());
    assert!(!image_exists(&image));
    let size = std::fs::metadata(&archive).unwrap().len();

    let cp = FakeControlPlane::start(TOKEN).await;
    cp.serve_image(&image, &archive);
    let node = unique_node("fetch");
    let _cleanup = Cleanup(vec![node.clone()]);
    // A dead server first: the fetch goes on to the next one.
    let servers = vec!["http://127.0.0.1:9".to_string(), cp.url.clone()];
    let mut config = AgentConfig::new(&node, REGION, servers, TOKEN);
    config.heartbeat = Duration::from_millis(200);
    config.report_interval = Duration::from_secs(2);
    config.watch_wait = Duration::from_secs(2);
    config.stop_timeout = Duration::from_secs(1);
    assert!(!config.pull_images);
    let (stop, stopped) = oneshot::channel::<()>();
    let agent = tokio::spawn(meridian_agent::run(config, async {
        let _ = stopped.await;
    }));

    cp.assign(
        &node,
        vec![
            assignment("web-1", &image, &[]),
            assignment("web-2", &image, &[]),
            assignment("ghost-1", "meridian-nope:missing", &[]),
        ],
    );
    let limit = Duration::from_secs(60);
    cp.wait_for(&node, limit, "web-1 and web-2 healthy", |r| {
        let healthy = |id| state_of(r, id).is_some_and(|(s, _)| s == InstanceState::Healthy);
        (healthy("web-1") && healthy("web-2")).then_some(())
    })
    .await;
    assert!(image_exists(&image), "the image was loaded");
    assert_eq!(cp.image_fetches(&image), 1, "one fetch for both instances");
    let ghost = cp
        .wait_for(&node, limit, "ghost-1 image_missing", |r| {
            state_of(r, "ghost-1").filter(|(s, _)| *s == InstanceState::ImageMissing)
        })
        .await;
    let detail = ghost.1.unwrap_or_default();
    assert!(
        detail.contains(
            "not pushed to the control plane (meridian images push meridian-nope:missing)"
        ),
        "{detail}"
    );
    assert_eq!(containers_of(&node).len(), 2);
    eprintln!("fetched and loaded a {size}-byte archive");

    let _ = stop.send(());
    let result: Result<(), AgentError> = tokio::time::timeout(Duration::from_secs(20), agent)
        .await
        .expect("the agent stops within 20 s")
        .expect("the agent task did not panic");
    assert!(result.is_ok(), "{result:?}");
}
