//! Client commands: each module parses one resource's subcommands and prints the answers.

pub mod apps;
pub mod audit;
pub mod cluster;
pub mod deploy;
pub mod images;
pub mod login;
pub mod nodes;
pub mod placement;
pub mod regions;
pub mod route;
pub mod tokens;

use clap::Subcommand;
use meridian_client::Client;

use crate::output::Output;

/// Commands that call a running server's API.
#[derive(Subcommand)]
pub enum ClientCommand {
    /// Cluster membership and Raft state.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Regions servers and apps run in.
    #[command(subcommand)]
    Regions(regions::RegionsCommand),
    /// Apps: create, list, show, delete, and where their instances run.
    #[command(subcommand)]
    Apps(apps::AppsCommand),
    /// Roll out a new image of an app, one instance at a time, and follow it live.
    Deploy(deploy::DeployArgs),
    /// Worker nodes: list, show, drain, undrain.
    #[command(subcommand)]
    Nodes(nodes::NodesCommand),
    /// The audit log: apps created (with the residency they got, and from where),
    /// placements, stops, refusals and releases, newest last.
    Audit(audit::AuditArgs),
    /// Images for clusters without a registry: push, list.
    #[command(subcommand)]
    Images(images::ImagesCommand),
    /// Which region would serve a client of an app, and why (from any address).
    Route(route::RouteArgs),
    /// API tokens: create, list, revoke.
    #[command(subcommand)]
    Tokens(tokens::TokensCommand),
}

/// Runs one client command against `client`.
pub async fn run(command: ClientCommand, client: &Client, out: &Output) -> anyhow::Result<()> {
    match command {
        ClientCommand::Cluster(c) => cluster::run(c, client, out).await,
        ClientCommand::Regions(c) => regions::run(c, client, out).await,
        ClientCommand::Apps(c) => apps::run(c, client, out).await,
        ClientCommand::Tokens(c) => tokens::run(c, client, out).await,
        ClientCommand::Deploy(a) => deploy::run(a, client, out).await,
        ClientCommand::Nodes(c) => nodes::run(c, client, out).await,
        ClientCommand::Audit(a) => audit::run(a, client, out).await,
        ClientCommand::Images(c) => images::run(c, client, out).await,
        ClientCommand::Route(a) => route::run(a, client, out).await,
    }
}
