//! Which servers client commands call, and with which token: flags and environment first,
//! then what `meridian login` saved, then the local default address. The calls themselves,
//! failover between several servers included, are `meridian_client::Client`'s.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use meridian_client::{Client, ClientError};

use crate::credentials::{self, Credentials};
use crate::error_report::Hint;

/// The address used when nothing else names one.
pub const DEFAULT_ADDR: &str = "https://127.0.0.1:7001";

/// Server address and token as given on the command line or in the environment.
#[derive(Args)]
pub struct Target {
    /// Server base URL, or several separated by commas to fail over between them [default:
    /// the one `meridian login` saved, else https://127.0.0.1:7001].
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "MERIDIAN_ADDR",
        value_name = "URL[,URL...]"
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

    /// The cluster's CA certificate: the server must present a certificate it issued [default:
    /// the one `meridian login` saved, else the system's trusted roots].
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "MERIDIAN_CA_FILE",
        value_name = "FILE"
    )]
    pub ca_file: Option<PathBuf>,
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
        let saved = if target.addr.is_some() && target.token.is_some() && target.ca_file.is_some() {
            None
        } else {
            saved_credentials()?
        };
        let (addr, token, token_from) = resolve(
            target.addr.as_deref(),
            target.token.as_deref(),
            saved.as_ref(),
        );
        let ca = ca_for(&addr, target.ca_file.as_deref(), saved.as_ref());
        Ok(Self {
            client: client_for(&addr, token, ca.as_deref())?,
            token_from,
        })
    }

    /// Adds a hint to a 401 caused by not sending a token.
    pub fn explain(&self, result: anyhow::Result<()>) -> anyhow::Result<()> {
        let err = match result {
            Ok(()) => return Ok(()),
            Err(err) => err,
        };
        // A server whose certificate this client cannot check: say which file would.
        if err
            .chain()
            .any(|cause| cause.to_string().contains("invalid peer certificate"))
        {
            return Err(err.context(Hint(
                "the server's certificate is not one this client can check: pass the cluster's \
                 CA with --ca-file (or MERIDIAN_CA_FILE; `meridian login --ca-file` saves it); \
                 the local cluster's is .meridian/tls/ca.pem"
                    .into(),
            )));
        }
        let unauthorized = err.chain().any(|cause| {
            cause
                .downcast_ref::<ClientError>()
                .is_some_and(|e| e.status() == Some(401))
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
    let addr = normalize(
        addr.or(saved.map(|c| c.addr.as_str()))
            .unwrap_or(DEFAULT_ADDR),
    );
    if let Some(token) = token {
        return (addr, Some(token.to_string()), TokenSource::Given);
    }
    match saved {
        Some(c) if normalize(&c.addr) == addr => (addr, Some(c.token.clone()), TokenSource::Saved),
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

/// The CA to check `addr`'s certificate against: `--ca-file`, else the one saved with the
/// credentials of that same address.
pub fn ca_for(addr: &str, given: Option<&Path>, saved: Option<&Credentials>) -> Option<PathBuf> {
    given.map(Path::to_path_buf).or_else(|| {
        saved
            .filter(|c| normalize(&c.addr) == addr)
            .and_then(|c| c.ca_file.clone())
    })
}

/// `addr` with each server's trailing `/` and surrounding spaces removed, so the same servers
/// always read the same.
fn normalize(addr: &str) -> String {
    servers(addr).join(",")
}

/// The servers a comma-separated address names.
fn servers(addr: &str) -> Vec<&str> {
    addr.split(',')
        .map(|s| s.trim().trim_end_matches('/'))
        .filter(|s| !s.is_empty())
        .collect()
}

/// A client for the servers `addr` names, sending `token`, checking their certificates
/// against `ca` when given; refuses addresses that are not http(s) URLs.
pub fn client_for(addr: &str, token: Option<String>, ca: Option<&Path>) -> anyhow::Result<Client> {
    Ok(Client::builder(servers(addr))
        .token(token)
        .ca_file(ca.map(Path::to_path_buf))
        .build()?)
}

/// The address `login` talks to (`--addr`/`MERIDIAN_ADDR`, else the saved one, else the
/// default), and the CA to check it with (`--ca-file`, else the one saved for that address),
/// made absolute so it can be saved.
pub fn login_addr(target: &Target) -> anyhow::Result<(String, Option<PathBuf>)> {
    let saved = saved_credentials().context("reading the saved credentials")?;
    let (addr, _, _) = resolve(target.addr.as_deref(), None, saved.as_ref());
    let ca = match ca_for(&addr, target.ca_file.as_deref(), saved.as_ref()) {
        Some(ca) => Some(
            std::fs::canonicalize(&ca).with_context(|| format!("--ca-file {}", ca.display()))?,
        ),
        None => None,
    };
    Ok((addr, ca))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved() -> Credentials {
        Credentials {
            addr: "http://a:7001".into(),
            token: "saved".into(),
            ca_file: None,
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
    fn several_servers_read_the_same_however_spelt() {
        let (addr, _, _) = resolve(Some(" http://a:7001/, http://b:7001,"), None, None);
        assert_eq!(addr, "http://a:7001,http://b:7001");
        let saved = Credentials {
            addr: "http://a:7001,http://b:7001/".into(),
            token: "saved".into(),
            ca_file: None,
        };
        let (_, token, _) = resolve(Some("http://a:7001/,http://b:7001"), None, Some(&saved));
        assert_eq!(token.as_deref(), Some("saved"));
        assert_eq!(
            client_for(&addr, None, None).unwrap().servers(),
            ["http://a:7001", "http://b:7001"]
        );
    }

    #[test]
    fn addresses_need_a_scheme() {
        assert!(client_for("http://127.0.0.1:7001", None, None).is_ok());
        assert!(client_for("https://meridian.example", None, None).is_ok());
        let e = client_for("127.0.0.1:7001", None, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "server address `127.0.0.1:7001` must look like http://HOST:PORT or https://HOST"
        );
        assert!(client_for("http://", None, None).is_err());
        assert!(client_for(",", None, None).is_err());
    }
}
