//! TLS for Meridian: the cluster's certificate authority and the certificates it issues to
//! servers, agents and routers (whose role and region they name), and the rustls set-ups of
//! every listener and client. rustls with the ring provider is the only TLS stack.

pub mod config;
pub mod files;
pub mod issue;
pub mod names;

use std::path::PathBuf;
use std::sync::Arc;

pub use config::{client_config, install_default_provider, server_config, TlsFiles};
pub use names::{identity_of, CertRole, Identity};
use tokio::net::TcpStream;
pub use tokio_rustls::server::TlsStream;

/// Why a TLS file or set-up cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read or written.
    #[error("cannot use {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file would be replaced.
    #[error("{0} exists already; remove it, or pass --force to replace it")]
    Exists(PathBuf),
    /// A file does not hold what it should.
    #[error("{0}")]
    Parse(String),
    /// A setting or a combination of them cannot work.
    #[error("{0}")]
    Invalid(String),
}

/// Accepts TLS connections for a listener made with [`server_config`], and reads who the
/// client's certificate (if any) says it is.
#[derive(Clone)]
pub struct Acceptor {
    inner: tokio_rustls::TlsAcceptor,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Acceptor")
    }
}

impl Acceptor {
    /// An acceptor with `config`.
    pub fn new(config: Arc<rustls::ServerConfig>) -> Self {
        Self {
            inner: tokio_rustls::TlsAcceptor::from(config),
        }
    }

    /// Completes the handshake on `tcp`. The identity is `None` for a client without a
    /// certificate; a certificate the CA signed but that names no Meridian identity (or more
    /// than one) is refused.
    pub async fn accept(
        &self,
        tcp: TcpStream,
    ) -> std::io::Result<(TlsStream<TcpStream>, Option<Identity>)> {
        let stream = self.inner.accept(tcp).await?;
        let identity = match stream.get_ref().1.peer_certificates() {
            Some([leaf, ..]) => Some(
                identity_of(leaf)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
                    .ok_or_else(|| {
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            "the client certificate names no Meridian role",
                        )
                    })?,
            ),
            _ => None,
        };
        Ok((stream, identity))
    }
}
