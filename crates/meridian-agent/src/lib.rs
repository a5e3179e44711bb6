//! The Meridian worker agent: registers its node with the control plane, heartbeats, watches
//! its assignments, runs them as Docker containers and reports what it observes.
//!
//! Entry points: [`run`] (Docker at `config.docker_host`) and [`run_with`] (any
//! [`ContainerRuntime`]). Images the engine lacks are pulled (`--registry`) or fetched from the
//! control plane ([`images`]). The pure parts — [`plan::plan`], [`plan::accepts`],
//! [`observe::report`], [`health::HealthVerdict`] — hold the decisions; the rest carries them
//! out.
//!
//! Architecture Invariant: the agent only ever touches containers labelled
//! `meridian.node=<its own name>`; several agents may share one engine.
//!
//! Architecture Invariant: desired state (the newest assignments generation) and observed
//! state (containers, health) stay apart; reports are derived from the observed side only.

#![warn(missing_docs)]

pub mod agent;
pub mod config;
mod control;
pub mod docker;
pub mod error;
pub mod health;
pub mod images;
mod node;
pub mod observe;
pub mod plan;
pub mod reconcile;
mod report;
pub mod runtime;
mod stop;
mod watch;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod reconcile_tests;

pub use agent::{run, run_with};
pub use config::{default_cpu_millis, default_memory_mb, read_token_file, AgentConfig};
pub use docker::DockerRuntime;
pub use error::AgentError;
pub use reconcile::{Reconciler, ReconcilerConfig};
pub use runtime::{
    container_name, ContainerEvent, ContainerInfo, ContainerRuntime, ContainerSpec,
    ContainerStatus, ImageTar, RuntimeError,
};
