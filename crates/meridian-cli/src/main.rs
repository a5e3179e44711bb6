//! `meridian`: the one Meridian binary. It runs a control-plane server (`meridian server`) or a
//! worker agent (`meridian agent`), and talks to a server as a client (`login`, `cluster`,
//! `regions`, `apps`, `tokens`).
//!
//! This file only parses the command line and dispatches; every command lives in its own module.

mod agent_cmd;
mod commands;
mod confirm;
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
mod tls_cmd;

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
    /// Mint the cluster's certificate authority and the certificates of its parts.
    Tls(tls_cmd::TlsArgs),
    #[command(flatten)]
    Client(commands::ClientCommand),
}

fn main() -> ExitCode {
    // Every TLS set-up names its provider; this covers any that does not.
    meridian_tls::install_default_provider();
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
        Command::Tls(args) => tls_cmd::run(args, &out),
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

    /// The forms a usage text shows, one per line, each split into its words.
    fn usage_forms(text: &str) -> Vec<Vec<String>> {
        let mut forms = Vec::new();
        let mut in_usage = false;
        for line in text.lines() {
            let form = match line.strip_prefix("Usage:") {
                Some(rest) => Some(rest),
                None if in_usage && line.starts_with(' ') => Some(line),
                None => None,
            };
            in_usage = form.is_some();
            if let Some(form) = form {
                forms.push(form.split_whitespace().map(String::from).collect());
            }
        }
        forms
    }

    /// Checks one usage form of the command at `path`: the words it shows outside brackets
    /// parse (with a sample for each `<VALUE>`), and leaving out any flag or argument among
    /// them does not, so nothing optional looks required and nothing required looks optional.
    fn check_form(command: &clap::Command, path: &[String], form: &[String]) {
        assert!(
            form.iter().zip(path).all(|(word, name)| word == name),
            "{form:?} is not a form of {path:?}"
        );
        let sample = |flag: Option<&str>| {
            let arg = flag.and_then(|f| {
                command
                    .get_arguments()
                    .find(|a| a.get_long() == f.strip_prefix("--"))
            });
            arg.and_then(|a| {
                a.get_possible_values()
                    .first()
                    .map(|v| v.get_name().to_string())
            })
            .unwrap_or_else(|| "1".to_string())
        };
        // Each required item: a flag with its value, or a positional argument.
        let mut items: Vec<Vec<String>> = Vec::new();
        for word in &form[path.len()..] {
            if word.starts_with('[') || word.ends_with(']') {
                continue;
            }
            if word.starts_with('<') {
                match items.last_mut() {
                    Some(item) if item.len() == 1 && item[0].starts_with("--") => {
                        item.push(sample(Some(&item[0])));
                    }
                    _ => items.push(vec![sample(None)]),
                }
            } else {
                items.push(vec![word.clone()]);
            }
        }
        let parse = |skip: Option<usize>| {
            let mut argv: Vec<String> = path.to_vec();
            for (i, item) in items.iter().enumerate() {
                if Some(i) != skip {
                    argv.extend(item.iter().cloned());
                }
            }
            Cli::try_parse_from(&argv)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        if let Err(e) = parse(None) {
            panic!("{path:?}: the usage form {form:?} does not parse: {e}");
        }
        for (i, item) in items.iter().enumerate() {
            assert!(
                parse(Some(i)).is_err(),
                "{path:?}: the usage form {form:?} shows {item:?} as required, but it is not"
            );
        }
    }

    /// Every leaf command below `command`, with the words that lead to it.
    fn leaves(
        command: &clap::Command,
        path: Vec<String>,
        out: &mut Vec<(Vec<String>, clap::Command)>,
    ) {
        if command.has_subcommands() {
            // `help` is clap's own, and prints help instead of parsing.
            for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
                let mut path = path.clone();
                path.push(sub.get_name().to_string());
                leaves(sub, path, out);
            }
        } else {
            out.push((path, command.clone()));
        }
    }

    #[test]
    fn usage_lines_show_as_required_only_what_is() {
        let mut root = Cli::command();
        root.build();
        let mut all = Vec::new();
        leaves(&root, vec!["meridian".to_string()], &mut all);
        assert!(all.len() > 20, "{} commands", all.len());
        for (path, mut command) in all {
            let mut texts = vec![command.render_usage().to_string()];
            // A parse error shows a usage line of its own, from what was given.
            if let Err(e) = Cli::try_parse_from(&path) {
                texts.push(e.to_string());
            }
            for text in texts {
                let forms = usage_forms(&text);
                assert!(!forms.is_empty(), "{path:?}: no usage in {text}");
                for form in forms {
                    check_form(&command, &path, &form);
                }
            }
        }
    }

    #[test]
    fn app_create_shows_both_of_its_forms() {
        let mut root = Cli::command();
        root.build();
        let usage = root
            .find_subcommand_mut("apps")
            .and_then(|apps| apps.find_subcommand_mut("create"))
            .expect("apps create")
            .render_usage()
            .to_string();
        assert_eq!(
            usage,
            "Usage: meridian apps create <NAME> --image <IMAGE> --port <PORT> [OPTIONS]\n       \
             meridian apps create --file <FILE> [OPTIONS]"
        );
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
