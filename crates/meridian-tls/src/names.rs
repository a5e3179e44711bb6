//! The names a Meridian certificate carries, and the identity they prove.
//!
//! Every certificate the cluster's CA issues for a part of Meridian names its role and region in
//! DNS names under `meridian`, as subject alternative names:
//!
//! - `<role>.meridian`: any part with this role (a client that only needs "a server of this
//!   cluster" checks this name, so an agent's certificate cannot pass for a server's);
//! - `<role>.<region>.meridian`: that role in that region;
//! - `<name>.<role>.<region>.meridian`: the one node; [`identity_of`] reads it back.
//!
//! The subject's common name is `<role>.<region>.meridian` too, for people reading it.

use std::fmt;

use x509_parser::extensions::GeneralName;

use crate::TlsError;

/// The DNS domain every role name lives under.
pub const DOMAIN: &str = "meridian";

/// What a certificate lets its holder be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertRole {
    /// A control-plane server: Raft, forwarding, image relay, and the API.
    Server,
    /// A worker node's agent.
    Agent,
    /// An edge router.
    Router,
}

impl CertRole {
    /// Every role.
    pub const ALL: [CertRole; 3] = [CertRole::Server, CertRole::Agent, CertRole::Router];

    /// `server`, `agent` or `router`.
    pub fn as_str(self) -> &'static str {
        match self {
            CertRole::Server => "server",
            CertRole::Agent => "agent",
            CertRole::Router => "router",
        }
    }

    /// Parses `server`, `agent` or `router`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// `<role>.meridian`: the name every holder of this role answers to.
    pub fn any_region_name(self) -> String {
        format!("{}.{DOMAIN}", self.as_str())
    }

    /// `<role>.<region>.meridian`.
    pub fn region_name(self, region: &str) -> String {
        format!("{}.{region}.{DOMAIN}", self.as_str())
    }

    /// `<name>.<role>.<region>.meridian`.
    pub fn node_name(self, region: &str, name: &str) -> String {
        format!("{name}.{}.{region}.{DOMAIN}", self.as_str())
    }
}

impl fmt::Display for CertRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a verified certificate says its holder is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// Its role.
    pub role: CertRole,
    /// Its region.
    pub region: String,
    /// Its node name.
    pub name: String,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} in {}", self.role, self.name, self.region)
    }
}

impl Identity {
    /// Parses `<name>.<role>.<region>.meridian`; `None` for any other name.
    pub fn from_dns_name(dns: &str) -> Option<Self> {
        let rest = dns.strip_suffix(DOMAIN)?.strip_suffix('.')?;
        let mut labels = rest.split('.');
        let (name, role, region) = (labels.next()?, labels.next()?, labels.next()?);
        if labels.next().is_some() || !is_label(name) || !is_label(region) {
            return None;
        }
        Some(Self {
            role: CertRole::parse(role)?,
            region: region.to_string(),
            name: name.to_string(),
        })
    }

    /// The header form, `<name>.<role>.<region>.meridian`, that a server passes on with a
    /// request it forwards for this peer.
    pub fn dns_name(&self) -> String {
        self.role.node_name(&self.region, &self.name)
    }
}

/// Whether `s` is a DNS label as Meridian names are: lowercase letters, digits and `-`,
/// 1 to 63 characters, not starting or ending with `-`.
pub fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// The identity a certificate (DER) names, read from its subject alternative names: `None`
/// when it names none, an error when it names more than one (such a certificate is not one
/// Meridian issues, and no role is read from it). The caller must have verified the
/// certificate's chain first: this only reads names.
pub fn identity_of(der: &[u8]) -> Result<Option<Identity>, TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| TlsError::Parse(format!("certificate: {e}")))?;
    let sans = cert
        .subject_alternative_name()
        .map_err(|e| TlsError::Parse(format!("subject alternative names: {e}")))?;
    let mut found: Option<Identity> = None;
    for name in sans.iter().flat_map(|s| s.value.general_names.iter()) {
        let GeneralName::DNSName(dns) = name else {
            continue;
        };
        if let Some(id) = Identity::from_dns_name(dns) {
            if found.as_ref().is_some_and(|f| *f != id) {
                return Err(TlsError::Parse(
                    "the certificate names more than one Meridian identity".into(),
                ));
            }
            found = Some(id);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_read_back() {
        let id = Identity::from_dns_name("fra-1.agent.eu-fra.meridian").expect("parses");
        assert_eq!(id.role, CertRole::Agent);
        assert_eq!(id.region, "eu-fra");
        assert_eq!(id.name, "fra-1");
        assert_eq!(id.dns_name(), "fra-1.agent.eu-fra.meridian");
    }

    #[test]
    fn other_names_are_no_identity() {
        for n in [
            "agent.eu-fra.meridian",
            "agent.meridian",
            "x.admin.eu-fra.meridian",
            "a.b.agent.eu-fra.meridian",
            "fra-1.agent.eu-fra.example",
            "fra-1.agent.eu-fra.meridian.example",
            "Fra.agent.eu-fra.meridian",
            "*.agent.eu-fra.meridian",
            "",
        ] {
            assert_eq!(Identity::from_dns_name(n), None, "{n}");
        }
    }
}
