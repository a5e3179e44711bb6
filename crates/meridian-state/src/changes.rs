//! What each applied entry touched, so views kept outside the state (the leader's scheduler,
//! the route table) refresh only what changed instead of re-reading every table.
//!
//! The state machine records an entry's marks before its transaction commits. A reader that
//! opened a [`crate::reader::ReadSnapshot`] at applied index `I` and asks for the marks up to
//! `I` therefore gets every mark of what its snapshot shows, and nothing it cannot see yet.
//!
//! The log is bounded: past [`MAX_MARKS`] marks the oldest entries are dropped, and a reader
//! whose last look is older than what is kept is told to reload everything. Readers keep their
//! own position, so several can follow the same log.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Mutex, PoisonError};

use meridian_core::Name;

/// Most app and node marks kept. A reader that falls further behind reloads its whole view.
pub const MAX_MARKS: usize = 16_384;

/// What one or more applied entries touched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    /// Apps whose spec, releases or instances (desired or observed) changed.
    pub apps: BTreeSet<Name>,
    /// Nodes that registered or changed status.
    pub nodes: BTreeSet<Name>,
    /// Regions or jurisdiction groups changed: every app's policy may read differently.
    pub regions: bool,
    /// Something only the route table reads changed (routers, the apps domain).
    pub routing: bool,
    /// Anything at all may have changed (a snapshot was installed): reload every view.
    pub everything: bool,
}

impl Touched {
    /// Nothing was touched.
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
            && self.nodes.is_empty()
            && !self.regions
            && !self.routing
            && !self.everything
    }

    /// Marks an app.
    pub fn app(&mut self, app: &Name) {
        if !self.apps.contains(app) {
            self.apps.insert(app.clone());
        }
    }

    /// Marks an app given by its stored name; a name that does not parse is ignored (it
    /// cannot be an app).
    pub fn app_str(&mut self, app: &str) {
        if let Ok(name) = Name::parse(app) {
            self.apps.insert(name);
        }
    }

    /// Marks a node.
    pub fn node(&mut self, node: &Name) {
        if !self.nodes.contains(node) {
            self.nodes.insert(node.clone());
        }
    }

    /// Everything `other` marks, marked here too.
    pub fn merge(&mut self, other: Touched) {
        self.apps.extend(other.apps);
        self.nodes.extend(other.nodes);
        self.regions |= other.regions;
        self.routing |= other.routing;
        self.everything |= other.everything;
    }

    fn marks(&self) -> usize {
        self.apps.len() + self.nodes.len() + 1
    }
}

/// The marks of recently applied entries, by log index.
#[derive(Debug, Default)]
pub struct ChangeLog {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: VecDeque<(u64, Touched)>,
    marks: usize,
    /// Entries at or below this index were dropped.
    floor: u64,
}

impl ChangeLog {
    /// Records what the entry at `index` touched. Indexes only grow; an entry that touched
    /// nothing is not stored.
    pub fn record(&self, index: u64, touched: Touched) {
        if touched.is_empty() {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.marks += touched.marks();
        inner.entries.push_back((index, touched));
        while inner.marks > MAX_MARKS {
            let Some((dropped, t)) = inner.entries.pop_front() else {
                break;
            };
            inner.marks -= t.marks();
            inner.floor = inner.floor.max(dropped);
        }
    }

    /// What entries after `after` up to `upto` touched, merged. `everything` is set when some
    /// of them were dropped or a snapshot was installed among them.
    pub fn since(&self, after: u64, upto: u64) -> Touched {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Touched::default();
        if after < inner.floor {
            out.everything = true;
            return out;
        }
        let start = inner.entries.partition_point(|(i, _)| *i <= after);
        for (index, t) in inner.entries.range(start..) {
            if *index > upto {
                break;
            }
            if t.everything {
                return Touched {
                    everything: true,
                    ..Touched::default()
                };
            }
            out.apps.extend(t.apps.iter().cloned());
            out.nodes.extend(t.nodes.iter().cloned());
            out.regions |= t.regions;
            out.routing |= t.routing;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::parse(s).unwrap()
    }

    fn apps(names: &[&str]) -> Touched {
        let mut t = Touched::default();
        for a in names {
            t.app(&n(a));
        }
        t
    }

    #[test]
    fn since_merges_the_entries_in_range() {
        let log = ChangeLog::default();
        log.record(3, apps(&["a"]));
        log.record(5, apps(&["b"]));
        log.record(9, apps(&["c"]));
        assert_eq!(log.since(0, 5), apps(&["a", "b"]));
        assert_eq!(log.since(3, 9), apps(&["b", "c"]));
        assert_eq!(log.since(9, 20), Touched::default());
    }

    #[test]
    fn a_reader_behind_what_is_kept_reloads_everything() {
        let log = ChangeLog::default();
        for i in 1..=(MAX_MARKS as u64) {
            log.record(i, apps(&["a"]));
        }
        assert!(log.since(0, u64::MAX).everything);
        assert!(!log.since(MAX_MARKS as u64 - 10, u64::MAX).everything);
    }

    #[test]
    fn an_installed_snapshot_means_everything() {
        let log = ChangeLog::default();
        log.record(2, apps(&["a"]));
        log.record(
            4,
            Touched {
                everything: true,
                ..Touched::default()
            },
        );
        assert!(log.since(0, 3).apps.contains(&n("a")));
        assert!(log.since(0, 4).everything);
        assert!(!log.since(4, 10).everything);
    }
}
