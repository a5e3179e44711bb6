//! HTTP routes, one file per resource.

pub mod agent;
pub mod apps;
pub mod audit;
pub mod cluster;
pub mod health;
pub mod images;
pub mod nodes;
pub mod raft;
pub mod regions;
pub mod releases;
pub mod routing;
pub mod tokens;
