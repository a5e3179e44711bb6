//! Address blocks and the client address behind trusted proxies.

use std::net::IpAddr;
use std::str::FromStr;

use crate::GeoError;

/// An address block: `10.0.0.0/8`, `2001:db8::/32`, or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// The block's prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The address as written (IPv4-mapped IPv6 given as IPv4), host bits included.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The block's first address: the address with its host bits cleared.
    pub fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => IpAddr::V4((u32::from(a) & mask32(self.prefix)).into()),
            IpAddr::V6(a) => IpAddr::V6((u128::from(a) & mask128(self.prefix)).into()),
        }
    }

    /// Whether `ip` lies in the block. IPv4-mapped IPv6 addresses match IPv4 blocks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = mask32(self.prefix);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = mask128(self.prefix);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The netmask of an IPv4 prefix length (0 to 32).
pub(crate) fn mask32(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

/// The netmask of an IPv6 prefix length (0 to 128).
pub(crate) fn mask128(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix))
    }
}

/// IPv4-mapped IPv6 (`::ffff:1.2.3.4`) as IPv4, so dual-stack listeners match IPv4 blocks.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for IpNet {
    type Err = GeoError;

    fn from_str(s: &str) -> Result<Self, GeoError> {
        let bad = || GeoError::BadCidr(s.to_string());
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr = canonical(IpAddr::from_str(addr).map_err(|_| bad())?);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(Self { addr, prefix })
    }
}

/// The proxies whose `X-Forwarded-For` a router believes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses `10.0.0.0/8,192.168.1.7` (commas or whitespace between blocks; empty for none).
    pub fn parse(list: &str) -> Result<Self, GeoError> {
        list.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(IpNet::from_str)
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// Whether `ip` is a trusted proxy.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }

    /// The blocks, comma-separated (as `parse` reads them).
    pub fn to_text(&self) -> String {
        self.0
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The client's address: the peer itself, unless the peer is a trusted proxy; then the
/// `X-Forwarded-For` chain (all header values, in order) is read from the right, past every
/// trusted proxy, to the first address no trusted proxy stands for. That is the left-most
/// untrusted address of the trusted part of the chain; anything to its left was written by the
/// client and cannot be believed. A chain of trusted proxies only, or an unreadable entry,
/// stops the walk at the last address believed.
pub fn client_ip(peer: IpAddr, forwarded_for: &[&str], trusted: &TrustedProxies) -> IpAddr {
    let mut client = canonical(peer);
    if !trusted.trusts(client) {
        return client;
    }
    let hops = forwarded_for
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            break;
        };
        client = ip;
        if !trusted.trusts(ip) {
            break;
        }
    }
    client
}

/// An `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5678`,
/// `[2001:db8::1]:443`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = IpAddr::from_str(hop) {
        return Some(canonical(ip));
    }
    if let Ok(sa) = std::net::SocketAddr::from_str(hop) {
        return Some(canonical(sa.ip()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_parse_and_match() {
        let n: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains(ip("10.200.1.1")));
        assert!(n.contains(ip("::ffff:10.1.2.3")));
        assert!(!n.contains(ip("11.0.0.1")));
        let v6: IpNet = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        let one: IpNet = "192.168.1.7".parse().unwrap();
        assert_eq!(one.prefix(), 32);
        let host_bits: IpNet = "10.1.2.3/8".parse().unwrap();
        assert_eq!(host_bits.addr(), ip("10.1.2.3"));
        assert_eq!(host_bits.network(), ip("10.0.0.0"));
        let v6_host: IpNet = "2001:db8::1/32".parse().unwrap();
        assert_eq!(v6_host.network(), ip("2001:db8::"));
        let mapped: IpNet = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!((mapped.addr(), mapped.prefix()), (ip("192.0.2.1"), 32));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        for bad in ["10.0.0.0/33", "10.0.0/8", "x", "::/129", ""] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_client_is_the_first_untrusted_hop_from_the_right() {
        let t = TrustedProxies::parse("10.0.0.0/8, 192.168.0.1").unwrap();
        // Not from a trusted proxy: the header is ignored.
        assert_eq!(
            client_ip(ip("203.0.113.9"), &["1.1.1.1"], &t),
            ip("203.0.113.9")
        );
        // Through one trusted proxy.
        assert_eq!(
            client_ip(ip("10.0.0.2"), &["198.51.100.4"], &t),
            ip("198.51.100.4")
        );
        // A spoofed entry on the left is not believed.
        assert_eq!(
            client_ip(ip("10.0.0.2"), &["6.6.6.6, 198.51.100.4, 192.168.0.1"], &t),
            ip("198.51.100.4")
        );
        // Several header lines count as one list; ports are dropped.
        assert_eq!(
            client_ip(
                ip("10.0.0.2"),
                &["6.6.6.6", "198.51.100.4:5555", "10.1.1.1"],
                &t
            ),
            ip("198.51.100.4")
        );
        // Only trusted hops: the left-most of them.
        assert_eq!(client_ip(ip("10.0.0.2"), &["10.9.9.9"], &t), ip("10.9.9.9"));
        // No header: the proxy itself.
        assert_eq!(client_ip(ip("10.0.0.2"), &[], &t), ip("10.0.0.2"));
        // Garbage stops the walk.
        assert_eq!(
            client_ip(ip("10.0.0.2"), &["1.2.3.4, junk"], &t),
            ip("10.0.0.2")
        );
    }
}
