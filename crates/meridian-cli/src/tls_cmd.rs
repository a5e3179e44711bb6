//! `meridian tls`: the cluster's certificate authority and the certificates it issues.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use meridian_tls::files::write_new;
use meridian_tls::issue::{self, CaOptions, CertAndKey, LeafOptions};
use meridian_tls::CertRole;

use crate::output::Output;

/// `meridian tls ...`.
#[derive(Args)]
pub struct TlsArgs {
    #[command(subcommand)]
    command: TlsCommand,
}

#[derive(Subcommand)]
enum TlsCommand {
    /// The cluster's certificate authority.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Certificates for servers, agents and routers.
    #[command(subcommand)]
    Cert(CertCommand),
}

#[derive(Subcommand)]
enum CaCommand {
    /// Mint a new CA: writes ca.pem and ca-key.pem (0600). Keep the key off the servers.
    Create(CaCreate),
}

#[derive(Subcommand)]
enum CertCommand {
    /// Issue a certificate naming a role, region and name: writes <role>-<region>-<name>.pem
    /// and <role>-<region>-<name>-key.pem (0600).
    Create(CertCreate),
}

#[derive(Args)]
struct CaCreate {
    /// Directory to write ca.pem and ca-key.pem to (created when missing).
    #[arg(long, value_name = "DIR", default_value = ".")]
    out: PathBuf,
    /// A DNS domain certificates of this CA may name besides `meridian` and `localhost`, for
    /// the servers' own addresses (repeatable). The CA can sign for nothing else.
    #[arg(long = "permit-domain", value_name = "DOMAIN")]
    permit_domains: Vec<String>,
    /// Days the CA is valid.
    #[arg(long, value_name = "DAYS", default_value_t = 3650)]
    days: u32,
    /// Replace existing files.
    #[arg(long)]
    force: bool,
}

/// What a certificate is for.
#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    Server,
    Agent,
    Router,
}

impl From<RoleArg> for CertRole {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Server => CertRole::Server,
            RoleArg::Agent => CertRole::Agent,
            RoleArg::Router => CertRole::Router,
        }
    }
}

#[derive(Args)]
struct CertCreate {
    /// What the holder is: a server may do everything between servers; an agent or a router
    /// only what its role allows.
    #[arg(long, value_enum)]
    role: RoleArg,
    /// The holder's region.
    #[arg(long, value_name = "REGION")]
    region: String,
    /// The holder's name: the node name of an agent, the router's or server's name.
    #[arg(long, value_name = "NAME")]
    name: String,
    /// Another name clients dial it by: a host name or an IP address (repeatable).
    #[arg(long = "san", value_name = "HOST|IP")]
    sans: Vec<String>,
    /// The CA's certificate.
    #[arg(long, value_name = "FILE", default_value = "ca.pem")]
    ca: PathBuf,
    /// The CA's private key.
    #[arg(long, value_name = "FILE", default_value = "ca-key.pem")]
    ca_key: PathBuf,
    /// Directory to write the certificate and key to (created when missing).
    #[arg(long, value_name = "DIR", default_value = ".")]
    out: PathBuf,
    /// Days the certificate is valid.
    #[arg(long, value_name = "DAYS", default_value_t = 365)]
    days: u32,
    /// Replace existing files.
    #[arg(long)]
    force: bool,
}

/// Runs `meridian tls ...`.
pub fn run(args: TlsArgs, out: &Output) -> anyhow::Result<()> {
    match args.command {
        TlsCommand::Ca(CaCommand::Create(a)) => {
            let ca = issue::create_ca(&CaOptions {
                extra_domains: a.permit_domains,
                days: a.days,
            })?;
            let (cert, key) = write_pair(&a.out, "ca", &ca, a.force)?;
            out.note(&format!(
                "CA certificate {}, key {} (keep the key safe: whoever holds it can issue \
                 certificates for this cluster)",
                cert.display(),
                key.display()
            ))
        }
        TlsCommand::Cert(CertCommand::Create(a)) => {
            let read = |p: &Path| {
                std::fs::read_to_string(p).with_context(|| {
                    format!(
                        "cannot read {} (create a CA with `meridian tls ca create`, or pass \
                         --ca and --ca-key)",
                        p.display()
                    )
                })
            };
            let ca = CertAndKey {
                cert_pem: read(&a.ca)?,
                key_pem: read(&a.ca_key)?,
            };
            let role = CertRole::from(a.role);
            let leaf = issue::issue(
                &ca,
                &LeafOptions {
                    role,
                    region: a.region.clone(),
                    name: a.name.clone(),
                    sans: a.sans,
                    days: a.days,
                },
            )?;
            let stem = format!("{role}-{}-{}", a.region, a.name);
            let (cert, key) = write_pair(&a.out, &stem, &leaf, a.force)?;
            out.note(&format!(
                "{} certificate {}, key {}",
                role.node_name(&a.region, &a.name),
                cert.display(),
                key.display()
            ))
        }
    }
}

/// Writes `<stem>.pem` and `<stem>-key.pem` into `dir`; neither when either exists (unless
/// `force`).
fn write_pair(
    dir: &Path,
    stem: &str,
    pair: &CertAndKey,
    force: bool,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cert = dir.join(format!("{stem}.pem"));
    let key = dir.join(format!("{stem}-key.pem"));
    if !force {
        for p in [&cert, &key] {
            if p.exists() {
                return Err(meridian_tls::TlsError::Exists(p.clone()).into());
            }
        }
    }
    write_new(&key, &pair.key_pem, true, force)?;
    write_new(&cert, &pair.cert_pem, false, force)?;
    Ok((cert, key))
}
