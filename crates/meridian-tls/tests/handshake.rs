//! Real TLS handshakes over loopback TCP between certificates the cluster CA issued.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use meridian_tls::issue::{create_ca, issue, CaOptions, CertAndKey, LeafOptions};
use meridian_tls::{client_config, server_config, Acceptor, CertRole, Identity, TlsFiles};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Self {
        Self(tempfile::tempdir().expect("temp dir"))
    }

    fn write(&self, name: &str, pair: &CertAndKey) -> (PathBuf, PathBuf) {
        let cert = self.0.path().join(format!("{name}.pem"));
        let key = self.0.path().join(format!("{name}-key.pem"));
        meridian_tls::files::write_new(&cert, &pair.cert_pem, false, true).unwrap();
        meridian_tls::files::write_new(&key, &pair.key_pem, true, true).unwrap();
        (cert, key)
    }
}

fn leaf(ca: &CertAndKey, role: CertRole, region: &str, name: &str) -> CertAndKey {
    issue(
        ca,
        &LeafOptions {
            role,
            region: region.into(),
            name: name.into(),
            sans: vec!["localhost".into(), "127.0.0.1".into()],
            days: 30,
        },
    )
    .expect("issues")
}

/// Serves one connection with `server` (cert, key) trusting `ca`; the client trusts
/// `client_ca` and presents `client` when given. Returns what the server saw, or the first
/// error either side met.
async fn handshake(
    server: (&Path, &Path),
    ca: &Path,
    client_ca: &Path,
    client: Option<(&Path, &Path)>,
) -> Result<Option<Identity>, String> {
    let files = TlsFiles {
        cert: server.0.into(),
        key: server.1.into(),
        ca: ca.into(),
    };
    let acceptor = Acceptor::new(server_config(&files, &[b"http/1.1"]).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let (mut tls, id) = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        tls.write_all(b"pong").await.map_err(|e| e.to_string())?;
        tls.shutdown().await.ok();
        Ok::<_, String>(id)
    });
    let config = client_config(client_ca, client).map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    // The dialled name is ignored: the server's role is what is checked.
    let name = ServerName::try_from("whatever.example").unwrap();
    let client_side = async {
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(())
    };
    let client_result = client_side.await;
    let server_result = served.await.unwrap();
    client_result?;
    server_result
}

#[tokio::test]
async fn a_client_without_a_certificate_reaches_a_server() {
    let dir = Dir::new();
    let ca = create_ca(&CaOptions::default()).unwrap();
    let (ca_path, _) = dir.write("ca", &ca);
    let (cert, key) = dir.write("s1", &leaf(&ca, CertRole::Server, "eu-fra", "s1"));
    let seen = handshake((&cert, &key), &ca_path, &ca_path, None).await;
    assert_eq!(seen, Ok(None));
}

#[tokio::test]
async fn the_server_reads_the_role_region_and_name_of_a_client_certificate() {
    let dir = Dir::new();
    let ca = create_ca(&CaOptions::default()).unwrap();
    let (ca_path, _) = dir.write("ca", &ca);
    let (cert, key) = dir.write("s1", &leaf(&ca, CertRole::Server, "eu-fra", "s1"));
    let (acert, akey) = dir.write("fra-1", &leaf(&ca, CertRole::Agent, "eu-fra", "fra-1"));
    let seen = handshake((&cert, &key), &ca_path, &ca_path, Some((&acert, &akey)))
        .await
        .expect("handshake");
    assert_eq!(
        seen,
        Some(Identity {
            role: CertRole::Agent,
            region: "eu-fra".into(),
            name: "fra-1".into()
        })
    );
}

#[tokio::test]
async fn an_agent_certificate_cannot_pose_as_a_server() {
    let dir = Dir::new();
    let ca = create_ca(&CaOptions::default()).unwrap();
    let (ca_path, _) = dir.write("ca", &ca);
    let (acert, akey) = dir.write("fra-1", &leaf(&ca, CertRole::Agent, "eu-fra", "fra-1"));
    let e = handshake((&acert, &akey), &ca_path, &ca_path, None)
        .await
        .expect_err("refused");
    assert!(
        e.contains("NotValidForName") || e.contains("not valid for"),
        "{e}"
    );
}

#[tokio::test]
async fn certificates_of_another_ca_are_refused_both_ways() {
    let dir = Dir::new();
    let ca = create_ca(&CaOptions::default()).unwrap();
    let other = create_ca(&CaOptions::default()).unwrap();
    let (ca_path, _) = dir.write("ca", &ca);
    let (other_path, _) = dir.write("other", &other);
    let (cert, key) = dir.write("s1", &leaf(&ca, CertRole::Server, "eu-fra", "s1"));
    let (ocert, okey) = dir.write("s9", &leaf(&other, CertRole::Server, "eu-fra", "s9"));
    // A server of another cluster, as seen by this cluster's client.
    let e = handshake((&ocert, &okey), &other_path, &ca_path, None)
        .await
        .expect_err("unknown issuer");
    assert!(e.contains("UnknownIssuer"), "{e}");
    // A client of another cluster presenting its certificate to this cluster's server.
    let e = handshake((&cert, &key), &ca_path, &ca_path, Some((&ocert, &okey)))
        .await
        .expect_err("unknown issuer");
    assert!(
        e.to_lowercase().contains("unknown") || e.contains("alert"),
        "{e}"
    );
}

#[tokio::test]
async fn the_ca_cannot_vouch_for_names_outside_its_constraints() {
    let dir = Dir::new();
    let ca = create_ca(&CaOptions::default()).unwrap();
    let (ca_path, _) = dir.write("ca", &ca);
    // Made with the CA's key directly, past every check `issue` makes.
    let mut params =
        rcgen::CertificateParams::new(vec!["server.meridian".into(), "www.bank.example".into()])
            .unwrap();
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let issuer = rcgen::Issuer::from_ca_cert_pem(
        &ca.cert_pem,
        rcgen::KeyPair::from_pem(&ca.key_pem).unwrap(),
    )
    .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let rogue = CertAndKey {
        cert_pem: params.signed_by(&key, &issuer).unwrap().pem(),
        key_pem: key.serialize_pem(),
    };
    let (cert, key) = dir.write("rogue", &rogue);
    let e = handshake((&cert, &key), &ca_path, &ca_path, None)
        .await
        .expect_err("outside the constraints");
    assert!(e.contains("NameConstraint"), "{e}");
}

#[test]
fn issue_refuses_names_the_ca_may_not_sign_for() {
    let ca = create_ca(&CaOptions::default()).unwrap();
    let opts = |san: &str| LeafOptions {
        role: CertRole::Server,
        region: "eu-fra".into(),
        name: "s1".into(),
        sans: vec![san.into()],
        days: 30,
    };
    let e = issue(&ca, &opts("api.example.com"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("outside the names this CA may sign for"), "{e}");
    let e = issue(&ca, &opts("*.meridian")).unwrap_err().to_string();
    assert!(e.contains("neither an IP address nor a DNS name"), "{e}");
    let e = issue(&ca, &opts("server.meridian"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("only role names live"), "{e}");
    let mut bad = opts("localhost");
    bad.region = "EU FRA".into();
    assert!(issue(&ca, &bad)
        .unwrap_err()
        .to_string()
        .contains("DNS label"));
    let wide = create_ca(&CaOptions {
        extra_domains: vec!["example.com".into()],
        days: 10,
    })
    .unwrap();
    issue(&wide, &opts("api.example.com")).expect("permitted by --permit-domain");
}

#[cfg(unix)]
#[test]
fn keys_are_written_for_their_owner_only_and_never_over_a_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = Dir::new();
    let ca = create_ca(&CaOptions::default()).unwrap();
    let (cert, key) = dir.write("ca", &ca);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&cert), 0o644);
    let e = meridian_tls::files::write_new(&key, "x", true, false).unwrap_err();
    assert!(e.to_string().contains("exists already"), "{e}");
}
