//! `meridian`: the one Meridian binary. It runs a control-plane server (`meridian server`) or a
//! worker agent (`meridian agent`), and talks to a server as a client (`login`, `cluster`,
//! `regions`, `apps`, `tokens`).
//!
//! This file only parses the command line and dispatches; every command lives in its own module.

mod agent_cmd;
mod commands;
mod connection;
mod credentials;
mod dev_cmd;
mod error_report;
mod logging;
mod memory;
mod output;
mod router_cmd;
mod server_cmd;
mod server_file;
mod settings_file;
mod timestamp;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::connection::{Connection, Target};
use crate::logging::LogFormat;
use crate::output::Output;

/// Meridian: a self-hosted multi-region PaaS.
#[derive(Parser)]
#[command(name = "meridian", version, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Flags every subcommand accepts.
#[derive(Args)]
struct GlobalArgs {
    /// How to write logs to stderr (the level comes from RUST_LOG, default `info`).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "MERIDIAN_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Human
    )]
    log_format: LogFormat,

    #[command(flatten)]
    target: Target,

    /// Print the server's answer as JSON instead of a table.
    #[arg(long, global = true, help_heading = "Global options")]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run a control-plane server.
    Server(Box<server_cmd::ServerArgs>),
    /// Run a worker agent: register a node and run its assigned instances on Docker.
    Agent(Box<agent_cmd::AgentArgs>),
    /// Run an edge router: serve each request from the nearest region the app may run in.
    Router(Box<router_cmd::RouterArgs>),
    /// Run a one-server control plane and a local agent in one process, to try Meridian.
    Dev(Box<dev_cmd::DevArgs>),
    /// Check a token against a server and save it, or bootstrap a new cluster's admin token.
    Login(commands::login::LoginArgs),
    #[command(flatten)]
    Client(commands::ClientCommand),
}

fn main() -> ExitCode {
    memory::cap_arenas();
    let cli = Cli::parse();
    let quiet = matches!(cli.command, Command::Dev(_));
    logging::init(cli.global.log_format, quiet);
    let mut builder = match cli.command {
        Command::Agent(_) => agent_cmd::runtime_builder(),
        Command::Router(ref args) => args.runtime_builder(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_report::render(&e));
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let out = Output::new(cli.global.json);
    match cli.command {
        Command::Server(args) => server_cmd::run(*args).await,
        Command::Agent(args) => agent_cmd::run(*args).await,
        Command::Router(args) => router_cmd::run(*args).await,
        Command::Dev(args) => dev_cmd::run(*args).await,
        Command::Login(args) => commands::login::run(args, &cli.global.target, &out).await,
        Command::Client(command) => {
            let conn = Connection::open(&cli.global.target)?;
            let result = commands::run(command, &conn.client, &out).await;
            conn.explain(result)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn env_without_equals_is_refused_by_name() {
        let err = Cli::try_parse_from([
            "meridian", "apps", "create", "web", "--image", "web:1", "--port", "80", "--env",
            "NOEQUALS",
        ])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("--env"), "{err}");
        assert!(err.contains("NOEQUALS"), "{err}");
        assert!(err.contains("KEY=VALUE"), "{err}");
    }

    #[test]
    fn health_tuning_needs_a_probe() {
        let parsed = Cli::try_parse_from([
            "meridian",
            "apps",
            "create",
            "web",
            "--image",
            "web:1",
            "--port",
            "80",
            "--health-interval",
            "5s",
        ]);
        assert!(parsed.is_err());
    }

    #[test]
    fn http_and_tcp_probes_conflict() {
        let parsed = Cli::try_parse_from([
            "meridian",
            "apps",
            "create",
            "web",
            "--image",
            "web:1",
            "--port",
            "80",
            "--health-http",
            "/h",
            "--health-tcp",
        ]);
        assert!(parsed.is_err());
    }

    #[test]
    fn app_file_excludes_field_flags() {
        let parsed = Cli::try_parse_from([
            "meridian", "apps", "create", "--file", "app.json", "--image", "x",
        ]);
        assert!(parsed.is_err());
        let parsed = Cli::try_parse_from(["meridian", "apps", "create", "--file", "app.json"]);
        assert!(parsed.is_ok());
    }

    #[test]
    fn negative_coordinates_parse() {
        let parsed = Cli::try_parse_from([
            "meridian",
            "regions",
            "create",
            "us-sfo",
            "--country",
            "US",
            "--lat",
            "37.7",
            "--lon",
            "-122.4",
        ]);
        assert!(parsed.is_ok());
    }
}
