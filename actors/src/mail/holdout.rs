//! The holdout: a share of users whose report mails are held back, so that whether the mails
//! change anything can be measured against users who got none (`analysis::outcome`).
//!
//! Who is held back must not change from one period to the next (a user mailed once and held
//! back the next would belong to neither group), must not be something users can work out or
//! pick, and must not need a table: it is a keyed hash. SHA-256 of the site's secret
//! `[mail] holdout_salt` and the user name, its first 8 bytes read as a number in [0, 1):
//! users below `[mail] holdout_share` are held back. A held-back mail gets an outbox entry in
//! state `held`, which no sender takes (neither the mailer nor `turingwatch mail`, `--resend`
//! included), so the decision is on record and the mail is never sent later by accident.

use sha2::{Digest, Sha256};
use turingwatch_config::MailConfig;

/// Which users are held back.
#[derive(Debug, Clone, PartialEq)]
pub struct Holdout {
    share: f64,
    salt: String,
}

impl Holdout {
    /// No holdout: every mail is sent.
    pub fn off() -> Holdout {
        Holdout { share: 0.0, salt: String::new() }
    }

    /// The holdout of `[mail]` (validated: share 0–0.5, a salt when it is above 0).
    pub fn from_config(mail: &MailConfig) -> Holdout {
        Holdout { share: mail.holdout_share.clamp(0.0, 0.5), salt: mail.holdout_salt.clone() }
    }

    /// Whether `user`'s mails are held back.
    pub fn holds(&self, user: &str) -> bool {
        self.share > 0.0 && draw(&self.salt, user) < self.share
    }
}

/// The user's fixed draw in [0, 1) under `salt`.
pub fn draw(salt: &str, user: &str) -> f64 {
    let mut h = Sha256::new();
    // The salt's length first, so ("ab", "c") and ("a", "bc") differ.
    h.update((salt.len() as u64).to_le_bytes());
    h.update(salt.as_bytes());
    h.update(user.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // 53 bits: exactly representable in an f64.
    (u64::from_le_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holdout(share: f64, salt: &str) -> Holdout {
        Holdout::from_config(&MailConfig { holdout_share: share, holdout_salt: salt.into(), ..Default::default() })
    }

    #[test]
    fn the_holdout_is_the_configured_share_fixed_per_user_and_keyed_by_the_salt() {
        let users: Vec<String> = (0..20_000).map(|i| format!("user{i:05}")).collect();
        let h = holdout(0.3, "site-secret");
        let held: Vec<&String> = users.iter().filter(|u| h.holds(u)).collect();
        // Binomial(20 000, 0.3): sd 65, so ±400 is over 6 sd.
        assert!((held.len() as i64 - 6_000).abs() < 400, "{} held", held.len());
        // The same users every time (another period, another process).
        assert!(held.iter().all(|u| holdout(0.3, "site-secret").holds(u)));
        // Another salt draws another holdout: about 30 % of these again, not all of them.
        let again = held.iter().filter(|u| holdout(0.3, "other").holds(u)).count();
        assert!(again > 1_400 && again < 2_200, "{again}");
        // Off, nobody is held back; a larger share holds back a superset.
        assert!(users.iter().all(|u| !Holdout::off().holds(u) && !holdout(0.0, "site-secret").holds(u)));
        assert!(held.iter().all(|u| holdout(0.5, "site-secret").holds(u)));
        assert!(draw("ab", "c") != draw("a", "bc"));
    }
}
