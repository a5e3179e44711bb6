//! The queries reconcile rounds, world loads and route tables run on every refresh, exactly as
//! the code runs them (`?` for each parameter, two names in each `IN` list), so a test can check
//! SQLite's plan for each (`tests/query_plans.rs`).

use crate::{apps, instances, releases, routing, schedule};

fn in_list((head, tail): (&str, &str)) -> String {
    format!("{head}?, ?{tail}")
}

/// Queries that must find their rows through an index: (where the code runs it, the SQL).
pub fn searched() -> Vec<(&'static str, String)> {
    vec![
        (
            "instances::running_instances_of",
            in_list(instances::RUNNING_OF),
        ),
        ("instances::apps_on_node", instances::APPS_ON_NODE.into()),
        ("instances::instances (one node)", instances::ON_NODE.into()),
        (
            "releases::live_states_of",
            in_list(releases::LIVE_STATES_OF),
        ),
        (
            "releases::rolling_past_deadline",
            releases::ROLLING_PAST_DEADLINE.into(),
        ),
        ("apps::placements_of", in_list(apps::PLACEMENTS_OF)),
        ("schedule::unplaced_of", in_list(schedule::UNPLACED_OF)),
    ]
}

/// Reads meant to cover every live instance (a world load, the route table): they must read
/// only the live rows, through the partial index `instances_live`.
pub fn live_reads() -> Vec<(&'static str, String)> {
    vec![
        ("instances::instances (all)", instances::RUNNING.into()),
        ("instances::footprints", instances::FOOTPRINTS.into()),
        ("routing::routable_instances", routing::ROUTABLE.into()),
    ]
}
