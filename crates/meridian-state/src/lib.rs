//! Meridian's replicated state: the commands that change it, their deterministic application
//! to SQLite tables, and the openraft log, state machine and snapshots that keep every
//! server's copy the same. The Raft network is the caller's: [`open`] takes any
//! `RaftNetworkFactory`, so this crate holds no HTTP client.
//!
//! Architecture Invariant: this is the only crate that writes SQL.

// openraft's StorageError is large and its signatures are fixed by the storage traits.
#![allow(clippy::result_large_err)]

// The replicated state, one module per kind of thing it holds: its record, its rows, and
// applying the commands that change it.
pub mod apps;
pub mod audit;
pub mod images;
pub mod instances;
pub mod nodes;
pub mod regions;
pub mod releases;
pub mod routing;
pub mod schedule;
pub mod settings;
pub mod tokens;

// Writing: the commands and their dispatch.
pub mod apply;
pub mod command;
mod sql;

// Reading, and the Raft machinery around the tables.
pub mod auth_cache;
pub mod changes;
pub mod db;
pub mod error;
pub mod hot_queries;
pub mod leader_watch;
pub mod log_store;
pub mod node;
pub mod proposer;
pub mod reader;
pub mod snapshot;
pub mod state_machine;
pub mod types;

pub use apps::{AppPlacement, AppRecord};
pub use audit::{AuditFilter, AuditRecord};
pub use auth_cache::{AuthCache, AuthView};
pub use changes::{ChangeLog, Touched};
pub use command::{Applied, Command, CommandResult, Forget, Forgotten, Refusal};
pub use error::StateError;
pub use images::ImageRecord;
pub use instances::{Desired, Footprint, InstanceRecord, NewInstance, Observed, StopInstance};
pub use node::{open, Node, RaftSettings};
pub use nodes::NodeRecord;
pub use proposer::{ProposeError, Proposer};
pub use reader::{ReadSnapshot, StateReader};
pub use regions::RegionRecord;
pub use releases::{ReleaseConfig, ReleaseRecord, ReleaseState, ReleaseUpdate};
pub use schedule::{AppUnplaced, Schedule};
/// What a failed read of the state returns.
pub use sqlx::Error as DbError;
pub use tokens::TokenRecord;
pub use types::{MemberNode, NodeId, Raft, TypeConfig};
