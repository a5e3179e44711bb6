//! What can be written: every change to the replicated state is one `Command`, decided on the
//! leader (ids, timestamps and keys are chosen there) and applied identically everywhere.

use std::collections::BTreeMap;

use meridian_core::{AppSpec, Jurisdiction, Name, NodeStatus, Region};
use serde::{Deserialize, Serialize};

use crate::apps::AppRecord;
use crate::images::ImageRecord;
use crate::instances::Observed;
use crate::nodes::NodeRecord;
use crate::regions::RegionRecord;
use crate::releases::ReleaseRecord;
use crate::schedule::Schedule;
use crate::tokens::TokenRecord;

/// A change to the replicated state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// Creates the signing key and the first admin token. Works once per cluster.
    Bootstrap {
        /// HMAC key, base64.
        signing_key: String,
        /// The first admin token.
        admin: TokenRecord,
    },
    /// Adds a token.
    CreateToken {
        /// The token.
        token: TokenRecord,
    },
    /// Revokes a token (idempotent).
    RevokeToken {
        /// Its id.
        id: String,
        /// Unix seconds.
        at: u64,
    },
    /// Adds a region.
    CreateRegion {
        /// The region.
        region: Region,
        /// Unix seconds.
        at: u64,
    },
    /// Replaces a region if it is still at `expected_version`.
    UpdateRegion {
        /// The new region.
        region: Region,
        /// The version the change was computed from.
        expected_version: u64,
        /// Unix seconds.
        at: u64,
    },
    /// Removes a region no app is pinned to.
    DeleteRegion {
        /// Its name.
        name: Name,
    },
    /// Adds or replaces an edge router.
    RegisterRouter {
        /// Its name.
        name: Name,
        /// Its region, which must exist.
        region: Name,
        /// Base URL other routers forward to.
        url: String,
        /// Unix seconds.
        at: u64,
    },
    /// Sets the domain apps are served under as `<app>.<domain>`.
    SetAppsDomain {
        /// The new apps domain.
        domain: meridian_core::DomainName,
    },
    /// Sets the residency apps created without one get; empty for none (they may then run
    /// anywhere).
    SetDefaultResidency {
        /// The jurisdictions, each known to the cluster.
        residency: Vec<Jurisdiction>,
    },
    /// Adds an app, and an audit entry saying which residency it got and from where.
    CreateApp {
        /// The app.
        spec: AppSpec,
        /// Unix seconds.
        at: u64,
        /// Whether its creator gave no residency, so that the cluster's default residency
        /// applies (`spec.residency` is then empty, and filled in on apply).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        default_residency: bool,
    },
    /// Replaces an app if it is still at `expected_version`.
    UpdateApp {
        /// The new spec.
        spec: AppSpec,
        /// The version the change was computed from.
        expected_version: u64,
        /// Unix seconds.
        at: u64,
    },
    /// Removes an app; its instances are stopped.
    DeleteApp {
        /// Its name.
        name: Name,
        /// Unix seconds.
        #[serde(default)]
        at: u64,
    },
    /// Adds a node, or updates a known one (region, capacity, labels, address) and marks it
    /// ready.
    RegisterNode {
        /// Node name.
        name: Name,
        /// Its region; must exist.
        region: Name,
        /// CPU offered.
        cpu_millis: u32,
        /// Memory offered.
        memory_mb: u32,
        /// Labels.
        labels: BTreeMap<String, String>,
        /// Where instance ports are published.
        advertise_host: String,
        /// Unix seconds.
        at: u64,
    },
    /// Changes a node's status: heartbeats missed (`down`) or resumed (`ready`, which a
    /// drained node answers as `draining`).
    SetNodeStatus {
        /// Node name.
        name: Name,
        /// New status.
        status: NodeStatus,
        /// Unix seconds.
        at: u64,
    },
    /// Drains a node (nothing new lands on it, its instances move away) or undrains it. The
    /// drain outlives restarts and silences of its agent.
    SetNodeDrain {
        /// Node name.
        name: Name,
        /// Drained or not.
        drain: bool,
        /// Unix seconds.
        at: u64,
    },
    /// Records what a node's agent observed. Reports of instances not assigned to that node,
    /// or already stopped, are ignored.
    ReportInstances {
        /// The reporting node.
        node: Name,
        /// What it saw.
        reports: Vec<Observed>,
        /// Unix seconds.
        at: u64,
    },
    /// Creates a new release of an app with another image and starts rolling it out.
    Deploy {
        /// The app.
        app: Name,
        /// The new image.
        image: String,
        /// Seconds the release has to become healthy.
        deadline_s: u64,
        /// Unix seconds.
        at: u64,
    },
    /// One round of the leader's scheduler. Refused whole if any placement is on a node that
    /// is not ready or lies outside the app's residency: a stale plan never lands.
    Schedule {
        /// The round.
        round: Schedule,
        /// Unix seconds.
        at: u64,
    },
    /// Records that server `holder` stores the blob `digest` for image `name` (pushed without
    /// a registry). The same digest again adds a holder; another digest replaces the image.
    RegisterImage {
        /// Image reference.
        name: String,
        /// `sha256:<hex>` of the `docker save` tar.
        digest: String,
        /// Bytes.
        size: u64,
        /// The server holding the blob.
        holder: u64,
        /// Unix seconds.
        at: u64,
    },
    /// Lets go of what is old enough, so the state and its snapshots stop growing. The leader
    /// picks what to forget; apply forgets each only if it still qualifies then.
    Forget(Forget),
    /// Several independent commands in one log entry, applied in order; each gets its own
    /// result and a refusal of one does not affect the others. Made by the proposer so that
    /// concurrent writes share one log append and one fsync. Never nested.
    Batch {
        /// The commands, in order.
        commands: Vec<Command>,
    },
}

impl Command {
    /// Whether applying this command may change tokens or the signing key.
    pub fn touches_auth(&self) -> bool {
        match self {
            Command::Bootstrap { .. }
            | Command::CreateToken { .. }
            | Command::RevokeToken { .. } => true,
            Command::Forget(f) => !f.tokens.is_empty(),
            Command::Batch { commands } => commands.iter().any(Command::touches_auth),
            _ => false,
        }
    }

    /// Whether applying this command may change the cluster's default residency.
    pub fn touches_default_residency(&self) -> bool {
        match self {
            Command::SetDefaultResidency { .. } => true,
            Command::Batch { commands } => commands.iter().any(Command::touches_default_residency),
            _ => false,
        }
    }
}

/// What a [`Command::Forget`] lets go of. Every list is checked again on apply: a release that
/// serves again, a node back up, a router that registered again, stays.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forget {
    /// Audit entries up to this sequence number (the leader exported them first); 0 for none.
    #[serde(default)]
    pub audit_through: u64,
    /// Releases (app, number) that neither serve nor roll out.
    #[serde(default)]
    pub releases: Vec<(Name, u64)>,
    /// Nodes down since before `gone_before` with nothing wanted running on them.
    #[serde(default)]
    pub nodes: Vec<Name>,
    /// Routers that last registered before `gone_before`.
    #[serde(default)]
    pub routers: Vec<Name>,
    /// Cut-off for nodes and routers, unix seconds.
    #[serde(default)]
    pub gone_before: u64,
    /// Tokens that expired or were revoked before `tokens_before`.
    #[serde(default)]
    pub tokens: Vec<String>,
    /// Cut-off for tokens, unix seconds.
    #[serde(default)]
    pub tokens_before: u64,
}

impl Forget {
    /// Whether there is nothing to forget.
    pub fn is_empty(&self) -> bool {
        self.audit_through == 0
            && self.releases.is_empty()
            && self.nodes.is_empty()
            && self.routers.is_empty()
            && self.tokens.is_empty()
    }
}

/// How much a [`Command::Forget`] let go of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forgotten {
    /// Audit entries.
    pub audit: u64,
    /// Releases.
    pub releases: u64,
    /// Nodes.
    pub nodes: u64,
    /// Routers.
    pub routers: u64,
    /// Tokens.
    pub tokens: u64,
}

/// What applying one log entry produced.
pub type CommandResult = Result<Applied, Refusal>;

/// A command that took effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Applied {
    /// Nothing to return (membership and blank entries, deletes, revokes).
    Done,
    /// The token as stored.
    Token(TokenRecord),
    /// The region as stored.
    Region(RegionRecord),
    /// The app as stored.
    App(AppRecord),
    /// The node as stored.
    Node(NodeRecord),
    /// The release as stored.
    Release(ReleaseRecord),
    /// The image as stored.
    Image(ImageRecord),
    /// What a `Command::Forget` let go of.
    Forgotten(Forgotten),
    /// One result per command of a `Command::Batch`, in order.
    Batch(Vec<CommandResult>),
}

/// A command the state refused; nothing was changed. Decided by the state alone, so every
/// server refuses the same commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Refusal {
    /// Bootstrap ran before.
    #[error("the cluster is already bootstrapped")]
    AlreadyBootstrapped,
    /// No such thing.
    #[error("{what} {name} does not exist")]
    NotFound {
        /// `app`, `region`, `token`.
        what: String,
        /// Its name or id.
        name: String,
    },
    /// The name is taken.
    #[error("{what} {name} already exists")]
    AlreadyExists {
        /// `app`, `region`, `token`.
        what: String,
        /// Its name or id.
        name: String,
    },
    /// The input is well-formed but does not fit the cluster.
    #[error("{field}: {message}")]
    Invalid {
        /// The field at fault.
        field: String,
        /// Why.
        message: String,
    },
    /// The change conflicts with the current state.
    #[error("{message}")]
    Conflict {
        /// Why.
        message: String,
    },
    /// The thing changed since the caller read it.
    #[error("{what} {name} changed concurrently; retry")]
    Stale {
        /// `app`, `region`.
        what: String,
        /// Its name.
        name: String,
    },
}

impl Refusal {
    pub(crate) fn not_found(what: &str, name: impl ToString) -> Self {
        Self::NotFound {
            what: what.into(),
            name: name.to_string(),
        }
    }

    pub(crate) fn exists(what: &str, name: impl ToString) -> Self {
        Self::AlreadyExists {
            what: what.into(),
            name: name.to_string(),
        }
    }

    pub(crate) fn stale(what: &str, name: impl ToString) -> Self {
        Self::Stale {
            what: what.into(),
            name: name.to_string(),
        }
    }
}
