//! Delivering one outbox entry: the exactly-once protocol around one transport call.
//!
//! 1. `queued → sending` (attempts + 1) is committed before the transport is touched;
//! 2. the message, carrying the entry's stored Message-ID, goes to the transport;
//! 3. success: `sending → sent` is committed; failure: back to `queued` with a backoff, or
//!    `failed` after `max_attempts`.
//!
//! A crash between 1 and 3 leaves `sending`, which `outbox::recover` turns into `uncertain`
//! at the next start (see `outbox.rs` for why at most once). Used by the mailer actor and by
//! `turingwatch mail`.

use super::outbox::{OutboxEntry, OutboxState};
use super::prefs;
use super::send::{build_message, MailError, Outgoing, Transport};
use crate::clock::unix_now;
use crate::store::{Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use turingwatch_config::Config;

/// First retry delay; doubles per attempt up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(30);
const MAX_RETRY: Duration = Duration::from_secs(6 * 3_600);

/// DeliveryOutcome could not even be attempted.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("store task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// What happened to an outbox entry when it was due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Sent,
    /// The transport failed; it will be retried at `next_attempt_at` (unix seconds).
    Retry {
        error: String,
        next_attempt_at: u64,
    },
    /// Failed for good (too many attempts, or no report to send).
    Failed {
        error: String,
    },
    /// Another sender took it, or its state does not allow sending.
    Skipped,
    OptedOut,
    /// A quiet day of the user's (`mail::prefs`): queued again for this time (unix seconds).
    Deferred {
        until: u64,
    },
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, DeliverError> {
    Ok(tokio::task::spawn_blocking(f).await??)
}

/// Delay before retry number `attempts` (1 = after the first failure).
pub fn retry_delay(attempts: u32) -> Duration {
    let factor = 1u32.checked_shl(attempts.saturating_sub(1).min(20)).unwrap_or(u32::MAX);
    FIRST_RETRY.saturating_mul(factor).min(MAX_RETRY)
}

/// Sends one entry, allowed from the states in `from` (the mailer: `queued`; by hand: more).
/// `today` is the weekday name where the mailer is, for the user's quiet days (`None`: sent by
/// hand, quiet days do not apply); an opted-out user (`[mail] opt_out` or their own choice on
/// the site) gets nothing either way.
pub async fn deliver(
    store: Arc<Store>,
    config: &Config,
    transport: &Transport,
    entry: &OutboxEntry,
    from: &'static [OutboxState],
    now: u64,
    today: Option<&str>,
) -> Result<DeliveryOutcome, DeliverError> {
    let (period, user) = (entry.period_start, entry.user.clone());
    let (s, u) = (store.clone(), user.clone());
    let prefs = blocking(move || s.mail_prefs(&u)).await?;
    let decision = prefs::decide(prefs.as_ref(), today, now);
    if let prefs::Decision::WaitUntil(until) = decision {
        let s = store.clone();
        let u = user.clone();
        let moved = blocking(move || {
            s.outbox_transition(period, &u, from, |e| {
                e.state = OutboxState::Queued;
                e.next_attempt_at = until;
                e.updated_at = now;
            })
        })
        .await?;
        return Ok(if moved.is_some() { DeliveryOutcome::Deferred { until } } else { DeliveryOutcome::Skipped });
    }
    if config.mail.opt_out.contains(&user) || decision == prefs::Decision::OptedOut {
        let s = store.clone();
        blocking(move || s.outbox_transition(period, &user, from, |e| e.state = OutboxState::OptedOut)).await?;
        return Ok(DeliveryOutcome::OptedOut);
    }
    let s = store.clone();
    let u = user.clone();
    let Some(report) = blocking(move || s.report(period, &u)).await? else {
        let s = store.clone();
        let error = "no stored report for this period and user".to_string();
        let e2 = error.clone();
        blocking(move || {
            s.outbox_transition(period, &user, from, |e| {
                e.state = OutboxState::Failed;
                e.last_error = e2;
                e.updated_at = now;
            })
        })
        .await?;
        return Ok(DeliveryOutcome::Failed { error });
    };
    let s = store.clone();
    let u = user.clone();
    let Some(sending) = blocking(move || {
        s.outbox_transition(period, &u, from, |e| {
            e.state = OutboxState::Sending;
            e.attempts += 1;
            e.updated_at = now;
        })
    })
    .await?
    else {
        return Ok(DeliveryOutcome::Skipped);
    };
    let (html, text) = with_settings_link(&config.mail.web_base_url, &report.html, &report.text);
    let outgoing = Outgoing {
        to: &sending.to,
        subject: &config.mail.subject,
        html: &html,
        text: &text,
        message_id: &sending.message_id,
    };
    let result: Result<(), MailError> = match build_message(&config.mail, &outgoing) {
        Ok(message) => transport.send(message).await,
        Err(err) => Err(err),
    };
    let s = store.clone();
    match result {
        Ok(()) => {
            let done = unix_now();
            blocking(move || {
                s.outbox_transition(period, &user, &[OutboxState::Sending], |e| {
                    e.state = OutboxState::Sent;
                    e.sent_at = Some(done);
                    e.updated_at = done;
                    e.last_error.clear();
                })
            })
            .await?;
            Ok(DeliveryOutcome::Sent)
        }
        Err(err) => {
            let error = err.to_string();
            let give_up = sending.attempts >= config.mail.max_attempts.max(1);
            let next_attempt_at = now + retry_delay(sending.attempts).as_secs();
            let e2 = error.clone();
            blocking(move || {
                s.outbox_transition(period, &user, &[OutboxState::Sending], |e| {
                    e.state = if give_up { OutboxState::Failed } else { OutboxState::Queued };
                    e.next_attempt_at = next_attempt_at;
                    e.last_error = e2;
                    e.updated_at = now;
                })
            })
            .await?;
            Ok(if give_up {
                DeliveryOutcome::Failed { error }
            } else {
                DeliveryOutcome::Retry { error, next_attempt_at }
            })
        }
    }
}

/// The report with the link to the user's mail settings on the site, when there is a site
/// (`[mail] web_base_url`): added at sending, so every mail has it, also one rendered by an
/// older build or from an admin's template without it.
pub fn with_settings_link(base: &str, html: &str, text: &str) -> (String, String) {
    let base = base.trim().trim_end_matches('/');
    if base.is_empty() {
        return (html.to_string(), text.to_string());
    }
    let link = format!("{base}/#/settings");
    let escaped = link.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;");
    let footer = format!(
        "<p style=\"margin:12px 0 0 0;color:#777;font-size:12px;\">No more of these mails, or not on some days: \
         <a href=\"{escaped}\" style=\"color:#1f3a5f;\">{escaped}</a></p>"
    );
    let html = match html.rfind("</body>") {
        Some(at) => format!("{}{footer}{}", &html[..at], &html[at..]),
        None => format!("{html}{footer}"),
    };
    let text = format!("{}\n\nNo more of these mails, or not on some days: {link}\n", text.trim_end());
    (html, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mailer's path for three users: one opted out on the site, one on a quiet day of
    /// theirs, one with nothing chosen; the file transport holds what was sent.
    #[actix_rt::test]
    async fn the_users_own_settings_are_honoured_when_a_mail_is_due() {
        use crate::store::{MailPrefs, UserReport};
        let dir = std::env::temp_dir().join(format!("tw-deliver-prefs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = Arc::new(Store::open(&dir.join("s.redb")).unwrap());
        let mut config = Config::default();
        config.mail.file_dir = dir.join("out").display().to_string();
        config.mail.web_base_url = "https://hpc.example.org/tw".into();
        let transport = Transport::from_config(&config.mail).unwrap();
        let users = ["alice", "bob", "carol"];
        let report = |u: &str| UserReport {
            period_start: 100,
            user: u.into(),
            json: "{}".into(),
            html: format!("<html><body><p>report of {u}</p></body></html>"),
            text: format!("report of {u}"),
            has_findings: true,
            updated_at: 1,
        };
        store.put_reports(100, &users.map(report)).unwrap();
        let rcpt: Vec<(String, String)> = users.iter().map(|u| (u.to_string(), format!("{u}@example.org"))).collect();
        super::super::outbox::queue(
            &store,
            100,
            &rcpt,
            &config.mail.from,
            &[],
            &crate::mail::holdout::Holdout::off(),
            0,
        )
        .unwrap();
        store.put_mail_prefs(&MailPrefs { user: "alice".into(), opted_out: true, ..MailPrefs::default() }).unwrap();
        let sat = prefs::quiet_mask(&["sat".into()]);
        store.put_mail_prefs(&MailPrefs { user: "bob".into(), quiet_days: sat, ..MailPrefs::default() }).unwrap();
        let entries = store.outbox_entries(Some(100)).unwrap();
        let now = 7_300;
        let mut outcomes = Vec::new();
        for e in &entries {
            let out = deliver(store.clone(), &config, &transport, e, &[OutboxState::Queued], now, Some("sat"));
            outcomes.push(out.await.unwrap());
        }
        assert_eq!(
            outcomes,
            [DeliveryOutcome::OptedOut, DeliveryOutcome::Deferred { until: 10_800 }, DeliveryOutcome::Sent]
        );
        let after = store.outbox_entries(Some(100)).unwrap();
        let states: Vec<_> = after.iter().map(|e| (e.state, e.next_attempt_at)).collect();
        assert_eq!(states, [(OutboxState::OptedOut, 0), (OutboxState::Queued, 10_800), (OutboxState::Sent, 0)]);
        // bob's mail is not due before the quiet day's hour is over; then it goes.
        assert_eq!(store.next_due_mail(now).unwrap().0, None);
        assert_eq!(store.next_due_mail(10_800).unwrap().0.unwrap().user, "bob");
        let bob = store.outbox_entries(Some(100)).unwrap().remove(1);
        let out = deliver(store.clone(), &config, &transport, &bob, &[OutboxState::Queued], 10_800, Some("sun"));
        assert_eq!(out.await.unwrap(), DeliveryOutcome::Sent);
        // Two mails on file, neither alice's; each links the settings page.
        let sent: Vec<String> = std::fs::read_dir(dir.join("out"))
            .unwrap()
            .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap())
            // Quoted-printable: soft line breaks out, `=3D` back to `=`.
            .map(|m| m.replace("=\r\n", "").replace("=3D", "="))
            .collect();
        assert_eq!(sent.len(), 2);
        assert!(sent.iter().all(|m| !m.contains("alice@example.org")));
        assert!(sent.iter().all(|m| m.contains("https://hpc.example.org/tw/#/settings")), "{sent:?}");
    }

    #[test]
    fn every_mail_links_the_settings_page_when_there_is_a_site() {
        let (html, text) =
            with_settings_link("https://hpc.example.org/tw/", "<html><body><p>hi</p></body></html>", "hi\n");
        assert!(html.contains("<a href=\"https://hpc.example.org/tw/#/settings\""), "{html}");
        assert!(html.ends_with("</p></body></html>"), "{html}");
        assert!(text.ends_with("https://hpc.example.org/tw/#/settings\n"), "{text}");
        assert_eq!(with_settings_link("", "<p>x</p>", "x"), ("<p>x</p>".to_string(), "x".to_string()));
        let (odd, _) = with_settings_link("https://h/\"><script>", "<p>x</p>", "x");
        assert!(!odd.contains("<script>"), "{odd}");
    }

    #[test]
    fn retries_back_off_exponentially_to_a_cap() {
        let secs: Vec<u64> = [1, 2, 3, 10, 40].iter().map(|a| retry_delay(*a).as_secs()).collect();
        assert_eq!(secs, [30, 60, 120, 30 << 9, 6 * 3_600]);
    }
}
