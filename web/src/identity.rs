//! Who is asking: the identity header is trusted only from configured proxy addresses.
//!
//! The original web server trusted `X-AuthUser` from anyone who could reach its port, so a
//! spoofed header granted admin (turingopt §9.25). Here the peer address is checked first.

use std::net::IpAddr;

/// Trusted proxy ranges, parsed once from `[web] trusted_proxies`.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    ranges: Vec<(IpAddr, u8)>,
}

impl TrustedProxies {
    /// Builds the set from config strings; entries that do not parse are skipped
    /// (config validation has already refused them).
    pub fn new(entries: &[String]) -> Self {
        TrustedProxies { ranges: entries.iter().filter_map(|e| turingwatch_config::parse_cidr(e)).collect() }
    }

    /// Whether a peer address lies in one of the trusted ranges.
    pub fn contains(&self, peer: IpAddr) -> bool {
        let peer = canonical(peer);
        self.ranges.iter().any(|(net, bits)| in_range(peer, canonical(*net), *bits))
    }
}

fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

fn in_range(addr: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - u32::from(bits)) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - u32::from(bits)) };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_trusted_by_default_and_others_are_not() {
        let proxies = TrustedProxies::new(&["127.0.0.1".into(), "::1".into()]);
        assert!(proxies.contains("127.0.0.1".parse().unwrap()));
        assert!(proxies.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!proxies.contains("127.0.0.2".parse().unwrap()));
        assert!(!proxies.contains("10.1.2.3".parse().unwrap()));
    }

    #[test]
    fn cidr_ranges_match_their_members_only() {
        let proxies = TrustedProxies::new(&["10.0.0.0/8".into()]);
        assert!(proxies.contains("10.200.3.4".parse().unwrap()));
        assert!(!proxies.contains("11.0.0.1".parse().unwrap()));
    }
}
