//! `meridian login`: check a token and save it, or take a new cluster's first admin token.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;

use crate::connection::{client_for, login_addr, Target};
use crate::credentials::{self, Credentials};
use crate::output::Output;

/// `meridian login`. The server comes from --addr (or MERIDIAN_ADDR, the saved address, the
/// default); the token from --token, MERIDIAN_TOKEN or --token-file.
#[derive(Args)]
pub struct LoginArgs {
    /// Read the token from this file instead of --token.
    #[arg(long, value_name = "FILE", conflicts_with = "bootstrap")]
    token_file: Option<PathBuf>,

    /// Ask a new cluster for its first admin token and save that (works once per cluster).
    #[arg(long)]
    bootstrap: bool,
}

/// Runs `meridian login`.
pub async fn run(args: LoginArgs, target: &Target, out: &Output) -> anyhow::Result<()> {
    let (addr, ca) = login_addr(target)?;
    let path = credentials::default_path()?;
    if args.bootstrap {
        // Bootstrap needs no token; any in MERIDIAN_TOKEN is simply not sent.
        let answer = client_for(&addr, None, ca.as_deref())?.bootstrap().await?;
        save(&path, &addr, &answer.token, ca)?;
        if out.is_json() {
            out.json(&answer)?;
        }
        // The token itself is printed only with --json, where it was asked for.
        return out.note(&format!(
            "Bootstrapped {addr}; admin token {} saved to {}",
            answer.id,
            path.display()
        ));
    }
    let token = match (&args.token_file, &target.token) {
        (Some(file), _) => read_token_file(file)?,
        (None, Some(token)) => token.clone(),
        (None, None) => bail!(
            "login needs a token: pass --token TOKEN or --token-file FILE, set MERIDIAN_TOKEN, \
             or use --bootstrap on a new cluster"
        ),
    };
    let status = client_for(&addr, Some(token.clone()), ca.as_deref())?
        .cluster()
        .await?;
    save(&path, &addr, &token, ca)?;
    if out.is_json() {
        out.json(&status)?;
    }
    let members = status.members.len();
    out.note(&format!(
        "Logged in to {addr} ({members} member{}, term {}); credentials saved to {}",
        if members == 1 { "" } else { "s" },
        status.term,
        path.display()
    ))
}

fn save(path: &Path, addr: &str, token: &str, ca_file: Option<PathBuf>) -> anyhow::Result<()> {
    credentials::save(
        path,
        &Credentials {
            addr: addr.to_string(),
            token: token.to_string(),
            ca_file,
        },
    )
}

/// Reads a token file; surrounding whitespace (a trailing newline) is not part of the token.
fn read_token_file(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read token file {}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        bail!("token file {} is empty", path.display());
    }
    Ok(token.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_is_trimmed_and_must_not_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "abc.def\n").unwrap();
        assert_eq!(read_token_file(&path).unwrap(), "abc.def");
        std::fs::write(&path, " \n").unwrap();
        assert!(read_token_file(&path).is_err());
        assert!(read_token_file(&dir.path().join("missing")).is_err());
    }
}
