//! Minting the cluster's CA and the certificates of its servers, agents and routers (rcgen).

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose, NameConstraints, SanType,
};
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::GeneralName;

use crate::names::{is_label, CertRole, DOMAIN};
use crate::TlsError;

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct CertAndKey {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

/// Shows the certificate only.
impl std::fmt::Debug for CertAndKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAndKey")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// What a new CA may sign for.
#[derive(Debug, Clone)]
pub struct CaOptions {
    /// DNS domains, besides `meridian` and `localhost`, that certificates it issues may name
    /// (say the domain the servers' addresses live under). Its name constraints allow these
    /// and nothing else, so even its key cannot make a certificate for another site.
    pub extra_domains: Vec<String>,
    /// How long the CA is valid.
    pub days: u32,
}

impl Default for CaOptions {
    fn default() -> Self {
        Self {
            extra_domains: Vec::new(),
            days: 3650,
        }
    }
}

/// Domains every Meridian CA may sign for.
pub const BASE_DOMAINS: [&str; 2] = [DOMAIN, "localhost"];

/// Mints a new CA: an ECDSA P-256 key and a self-signed certificate whose name constraints
/// permit only [`BASE_DOMAINS`] and `extra_domains` (IP addresses are not constrained).
pub fn create_ca(opts: &CaOptions) -> Result<CertAndKey, TlsError> {
    let mut domains: Vec<String> = BASE_DOMAINS.iter().map(|d| d.to_string()).collect();
    for d in &opts.extra_domains {
        let d = d.trim_start_matches('.').to_ascii_lowercase();
        if !is_domain(&d) {
            return Err(TlsError::Invalid(format!(
                "{d:?} is not a DNS domain (letters, digits, '-' and '.')"
            )));
        }
        if !domains.contains(&d) {
            domains.push(d);
        }
    }
    let key = KeyPair::generate().map_err(rcgen_error)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    // Each CA's own name, so a certificate of another cluster's CA is told apart by its
    // issuer (an unknown issuer) before any signature is checked.
    let id: String = params
        .key_identifier(&key)
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect();
    dn.push(DnType::CommonName, format!("Meridian cluster CA {id}"));
    dn.push(DnType::OrganizationName, "Meridian");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.name_constraints = Some(NameConstraints {
        permitted_subtrees: domains.into_iter().map(GeneralSubtree::DnsName).collect(),
        excluded_subtrees: Vec::new(),
    });
    validity(&mut params, opts.days)?;
    let cert = params.self_signed(&key).map_err(rcgen_error)?;
    Ok(CertAndKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// What a new certificate is for.
#[derive(Debug, Clone)]
pub struct LeafOptions {
    /// Its role.
    pub role: CertRole,
    /// The region its holder runs in.
    pub region: String,
    /// Its holder's name (a node or server name).
    pub name: String,
    /// More names it answers to, DNS names or IP addresses, for clients that check the address
    /// they dialled (curl, browsers). None may be under `meridian`: those are role names.
    pub sans: Vec<String>,
    /// How long it is valid.
    pub days: u32,
}

/// Issues a certificate for `opts` under `ca`. Every name it would carry must be one the CA's
/// name constraints permit, or this says which is not (rather than minting a certificate no
/// peer would accept).
pub fn issue(ca: &CertAndKey, opts: &LeafOptions) -> Result<CertAndKey, TlsError> {
    for (what, v) in [("region", &opts.region), ("name", &opts.name)] {
        if !is_label(v) {
            return Err(TlsError::Invalid(format!(
                "{what} {v:?} must be a DNS label: lowercase letters, digits and '-', \
                 1 to 63 characters, not starting or ending with '-'"
            )));
        }
    }
    let role = opts.role;
    let mut sans = vec![
        SanType::DnsName(dns(&role.any_region_name())?),
        SanType::DnsName(dns(&role.region_name(&opts.region))?),
        SanType::DnsName(dns(&role.node_name(&opts.region, &opts.name))?),
    ];
    let permitted = permitted_domains(&ca.cert_pem)?;
    for extra in &opts.sans {
        let extra = extra.trim();
        if let Ok(ip) = extra.parse::<IpAddr>() {
            sans.push(SanType::IpAddress(ip));
            continue;
        }
        let host = extra.to_ascii_lowercase();
        if !is_domain(&host) {
            return Err(TlsError::Invalid(format!(
                "--san {extra:?} is neither an IP address nor a DNS name"
            )));
        }
        if within(&host, DOMAIN) {
            return Err(TlsError::Invalid(format!(
                "--san {extra:?} is under .{DOMAIN}, where only role names live"
            )));
        }
        if !permitted.iter().any(|p| within(&host, p)) {
            return Err(TlsError::Invalid(format!(
                "--san {extra:?} is outside the names this CA may sign for ({}); create the CA \
                 with --permit-domain for it",
                permitted.join(", ")
            )));
        }
        sans.push(SanType::DnsName(dns(&host)?));
    }
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, role.region_name(&opts.region));
    dn.push(DnType::OrganizationName, "Meridian");
    params.distinguished_name = dn;
    params.subject_alt_names = sans;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // Servers are clients of each other; agents and routers only call out, but a server
    // certificate's shape is the simplest to reason about for all three.
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, opts.days)?;
    let ca_key = KeyPair::from_pem(&ca.key_pem)
        .map_err(|e| TlsError::Parse(format!("the CA's key: {e}")))?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)
        .map_err(|e| TlsError::Parse(format!("the CA's certificate: {e}")))?;
    let key = KeyPair::generate().map_err(rcgen_error)?;
    let cert = params.signed_by(&key, &issuer).map_err(rcgen_error)?;
    Ok(CertAndKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The DNS domains a CA certificate's name constraints permit (empty: any).
pub fn permitted_domains(ca_pem: &str) -> Result<Vec<String>, TlsError> {
    let der = crate::config::parse_certs(ca_pem.as_bytes(), "the CA")?
        .into_iter()
        .next()
        .ok_or_else(|| TlsError::Parse("the CA file holds no certificate".into()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| TlsError::Parse(format!("the CA's certificate: {e}")))?;
    if !cert.is_ca() {
        return Err(TlsError::Invalid(
            "the CA file's certificate is not a CA certificate".into(),
        ));
    }
    let constraints = cert
        .name_constraints()
        .map_err(|e| TlsError::Parse(format!("the CA's name constraints: {e}")))?;
    Ok(constraints
        .and_then(|c| c.value.permitted_subtrees.clone())
        .unwrap_or_default()
        .iter()
        .filter_map(|s| match s.base {
            GeneralName::DNSName(d) => Some(d.trim_start_matches('.').to_string()),
            _ => None,
        })
        .collect())
}

fn validity(params: &mut CertificateParams, days: u32) -> Result<(), TlsError> {
    if days == 0 || days > 36500 {
        return Err(TlsError::Invalid(format!(
            "--days {days}: must be between 1 and 36500"
        )));
    }
    let now = OffsetDateTime::now_utc();
    // An hour back, for peers whose clocks run a little behind.
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(i64::from(days));
    Ok(())
}

/// Whether `host` is `domain` or under it.
fn within(host: &str, domain: &str) -> bool {
    host == domain || host.ends_with(&format!(".{domain}"))
}

/// Letters, digits, '-' and '.', as labels of 1 to 63 characters; at most 253 characters.
fn is_domain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn dns(s: &str) -> Result<rcgen::string::Ia5String, TlsError> {
    s.to_string()
        .try_into()
        .map_err(|e| TlsError::Invalid(format!("{s:?}: {e}")))
}

fn rcgen_error(e: rcgen::Error) -> TlsError {
    TlsError::Invalid(format!("cannot make the certificate: {e}"))
}
