//! Log set-up: one subscriber writing to stderr, so stdout stays free for command output.

use std::io::IsTerminal;

use tracing_subscriber::filter::{EnvFilter, LevelFilter};

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Plain lines for people.
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Installs the global subscriber. The filter comes from `RUST_LOG`, else `info` (`quiet`:
/// `info` but openraft's own lines only from `warn`, so `meridian dev`'s banner stays visible);
/// bad directives in `RUST_LOG` are skipped rather than fatal, so a typo never stops a server.
pub fn init(format: LogFormat, quiet: bool) {
    let builder = EnvFilter::builder().with_default_directive(LevelFilter::INFO.into());
    let filter = match std::env::var("RUST_LOG") {
        Err(_) if quiet => builder.parse_lossy("info,openraft=warn"),
        _ => builder.from_env_lossy(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only help a terminal; in files and journald they are noise.
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if let Err(e) = installed {
        eprintln!("warning: cannot set up logging: {e}");
    }
}
