//! [`Stop`]: the one shutdown signal every loop of the agent watches.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

/// A receiver of the agent's stop signal. A dropped sender counts as a stop.
#[derive(Debug, Clone)]
pub struct Stop(watch::Receiver<bool>);

impl Stop {
    /// A sender and its first receiver.
    pub fn channel() -> (watch::Sender<bool>, Self) {
        let (tx, rx) = watch::channel(false);
        (tx, Self(rx))
    }

    /// Resolves once the stop is signalled.
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|stopped| *stopped).await;
    }

    /// Sleeps for `d`; `true` when the stop came first.
    pub async fn sleep(&mut self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => false,
            _ = self.wait() => true,
        }
    }

    /// Runs `fut` unless the stop comes first (then `None`).
    pub async fn run<T>(&mut self, fut: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            out = fut => Some(out),
            _ = self.wait() => None,
        }
    }
}
