//! Meridian's edge router.
//!
//! A router runs in one region. It keeps a route table fed by a watch on the control plane
//! (never calling it on the request path), locates each client, asks `meridian_core::route`
//! which region serves it, and then proxies to a healthy instance in its own region or
//! forwards once to the winning region's router.
//!
//! The request path, in order: the app by host ([`table::RoutingTable::app_for_host`]); the
//! client's address behind trusted proxies and its place ([`Locate`]); the decision; then a
//! local backend chosen by fewest requests in flight, or the winning region's router with a
//! `Meridian-Hop` header, which the receiving router never forwards again.
//!
//! **Invariant:** a request is served only by a region the decision allows for its client:
//! a fallback after an unreachable region is decided again without that region, and a
//! forwarded request is served only where this region itself qualifies.

mod admin;
mod body;
mod config;
pub mod control;
mod forward;
mod handler;
mod headers;
mod lane;
mod locate;
mod metrics;
mod outgoing;
mod pool;
mod reply;
mod router;
mod run;
pub mod table;
mod upstream;
mod upstreams;

pub use config::RouterConfig;
pub use locate::Locate;
pub use router::Router;
pub use run::{run, RouterError, RouterSettings};
