//! Why a call or the building of a client failed.

use std::fmt;

use meridian_api::ErrorCode;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error body.
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        /// HTTP status.
        status: u16,
        /// The error code from the body.
        code: ErrorCode,
        /// The error message from the body.
        message: String,
        /// The advice from the body, if any; not part of the message (a report prints it on
        /// its own line).
        hint: Option<String>,
    },
    /// The server could not be reached or the exchange broke off. The message ends with the
    /// root cause ("Connection refused", "operation timed out"), and the reqwest error is not
    /// also returned as a `source`: its own chain repeats the URL at every level.
    #[error("cannot reach {url}: {}", root_cause(.error))]
    Transport {
        /// The URL called.
        url: String,
        /// The underlying error.
        error: reqwest::Error,
    },
    /// The server did not start answering a long transfer in time.
    #[error("no answer from {url} within {after:?}")]
    NoAnswer {
        /// The URL called.
        url: String,
        /// How long it was given.
        after: std::time::Duration,
    },
    /// The server answered something that is not the expected JSON.
    #[error("unexpected answer from {url} ({status}): {detail}")]
    Decode {
        /// The URL called.
        url: String,
        /// HTTP status.
        status: u16,
        /// What could not be read.
        detail: String,
    },
    /// The request body cannot be written as JSON.
    #[error("cannot encode the request to {path}: {detail}")]
    Encode {
        /// The path the request was for.
        path: String,
        /// What serde said.
        detail: String,
    },
    /// More than one server was tried and none gave a usable answer; the last attempt is the
    /// one that decided the call.
    #[error("tried {} servers: {}", .attempts.len(), Attempts(.attempts))]
    Servers {
        /// Each server tried, in order.
        attempts: Vec<Attempt>,
    },
}

/// One server's failure within a call that tried several.
#[derive(Debug)]
pub struct Attempt {
    /// The server's base URL.
    pub server: String,
    /// How the call failed there.
    pub error: ClientError,
}

/// Lists attempts as `a; b; c`, naming the server where the error itself does not.
struct Attempts<'a>(&'a [Attempt]);

impl fmt::Display for Attempts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            match &a.error {
                // These carry their URL already.
                e @ (ClientError::Transport { .. }
                | ClientError::NoAnswer { .. }
                | ClientError::Decode { .. }) => write!(f, "{e}")?,
                e => write!(f, "{}: {e}", a.server)?,
            }
        }
        Ok(())
    }
}

/// The innermost error beneath `e`.
fn root_cause<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> &'a (dyn std::error::Error + 'static) {
    let mut root = e;
    while let Some(next) = root.source() {
        root = next;
    }
    root
}

impl ClientError {
    /// The error that decided the call: the last attempt's when several servers were tried.
    pub fn last(&self) -> &ClientError {
        match self {
            Self::Servers { attempts } => attempts.last().map_or(self, |a| a.error.last()),
            other => other,
        }
    }

    /// The HTTP status, when the server that decided the call answered.
    pub fn status(&self) -> Option<u16> {
        match self.last() {
            Self::Api { status, .. } | Self::Decode { status, .. } => Some(*status),
            Self::Transport { .. }
            | Self::NoAnswer { .. }
            | Self::Encode { .. }
            | Self::Servers { .. } => None,
        }
    }

    /// The error code, when the server that decided the call answered with an error body.
    pub fn code(&self) -> Option<&ErrorCode> {
        match self.last() {
            Self::Api { code, .. } => Some(code),
            Self::Decode { .. }
            | Self::Transport { .. }
            | Self::NoAnswer { .. }
            | Self::Encode { .. }
            | Self::Servers { .. } => None,
        }
    }

    /// The server's advice on the error that decided the call, if it gave any.
    pub fn hint(&self) -> Option<&str> {
        match self.last() {
            Self::Api { hint, .. } => hint.as_deref(),
            Self::Decode { .. }
            | Self::Transport { .. }
            | Self::NoAnswer { .. }
            | Self::Encode { .. }
            | Self::Servers { .. } => None,
        }
    }

    /// Whether a server answered at all (as opposed to a connection that failed or broke off).
    pub(crate) fn is_answer(&self) -> bool {
        matches!(self, Self::Api { .. } | Self::Decode { .. })
    }
}

/// Why a client cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The list of servers is empty.
    #[error("no server address given")]
    NoServers,
    /// A server address is not an http(s) URL with a host.
    #[error("server address `{addr}` must look like http://HOST:PORT or https://HOST")]
    BadAddress {
        /// The address as given.
        addr: String,
    },
    /// The HTTP client itself cannot be set up (its TLS roots, say).
    #[error("cannot set up the HTTP client")]
    Http(#[source] reqwest::Error),
    /// The CA or certificate files cannot be used.
    #[error("the TLS set-up cannot be made")]
    Tls(#[from] meridian_tls::TlsError),
    /// A client certificate was given without its key, or the other way round.
    #[error("a client certificate and its key go together: give both (--tls-cert and --tls-key) or neither")]
    HalfIdentity,
    /// A client certificate was given without the CA to check servers against.
    #[error("a client certificate needs the cluster's CA too (--ca-file)")]
    IdentityWithoutCa,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: ErrorCode) -> ClientError {
        ClientError::Api {
            status,
            code,
            message: "m".into(),
            hint: None,
        }
    }

    #[test]
    fn several_attempts_read_once_each_and_report_the_last() {
        let e = ClientError::Servers {
            attempts: vec![
                Attempt {
                    server: "http://a".into(),
                    error: ClientError::Decode {
                        url: "http://a/v1/apps".into(),
                        status: 502,
                        detail: "<html>".into(),
                    },
                },
                Attempt {
                    server: "http://b".into(),
                    error: api(503, ErrorCode::NoLeader),
                },
            ],
        };
        assert_eq!(
            e.to_string(),
            "tried 2 servers: unexpected answer from http://a/v1/apps (502): <html>; \
             http://b: m (no_leader, HTTP 503)"
        );
        assert_eq!(e.status(), Some(503));
        assert_eq!(e.code(), Some(&ErrorCode::NoLeader));
    }
}
