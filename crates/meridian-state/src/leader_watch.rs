//! Faster elections after a leader is lost.
//!
//! openraft 0.9 makes a follower wait out the leader lease (`election_max_ms` since the last
//! heartbeat, during which it also refuses votes) *and then* a full random election timeout
//! before it campaigns: a dead leader is replaced between `election_max + election_min` and
//! `2 × election_max` after its last heartbeat. The second wait only exists to spread the
//! candidates apart so that they do not split the vote.
//!
//! The watch spreads them apart deterministically instead. Each follower ranks itself among
//! the voters other than the silent leader (by node id) and starts an election once the lease
//! has run out everywhere, `lease + one heartbeat + rank × stagger` after the last heartbeat it
//! received. The first-ranked follower's vote request reaches the others before their turn,
//! and their lease has expired by then, so they grant it. The cluster elects a new leader
//! about one lease and one heartbeat after the old one went silent.
//!
//! The first-ranked follower's election can still find no majority: a follower whose last
//! heartbeat came earlier (its replication stream was backing off, say) may have campaigned
//! first in the same term with a shorter log, which the first-ranked one refuses while the
//! other has already voted for itself. Neither wins that term, and openraft would wait a full
//! random election timeout before the next. So the first-ranked follower, when it still knows
//! of no elected leader two heartbeats after it campaigned, campaigns again in a new term (at
//! most [`MAX_RETRIES`] times); the others leave their retries to openraft.
//!
//! Safety does not depend on any of this: Raft stays correct however early or often elections
//! start. The watch only acts while this node follows a leader it has seen elected (a
//! committed vote), or has campaigned first in line and seen no leader elected since; when
//! anything else is off, openraft's own timer decides as before.

use std::time::Duration;

use openraft::ServerState;

use crate::node::RaftSettings;
use crate::types::{NodeId, Raft};

/// What the watch needs to know about this node, read from the Raft state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// This node's id.
    pub id: NodeId,
    /// Whether this node is a follower.
    pub follower: bool,
    /// The leader this node follows, when its vote is for an elected leader.
    pub elected_leader: Option<NodeId>,
    /// The cluster's voters.
    pub voters: Vec<NodeId>,
    /// Time since the last heartbeat (or vote change), if known.
    pub silent_for: Option<Duration>,
}

/// When a follower of a silent leader starts its own election, counted from the leader's
/// last heartbeat; `None` when the watch leaves the decision to openraft.
pub fn campaign_after(obs: &Observation, settings: &RaftSettings) -> Option<Duration> {
    let rank = rank(obs)?;
    let lease = settings.election_max_ms;
    let stagger = stagger_ms(settings);
    Some(Duration::from_millis(
        lease + settings.heartbeat_ms + rank * stagger,
    ))
}

/// This follower's place in line among the voters other than the leader it follows (0 is
/// first); `None` when the watch does not act.
pub fn rank(obs: &Observation) -> Option<u64> {
    if !obs.follower || !obs.voters.contains(&obs.id) || obs.voters.len() < 2 {
        return None;
    }
    let leader = obs.elected_leader?;
    let mut others: Vec<NodeId> = obs
        .voters
        .iter()
        .copied()
        .filter(|v| *v != leader)
        .collect();
    others.sort_unstable();
    Some(others.iter().position(|v| *v == obs.id)? as u64)
}

/// How many times the first-ranked follower campaigns again after an election that found no
/// majority, before leaving it to openraft.
pub const MAX_RETRIES: u32 = 3;

/// Whether a node that the watch made campaign `tries` times, the last `since` ago, and that
/// still knows of no elected leader (itself included), campaigns again now: two heartbeats give
/// its vote requests time to cross the widest round trip and come back.
pub fn should_retry(
    leaderless: bool,
    since: Duration,
    tries: u32,
    settings: &RaftSettings,
) -> bool {
    leaderless && tries <= MAX_RETRIES && since >= Duration::from_millis(settings.heartbeat_ms * 2)
}

/// The gap between two followers' turns: room for a vote request to cross the widest round
/// trip (about one heartbeat, as the settings are sized) with margin, and never more than
/// openraft's own randomised spread.
fn stagger_ms(settings: &RaftSettings) -> u64 {
    let spread = settings
        .election_max_ms
        .saturating_sub(settings.election_min_ms);
    (settings.heartbeat_ms * 2).min(spread.max(settings.heartbeat_ms))
}

/// Whether the follower should campaign now.
pub fn should_campaign(obs: &Observation, settings: &RaftSettings) -> bool {
    match (campaign_after(obs, settings), obs.silent_for) {
        (Some(after), Some(silent)) => silent >= after,
        _ => false,
    }
}

/// Reads what the watch needs from the Raft state; `None` once Raft has stopped.
async fn observe(raft: &Raft, id: NodeId) -> Option<Observation> {
    raft.with_raft_state(move |st| {
        let vote = st.vote_ref();
        Observation {
            id,
            follower: st.server_state == ServerState::Follower,
            elected_leader: if vote.is_committed() {
                vote.leader_id().voted_for()
            } else {
                None
            },
            voters: st.membership_state.effective().voter_ids().collect(),
            silent_for: st
                .vote_last_modified()
                .map(|t| tokio::time::Instant::now().saturating_duration_since(t)),
        }
    })
    .await
    .ok()
}

/// Watches this node's view of the leader until Raft stops.
pub async fn run(raft: Raft, id: NodeId, settings: RaftSettings) {
    let every = Duration::from_millis((settings.heartbeat_ms / 2).max(10));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When this node, first in line, last campaigned by the watch, and how many times.
    let mut first_campaign: Option<(tokio::time::Instant, u32)> = None;
    loop {
        tick.tick().await;
        let Some(obs) = observe(&raft, id).await else {
            return;
        };
        // A committed vote: some leader (maybe this node) has been elected.
        if obs.elected_leader.is_some() {
            first_campaign = None;
        }
        if let Some((at, tries)) = first_campaign {
            if should_retry(true, at.elapsed(), tries, &settings) {
                tracing::info!(
                    tries,
                    "the election found no majority; campaigning again in a new term"
                );
                if raft.trigger().elect().await.is_err() {
                    return;
                }
                first_campaign = Some((tokio::time::Instant::now(), tries + 1));
            }
            continue;
        }
        if should_campaign(&obs, &settings) {
            tracing::info!(
                leader = ?obs.elected_leader,
                silent_ms = obs.silent_for.map(|d| d.as_millis() as u64),
                "the leader has gone silent past its lease; starting an election"
            );
            if raft.trigger().elect().await.is_err() {
                return;
            }
            if rank(&obs) == Some(0) {
                first_campaign = Some((tokio::time::Instant::now(), 1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> RaftSettings {
        RaftSettings {
            heartbeat_ms: 150,
            election_min_ms: 400,
            election_max_ms: 800,
            ..RaftSettings::default()
        }
    }

    fn follower(id: NodeId, silent_ms: u64) -> Observation {
        Observation {
            id,
            follower: true,
            elected_leader: Some(1),
            voters: vec![1, 2, 3],
            silent_for: Some(Duration::from_millis(silent_ms)),
        }
    }

    #[test]
    fn followers_take_turns_after_the_lease() {
        let s = settings();
        assert_eq!(
            campaign_after(&follower(2, 0), &s),
            Some(Duration::from_millis(950))
        );
        assert_eq!(
            campaign_after(&follower(3, 0), &s),
            Some(Duration::from_millis(1250))
        );
        assert!(!should_campaign(&follower(2, 949), &s));
        assert!(should_campaign(&follower(2, 950), &s));
        assert!(!should_campaign(&follower(3, 1000), &s));
        assert!(should_campaign(&follower(3, 1250), &s));
    }

    #[test]
    fn rank_ignores_the_silent_leader() {
        let s = settings();
        let mut obs = follower(1, 0);
        obs.elected_leader = Some(2);
        assert_eq!(campaign_after(&obs, &s), Some(Duration::from_millis(950)));
        obs.id = 3;
        assert_eq!(campaign_after(&obs, &s), Some(Duration::from_millis(1250)));
    }

    #[test]
    fn the_first_turn_comes_before_openraft_would_campaign() {
        // openraft campaigns no sooner than lease + election_min after the last heartbeat.
        for s in [settings(), RaftSettings::default()] {
            let first = campaign_after(&follower(2, 0), &s).unwrap();
            assert!(first < Duration::from_millis(s.election_max_ms + s.election_min_ms));
            let second = campaign_after(&follower(3, 0), &s).unwrap();
            assert!(second > first);
        }
    }

    #[test]
    fn only_the_first_in_line_campaigns_again_and_not_for_ever() {
        let s = settings();
        assert_eq!(rank(&follower(2, 0)), Some(0));
        assert_eq!(rank(&follower(3, 0)), Some(1));
        let two_heartbeats = Duration::from_millis(300);
        assert!(!should_retry(true, Duration::from_millis(299), 1, &s));
        assert!(should_retry(true, two_heartbeats, 1, &s));
        assert!(should_retry(true, two_heartbeats, MAX_RETRIES, &s));
        assert!(!should_retry(true, two_heartbeats, MAX_RETRIES + 1, &s));
        assert!(
            !should_retry(false, two_heartbeats, 1, &s),
            "a leader was elected"
        );
    }

    #[test]
    fn leaves_everything_else_to_openraft() {
        let s = settings();
        let silent = 60_000;
        let mut candidate = follower(2, silent);
        candidate.follower = false;
        assert!(!should_campaign(&candidate, &s));

        let mut no_leader = follower(2, silent);
        no_leader.elected_leader = None;
        assert!(!should_campaign(&no_leader, &s));

        let mut learner = follower(4, silent);
        learner.voters = vec![1, 2, 3];
        assert!(!should_campaign(&learner, &s));

        let mut alone = follower(2, silent);
        alone.voters = vec![2];
        alone.elected_leader = Some(2);
        assert!(!should_campaign(&alone, &s));

        let mut unknown = follower(2, 0);
        unknown.silent_for = None;
        assert!(!should_campaign(&unknown, &s));
    }
}
