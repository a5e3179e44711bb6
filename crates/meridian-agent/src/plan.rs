//! The pure half of reconciliation: what to create, start, keep and remove, given what the
//! control plane assigned and what the engine shows. No I/O; the [`crate::Reconciler`]
//! carries the plan out.
//!
//! Architecture Invariant: a plan never removes a container that is not labelled with this
//! agent's own node, whatever the engine returned.

use std::collections::{BTreeMap, HashSet};

use meridian_api::agent::{Assignment, Assignments};

use crate::runtime::{container_name, ContainerInfo, ContainerStatus};

/// Decides whether an answer to the assignments watch replaces what the agent acts on.
/// Generations only grow; an equal or lower one (a lagging server, a watch that timed out)
/// changes nothing.
pub fn accepts(current: Option<u64>, incoming: &Assignments) -> bool {
    current.is_none_or(|g| incoming.generation > g)
}

/// The steps that bring the engine to the assignments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Assigned instances without any container, and no create already in flight.
    pub create: Vec<Assignment>,
    /// Created-but-never-started containers of assigned instances (a create interrupted by a
    /// restart): container ids.
    pub start: Vec<String>,
    /// The container kept for each assigned instance that has one (adopted after a restart
    /// just the same).
    pub keep: BTreeMap<String, ContainerInfo>,
    /// Own containers to stop and remove: not assigned, of another release, or duplicates.
    pub remove: Vec<ContainerInfo>,
}

/// Compares `desired` with the `observed` containers of `node`. Instances in `in_flight`
/// are being created right now and get no second create.
pub fn plan(
    node: &str,
    desired: &[Assignment],
    observed: &[ContainerInfo],
    in_flight: &HashSet<String>,
) -> Plan {
    let mut p = Plan::default();
    let wanted: BTreeMap<&str, &Assignment> = desired.iter().map(|a| (a.id.as_str(), a)).collect();
    // Containers of each assigned instance; everything else of ours goes.
    let mut by_instance: BTreeMap<&str, Vec<&ContainerInfo>> = BTreeMap::new();
    for c in observed.iter().filter(|c| c.node() == Some(node)) {
        let assigned = c.instance().and_then(|i| wanted.get(i));
        match assigned {
            Some(a) if c.release() == Some(a.release) => {
                by_instance.entry(a.id.as_str()).or_default().push(c);
            }
            _ if c.status == ContainerStatus::Removing => {}
            _ => p.remove.push(c.clone()),
        }
    }
    for a in desired {
        let Some(mut found) = by_instance.remove(a.id.as_str()) else {
            // A container of another release may still hold the name: wait for its removal.
            let name_taken = p
                .remove
                .iter()
                .any(|c| c.name == container_name(node, &a.id));
            if !in_flight.contains(&a.id) && !name_taken {
                p.create.push(a.clone());
            }
            continue;
        };
        // Prefer the deterministically named container, then a running one.
        let expected = container_name(node, &a.id);
        found.sort_by_key(|c| (c.name != expected, c.status != ContainerStatus::Running));
        let mut found = found.into_iter();
        let Some(kept) = found.next() else { continue };
        p.remove.extend(found.cloned());
        if kept.status == ContainerStatus::Created && !in_flight.contains(&a.id) {
            p.start.push(kept.id.clone());
        }
        p.keep.insert(a.id.clone(), kept.clone());
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{assignment, container};
    use crate::runtime::LABEL_NODE;

    #[test]
    fn creates_what_is_missing_and_adopts_what_exists() {
        let desired = [assignment("a", 1), assignment("b", 1)];
        let observed = [container("w1", "a", 1, ContainerStatus::Running)];
        let p = plan("w1", &desired, &observed, &HashSet::new());
        assert_eq!(p.create, [assignment("b", 1)]);
        assert_eq!(p.keep.keys().collect::<Vec<_>>(), ["a"]);
        assert!(p.remove.is_empty() && p.start.is_empty());
    }

    #[test]
    fn never_removes_containers_of_other_nodes() {
        let observed = [
            container("w1", "a", 1, ContainerStatus::Running),
            container("w2", "b", 1, ContainerStatus::Running),
        ];
        let mut unlabelled = container("w1", "c", 1, ContainerStatus::Running);
        unlabelled.labels.remove(LABEL_NODE);
        let observed = [&observed[..], &[unlabelled]].concat();
        let p = plan("w1", &[], &observed, &HashSet::new());
        assert_eq!(p.remove.len(), 1);
        assert_eq!(p.remove[0].node(), Some("w1"));
        assert_eq!(p.remove[0].instance(), Some("a"));
    }

    #[test]
    fn another_release_is_replaced_once_gone() {
        let desired = [assignment("a", 2)];
        let observed = [container("w1", "a", 1, ContainerStatus::Running)];
        let p = plan("w1", &desired, &observed, &HashSet::new());
        assert_eq!(p.remove.len(), 1);
        assert!(p.create.is_empty(), "the name is still taken");
        let p = plan("w1", &desired, &[], &HashSet::new());
        assert_eq!(p.create, desired);
    }

    #[test]
    fn duplicates_keep_the_named_one() {
        let desired = [assignment("a", 1)];
        let mut stray = container("w1", "a", 1, ContainerStatus::Running);
        stray.id = "stray".into();
        stray.name = "something-else".into();
        let named = container("w1", "a", 1, ContainerStatus::Exited);
        let p = plan("w1", &desired, &[stray, named.clone()], &HashSet::new());
        assert_eq!(p.keep["a"], named);
        assert_eq!(p.remove.len(), 1);
        assert_eq!(p.remove[0].id, "stray");
    }

    #[test]
    fn created_containers_are_started_unless_in_flight() {
        let desired = [assignment("a", 1)];
        let observed = [container("w1", "a", 1, ContainerStatus::Created)];
        let p = plan("w1", &desired, &observed, &HashSet::new());
        assert_eq!(p.start, [observed[0].id.clone()]);
        let busy = HashSet::from(["a".to_string()]);
        assert!(plan("w1", &desired, &observed, &busy).start.is_empty());
        assert!(plan("w1", &desired, &[], &busy).create.is_empty());
    }

    #[test]
    fn exited_instances_are_kept_not_restarted() {
        let desired = [assignment("a", 1)];
        let observed = [container("w1", "a", 1, ContainerStatus::Exited)];
        let p = plan("w1", &desired, &observed, &HashSet::new());
        assert!(p.create.is_empty() && p.start.is_empty() && p.remove.is_empty());
        assert!(p.keep.contains_key("a"));
    }

    #[test]
    fn stale_generations_are_ignored() {
        let at = |g| Assignments {
            node: "w1".into(),
            generation: g,
            instances: vec![],
        };
        assert!(accepts(None, &at(0)));
        assert!(accepts(Some(4), &at(5)));
        assert!(!accepts(Some(5), &at(5)));
        assert!(!accepts(Some(5), &at(3)));
    }
}
