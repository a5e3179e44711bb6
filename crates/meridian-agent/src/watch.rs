//! The assignments watch: a blocking `GET .../assignments` in a loop, publishing each newer
//! generation to the reconcile loop and ignoring older ones (a lagging server).

use std::sync::Arc;
use std::time::Duration;

use meridian_api::agent::Assignments;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::control::{Backoff, ControlPlane};
use crate::error::AgentError;
use crate::plan::accepts;
use crate::stop::Stop;

/// Least time between two watches that brought nothing new, in case a server answers at once.
const MIN_WATCH_GAP: Duration = Duration::from_millis(500);

/// Watches until the stop, after `registered` turns true. The first request does not block,
/// so the agent learns its assignments (even none) at once.
pub async fn run_watch(
    cp: &ControlPlane,
    node: &str,
    wait: Duration,
    mut registered: watch::Receiver<bool>,
    desired: &watch::Sender<Option<Arc<Assignments>>>,
    mut stop: Stop,
) -> Result<(), AgentError> {
    if stop.run(registered.wait_for(|r| *r)).await.is_none() {
        return Ok(());
    }
    let mut highest: Option<u64> = None;
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        let (index, wait) = match highest {
            None => (0, Duration::ZERO),
            Some(g) => (g, wait),
        };
        let asked = Instant::now();
        let Some(result) = stop.run(cp.assignments(index, wait)).await else {
            return Ok(());
        };
        let news = match result {
            Ok(a) if a.node != node => {
                tracing::warn!(asked = node, answered = %a.node, "assignments for another node; ignored");
                false
            }
            Ok(a) => {
                backoff.reset();
                if accepts(highest, &a) {
                    tracing::info!(
                        generation = a.generation,
                        instances = a.instances.len(),
                        "new assignments"
                    );
                    highest = Some(a.generation);
                    desired.send_replace(Some(Arc::new(a)));
                    true
                } else {
                    if highest.is_some_and(|h| a.generation < h) {
                        tracing::debug!(
                            generation = a.generation,
                            server = cp.server(),
                            "ignoring older assignments from a lagging server"
                        );
                    }
                    false
                }
            }
            Err(e) => {
                let pause = backoff.fail();
                tracing::warn!(error = %e, retry_in = ?pause, "assignments watch failed");
                if stop.sleep(pause).await {
                    return Ok(());
                }
                continue;
            }
        };
        if !news && asked.elapsed() < MIN_WATCH_GAP && stop.sleep(MIN_WATCH_GAP).await {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use axum::extract::{Query, State};
    use axum::routing::get;
    use axum::{Json, Router};

    type Script = Arc<Mutex<VecDeque<u64>>>;

    /// A server answering each watch with the next generation of a script (the last one
    /// forever), as a set of servers where one lags behind might.
    async fn scripted_server(generations: &[u64]) -> String {
        let script: Script = Arc::new(Mutex::new(generations.iter().copied().collect()));
        async fn answer(
            State(script): State<Script>,
            Query(q): Query<std::collections::HashMap<String, String>>,
        ) -> Json<Assignments> {
            let generation = {
                let mut s = script.lock().unwrap();
                if s.len() > 1 {
                    s.pop_front().unwrap()
                } else {
                    s[0]
                }
            };
            let index: u64 = q.get("index").and_then(|i| i.parse().ok()).unwrap_or(0);
            if generation <= index {
                // Nothing newer: block a little, as the real watch would.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Json(Assignments {
                node: "w1".into(),
                generation,
                instances: vec![],
            })
        }
        let app = Router::new()
            .route("/v1/agent/nodes/w1/assignments", get(answer))
            .with_state(script);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn older_generations_from_a_lagging_server_are_ignored() {
        let url = scripted_server(&[5, 3, 5, 2, 7]).await;
        let cp = ControlPlane::new("w1", &[url], "token", &Default::default()).unwrap();
        let (_registered_tx, registered) = watch::channel(true);
        let (desired_tx, mut desired) = watch::channel(None);
        let (stop_tx, stop) = Stop::channel();
        let watcher = run_watch(
            &cp,
            "w1",
            Duration::from_millis(100),
            registered,
            &desired_tx,
            stop,
        );
        let observer = async {
            let mut seen = Vec::new();
            while seen.last() != Some(&7) {
                desired.changed().await.unwrap();
                let g = desired.borrow_and_update().as_ref().map(|a| a.generation);
                seen.extend(g);
            }
            stop_tx.send_replace(true);
            seen
        };
        let (result, seen) = tokio::join!(watcher, observer);
        assert!(result.is_ok());
        assert_eq!(seen, [5, 7]);
    }
}
