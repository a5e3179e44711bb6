//! HTTP routes, one file per resource.

pub mod apps;
pub mod cluster;
pub mod health;
pub mod raft;
pub mod regions;
pub mod tokens;
