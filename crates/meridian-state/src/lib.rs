//! Meridian's replicated state: the commands that change it, their deterministic application
//! to SQLite tables, and the openraft log, state machine and snapshots that keep every
//! server's copy the same. The Raft network is the caller's: [`open`] takes any
//! `RaftNetworkFactory`, so this crate holds no HTTP client.
//!
//! Architecture Invariant: this is the only crate that writes SQL.

// openraft's StorageError is large and its signatures are fixed by the storage traits.
#![allow(clippy::result_large_err)]

pub mod apply;
mod apply_workers;
pub mod auth_cache;
pub mod changes;
pub mod command;
pub mod db;
pub mod error;
pub mod leader_watch;
pub mod log_store;
pub mod node;
pub mod proposer;
pub mod reader;
pub mod rows;
pub mod snapshot;
pub mod state_machine;
pub mod types;
pub mod worker_records;
mod worker_rows;

pub use auth_cache::{AuthCache, AuthView};
pub use changes::{ChangeLog, Touched};
pub use command::{AppRecord, Applied, Command, CommandResult, Refusal, RegionRecord, TokenRecord};
pub use error::StateError;
pub use node::{open, Node, RaftSettings};
pub use proposer::{ProposeError, Proposer};
pub use reader::{ReadSnapshot, StateReader};
/// What a failed read of the state returns.
pub use sqlx::Error as DbError;
pub use types::{MemberNode, NodeId, Raft, TypeConfig};
pub use worker_records::{
    AuditRecord, Desired, ImageRecord, InstanceRecord, NodeRecord, Observed, ReleaseConfig,
    ReleaseRecord, ReleaseUpdate, Schedule,
};
pub use worker_rows::Footprint;
