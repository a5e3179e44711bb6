//! What the router remembers about each upstream (an app's backend or another region's
//! router) across route tables: requests in flight, for least-outstanding balancing, and
//! ejection after a refused connection. Keyed by `host:port`, so a backend keeps its state
//! when a new table lists it again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use http::uri::Authority;
use prometheus_client::metrics::counter::Counter;

use tokio::net::TcpStream;

use crate::pool::{IdleList, Sender};

/// Per-upstream state.
pub(crate) struct Upstream {
    authority: Authority,
    outstanding: AtomicU32,
    /// Milliseconds since the registry's epoch until which the upstream is skipped.
    ejected_until: AtomicU64,
    last_used: AtomicU64,
    /// Keep-alive connections waiting for a request.
    idle: IdleList<Sender>,
    /// The fast lane's keep-alive connections.
    lane_idle: IdleList<TcpStream>,
}

impl Upstream {
    pub(crate) fn authority(&self) -> &Authority {
        &self.authority
    }

    pub(crate) fn idle(&self) -> &IdleList<Sender> {
        &self.idle
    }

    pub(crate) fn lane_idle(&self) -> &IdleList<TcpStream> {
        &self.lane_idle
    }
}

/// One request counted against an upstream until dropped, with the connection that carries
/// it, which goes back to the upstream's idle list then.
pub(crate) struct InFlight {
    upstream: Arc<Upstream>,
    conn: Option<Sender>,
}

impl InFlight {
    pub(crate) fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// Hands the connection that carried the request back when the request is done.
    pub(crate) fn keep(&mut self, conn: Sender) {
        self.conn = Some(conn);
    }

    /// Lets the connection go instead: it now carries an upgraded protocol.
    pub(crate) fn release(&mut self) {
        self.conn = None;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.upstream.idle.put(conn);
        }
        self.upstream.outstanding.fetch_sub(1, Relaxed);
    }
}

/// Every upstream the router has sent to lately.
pub(crate) struct Upstreams {
    epoch: Instant,
    states: RwLock<HashMap<String, Arc<Upstream>>>,
    /// Where the next scan starts, so ties rotate.
    turn: AtomicUsize,
    ejections: Counter,
}

impl Upstreams {
    pub(crate) fn new(ejections: Counter) -> Self {
        Self {
            epoch: Instant::now(),
            states: RwLock::new(HashMap::new()),
            turn: AtomicUsize::new(0),
            ejections,
        }
    }

    fn now_ms(&self) -> u64 {
        // +1 keeps 0 free to mean "never ejected".
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// The state of `address` (`host:port`), created on first use; `None` when the address
    /// cannot be an authority.
    fn state(&self, address: &str) -> Option<Arc<Upstream>> {
        if let Some(s) = read(&self.states).get(address) {
            return Some(Arc::clone(s));
        }
        let authority = Authority::try_from(address).ok()?;
        let mut states = write(&self.states);
        let state = states.entry(address.to_string()).or_insert_with(|| {
            Arc::new(Upstream {
                authority,
                outstanding: AtomicU32::new(0),
                ejected_until: AtomicU64::new(0),
                last_used: AtomicU64::new(0),
                idle: IdleList::default(),
                lane_idle: IdleList::default(),
            })
        });
        Some(Arc::clone(state))
    }

    /// Picks among `items` (skipping the indexes in `tried`) the upstream with the fewest
    /// requests in flight, ties taken in turn, and counts the request against it.
    ///
    /// Ejected upstreams are skipped; when every remaining one is ejected, the one whose
    /// ejection ends first is tried anyway, so a region whose backends all failed once stays
    /// usable as soon as one of them is back (rather than spilling to another region, which
    /// the caller does only for other regions' routers).
    pub(crate) fn pick<T>(
        &self,
        items: &[T],
        address: impl Fn(&T) -> &str,
        tried: &[usize],
    ) -> Option<(usize, InFlight)> {
        let n = items.len();
        if n == 0 {
            return None;
        }
        let now = self.now_ms();
        let start = self.turn.fetch_add(1, Relaxed) % n;
        let mut live: Option<(usize, Arc<Upstream>, u32)> = None;
        let mut ejected: Option<(usize, Arc<Upstream>, u64)> = None;
        for k in 0..n {
            let i = (start + k) % n;
            if tried.contains(&i) {
                continue;
            }
            let Some(state) = self.state(address(&items[i])) else {
                continue;
            };
            let until = state.ejected_until.load(Relaxed);
            if until > now {
                if ejected.as_ref().is_none_or(|(_, _, u)| until < *u) {
                    ejected = Some((i, state, until));
                }
                continue;
            }
            let busy = state.outstanding.load(Relaxed);
            if live.as_ref().is_none_or(|(_, _, b)| busy < *b) {
                let idle = busy == 0;
                live = Some((i, state, busy));
                if idle {
                    break;
                }
            }
        }
        let (i, state) = match (live, ejected) {
            (Some((i, s, _)), _) | (None, Some((i, s, _))) => (i, s),
            (None, None) => return None,
        };
        state.outstanding.fetch_add(1, Relaxed);
        state.last_used.store(now, Relaxed);
        Some((
            i,
            InFlight {
                upstream: state,
                conn: None,
            },
        ))
    }

    /// Skips `upstream` for `period` after it refused a connection.
    pub(crate) fn eject(&self, upstream: &Upstream, period: Duration) {
        let now = self.now_ms();
        let before = upstream
            .ejected_until
            .swap(now + period.as_millis() as u64, Relaxed);
        if before <= now {
            self.ejections.inc();
        }
    }

    /// Ends an ejection early: `upstream` just answered.
    pub(crate) fn reinstate(&self, upstream: &Upstream) {
        if upstream.ejected_until.load(Relaxed) != 0 {
            upstream.ejected_until.store(0, Relaxed);
        }
    }

    /// Forgets upstreams unused for `idle` that hold nothing worth keeping (no request in
    /// flight, no ejection running). A forgotten upstream that comes back starts afresh,
    /// exactly as it would have been.
    pub(crate) fn prune(&self, idle: Duration) {
        let now = self.now_ms();
        let idle = idle.as_millis() as u64;
        write(&self.states).retain(|_, s| {
            s.outstanding.load(Relaxed) > 0
                || s.ejected_until.load(Relaxed) > now
                || now.saturating_sub(s.last_used.load(Relaxed)) < idle
        });
    }

    /// Closes keep-alive connections idle for `idle_timeout` or more.
    pub(crate) fn close_idle(&self, idle_timeout: Duration) {
        for state in read(&self.states).values() {
            state.idle.close_idle(idle_timeout);
            state.lane_idle.close_idle(idle_timeout);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        read(&self.states).len()
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // The map stays consistent whatever panicked while holding it.
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: [&str; 2] = ["127.0.0.1:1", "127.0.0.1:2"];

    fn upstreams() -> Upstreams {
        Upstreams::new(Counter::default())
    }

    #[test]
    fn the_least_busy_upstream_wins_and_ties_rotate() {
        let u = upstreams();
        let (a, first) = u.pick(&TWO, |s| s, &[]).unwrap();
        let (b, _second) = u.pick(&TWO, |s| s, &[]).unwrap();
        assert_ne!(a, b, "the busy one is avoided");
        drop(first);
        let (c, _third) = u.pick(&TWO, |s| s, &[]).unwrap();
        assert_eq!(c, a, "the one whose request finished is idle again");
    }

    #[test]
    fn ejected_upstreams_are_skipped_but_not_abandoned() {
        let u = upstreams();
        let (i, f) = u.pick(&TWO, |s| s, &[]).unwrap();
        u.eject(f.upstream(), Duration::from_secs(60));
        drop(f);
        for _ in 0..4 {
            let (j, _f) = u.pick(&TWO, |s| s, &[]).unwrap();
            assert_ne!(j, i);
        }
        let (j, f) = u.pick(&TWO, |s| s, &[1 - i]).unwrap();
        assert_eq!(j, i, "tried anyway when it is the only one left");
        u.eject(f.upstream(), Duration::from_secs(60));
        assert_eq!(
            u.ejections.get(),
            1,
            "a running ejection is not counted twice"
        );
        u.reinstate(f.upstream());
        drop(f);
        let picks: Vec<usize> = (0..2)
            .map(|_| u.pick(&TWO, |s| s, &[]).unwrap().0)
            .collect();
        assert!(picks.contains(&i));
    }

    #[test]
    fn tried_and_malformed_addresses_are_skipped() {
        let u = upstreams();
        assert!(u.pick(&TWO, |s| s, &[0, 1]).is_none());
        assert!(u.pick(&["not an authority/"], |s| s, &[]).is_none());
        assert!(u.pick::<&str>(&[], |s| s, &[]).is_none());
    }

    #[test]
    fn idle_upstreams_are_forgotten() {
        let u = upstreams();
        let (_, busy) = u.pick(&TWO[..1], |s| s, &[]).unwrap();
        drop(u.pick(&TWO[1..], |s| s, &[]).unwrap());
        u.prune(Duration::ZERO);
        assert_eq!(u.len(), 1, "the upstream with a request in flight stays");
        drop(busy);
        u.prune(Duration::ZERO);
        assert_eq!(u.len(), 0);
    }
}
