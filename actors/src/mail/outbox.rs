//! The persistent outbox: one entry per (period, user), so a report is never mailed twice.
//!
//! Life of an entry: `queued` when its period closes → `sending` (committed *before* the SMTP
//! transaction starts, with the entry's deterministic Message-ID) → `sent` (committed after the
//! server accepted the message). Failures go back to `queued` with a later `next_attempt_at`,
//! and to `failed` after `max_attempts`.
//!
//! Exactly once across `kill -9`: the key is (period, user) and a queued entry is only inserted
//! when none exists, so a period closed twice queues nothing new. An entry found `sending` after
//! a restart may or may not have been delivered (the crash fell between our commit and the
//! server's reply, or between the reply and our next commit); we cannot ask an SMTP server, so
//! we choose **at most once**: it becomes `uncertain`, is logged, and is not resent
//! automatically (`turingwatch mail --period P --user U` resends it by hand, with the same
//! Message-ID, so a receiving MTA that deduplicates drops the copy). The window is the length of
//! one SMTP transaction; the mailer sleeps `rate_limit` between mails outside it.
//!
//! Queued entries are also listed in `outbox_queued` (written with the entry, rebuilt at mailer
//! start), so finding the next mail due reads the queue, not years of sent mail. The tables and
//! their transactions are the store's (`store/outbox.rs`); this file decides what goes in them.

use super::holdout::Holdout;
use crate::store::{Store, StoreError};

pub use crate::store::{OutboxEntry, OutboxState};

/// The Message-ID of a (period, user) report: `<turingwatch.<period>.<user>@<domain of from>>`.
pub fn message_id(period_start: u64, user: &str, from: &str) -> String {
    let domain = from.rsplit_once('@').map(|(_, d)| d.trim_end_matches('>')).unwrap_or("localhost");
    let safe: String =
        user.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    format!("<turingwatch.{period_start}.{safe}@{domain}>")
}

/// Queues mails of a period for users that have none yet; returns how many were added. A user
/// on the opt-out list gets an `opted-out` entry instead, and a user in the holdout a `held`
/// one (never sent), so the decision is on record.
pub fn queue(
    store: &Store,
    period_start: u64,
    recipients: &[(String, String)],
    from: &str,
    opt_out: &[String],
    holdout: &Holdout,
    now: u64,
) -> Result<usize, StoreError> {
    let entries: Vec<OutboxEntry> = recipients
        .iter()
        .map(|(user, to)| OutboxEntry {
            period_start,
            user: user.clone(),
            to: to.clone(),
            message_id: message_id(period_start, user, from),
            state: if opt_out.iter().any(|u| u == user) {
                OutboxState::OptedOut
            } else if holdout.holds(user) {
                OutboxState::Held
            } else {
                OutboxState::Queued
            },
            attempts: 0,
            next_attempt_at: now,
            updated_at: now,
            sent_at: None,
            last_error: String::new(),
        })
        .collect();
    store.add_outbox_entries(&entries)
}

/// After a restart: the queued index is rebuilt, and entries left `sending` become `uncertain`
/// (at most once); returns those.
pub fn recover(store: &Store, now: u64) -> Result<Vec<OutboxEntry>, StoreError> {
    store.rebuild_outbox_queue()?;
    let mut out = Vec::new();
    for e in store.outbox_entries(None)?.into_iter().filter(|e| e.state == OutboxState::Sending) {
        if let Some(e) = store.outbox_transition(e.period_start, &e.user, &[OutboxState::Sending], |e| {
            e.state = OutboxState::Uncertain;
            e.updated_at = now;
            e.last_error = "server stopped while sending; maybe delivered, not resent".into();
        })? {
            out.push(e);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(name: &str) -> Store {
        let dir = std::env::temp_dir().join(format!("tw-outbox-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Store::open(&dir.join("o.redb")).unwrap()
    }

    fn rcpt(users: &[&str]) -> Vec<(String, String)> {
        users.iter().map(|u| (u.to_string(), format!("{u}@example.org"))).collect()
    }

    #[test]
    fn queueing_twice_adds_nothing_and_opt_out_is_recorded() {
        let s = store("queue");
        let from = "Admin <hpc@example.org>";
        let off = Holdout::off();
        assert_eq!(queue(&s, 100, &rcpt(&["alice", "bob"]), from, &["bob".into()], &off, 5).unwrap(), 2);
        assert_eq!(queue(&s, 100, &rcpt(&["alice", "bob", "carol"]), from, &[], &off, 6).unwrap(), 1);
        let all = s.outbox_entries(Some(100)).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[1].state, OutboxState::OptedOut);
        assert_eq!(all[0].message_id, "<turingwatch.100.alice@example.org>");
        assert_eq!(s.next_due_mail(5).unwrap().0.unwrap().user, "alice");
        assert_eq!(s.next_due_mail(5).unwrap().1, 2, "alice and carol are queued; bob opted out");
    }

    #[test]
    fn a_mail_left_sending_is_not_due_again_after_recovery() {
        let s = store("recover");
        queue(&s, 100, &rcpt(&["alice", "bob"]), "a@b", &[], &Holdout::off(), 0).unwrap();
        let sending =
            s.outbox_transition(100, "alice", &[OutboxState::Queued], |e| e.state = OutboxState::Sending).unwrap();
        assert!(sending.is_some());
        // A second sender cannot take the same entry.
        assert!(s
            .outbox_transition(100, "alice", &[OutboxState::Queued], |e| e.state = OutboxState::Sending)
            .unwrap()
            .is_none());
        let recovered = recover(&s, 9).unwrap();
        assert_eq!(recovered.len(), 1);
        assert_eq!(recovered[0].state, OutboxState::Uncertain);
        assert_eq!(s.next_due_mail(10).unwrap().0.unwrap().user, "bob");
    }

    #[test]
    fn a_held_back_mail_is_recorded_and_never_due() {
        let s = store("held");
        let config =
            turingwatch_config::MailConfig { holdout_share: 0.5, holdout_salt: "site".into(), ..Default::default() };
        let holdout = Holdout::from_config(&config);
        let users: Vec<String> = (0..40).map(|i| format!("u{i}")).collect();
        let names: Vec<&str> = users.iter().map(String::as_str).collect();
        assert_eq!(queue(&s, 100, &rcpt(&names), "a@b", &[], &holdout, 0).unwrap(), 40);
        let entries = s.outbox_entries(Some(100)).unwrap();
        let held: Vec<&str> =
            entries.iter().filter(|e| e.state == OutboxState::Held).map(|e| e.user.as_str()).collect();
        assert!(!held.is_empty() && held.len() < 40, "{held:?}");
        assert!(held.iter().all(|u| holdout.holds(u)));
        assert_eq!(s.next_due_mail(0).unwrap().1 as usize, 40 - held.len(), "held mails are not queued");
        // No sender's transition takes a held entry, however many states it allows.
        let every = [OutboxState::Queued, OutboxState::Failed, OutboxState::Uncertain, OutboxState::Sent];
        assert!(s.outbox_transition(100, held[0], &every, |e| e.state = OutboxState::Sending).unwrap().is_none());
        // Queueing again (a period closed twice) changes nothing.
        assert_eq!(queue(&s, 100, &rcpt(&names), "a@b", &[], &Holdout::off(), 1).unwrap(), 0);
        assert_eq!(s.outbox_entries(Some(100)).unwrap(), entries);
    }
}
