//! [`Client`]: a token, a list of servers, timeouts, and the loop that sends one call to the
//! servers in turn.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use meridian_api::{ErrorBody, SERVED_BY_HEADER};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Attempt, BuildError, ClientError};
use crate::failover::try_next;
use crate::servers::Servers;

/// How long each part of a call may take. Every request carries its own deadline, so none can
/// wait forever on a server that accepted the connection and went silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Opening a connection to one server. Short, because an unreachable server is skipped for
    /// the next one.
    pub connect: Duration,
    /// One ordinary request at one server, from connecting to the last byte of the answer.
    pub request: Duration,
    /// Added to the wait a long poll asks the server for (the assignments and route table
    /// watches pass `wait_ms`), to give that whole request its deadline.
    pub long_poll_grace: Duration,
    /// Streaming an image archive to or from a server (hundreds of megabytes). A server must
    /// still start answering within `request`, or the next one is asked.
    pub transfer: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(2),
            // A write may wait at the server for a leader, then for its commit.
            request: Duration::from_secs(30),
            long_poll_grace: Duration::from_secs(10),
            transfer: Duration::from_secs(3600),
        }
    }
}

/// Sets up a [`Client`]: see [`Client::builder`].
#[derive(Clone)]
pub struct ClientBuilder {
    servers: Vec<String>,
    token: Option<String>,
    timeouts: Timeouts,
    files: ClientTls,
    tls: Option<rustls::ClientConfig>,
}

/// A client's TLS files: the cluster's CA to check servers against, and the certificate and
/// key it presents (agents and routers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// The cluster's CA certificate, PEM.
    pub ca_file: Option<PathBuf>,
    /// This client's certificate, PEM.
    pub cert: Option<PathBuf>,
    /// Its private key, PEM.
    pub key: Option<PathBuf>,
}

/// Shows everything but the token.
impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("servers", &self.servers)
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .field("timeouts", &self.timeouts)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// The cluster's CA: servers must present a certificate it issued, with the server role
    /// (the address dialled need not be in it). Without one, `https://` servers are checked
    /// against the system's trusted roots and their address, as a browser does.
    pub fn ca_file(mut self, ca: impl Into<Option<PathBuf>>) -> Self {
        self.files.ca_file = ca.into();
        self
    }

    /// All of a client's TLS files at once: the CA as [`Self::ca_file`], and a certificate
    /// and key to present.
    pub fn tls_files(mut self, files: ClientTls) -> Self {
        self.files = files;
        self
    }

    /// A TLS set-up of the caller's own, in place of [`Self::ca_file`] and [`Self::identity`].
    pub fn tls_config(mut self, config: rustls::ClientConfig) -> Self {
        self.tls = Some(config);
        self
    }

    fn tls(&self) -> Result<rustls::ClientConfig, BuildError> {
        if let Some(config) = &self.tls {
            return Ok(config.clone());
        }
        let f = &self.files;
        let identity = match (&f.cert, &f.key) {
            (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
            (None, None) => None,
            _ => return Err(BuildError::HalfIdentity),
        };
        match (&f.ca_file, identity) {
            (Some(ca), identity) => Ok(meridian_tls::client_config(ca, identity)?),
            (None, Some(_)) => Err(BuildError::IdentityWithoutCa),
            (None, None) => Ok(meridian_tls::config::web_client_config(
                &meridian_tls::config::system_roots(),
            )?),
        }
    }

    /// The bearer token every call sends.
    pub fn token(mut self, token: impl Into<Option<String>>) -> Self {
        self.token = token.into();
        self
    }

    /// Timeouts other than the defaults.
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// The client, or why it cannot be made: no server, an address that is not an http(s)
    /// URL, or an HTTP client that cannot be set up. Never a client without its timeouts.
    pub fn build(self) -> Result<Client, BuildError> {
        let tls = self.tls()?;
        let servers = Servers::new(self.servers)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            // Servers close a connection idle for 30 s: let it go first, so no request is
            // sent on one being closed.
            .pool_idle_timeout(Duration::from_secs(15))
            .connect_timeout(self.timeouts.connect)
            .timeout(self.timeouts.request)
            .tcp_nodelay(true)
            .build()
            .map_err(BuildError::Http)?;
        Ok(Client {
            shared: Arc::new(Shared {
                servers,
                token: self.token,
                http,
                timeouts: self.timeouts,
            }),
            repeat_writes: false,
        })
    }
}

/// A client for a Meridian cluster: any of its servers answers, and a call that fails at one
/// in a way another may not share moves on to the next (see the crate documentation for the
/// rules). Clones share the connection pool and the preferred servers.
#[derive(Debug, Clone)]
pub struct Client {
    shared: Arc<Shared>,
    repeat_writes: bool,
}

struct Shared {
    servers: Servers,
    token: Option<String>,
    http: reqwest::Client,
    timeouts: Timeouts,
}

/// Shows everything but the token.
impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("servers", &self.servers)
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

/// Which servers serve a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Served {
    /// The leader (a follower forwards it there).
    Leader,
    /// Whichever server answers (`stale=true` reads, health, image blobs).
    Any,
    /// Server `i` and no other.
    Only(usize),
}

/// What a call may do again at another server after an unknown outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Repeat {
    /// A read, or a write that sets a value: sending it twice does what sending it once did.
    Safe,
    /// A write whose second sending may do something again.
    Unsafe,
}

/// One call: everything needed to send it to any server, as often as the rules allow.
#[derive(Debug)]
pub(crate) struct Call {
    pub(crate) method: Method,
    /// Path and query, e.g. `/v1/apps?x=1`.
    pub(crate) path: String,
    /// JSON, serialised once and sent again as is.
    pub(crate) body: Option<Bytes>,
    pub(crate) served: Served,
    pub(crate) repeat: Repeat,
    /// The whole request's deadline at one server.
    pub(crate) timeout: Duration,
    /// For a long transfer: how long one server may take to start answering before the next
    /// is tried (when the rules allow).
    pub(crate) first_answer: Option<Duration>,
}

impl Client {
    /// A client for `servers` (base URLs such as `http://127.0.0.1:7001`), with the default
    /// timeouts and no token until [`ClientBuilder::token`].
    pub fn builder<I, S>(servers: I) -> ClientBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ClientBuilder {
            servers: servers.into_iter().map(Into::into).collect(),
            token: None,
            timeouts: Timeouts::default(),
            files: ClientTls::default(),
            tls: None,
        }
    }

    /// A client for the one server at `server`, sending `token`, with the default timeouts.
    pub fn new(server: &str, token: Option<String>) -> Result<Self, BuildError> {
        Self::builder([server]).token(token).build()
    }

    /// This client, except that every write may be sent again to another server when its
    /// outcome at the first is unknown (a timeout, `commit_timeout`). Only for callers whose
    /// writes are harmless to repeat, or who check afterwards.
    pub fn repeating_writes(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            repeat_writes: true,
        }
    }

    /// Every server, as configured (no trailing `/`).
    pub fn servers(&self) -> &[String] {
        self.shared.servers.urls()
    }

    /// The server the next call that any server may answer starts at.
    pub fn server(&self) -> &str {
        let s = &self.shared.servers;
        s.url(s.first(false))
    }

    /// The leader's URL, once an answer has shown which configured server leads.
    pub fn known_leader(&self) -> Option<&str> {
        let s = &self.shared.servers;
        s.leader().map(|i| s.url(i))
    }

    /// The timeouts in force.
    pub fn timeouts(&self) -> &Timeouts {
        &self.shared.timeouts
    }

    pub(crate) fn servers_state(&self) -> &Servers {
        &self.shared.servers
    }

    /// A call of `method` on `path`, with the JSON of `body`.
    pub(crate) fn call<B: Serialize>(
        &self,
        method: Method,
        path: String,
        body: Option<&B>,
    ) -> Result<Call, ClientError> {
        let body = match body {
            None => None,
            Some(b) => Some(Bytes::from(serde_json::to_vec(b).map_err(|e| {
                ClientError::Encode {
                    path: path.clone(),
                    detail: e.to_string(),
                }
            })?)),
        };
        let repeat = if method == Method::GET || method == Method::HEAD {
            Repeat::Safe
        } else {
            Repeat::Unsafe
        };
        Ok(Call {
            method,
            path,
            body,
            served: Served::Leader,
            repeat,
            timeout: self.shared.timeouts.request,
            first_answer: None,
        })
    }

    /// Sends `call` and reads the JSON answer (`null` for an empty one).
    pub(crate) async fn json<T: DeserializeOwned>(&self, call: Call) -> Result<T, ClientError> {
        self.send(call, |url, resp| read_json(url, resp)).await
    }

    /// Sends `call` to the servers in turn until one answers in a way the rules accept, and
    /// hands the successful answer to `read`. A failure `read` returns counts as that
    /// server's (a body cut off halfway, say) and may move on too.
    pub(crate) async fn send<T, F, Fut>(&self, call: Call, read: F) -> Result<T, ClientError>
    where
        F: Fn(String, reqwest::Response) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let servers = &self.shared.servers;
        let order: Vec<usize> = match call.served {
            Served::Only(i) => vec![i],
            Served::Leader => servers.order(true).collect(),
            Served::Any => servers.order(false).collect(),
        };
        let repeatable = self.repeat_writes || call.repeat == Repeat::Safe;
        let mut attempts: Vec<Attempt> = Vec::new();
        for (k, &i) in order.iter().enumerate() {
            let server = servers.url(i);
            let url = format!("{server}{}", call.path);
            let sent = self.request(&url, &call).send();
            let sent = match call.first_answer {
                None => Ok(sent.await),
                Some(limit) => tokio::time::timeout(limit, sent).await.map_err(|_| limit),
            };
            let outcome = match sent {
                Err(after) => Err(ClientError::NoAnswer { url, after }),
                Ok(Err(error)) => Err(ClientError::Transport { url, error }),
                Ok(Ok(resp)) => {
                    let hint = resp
                        .headers()
                        .get(SERVED_BY_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let result = if resp.status().is_success() {
                        read(url, resp).await
                    } else {
                        Err(read_error(url, resp).await)
                    };
                    let answered = match &result {
                        Ok(_) => true,
                        Err(e) => e.is_answer(),
                    };
                    if answered {
                        // A server that serves a leader-bound call without relaying it leads.
                        let leads =
                            call.served == Served::Leader && hint.is_none() && result.is_ok();
                        servers.answered(i, hint.as_deref(), leads);
                    }
                    result
                }
            };
            let error = match outcome {
                Ok(value) => {
                    if !attempts.is_empty() {
                        tracing::info!(
                            server,
                            failed = attempts.len(),
                            "answered after other servers failed"
                        );
                    }
                    return Ok(value);
                }
                Err(e) => e,
            };
            let elsewhere = try_next(&error, repeatable);
            if elsewhere {
                servers.failed(i);
            }
            if !elsewhere || k + 1 == order.len() {
                return Err(finish(attempts, server, error));
            }
            tracing::info!(
                server,
                next = servers.url(order[k + 1]),
                error = %error,
                "server failed; trying the next"
            );
            attempts.push(Attempt {
                server: server.to_string(),
                error,
            });
        }
        // `order` is never empty: a client has at least one server.
        Err(ClientError::Servers { attempts })
    }

    fn request(&self, url: &str, call: &Call) -> reqwest::RequestBuilder {
        let mut req = self
            .shared
            .http
            .request(call.method.clone(), url)
            .timeout(call.timeout);
        if let Some(t) = &self.shared.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = &call.body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.clone());
        }
        req
    }

    /// Sends a body that can be sent only once (a stream) to the preferred server; a failure
    /// makes the next call start elsewhere.
    pub(crate) async fn send_once<T: DeserializeOwned>(
        &self,
        path: &str,
        content_type: &str,
        body: reqwest::Body,
    ) -> Result<T, ClientError> {
        let servers = &self.shared.servers;
        let i = servers.first(false);
        let url = format!("{}{path}", servers.url(i));
        let mut req = self
            .shared
            .http
            .post(&url)
            .timeout(self.shared.timeouts.transfer)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        if let Some(t) = &self.shared.token {
            req = req.bearer_auth(t);
        }
        let result = match req.send().await {
            Err(error) => Err(ClientError::Transport { url, error }),
            Ok(resp) if resp.status().is_success() => read_json(url, resp).await,
            Ok(resp) => Err(read_error(url, resp).await),
        };
        match &result {
            Err(e) if !e.is_answer() || e.status().is_some_and(|s| s >= 500) => servers.failed(i),
            _ => servers.answered(i, None, false),
        }
        result
    }
}

/// The error a call returns: its own when it was the only attempt.
fn finish(mut attempts: Vec<Attempt>, server: &str, error: ClientError) -> ClientError {
    if attempts.is_empty() {
        return error;
    }
    attempts.push(Attempt {
        server: server.to_string(),
        error,
    });
    ClientError::Servers { attempts }
}

/// Reads a success: its JSON, `null` for an empty one.
pub(crate) async fn read_json<T: DeserializeOwned>(
    url: String,
    resp: reqwest::Response,
) -> Result<T, ClientError> {
    let status = resp.status();
    let bytes = match resp.bytes().await {
        Ok(b) => b,
        Err(error) => return Err(ClientError::Transport { url, error }),
    };
    let bytes = if status == StatusCode::NO_CONTENT || bytes.is_empty() {
        Bytes::from_static(b"null")
    } else {
        bytes
    };
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
        url,
        status: status.as_u16(),
        detail: e.to_string(),
    })
}

/// Reads a failure: the error body, or what came instead.
async fn read_error(url: String, resp: reqwest::Response) -> ClientError {
    let status = resp.status().as_u16();
    let bytes = match resp.bytes().await {
        Ok(b) => b,
        Err(error) => return ClientError::Transport { url, error },
    };
    match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(b) => ClientError::Api {
            status,
            code: b.error.code,
            message: b.error.message,
            hint: b.error.hint,
        },
        Err(_) => ClientError::Decode {
            url,
            status,
            detail: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
        },
    }
}
