//! `meridian-relay`: a delaying TCP relay for the multi-region test cluster. See the crate docs
//! and `USAGE` below.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use meridian_relay::config::check_host_port;
use meridian_relay::{serve, Config, Route};
use tokio::net::TcpListener;

const USAGE: &str = "\
usage: meridian-relay --config FILE [--region NAME]
       meridian-relay --listen ADDR --to HOST:PORT --delay-ms N

  --config FILE   TOML with [delays] (\"region-a/region-b\" = one-way ms, symmetric unless both
                  directions are given) and [[route]] tables (from, listen, to, region)
  --region NAME   serve only the routes with from = NAME (default: all routes)
  --listen ADDR   single route: listen on ADDR (IP:port) ...
  --to HOST:PORT  ... forward to HOST:PORT (resolved per connection) ...
  --delay-ms N    ... delaying each direction by N ms

Log level: RUST_LOG (default info).";

#[derive(Debug, PartialEq)]
enum Cli {
    Config {
        path: PathBuf,
        region: Option<String>,
    },
    Single(Route),
    Help,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Cli, String> {
    let (mut config, mut region, mut listen, mut to, mut delay) = (None, None, None, None, None);
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg, None),
        };
        if flag == "-h" || flag == "--help" {
            return Ok(Cli::Help);
        }
        let slot = match flag.as_str() {
            "--config" => &mut config,
            "--region" => &mut region,
            "--listen" => &mut listen,
            "--to" => &mut to,
            "--delay-ms" => &mut delay,
            _ => return Err(format!("unknown argument {flag:?}")),
        };
        let value = inline
            .or_else(|| args.next())
            .ok_or_else(|| format!("{flag} needs a value"))?;
        if slot.replace(value).is_some() {
            return Err(format!("{flag} given twice"));
        }
    }
    match (config, listen, to, delay) {
        (Some(path), None, None, None) => Ok(Cli::Config {
            path: path.into(),
            region,
        }),
        (None, Some(listen), Some(to), Some(delay)) if region.is_none() => {
            let listen: SocketAddr = listen
                .parse()
                .map_err(|_| format!("--listen: {listen:?} is not an IP:port address"))?;
            check_host_port(&to).map_err(|e| format!("--to: {e}"))?;
            let ms: u64 = delay
                .parse()
                .map_err(|_| format!("--delay-ms: {delay:?} is not a whole number"))?;
            let delay = Duration::from_millis(ms);
            Ok(Cli::Single(Route {
                listen,
                to,
                forward: delay,
                backward: delay,
            }))
        }
        (None, None, None, None) => {
            Err("give --config FILE, or --listen, --to and --delay-ms".into())
        }
        (Some(_), ..) => {
            Err("--config cannot be combined with --listen, --to or --delay-ms".into())
        }
        _ => Err(
            "the single-route form needs all of --listen, --to and --delay-ms (and no --region)"
                .into(),
        ),
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only help a terminal; in `docker logs` they are noise.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let routes = match parse_args(std::env::args().skip(1)) {
        Ok(Cli::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Cli::Single(route)) => vec![route],
        Ok(Cli::Config { path, region }) => {
            match Config::load(&path).and_then(|c| c.routes_for(region.as_deref())) {
                Ok(routes) => routes,
                Err(e) => {
                    eprintln!("meridian-relay: bad config {}: {e}", path.display());
                    return ExitCode::from(2);
                }
            }
        }
        Err(e) => {
            eprintln!("meridian-relay: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result = runtime.block_on(run(routes));
    // Don't wait on a name lookup stuck in the blocking pool.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meridian-relay: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Binds every route (failing fast), then relays until SIGTERM or Ctrl-C.
async fn run(routes: Vec<Route>) -> std::io::Result<()> {
    let mut listeners = Vec::new();
    for route in routes {
        let listener = TcpListener::bind(route.listen).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot listen on {}: {e}", route.listen))
        })?;
        tracing::info!(
            listen = %listener.local_addr()?, to = %route.to,
            forward_ms = route.forward.as_millis() as u64, backward_ms = route.backward.as_millis() as u64,
            "relaying"
        );
        listeners.push(tokio::spawn(serve(listener, route)));
    }
    // As PID 1 in a container, SIGTERM is ignored unless handled; exit promptly on it.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &str) -> Result<Cli, String> {
        parse_args(args.split_whitespace().map(String::from))
    }

    #[test]
    fn parses_both_forms() {
        assert_eq!(
            parse("--config relay.toml --region eu-fra").unwrap(),
            Cli::Config {
                path: "relay.toml".into(),
                region: Some("eu-fra".into())
            }
        );
        assert_eq!(
            parse("--config=relay.toml").unwrap(),
            Cli::Config {
                path: "relay.toml".into(),
                region: None
            }
        );
        let ms = Duration::from_millis(40);
        assert_eq!(
            parse("--listen 0.0.0.0:7002 --to server-2:7002 --delay-ms 40").unwrap(),
            Cli::Single(Route {
                listen: "0.0.0.0:7002".parse().unwrap(),
                to: "server-2:7002".into(),
                forward: ms,
                backward: ms
            })
        );
        assert_eq!(parse("--help").unwrap(), Cli::Help);
    }

    #[test]
    fn rejects_bad_arguments() {
        let err = |args| parse(args).unwrap_err();
        assert_eq!(
            err(""),
            "give --config FILE, or --listen, --to and --delay-ms"
        );
        assert_eq!(err("--config"), "--config needs a value");
        assert_eq!(err("--bogus 1"), "unknown argument \"--bogus\"");
        assert_eq!(err("--config a --config b"), "--config given twice");
        assert!(err("--config a --listen 0.0.0.0:1").starts_with("--config cannot be combined"));
        assert!(err("--listen 0.0.0.0:1 --to x:1").starts_with("the single-route form needs"));
        assert!(err("--listen x:1 --to x:1 --delay-ms 1").starts_with("--listen:"));
        assert!(err("--listen 0.0.0.0:1 --to x --delay-ms 1").starts_with("--to:"));
        assert!(err("--listen 0.0.0.0:1 --to x:1 --delay-ms 5ms").starts_with("--delay-ms:"));
    }
}
