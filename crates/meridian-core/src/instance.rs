//! What an agent observes of an instance it runs.

use serde::{Deserialize, Serialize};

/// The observed state of one instance, as its agent reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Assigned; the agent is fetching the image or creating the container.
    Starting,
    /// The container runs; its health check has not passed yet.
    Running,
    /// The container runs and passed its health check (or has none).
    Healthy,
    /// The container runs but failed its health check after the grace period.
    Unhealthy,
    /// The container stopped on its own (see the exit code).
    Exited,
    /// The image is neither on the engine nor obtainable.
    ImageMissing,
    /// Stopped because it was no longer assigned, or lost with its node.
    Stopped,
}

impl InstanceState {
    /// Every state.
    pub const ALL: [InstanceState; 7] = [
        InstanceState::Starting,
        InstanceState::Running,
        InstanceState::Healthy,
        InstanceState::Unhealthy,
        InstanceState::Exited,
        InstanceState::ImageMissing,
        InstanceState::Stopped,
    ];

    /// The wire name, e.g. `image_missing`.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Starting => "starting",
            InstanceState::Running => "running",
            InstanceState::Healthy => "healthy",
            InstanceState::Unhealthy => "unhealthy",
            InstanceState::Exited => "exited",
            InstanceState::ImageMissing => "image_missing",
            InstanceState::Stopped => "stopped",
        }
    }

    /// The inverse of [`InstanceState::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The instance will not become healthy without being replaced.
    pub fn is_failed(self) -> bool {
        matches!(
            self,
            InstanceState::Unhealthy | InstanceState::Exited | InstanceState::ImageMissing
        )
    }
}

/// Whether the control plane wants an instance to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Desired {
    /// Run it.
    Run,
    /// Stop it (kept for history).
    Stop,
}

impl Desired {
    /// `run` or `stop`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Desired::Run => "run",
            Desired::Stop => "stop",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in InstanceState::ALL {
            assert_eq!(InstanceState::parse(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        assert_eq!(InstanceState::parse("nope"), None);
    }
}
