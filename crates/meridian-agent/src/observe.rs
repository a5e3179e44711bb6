//! Observed state: what the agent reports for one assigned instance, derived from its
//! container, the create in flight or failed, and the health verdict. Pure.

use meridian_api::agent::{Assignment, InstanceReport};
use meridian_core::InstanceState;

use crate::health::HealthVerdict;
use crate::runtime::{ContainerInfo, ContainerStatus};

/// How the last attempt to create an instance's container ended, when it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateFailure {
    /// The image is not on the engine and could not be obtained.
    ImageMissing(String),
    /// Anything else (engine down, bad limits): retried; reported as `starting` with detail.
    Other(String),
}

/// Everything known about one assigned instance at the moment of a report. A failed create
/// stays the story (`image_missing`) while its retry is in flight, so reports do not flap.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    /// Its container, if it has one.
    pub container: Option<&'a ContainerInfo>,
    /// How the last create failed, if it did.
    pub failure: Option<&'a CreateFailure>,
    /// The health verdict, for a running container with a health check.
    pub health: Option<&'a HealthVerdict>,
}

/// The report for `assignment`. Addresses read `advertise_host:published_port`.
pub fn report(assignment: &Assignment, seen: Observed<'_>, advertise_host: &str) -> InstanceReport {
    let mut r = InstanceReport {
        id: assignment.id.clone(),
        state: InstanceState::Starting,
        exit_code: None,
        address: None,
        detail: None,
    };
    let Some(c) = seen.container else {
        match seen.failure {
            Some(CreateFailure::ImageMissing(detail)) => {
                r.state = InstanceState::ImageMissing;
                r.detail = Some(detail.clone());
            }
            Some(CreateFailure::Other(detail)) => r.detail = Some(detail.clone()),
            _ => {}
        }
        return r;
    };
    match c.status {
        ContainerStatus::Created => {
            if let Some(CreateFailure::Other(detail)) = seen.failure {
                r.detail = Some(detail.clone());
            }
        }
        ContainerStatus::Running | ContainerStatus::Restarting => {
            r.address = c.host_port.map(|p| format!("{advertise_host}:{p}"));
            (r.state, r.detail) = match (&assignment.health, seen.health) {
                (None, _) => (InstanceState::Healthy, None),
                (Some(_), Some(HealthVerdict::Passing)) => (InstanceState::Healthy, None),
                (Some(_), Some(HealthVerdict::Failing(why))) => {
                    (InstanceState::Unhealthy, Some(why.clone()))
                }
                (Some(_), _) => (InstanceState::Running, None),
            };
        }
        ContainerStatus::Paused => {
            r.state = InstanceState::Unhealthy;
            r.detail = Some("container is paused".into());
        }
        ContainerStatus::Exited
        | ContainerStatus::Dead
        | ContainerStatus::Removing
        | ContainerStatus::Unknown => {
            r.state = InstanceState::Exited;
            r.exit_code = c.exit_code;
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{assignment, container};
    use meridian_core::app::Probe;
    use meridian_core::HealthCheck;

    fn with_check() -> Assignment {
        let mut a = assignment("a", 1);
        a.health = Some(HealthCheck {
            probe: Probe::Tcp,
            interval_ms: 1000,
            timeout_ms: 100,
            grace_ms: 0,
        });
        a
    }

    fn nothing() -> Observed<'static> {
        Observed {
            container: None,
            failure: None,
            health: None,
        }
    }

    #[test]
    fn no_container_is_starting_or_image_missing() {
        let a = assignment("a", 1);
        assert_eq!(report(&a, nothing(), "h").state, InstanceState::Starting);
        let missing = CreateFailure::ImageMissing("not there".into());
        let seen = Observed {
            failure: Some(&missing),
            ..nothing()
        };
        let r = report(&a, seen, "h");
        assert_eq!(r.state, InstanceState::ImageMissing);
        assert_eq!(r.detail.as_deref(), Some("not there"));
        let other = CreateFailure::Other("engine down".into());
        let seen = Observed {
            failure: Some(&other),
            ..nothing()
        };
        let r = report(&a, seen, "h");
        assert_eq!(r.state, InstanceState::Starting);
        assert_eq!(r.detail.as_deref(), Some("engine down"));
    }

    #[test]
    fn running_without_a_check_is_healthy_with_an_address() {
        let c = container("w1", "a", 1, ContainerStatus::Running);
        let seen = Observed {
            container: Some(&c),
            ..nothing()
        };
        let r = report(&assignment("a", 1), seen, "10.0.0.5");
        assert_eq!(r.state, InstanceState::Healthy);
        assert_eq!(r.address.as_deref(), Some("10.0.0.5:32768"));
    }

    #[test]
    fn health_verdicts_map_to_states() {
        let c = container("w1", "a", 1, ContainerStatus::Running);
        let a = with_check();
        let state = |v: Option<HealthVerdict>| {
            let seen = Observed {
                container: Some(&c),
                health: v.as_ref(),
                ..nothing()
            };
            report(&a, seen, "h").state
        };
        assert_eq!(state(None), InstanceState::Running);
        assert_eq!(state(Some(HealthVerdict::Pending)), InstanceState::Running);
        assert_eq!(state(Some(HealthVerdict::Passing)), InstanceState::Healthy);
        assert_eq!(
            state(Some(HealthVerdict::Failing("503".into()))),
            InstanceState::Unhealthy
        );
    }

    #[test]
    fn exited_carries_the_code() {
        let mut c = container("w1", "a", 1, ContainerStatus::Exited);
        c.exit_code = Some(3);
        let seen = Observed {
            container: Some(&c),
            ..nothing()
        };
        let r = report(&assignment("a", 1), seen, "h");
        assert_eq!(r.state, InstanceState::Exited);
        assert_eq!(r.exit_code, Some(3));
        assert_eq!(r.address, None);
    }
}
