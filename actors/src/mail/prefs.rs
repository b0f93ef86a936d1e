//! What a user's own mail settings (chosen on the site, kept in the store's `mail_prefs`) mean
//! for a mail that is due: pure, so the mailer's rule is tested without a transport.
//!
//! An opted-out user gets no mail (the entry becomes `opted-out`, on record, never sent); on
//! one of the user's quiet weekdays a due mail waits, and is looked at again at the next full
//! hour (cheap, and right in any time zone); the admins' `[mail] opt_out` and `quiet_days`
//! still apply on top.

use crate::store::MailPrefs;
use turingwatch_config::WEEKDAYS;

/// Weekday names (`mon` …) as the store's bit mask (bit 0 = Monday); unknown names are ignored
/// (the web layer refuses them before they get here).
pub fn quiet_mask(days: &[String]) -> u8 {
    days.iter().filter_map(|d| WEEKDAYS.iter().position(|w| w == d)).fold(0, |m, i| m | (1 << i))
}

/// The bit mask as weekday names, Monday first.
pub fn quiet_names(mask: u8) -> Vec<String> {
    WEEKDAYS.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, d)| d.to_string()).collect()
}

/// What to do with a due mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Send,
    OptedOut,
    /// A quiet day of the user's: try again at this time (unix seconds).
    WaitUntil(u64),
}

/// The decision for a mail to a user with `prefs` at `now`, `today` being the weekday name
/// there (`None`: an admin sends by hand, quiet days do not apply).
pub fn decide(prefs: Option<&MailPrefs>, today: Option<&str>, now: u64) -> Decision {
    let Some(prefs) = prefs else { return Decision::Send };
    if prefs.opted_out {
        return Decision::OptedOut;
    }
    let quiet = today.is_some_and(|day| quiet_names(prefs.quiet_days).iter().any(|d| d == day));
    if quiet {
        Decision::WaitUntil(now - now % 3_600 + 3_600)
    } else {
        Decision::Send
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip_through_the_mask() {
        let days = vec!["sun".to_string(), "mon".into(), "sat".into()];
        let mask = quiet_mask(&days);
        assert_eq!(mask, 0b110_0001);
        assert_eq!(quiet_names(mask), ["mon", "sat", "sun"]);
        assert_eq!(quiet_mask(&["caturday".into()]), 0);
    }

    #[test]
    fn opted_out_users_get_nothing_and_quiet_days_wait_for_the_next_hour() {
        let mut prefs = MailPrefs { user: "alice".into(), ..MailPrefs::default() };
        assert_eq!(decide(None, Some("sat"), 7_300), Decision::Send);
        assert_eq!(decide(Some(&prefs), Some("sat"), 7_300), Decision::Send);
        prefs.quiet_days = quiet_mask(&["sat".into()]);
        assert_eq!(decide(Some(&prefs), Some("sat"), 7_300), Decision::WaitUntil(10_800));
        assert_eq!(decide(Some(&prefs), Some("fri"), 7_300), Decision::Send);
        assert_eq!(decide(Some(&prefs), None, 7_300), Decision::Send, "by hand");
        prefs.opted_out = true;
        assert_eq!(decide(Some(&prefs), Some("fri"), 7_300), Decision::OptedOut);
        assert_eq!(decide(Some(&prefs), None, 7_300), Decision::OptedOut);
    }
}
