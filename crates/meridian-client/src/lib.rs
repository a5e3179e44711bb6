//! The one client for Meridian's API, used by the CLI, agents, routers, the benchmarks and the
//! whole-process tests.
//!
//! A [`Client`] holds a list of servers. Any server answers any call (followers forward to the
//! leader), so a call goes to one server and moves on to the next only when another server
//! may do better and sending it again is safe:
//!
//! - a connection that cannot be made, or a 503 `no_leader` / `shutting_down`, moves any call
//!   on: the server did nothing with it;
//! - a timeout or broken exchange after sending, another 5xx (`commit_timeout`, `not_leader`,
//!   `leader_unreachable`...), or an unreadable answer moves on only a call that may be
//!   repeated: reads, the writes that set rather than add (node and router registration,
//!   heartbeats, instance reports), and every write of a client made with
//!   [`Client::repeating_writes`]. A write whose outcome is unknown is otherwise returned as
//!   it failed, never sent twice;
//! - any other answer (4xx above all) is the answer.
//!
//! Each server is tried at most once per call; retrying later is the caller's business. Calls
//! start at the server that answered last, and calls the leader serves start at the leader
//! once an answer has named it (a follower that relays the leader's answer says which server
//! that was). Every request has a deadline ([`Timeouts`]): ordinary calls, long polls (their
//! wait plus a grace) and image transfers each their own; building the client fails rather
//! than drop them.

mod client;
mod endpoints;
mod error;
mod failover;
mod servers;

pub use client::{Client, ClientBuilder, ClientTls, Timeouts};
pub use endpoints::ByteStream;
pub use error::{Attempt, BuildError, ClientError};
