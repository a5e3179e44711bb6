//! Which server client commands call, and with which token: flags and environment first, then
//! what `meridian login` saved, then the local default address.

use anyhow::{bail, Context};
use clap::Args;
use meridian_api::{Client, ClientError};

use crate::credentials::{self, Credentials};
use crate::error_report::Hint;

/// The address used when nothing else names one.
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:7001";

/// Server address and token as given on the command line or in the environment.
#[derive(Args)]
pub struct Target {
    /// Server base URL [default: the one `meridian login` saved, else http://127.0.0.1:7001].
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "MERIDIAN_ADDR",
        value_name = "URL"
    )]
    pub addr: Option<String>,

    /// API token [default: the one `meridian login` saved].
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "MERIDIAN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

/// Where the token a command sends came from, to explain a refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `--token` or `MERIDIAN_TOKEN`.
    Given,
    /// The credentials file, saved for this very address.
    Saved,
    /// No token; `saved_for` names the address the saved one belongs to, if any.
    Absent {
        /// The address of the saved credentials, when they are for another server.
        saved_for: Option<String>,
    },
}

/// A client for the resolved server, and how its token was chosen.
pub struct Connection {
    /// The typed API client.
    pub client: Client,
    /// Where its token came from.
    pub token_from: TokenSource,
}

impl Connection {
    /// Resolves address and token, reading the credentials file only when a flag is missing.
    pub fn open(target: &Target) -> anyhow::Result<Self> {
        let saved = if target.addr.is_some() && target.token.is_some() {
            None
        } else {
            saved_credentials()?
        };
        let (addr, token, token_from) = resolve(
            target.addr.as_deref(),
            target.token.as_deref(),
            saved.as_ref(),
        );
        check_addr(&addr)?;
        Ok(Self {
            client: Client::new(&addr, token),
            token_from,
        })
    }

    /// Adds a hint to a 401 caused by not sending a token.
    pub fn explain(&self, result: anyhow::Result<()>) -> anyhow::Result<()> {
        let err = match result {
            Ok(()) => return Ok(()),
            Err(err) => err,
        };
        let unauthorized = err.chain().any(|cause| {
            matches!(
                cause.downcast_ref::<ClientError>(),
                Some(ClientError::Api { status: 401, .. })
            )
        });
        match &self.token_from {
            TokenSource::Absent { saved_for } if unauthorized => {
                let mut hint = String::from(
                    "no token was sent; run `meridian login`, or pass --token or set MERIDIAN_TOKEN",
                );
                if let Some(other) = saved_for {
                    hint.push_str(&format!(" (the saved token is for {other})"));
                }
                Err(err.context(Hint(hint)))
            }
            _ => Err(err),
        }
    }
}

/// The saved credentials, or `None` when there are none or no place to look for them.
fn saved_credentials() -> anyhow::Result<Option<Credentials>> {
    match credentials::default_path() {
        Ok(path) => credentials::load(&path),
        Err(e) => {
            tracing::debug!(error = %e, "no credentials file to read");
            Ok(None)
        }
    }
}

/// Picks address and token. A saved token is only sent to the address it was saved for, so
/// pointing `--addr` at some other host never hands it the token.
pub fn resolve(
    addr: Option<&str>,
    token: Option<&str>,
    saved: Option<&Credentials>,
) -> (String, Option<String>, TokenSource) {
    let addr = addr
        .or(saved.map(|c| c.addr.as_str()))
        .unwrap_or(DEFAULT_ADDR)
        .trim_end_matches('/')
        .to_string();
    if let Some(token) = token {
        return (addr, Some(token.to_string()), TokenSource::Given);
    }
    match saved {
        Some(c) if c.addr.trim_end_matches('/') == addr => {
            (addr, Some(c.token.clone()), TokenSource::Saved)
        }
        Some(c) => (
            addr,
            None,
            TokenSource::Absent {
                saved_for: Some(c.addr.clone()),
            },
        ),
        None => (addr, None, TokenSource::Absent { saved_for: None }),
    }
}

/// Refuses addresses the HTTP client would reject with a vaguer message.
pub fn check_addr(addr: &str) -> anyhow::Result<()> {
    let rest = addr
        .strip_prefix("http://")
        .or_else(|| addr.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() => Ok(()),
        _ => bail!("server address `{addr}` must look like http://HOST:PORT or https://HOST"),
    }
}

/// The address `login` talks to: `--addr`/`MERIDIAN_ADDR`, else the saved one, else the default.
pub fn login_addr(target: &Target) -> anyhow::Result<String> {
    let saved = match &target.addr {
        Some(_) => None,
        None => saved_credentials().context("reading the saved server address")?,
    };
    let (addr, _, _) = resolve(target.addr.as_deref(), None, saved.as_ref());
    check_addr(&addr)?;
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved() -> Credentials {
        Credentials {
            addr: "http://a:7001".into(),
            token: "saved".into(),
        }
    }

    #[test]
    fn flags_beat_saved_credentials() {
        let (addr, token, from) = resolve(Some("http://b:7001/"), Some("given"), Some(&saved()));
        assert_eq!(addr, "http://b:7001");
        assert_eq!(token.as_deref(), Some("given"));
        assert_eq!(from, TokenSource::Given);
    }

    #[test]
    fn saved_credentials_fill_in() {
        let (addr, token, from) = resolve(None, None, Some(&saved()));
        assert_eq!(addr, "http://a:7001");
        assert_eq!(token.as_deref(), Some("saved"));
        assert_eq!(from, TokenSource::Saved);
    }

    #[test]
    fn saved_token_stays_with_its_address() {
        let (addr, token, from) = resolve(Some("http://evil:7001"), None, Some(&saved()));
        assert_eq!(addr, "http://evil:7001");
        assert_eq!(token, None);
        assert_eq!(
            from,
            TokenSource::Absent {
                saved_for: Some("http://a:7001".into())
            }
        );
        let (_, token, _) = resolve(Some("http://a:7001/"), None, Some(&saved()));
        assert_eq!(token.as_deref(), Some("saved"));
    }

    #[test]
    fn default_address_without_anything() {
        let (addr, token, _) = resolve(None, None, None);
        assert_eq!(addr, DEFAULT_ADDR);
        assert_eq!(token, None);
    }

    #[test]
    fn addresses_need_a_scheme() {
        assert!(check_addr("http://127.0.0.1:7001").is_ok());
        assert!(check_addr("https://meridian.example").is_ok());
        assert!(check_addr("127.0.0.1:7001").is_err());
        assert!(check_addr("http://").is_err());
    }
}
