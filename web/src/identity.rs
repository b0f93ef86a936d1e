//! Who is asking: the identity header is trusted only from configured proxy addresses.
//!
//! The original web server trusted `X-AuthUser` from anyone who could reach its port, so a
//! spoofed header granted admin (turingopt §9.25). Here the peer address is checked first:
//! a header from any other peer is refused outright (not ignored), so a misconfigured proxy
//! chain shows up as an error instead of silently serving the wrong person.
//!
//! Who may see what: admins (config) see everyone; SLURM account coordinators see the users
//! of their accounts; everyone else sees only their own data.

use crate::backend::Coordination;
use std::collections::BTreeSet;
use std::net::IpAddr;

/// Why a request has no usable identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("the {header} header is accepted only from a trusted proxy, and {peer} is not one")]
    UntrustedPeer { header: String, peer: String },
    #[error("not logged in: the proxy sent no {header} header")]
    Missing { header: String },
    #[error("the {header} header does not hold a valid user name")]
    Invalid { header: String },
    #[error("the {header} header names a user of domain {domain:?}, which is not in [web] identity_domains")]
    ForeignDomain { header: String, domain: String },
}

/// Resolves the caller from the peer address and the identity header.
///
/// A header from an untrusted (or unknown) peer is an error even when it is empty; without a
/// header, untrusted peers and trusted ones alike are "not logged in". An OIDC principal
/// (`alice@example.org`) is accepted only when its domain is one of `domains` (`[web]
/// identity_domains`, compared without case), and then names the local user `alice`; `root`
/// with any domain is never accepted (an identity provider's "root" is not this cluster's).
pub fn resolve_caller(
    proxies: &TrustedProxies,
    header_name: &str,
    domains: &[String],
    peer: Option<IpAddr>,
    header: Option<&[u8]>,
) -> Result<String, IdentityError> {
    let Some(raw) = header else {
        return Err(IdentityError::Missing { header: header_name.to_string() });
    };
    match peer {
        Some(peer) if proxies.contains(peer) => {}
        other => {
            return Err(IdentityError::UntrustedPeer {
                header: header_name.to_string(),
                peer: other.map_or_else(|| "an unknown peer".to_string(), |p| p.to_string()),
            })
        }
    }
    let invalid = || IdentityError::Invalid { header: header_name.to_string() };
    let text = std::str::from_utf8(raw).map_err(|_| invalid())?.trim();
    let name = match text.split_once('@') {
        None => text,
        Some((name, domain)) => {
            if !domains.iter().any(|d| d.eq_ignore_ascii_case(domain)) {
                return Err(IdentityError::ForeignDomain {
                    header: header_name.to_string(),
                    domain: domain.to_string(),
                });
            }
            if name == "root" {
                return Err(invalid());
            }
            name
        }
    };
    if is_user_name(name) {
        Ok(name.to_string())
    } else if text.is_empty() {
        Err(IdentityError::Missing { header: header_name.to_string() })
    } else {
        Err(invalid())
    }
}

/// Unix user names as SLURM accepts them: letters, digits, `.`, `_`, `-`, at most 64 bytes.
pub fn is_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('-')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// What one caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub user: String,
    pub admin: bool,
    /// Accounts the caller coordinates in SLURM.
    pub coordinator_of: BTreeSet<String>,
    /// Users of those accounts.
    pub coordinated_users: BTreeSet<String>,
}

impl Access {
    /// A caller who sees only their own data (or everything, as an admin).
    pub fn own(user: &str, admin: bool) -> Access {
        Access { user: user.to_string(), admin, coordinator_of: BTreeSet::new(), coordinated_users: BTreeSet::new() }
    }

    /// A caller with the coordinator rights SLURM gives them.
    pub fn with_coordination(user: &str, admin: bool, coordination: &Coordination) -> Access {
        Access {
            user: user.to_string(),
            admin,
            coordinator_of: coordination.accounts_coordinated_by(user),
            coordinated_users: coordination.users_coordinated_by(user),
        }
    }

    /// Whether the caller may see `user`'s data.
    pub fn may_see_user(&self, user: &str) -> bool {
        self.admin || self.user == user || self.coordinated_users.contains(user)
    }

    /// Whether the caller may see a job of `user` charged to `account`: their own, or one of an
    /// account they coordinate (not a coordinated user's job in another account).
    pub fn may_see_job(&self, user: &str, account: &str) -> bool {
        self.admin || self.user == user || self.coordinator_of.contains(account)
    }

    /// The owners whose jobs an unfiltered listing shows: `None` = everyone (admins).
    pub fn visible_users(&self) -> Option<Vec<String>> {
        if self.admin {
            return None;
        }
        let mut users: BTreeSet<String> = self.coordinated_users.clone();
        users.insert(self.user.clone());
        Some(users.into_iter().collect())
    }
}

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

    fn proxies() -> TrustedProxies {
        TrustedProxies::new(&["127.0.0.1".into()])
    }

    #[test]
    fn header_from_a_trusted_proxy_names_the_caller() {
        let peer = Some("127.0.0.1".parse().unwrap());
        assert_eq!(resolve_caller(&proxies(), "X-AuthUser", &[], peer, Some(b"alice")), Ok("alice".into()));
        let domains = ["Uni.Example".to_string()];
        let r = |h: &[u8]| resolve_caller(&proxies(), "X-AuthUser", &domains, peer, Some(h));
        assert_eq!(r(b" bob@uni.example "), Ok("bob".into()));
        assert!(matches!(r(b"bob@evil.example"), Err(IdentityError::ForeignDomain { .. })));
        assert!(matches!(r(b"bob@uni.example@evil"), Err(IdentityError::ForeignDomain { .. })));
        assert!(r(b"root@uni.example").is_err() && r(b"root@evil.example").is_err());
        let none = resolve_caller(&proxies(), "X-AuthUser", &[], peer, Some(b"bob@uni.example"));
        assert!(matches!(none, Err(IdentityError::ForeignDomain { .. })), "{none:?}");
    }

    #[test]
    fn header_from_an_untrusted_peer_is_refused_even_for_admins() {
        let peer = Some("10.9.9.9".parse().unwrap());
        let err = resolve_caller(&proxies(), "X-AuthUser", &[], peer, Some(b"root")).unwrap_err();
        assert!(matches!(err, IdentityError::UntrustedPeer { .. }), "{err}");
        assert!(err.to_string().contains("10.9.9.9"));
        let err = resolve_caller(&proxies(), "X-AuthUser", &[], None, Some(b"root")).unwrap_err();
        assert!(matches!(err, IdentityError::UntrustedPeer { .. }));
    }

    #[test]
    fn missing_empty_or_odd_names_are_not_logged_in() {
        let peer = Some("127.0.0.1".parse().unwrap());
        let r = |h: Option<&[u8]>| resolve_caller(&proxies(), "X-AuthUser", &[], peer, h);
        assert!(matches!(r(None), Err(IdentityError::Missing { .. })));
        assert!(matches!(r(Some(b"")), Err(IdentityError::Missing { .. })));
        for bad in [&b"../etc"[..], b"a b", b"-rf", b"\xff", b"@x", b"al/ice"] {
            assert!(r(Some(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn coordinators_see_their_accounts_users_and_nobody_else() {
        let mut c = Coordination::default();
        c.accounts_of.insert("carol".into(), ["physics".to_string()].into());
        c.users_of.insert("physics".into(), ["alice".to_string(), "carol".to_string()].into());
        c.users_of.insert("chem".into(), ["bob".to_string()].into());
        let carol = Access::with_coordination("carol", false, &c);
        assert!(carol.may_see_user("alice") && carol.may_see_user("carol"));
        assert!(!carol.may_see_user("bob"));
        assert!(carol.may_see_job("bob", "physics") && !carol.may_see_job("bob", "chem"));
        // A coordinated user's job in an account carol does not coordinate stays hidden.
        assert!(!carol.may_see_job("alice", "chem") && carol.may_see_job("carol", "chem"));
        assert_eq!(carol.visible_users(), Some(vec!["alice".to_string(), "carol".to_string()]));
        let alice = Access::with_coordination("alice", false, &c);
        assert!(!alice.may_see_user("carol"));
        assert_eq!(alice.visible_users(), Some(vec!["alice".to_string()]));
        let root = Access::own("root", true);
        assert!(root.may_see_user("bob") && root.visible_users().is_none());
    }

    #[test]
    fn cidr_ranges_match_their_members_only() {
        let proxies = TrustedProxies::new(&["10.0.0.0/8".into()]);
        assert!(proxies.contains("10.200.3.4".parse().unwrap()));
        assert!(!proxies.contains("11.0.0.1".parse().unwrap()));
    }
}
