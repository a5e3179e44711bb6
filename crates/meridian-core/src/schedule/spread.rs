//! Which region an app's next instance goes to: the allowed region with the fewest instances
//! of the app, the first by name on a tie. From no instances that gives the app's fresh
//! spread: an even share per region, the regions first by name taking one more; and from any
//! spread below the fresh one for its size, it fills up to exactly the fresh one.
//!
//! In a rollout the app wants two releases: the staying one (the newest wanted) and an
//! outgoing one whose instances each stay until a healthy staying instance replaces them.
//! Counting the outgoing instances would send every new instance to the first region by name
//! while the old ones there still run, and leave the keep pass to stop old instances
//! elsewhere. So what counts depends on the instance being placed:
//!
//! - a staying instance counts only staying instances (healthy or starting). The new release
//!   thus fills the fresh spread in its own order. Started from the fresh spread, that order
//!   sends each new instance to a region where an old one still waits for its replacement (the
//!   fresh spread of fewer instances is nowhere larger), and the keep pass, which keeps the
//!   whole app evenly spread, then stops the old one in the region that has its replacement.
//!   Started from another spread (a region was lost and came back), the regions short of their
//!   share get theirs first and the others lose old ones. Either way the rollout ends on the
//!   fresh spread, and a scale change mid-rollout only moves the target;
//! - an outgoing instance (placed only when one was lost or the app was scaled up
//!   mid-rollout) counts the instances that serve: outgoing ones, and staying ones that passed
//!   their health check (one still starting has replaced nothing yet). It goes back where one
//!   is missing, and if the rollout halts, the outgoing release is on the fresh spread again.
//!
//! Outside a rollout both count every instance of the app, as they always have.

use super::index::ClusterIndex;
use super::keep::Kept;

/// Per-region counts of one app while its missing instances are placed.
pub(super) struct Spread {
    regions: Vec<Tally>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    /// Staying instances, kept and placed.
    staying: u32,
    /// Outgoing instances, kept and placed, and staying ones that passed their health check.
    serving: u32,
}

impl Spread {
    /// Counts `kept`.
    pub fn new(ix: &ClusterIndex<'_>, kept: &Kept) -> Self {
        let mut regions = vec![Tally::default(); ix.region_names.len()];
        for k in &kept.ready {
            if let Some(r) = ix.node_region[k.node] {
                let t = &mut regions[r];
                t.staying += u32::from(k.staying);
                t.serving += u32::from(!k.staying || k.healthy);
            }
        }
        Self { regions }
    }

    /// How many instances region `r` counts against the next one, staying or outgoing: the
    /// fewest goes first.
    pub fn count(&self, r: usize, staying: bool) -> u32 {
        let t = &self.regions[r];
        if staying {
            t.staying
        } else {
            t.serving
        }
    }

    /// Counts an instance placed in region `r`. It is not healthy yet.
    pub fn add(&mut self, r: usize, staying: bool) {
        let t = &mut self.regions[r];
        if staying {
            t.staying += 1;
        } else {
            t.serving += 1;
        }
    }
}
