//! The pure heart of Meridian: names, regions, jurisdictions, apps, roles and the rules that
//! validate them.
//!
//! Architecture Invariant: this crate does no I/O, spawns nothing and reads no clock. Every
//! function here is deterministic in its arguments, so the replicated state machine and the
//! scheduler can call it on every server and get the same answer.

pub mod app;
pub mod country;
pub mod domain;
pub mod error;
pub mod instance;
pub mod jurisdiction;
pub mod name;
pub mod region;
pub mod residency;
pub mod role;
pub mod rollout;
pub mod route;
pub mod schedule;

pub use app::{AppSpec, HealthCheck};
pub use country::CountryCode;
pub use domain::DomainName;
pub use error::{ErrorChain, ValidationError};
pub use instance::InstanceState;
pub use jurisdiction::{Jurisdiction, JurisdictionCatalog};
pub use name::Name;
pub use region::Region;
pub use residency::ResidencySource;
pub use role::{Action, Role};
pub use rollout::ReleaseStatus;
pub use schedule::NodeStatus;
