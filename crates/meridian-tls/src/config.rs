//! rustls set-ups for Meridian's own connections: servers that ask for (and check) a client
//! certificate, and clients that check the server's role rather than the address dialled.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use crate::names::CertRole;
use crate::TlsError;

/// The one crypto provider every Meridian TLS connection uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes [`provider`] the process default, for TLS set up by libraries without an explicit
/// provider. Harmless when one is installed already.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The three files of a part with a certificate: its certificate (chain), its key and the
/// cluster's CA.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// Certificate, PEM (the leaf first).
    pub cert: PathBuf,
    /// Private key, PEM.
    pub key: PathBuf,
    /// The cluster's CA certificate, PEM.
    pub ca: PathBuf,
}

/// Certificates in PEM text; `what` names the source in errors.
pub fn parse_certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Parse(format!("{what}: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::Parse(format!(
            "{what}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it"
        )));
    }
    Ok(certs)
}

/// Certificates from a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    parse_certs(&pem, &path.display().to_string())
}

/// A private key from a PEM file (PKCS#8, SEC1 or PKCS#1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        TlsError::Parse(format!(
            "{}: no usable PEM private key in it ({e})",
            path.display()
        ))
    })
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// A trust store holding only the certificates in `ca`.
pub fn roots(ca: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in load_certs(ca)? {
        store
            .add(cert)
            .map_err(|e| TlsError::Parse(format!("{}: {e}", ca.display())))?;
    }
    Ok(Arc::new(store))
}

/// A listener's set-up: presents `files.cert`, and asks every client for a certificate,
/// checking any it gets against `files.ca`. Clients without one (people with a token) are let
/// through; what a request may do without a certificate is the server's business.
pub fn server_config(files: &TlsFiles, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(&files.ca)?, provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Invalid(format!("client verifier: {e}")))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(&files.cert)?, load_key(&files.key)?)
        .map_err(|e| {
            TlsError::Invalid(format!(
                "{} and {} do not make a usable pair: {e}",
                files.cert.display(),
                files.key.display()
            ))
        })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A client's set-up for calling Meridian servers: trusts only `ca`, accepts only a
/// certificate with the server role (whatever address was dialled: servers are found by
/// addresses a certificate need not list), and presents `identity` (certificate, key) when
/// given.
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let inner = WebPkiServerVerifier::builder_with_provider(roots(ca)?, provider.clone())
        .build()
        .map_err(|e| TlsError::Invalid(format!("server verifier: {e}")))?;
    let verifier = Arc::new(RoleVerifier {
        inner,
        expected: ServerName::try_from(CertRole::Server.any_region_name())
            .map_err(|e| TlsError::Invalid(e.to_string()))?,
    });
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| {
                TlsError::Invalid(format!(
                    "{} and {} do not make a usable pair: {e}",
                    cert.display(),
                    key.display()
                ))
            })?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Where Debian, Ubuntu and Alpine keep the system's trusted roots (`SSL_CERT_FILE` overrides).
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The system's trusted roots, or none when it has no bundle (a minimal container).
pub fn system_roots() -> Vec<CertificateDer<'static>> {
    let path = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(SYSTEM_ROOTS));
    match std::fs::read(&path) {
        Ok(pem) => CertificateDer::pem_slice_iter(&pem)
            .filter_map(Result::ok)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// A client set-up that trusts `roots` and checks the address dialled, as any web client
/// does: for calls to anything that is not a Meridian server (and to servers when no cluster
/// CA is given, with [`system_roots`]).
pub fn web_client_config(roots: &[CertificateDer<'static>]) -> Result<ClientConfig, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in roots {
        // A bundle may hold certificates webpki cannot use; skip those, as browsers do.
        let _ = store.add(cert.clone());
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid(e.to_string()))?
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Checks the chain as webpki does, against a fixed role name instead of the dialled one.
#[derive(Debug)]
struct RoleVerifier {
    inner: Arc<WebPkiServerVerifier>,
    expected: ServerName<'static>,
}

impl ServerCertVerifier for RoleVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _dialled: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(
            end_entity,
            intermediates,
            &self.expected,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
