//! Cross-site request forgery defence for the site's one write, `POST /api/settings`.
//!
//! The identity comes from the proxy's header, which a browser adds to every request to the
//! site, also to one a hostile page makes it send: so the identity alone proves nothing about
//! intent. A write must therefore carry
//! - a token only the site's own pages can read: HMAC-SHA256 of the caller's name under a
//!   secret drawn at server start (`GET /api/settings` hands it out; another origin cannot
//!   read that answer; a restart invalidates open pages' tokens, which reload);
//! - if the browser says where it comes from, the site itself: `Sec-Fetch-Site: same-origin`
//!   and an `Origin` whose host is the request's `Host` (or `X-Forwarded-Host`, set by the
//!   trusted proxy);
//! - a JSON body (`Content-Type: application/json`), which a cross-site form cannot send
//!   without a CORS preflight, and the site allows none.

use sha2::{Digest, Sha256};

/// The server's secret for tokens.
#[derive(Clone)]
pub struct CsrfKey([u8; 32]);

impl std::fmt::Debug for CsrfKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfKey(..)")
    }
}

impl CsrfKey {
    /// A fresh random key.
    pub fn random() -> CsrfKey {
        CsrfKey(rand::random())
    }

    /// A fixed key (tests).
    pub fn from_bytes(bytes: [u8; 32]) -> CsrfKey {
        CsrfKey(bytes)
    }

    /// The token of `user` (hex).
    pub fn token(&self, user: &str) -> String {
        hmac_sha256(&self.0, format!("turingwatch-settings:{user}").as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Whether `token` is `user`'s (compared in constant time).
    pub fn check(&self, user: &str, token: &str) -> bool {
        let want = self.token(user);
        want.len() == token.len() && want.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

/// Why a write was refused as cross-site.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrfError {
    #[error("the request does not come from this site (Sec-Fetch-Site: {0})")]
    CrossSite(String),
    #[error("the request comes from another origin ({0})")]
    ForeignOrigin(String),
    #[error("missing or wrong X-CSRF-Token; reload the page")]
    BadToken,
}

/// The browser's statements about a request, as headers carry them.
#[derive(Debug, Default, Clone)]
pub struct Provenance<'a> {
    pub sec_fetch_site: Option<&'a str>,
    pub origin: Option<&'a str>,
    /// The request's own hosts: `Host` and `X-Forwarded-Host`.
    pub hosts: Vec<&'a str>,
    pub token: Option<&'a str>,
}

/// Checks a write by `user`.
pub fn check_write(key: &CsrfKey, user: &str, p: &Provenance<'_>) -> Result<(), CsrfError> {
    if let Some(site) = p.sec_fetch_site {
        if !site.eq_ignore_ascii_case("same-origin") {
            return Err(CsrfError::CrossSite(site.to_string()));
        }
    }
    if let Some(origin) = p.origin {
        let host = origin.split_once("://").map(|(_, rest)| rest.trim_end_matches('/'));
        let same = host.is_some_and(|h| p.hosts.iter().any(|own| own.trim().eq_ignore_ascii_case(h)));
        if !same {
            return Err(CsrfError::ForeignOrigin(origin.to_string()));
        }
    }
    match p.token {
        Some(token) if key.check(user, token.trim()) => Ok(()),
        _ => Err(CsrfError::BadToken),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 1 and 2 of RFC 4231, and case 6 (a key longer than the block).
        assert_eq!(
            hex(&hmac_sha256(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(&hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn a_token_is_the_users_and_the_keys() {
        let key = CsrfKey::from_bytes([7; 32]);
        let alice = key.token("alice");
        assert_eq!(alice.len(), 64);
        assert!(key.check("alice", &alice));
        assert!(!key.check("bob", &alice), "alice's token is not bob's");
        assert!(!CsrfKey::from_bytes([8; 32]).check("alice", &alice), "another server's token");
        assert!(!key.check("alice", &alice[..63]));
        assert!(!key.check("alice", ""));
    }

    #[test]
    fn only_same_origin_writes_with_the_token_pass() {
        let key = CsrfKey::from_bytes([1; 32]);
        let token = key.token("alice");
        let ok = Provenance {
            sec_fetch_site: Some("same-origin"),
            origin: Some("https://hpc.example.org"),
            hosts: vec!["127.0.0.1:8080", "hpc.example.org"],
            token: Some(&token),
        };
        assert_eq!(check_write(&key, "alice", &ok), Ok(()));
        // A client that says nothing about where it comes from (curl) still needs the token.
        let bare = Provenance { token: Some(&token), ..Provenance::default() };
        assert_eq!(check_write(&key, "alice", &bare), Ok(()));
        assert_eq!(check_write(&key, "alice", &Provenance::default()), Err(CsrfError::BadToken));
        let cross = Provenance { sec_fetch_site: Some("cross-site"), ..ok.clone() };
        assert!(matches!(check_write(&key, "alice", &cross), Err(CsrfError::CrossSite(_))));
        let same_site = Provenance { sec_fetch_site: Some("same-site"), ..ok.clone() };
        assert!(matches!(check_write(&key, "alice", &same_site), Err(CsrfError::CrossSite(_))));
        let evil = Provenance { origin: Some("https://evil.example"), ..ok.clone() };
        assert!(matches!(check_write(&key, "alice", &evil), Err(CsrfError::ForeignOrigin(_))));
        let null = Provenance { origin: Some("null"), ..ok.clone() };
        assert!(matches!(check_write(&key, "alice", &null), Err(CsrfError::ForeignOrigin(_))));
        let wrong = Provenance { token: Some("00"), ..ok.clone() };
        assert_eq!(check_write(&key, "alice", &wrong), Err(CsrfError::BadToken));
        assert_eq!(check_write(&key, "bob", &ok), Err(CsrfError::BadToken), "alice's token for bob");
    }
}
