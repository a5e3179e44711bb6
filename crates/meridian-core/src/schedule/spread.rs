//! Which region an app's next instance goes to.
//!
//! Outside a rollout: the allowed region with the fewest instances of the app, the first by
//! name on a tie. From no instances that gives the app's fresh spread: an even share per
//! region, the regions first by name taking one more.
//!
//! In a rollout the app wants two releases: the staying one (the newest wanted) and an
//! outgoing one whose instances each stay until a healthy staying instance replaces them.
//! Counting the outgoing instances toward the spread would send every new instance to the
//! first region by name while the old ones there still run, and let the keep pass stop old
//! instances elsewhere. So a staying instance counts only staying instances, and goes first
//! to a region that still has an outgoing instance waiting for its replacement (one no
//! staying instance there, not yet healthy, already covers) and whose staying instances are
//! below its share of the fresh spread; failing that, to the region with the fewest staying
//! instances. An outgoing instance (placed only when one was lost or the app was scaled up)
//! still counts every instance, so it goes back where one is missing.
//!
//! Started from the fresh spread, a rollout therefore replaces region by region: each new
//! instance goes where an old one waits, the keep pass then stops an old one where the
//! region has its replacement (it keeps the whole app evenly spread, new instances
//! included), and the rollout ends on the fresh spread again. Started from another spread
//! (a region was lost and came back, nodes were added), the new release still ends on the
//! fresh spread: regions below their share get the new instances, the others lose old ones.
//!
//! The share counts the app's eventual size: the staying release's wanted count, plus the
//! outgoing instances still waiting that the staying instances about to be placed do not
//! cover. It is spread over the allowed regions with a ready node; a region short of
//! capacity only loses its turn, as in a fresh plan.

use super::index::{ClusterIndex, Policy};
use super::keep::Kept;

/// Per-region counts of one app while its missing instances are placed.
pub(super) struct Spread {
    regions: Vec<Tally>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    /// Kept and placed instances of every wanted release.
    all: u32,
    /// Of which the staying release's.
    staying: u32,
    /// Of which staying and not healthy yet (only while counting the kept ones).
    pending: u32,
    /// Outgoing instances waiting for a replacement that no pending staying one covers.
    waiting: u32,
    /// The region's share of the app's eventual size; only set when something waits.
    share: u32,
}

impl Spread {
    /// Counts `kept` and works out every region's share.
    pub fn new(ix: &ClusterIndex<'_>, policy: &Policy<'_>, kept: &Kept) -> Self {
        let mut regions = vec![Tally::default(); ix.region_names.len()];
        for k in &kept.ready {
            let Some(r) = ix.node_region[k.node] else {
                continue;
            };
            let t = &mut regions[r];
            t.all += 1;
            if k.staying {
                t.staying += 1;
                t.pending += u32::from(!k.healthy);
            } else {
                t.waiting += 1;
            }
        }
        let mut waiting = 0;
        for t in &mut regions {
            t.waiting = t.waiting.saturating_sub(t.pending);
            waiting += t.waiting;
        }
        let Some(staying) = kept.staying.filter(|_| waiting > 0) else {
            return Self { regions };
        };
        let missing = kept
            .missing
            .iter()
            .find(|(release, _)| *release == staying.release)
            .map_or(0, |&(_, m)| m);
        let size = staying.count + waiting.saturating_sub(missing);
        let open = |r: &usize| policy.allowed[*r] && !ix.ready_in_region[*r].is_empty();
        let open_regions = (0..regions.len()).filter(open).count() as u32;
        if let (Some(each), Some(extra)) = (
            size.checked_div(open_regions),
            size.checked_rem(open_regions),
        ) {
            for (k, r) in (0..regions.len()).filter(open).enumerate() {
                regions[r].share = each + u32::from((k as u32) < extra);
            }
        }
        Self { regions }
    }

    /// Orders candidate regions for the next instance, smallest first; `staying` tells which
    /// kind of instance it is.
    pub fn rank(&self, r: usize, staying: bool) -> (bool, u32) {
        let t = &self.regions[r];
        if staying {
            (!(t.waiting > 0 && t.staying < t.share), t.staying)
        } else {
            (false, t.all)
        }
    }

    /// Counts an instance placed in region `r`.
    pub fn add(&mut self, r: usize, staying: bool) {
        let t = &mut self.regions[r];
        t.all += 1;
        if staying {
            t.staying += 1;
            t.waiting = t.waiting.saturating_sub(1);
        } else {
            t.waiting += 1;
        }
    }
}
