//! The servers a client knows and which one it asks first.
//!
//! Two preferences, shared by every clone of a client (and every task using it):
//! - the **current** server: the one that answered last. Calls any server can answer (health,
//!   `stale=true` reads, long polls) start there.
//! - the **leader**, when known: a follower that relays an answer from the leader names it
//!   (`meridian-served-by`), and a server that answers a leader-bound call itself is the leader.
//!   Calls the leader serves start there, saving the follower's hop.
//!
//! A server that fails stops being preferred: the next call starts at the one after it.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::BuildError;

/// No leader known.
const NONE: usize = usize::MAX;

/// The server list and the preferences.
#[derive(Debug)]
pub(crate) struct Servers {
    urls: Vec<String>,
    current: AtomicUsize,
    leader: AtomicUsize,
}

impl Servers {
    /// Checks and normalises `urls` (no trailing `/`).
    pub(crate) fn new(urls: Vec<String>) -> Result<Self, BuildError> {
        if urls.is_empty() {
            return Err(BuildError::NoServers);
        }
        let urls = urls
            .into_iter()
            .map(|u| check(u.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            urls,
            current: AtomicUsize::new(0),
            leader: AtomicUsize::new(NONE),
        })
    }

    /// Every server, as configured.
    pub(crate) fn urls(&self) -> &[String] {
        &self.urls
    }

    /// The URL of server `i`.
    pub(crate) fn url(&self, i: usize) -> &str {
        &self.urls[i]
    }

    /// Which server a call starts at.
    pub(crate) fn first(&self, wants_leader: bool) -> usize {
        let leader = self.leader.load(Ordering::Relaxed);
        if wants_leader && leader != NONE {
            leader
        } else {
            self.current.load(Ordering::Relaxed)
        }
    }

    /// The order a call tries servers in: each once, from [`Servers::first`] on.
    pub(crate) fn order(&self, wants_leader: bool) -> impl Iterator<Item = usize> {
        let n = self.urls.len();
        let first = self.first(wants_leader);
        (0..n).map(move |k| (first + k) % n)
    }

    /// The leader as last learnt, if any.
    pub(crate) fn leader(&self) -> Option<usize> {
        Some(self.leader.load(Ordering::Relaxed)).filter(|&i| i != NONE)
    }

    /// Server `i` answered. `hint` is the leader a relayed answer named; `leads` says that `i`
    /// answered a leader-bound call itself, so it is the leader.
    pub(crate) fn answered(&self, i: usize, hint: Option<&str>, leads: bool) {
        self.current.store(i, Ordering::Relaxed);
        let leader = match hint {
            Some(url) => self.position(url),
            None if leads => Some(i),
            None => None,
        };
        if let Some(l) = leader {
            self.leader.store(l, Ordering::Relaxed);
        }
    }

    /// Server `i` failed: it is no longer preferred for anything.
    pub(crate) fn failed(&self, i: usize) {
        let _ = self
            .leader
            .compare_exchange(i, NONE, Ordering::Relaxed, Ordering::Relaxed);
        let next = (i + 1) % self.urls.len();
        // Several tasks share the preference; only the first to see `i` fail moves it.
        let _ = self
            .current
            .compare_exchange(i, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// The configured server at `url` (as a leader advertises itself), if any.
    pub(crate) fn position(&self, url: &str) -> Option<usize> {
        let url = url.trim().trim_end_matches('/');
        self.urls.iter().position(|u| u.eq_ignore_ascii_case(url))
    }
}

/// `addr` without a trailing `/`, if it is an http(s) URL with a host.
fn check(addr: &str) -> Result<String, BuildError> {
    let bad = || BuildError::BadAddress {
        addr: addr.to_string(),
    };
    let trimmed = addr.trim_end_matches('/');
    let parsed = reqwest::Url::parse(trimmed).map_err(|_| bad())?;
    let has_host = parsed.host_str().is_some_and(|h| !h.is_empty());
    if !matches!(parsed.scheme(), "http" | "https") || !has_host {
        return Err(bad());
    }
    Ok(trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Servers {
        Servers::new(vec![
            "http://a:1/".into(),
            "http://b:1".into(),
            "http://c:1".into(),
        ])
        .unwrap()
    }

    fn order(s: &Servers, leader: bool) -> Vec<usize> {
        s.order(leader).collect()
    }

    #[test]
    fn addresses_are_checked_and_trimmed() {
        let s = three();
        assert_eq!(s.urls(), ["http://a:1", "http://b:1", "http://c:1"]);
        assert!(Servers::new(vec!["https://meridian.example".into()]).is_ok());
        for bad in ["127.0.0.1:7001", "http://", "ftp://a", "a b"] {
            let e = Servers::new(vec![bad.into()]).unwrap_err();
            assert!(matches!(e, BuildError::BadAddress { .. }), "{bad}: {e}");
        }
        assert!(matches!(Servers::new(vec![]), Err(BuildError::NoServers)));
    }

    #[test]
    fn calls_start_at_the_server_that_answered_last() {
        let s = three();
        assert_eq!(order(&s, false), [0, 1, 2]);
        s.answered(2, None, false);
        assert_eq!(order(&s, false), [2, 0, 1]);
        assert_eq!(order(&s, true), [2, 0, 1], "no leader known yet");
    }

    #[test]
    fn leader_hints_steer_leader_bound_calls_only() {
        let s = three();
        s.answered(0, Some("http://B:1/"), true);
        assert_eq!(s.leader(), Some(1));
        assert_eq!(order(&s, true), [1, 2, 0]);
        assert_eq!(order(&s, false), [0, 1, 2], "others stay with who answered");
        // A hint naming a server the client does not know changes nothing.
        s.answered(0, Some("http://elsewhere:1"), true);
        assert_eq!(s.leader(), Some(1));
        // A server answering a leader-bound call itself leads.
        s.answered(2, None, true);
        assert_eq!(s.leader(), Some(2));
        s.answered(0, None, false);
        assert_eq!(
            s.leader(),
            Some(2),
            "a local answer says nothing of the leader"
        );
    }

    #[test]
    fn a_failed_server_is_preferred_no_more() {
        let s = three();
        s.answered(1, None, true);
        s.failed(1);
        assert_eq!(s.leader(), None);
        assert_eq!(order(&s, false), [2, 0, 1]);
        // A stale failure report for a server no longer preferred moves nothing.
        s.failed(0);
        assert_eq!(order(&s, false), [2, 0, 1]);
    }
}
