//! Rolling deploys: how many instances of each release an app wants right now, and when a
//! release is promoted or halted. Pure; the leader's reconcile loop feeds it observed health
//! and commits what it decides.
//!
//! One new instance at a time: a new-release instance is added only when every earlier one is
//! healthy, and an old-release instance is let go only for each new one that is healthy. A
//! release with a failed instance, or with no progress before its deadline, halts; the
//! release that was serving keeps its full count throughout.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::schedule::ReleaseWant;

/// Where a release stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseStatus {
    /// Being rolled out.
    Rolling,
    /// Serving.
    Active,
    /// Stopped rolling out because it failed; the previous release kept serving.
    Halted,
    /// Replaced by a newer release.
    Superseded,
}

impl ReleaseStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseStatus::Rolling => "rolling",
            ReleaseStatus::Active => "active",
            ReleaseStatus::Halted => "halted",
            ReleaseStatus::Superseded => "superseded",
        }
    }

    /// The inverse of [`ReleaseStatus::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [
            ReleaseStatus::Rolling,
            ReleaseStatus::Active,
            ReleaseStatus::Halted,
            ReleaseStatus::Superseded,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// A release and its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReleaseInfo {
    /// Its number.
    pub number: u64,
    /// Its status.
    pub status: ReleaseStatus,
}

/// What the rollout needs to know of one live instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceHealth<'a> {
    /// Its id, to name it when it halts a release.
    pub id: &'a str,
    /// Its release.
    pub release: u64,
    /// Passed its health check.
    pub healthy: bool,
    /// Will not become healthy.
    pub failed: bool,
}

/// A release status change the rollout decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseChange {
    /// `release` serves from now on; every other active or rolling release is superseded.
    Promote {
        /// The release.
        release: u64,
    },
    /// `release` stops rolling out.
    Halt {
        /// The release.
        release: u64,
        /// Why.
        cause: HaltCause,
    },
}

/// Why a release halted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HaltCause {
    /// This instance of the release failed: it exited, failed its health check or has no
    /// image. The caller knows where it ran and what it reported, to say so.
    InstanceFailed {
        /// The instance's id.
        instance: String,
    },
    /// The release did not become healthy before its deadline.
    Deadline,
}

/// The cause in words, without what only the caller knows of the instance.
impl fmt::Display for HaltCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HaltCause::InstanceFailed { instance } => {
                write!(f, "instance {instance} of the new release failed")
            }
            HaltCause::Deadline => {
                f.write_str("the new release did not become healthy before its deadline")
            }
        }
    }
}

/// The rollout's decision for one app.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RolloutStep {
    /// Instances wanted per release, for the scheduler.
    pub wants: Vec<ReleaseWant>,
    /// A status change to commit, if any.
    pub change: Option<ReleaseChange>,
}

/// Decides one step of an app's rollout. `deadline_passed` tells whether the rolling release
/// has gone past its progress deadline.
pub fn step(
    replicas: u32,
    releases: &[ReleaseInfo],
    instances: &[InstanceHealth],
    deadline_passed: bool,
) -> RolloutStep {
    let newest = |status| {
        releases
            .iter()
            .filter(|r| r.status == status)
            .map(|r| r.number)
            .max()
    };
    let active = newest(ReleaseStatus::Active);
    let serving = |n: u32| {
        active
            .map(|release| vec![ReleaseWant { release, count: n }])
            .unwrap_or_default()
    };
    let Some(rolling) = newest(ReleaseStatus::Rolling).filter(|r| active.is_none_or(|a| *r > a))
    else {
        return RolloutStep {
            wants: serving(replicas),
            change: None,
        };
    };
    let of_new = || instances.iter().filter(|i| i.release == rolling);
    let halt = |cause| RolloutStep {
        wants: serving(replicas),
        change: Some(ReleaseChange::Halt {
            release: rolling,
            cause,
        }),
    };
    if let Some(failed) = of_new().find(|i| i.failed) {
        return halt(HaltCause::InstanceFailed {
            instance: failed.id.to_string(),
        });
    }
    let healthy = u32::try_from(of_new().filter(|i| i.healthy).count()).unwrap_or(u32::MAX);
    if healthy >= replicas {
        return RolloutStep {
            wants: vec![ReleaseWant {
                release: rolling,
                count: replicas,
            }],
            change: Some(ReleaseChange::Promote { release: rolling }),
        };
    }
    if deadline_passed {
        return halt(HaltCause::Deadline);
    }
    if active.is_none() {
        // Nothing serves yet: start every instance at once.
        return RolloutStep {
            wants: vec![ReleaseWant {
                release: rolling,
                count: replicas,
            }],
            change: None,
        };
    }
    let mut wants = vec![ReleaseWant {
        release: rolling,
        count: (healthy + 1).min(replicas),
    }];
    wants.extend(serving(replicas - healthy));
    RolloutStep {
        wants,
        change: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(number: u64, status: ReleaseStatus) -> ReleaseInfo {
        ReleaseInfo { number, status }
    }

    fn inst(release: u64, healthy: bool, failed: bool) -> InstanceHealth<'static> {
        InstanceHealth {
            id: if failed { "bad" } else { "good" },
            release,
            healthy,
            failed,
        }
    }

    fn want(release: u64, count: u32) -> ReleaseWant {
        ReleaseWant { release, count }
    }

    use ReleaseStatus::*;

    #[test]
    fn steady_state_wants_the_active_release() {
        let s = step(3, &[rel(1, Active)], &[], false);
        assert_eq!(s.wants, vec![want(1, 3)]);
        assert_eq!(s.change, None);
    }

    #[test]
    fn rolls_one_at_a_time() {
        let releases = [rel(1, Active), rel(2, Rolling)];
        let old = [inst(1, true, false); 3];
        let s = step(3, &releases, &old, false);
        assert_eq!(s.wants, vec![want(2, 1), want(1, 3)]);
        // A pending new instance: no second one yet, no old one stopped.
        let mut live = old.to_vec();
        live.push(inst(2, false, false));
        assert_eq!(step(3, &releases, &live, false).wants, s.wants);
        // It became healthy: one old instance goes, the next new one comes.
        live[3] = inst(2, true, false);
        let s = step(3, &releases, &live, false);
        assert_eq!(s.wants, vec![want(2, 2), want(1, 2)]);
    }

    #[test]
    fn promotes_when_all_new_are_healthy() {
        let releases = [rel(1, Active), rel(2, Rolling)];
        let live = [inst(2, true, false); 2];
        let s = step(2, &releases, &live, false);
        assert_eq!(s.wants, vec![want(2, 2)]);
        assert_eq!(s.change, Some(ReleaseChange::Promote { release: 2 }));
    }

    #[test]
    fn a_failed_instance_halts_and_keeps_the_old_release() {
        let releases = [rel(1, Active), rel(2, Rolling)];
        let live = [
            inst(1, true, false),
            inst(1, true, false),
            inst(2, false, true),
        ];
        let s = step(2, &releases, &live, false);
        assert_eq!(s.wants, vec![want(1, 2)]);
        let instance = "bad".to_string();
        assert_eq!(
            s.change,
            Some(ReleaseChange::Halt {
                release: 2,
                cause: HaltCause::InstanceFailed { instance }
            })
        );
    }

    #[test]
    fn deadline_halts() {
        let releases = [rel(1, Active), rel(2, Rolling)];
        let s = step(1, &releases, &[inst(2, false, false)], true);
        assert_eq!(
            s.change,
            Some(ReleaseChange::Halt {
                release: 2,
                cause: HaltCause::Deadline
            })
        );
    }

    #[test]
    fn first_release_starts_everything() {
        let s = step(3, &[rel(1, Rolling)], &[], false);
        assert_eq!(s.wants, vec![want(1, 3)]);
    }

    #[test]
    fn halted_and_superseded_releases_want_nothing() {
        let releases = [rel(1, Superseded), rel(2, Active), rel(3, Halted)];
        let s = step(2, &releases, &[inst(3, false, true)], false);
        assert_eq!(s.wants, vec![want(2, 2)]);
        assert_eq!(s.change, None);
    }
}
