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

use crate::store::tables::OUTBOX;
use crate::store::{decode_record, encode_record, Store, StoreError};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

/// Where an entry is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxState {
    Queued,
    Sending,
    Sent,
    /// Was `sending` when the server died: maybe delivered, never resent automatically.
    Uncertain,
    Failed,
    /// The user is on the opt-out list.
    OptedOut,
}

/// One report mail to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub period_start: u64,
    pub user: String,
    pub to: String,
    /// Deterministic per (period, user), stored before sending.
    pub message_id: String,
    pub state: OutboxState,
    pub attempts: u32,
    pub next_attempt_at: u64,
    pub updated_at: u64,
    pub sent_at: Option<u64>,
    pub last_error: String,
}

/// The Message-ID of a (period, user) report: `<turingwatch.<period>.<user>@<domain of from>>`.
pub fn message_id(period_start: u64, user: &str, from: &str) -> String {
    let domain = from.rsplit_once('@').map(|(_, d)| d.trim_end_matches('>')).unwrap_or("localhost");
    let safe: String =
        user.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    format!("<turingwatch.{period_start}.{safe}@{domain}>")
}

fn corrupt(key: String, source: crate::store::RecordError) -> StoreError {
    StoreError::Corrupt { table: "outbox", key, source }
}

/// Queues mails of a period for users that have none yet; returns how many were added.
pub fn queue(
    store: &Store,
    period_start: u64,
    recipients: &[(String, String)],
    from: &str,
    opt_out: &[String],
    now: u64,
) -> Result<usize, StoreError> {
    let txn = store.db().begin_write()?;
    let mut added = 0;
    {
        let mut table = txn.open_table(OUTBOX)?;
        for (user, to) in recipients {
            if table.get((period_start, user.as_str()))?.is_some() {
                continue;
            }
            let state = if opt_out.iter().any(|u| u == user) { OutboxState::OptedOut } else { OutboxState::Queued };
            let entry = OutboxEntry {
                period_start,
                user: user.clone(),
                to: to.clone(),
                message_id: message_id(period_start, user, from),
                state,
                attempts: 0,
                next_attempt_at: now,
                updated_at: now,
                sent_at: None,
                last_error: String::new(),
            };
            table.insert((period_start, user.as_str()), encode_record(&entry).as_slice())?;
            added += 1;
        }
    }
    txn.commit()?;
    Ok(added)
}

/// All entries, or those of one period, in (period, user) order.
pub fn entries(store: &Store, period_start: Option<u64>) -> Result<Vec<OutboxEntry>, StoreError> {
    let txn = store.db().begin_read()?;
    let table = txn.open_table(OUTBOX)?;
    let (lo, hi) = match period_start {
        Some(p) => (p, p),
        None => (0, u64::MAX),
    };
    let mut out = Vec::new();
    for entry in table.range((lo, "")..=(hi, "\u{10ffff}"))? {
        let (key, value) = entry?;
        let (p, u) = key.value();
        out.push(decode_record(value.value()).map_err(|e| corrupt(format!("{p}/{u}"), e))?);
    }
    Ok(out)
}

/// The next entry due for sending at `now`: queued, its time come, oldest period first.
pub fn next_due(store: &Store, now: u64) -> Result<Option<OutboxEntry>, StoreError> {
    Ok(entries(store, None)?.into_iter().find(|e| e.state == OutboxState::Queued && e.next_attempt_at <= now))
}

/// Changes an entry in one transaction, only if its state is one of `from`; returns the new entry.
pub fn transition(
    store: &Store,
    period_start: u64,
    user: &str,
    from: &[OutboxState],
    change: impl FnOnce(&mut OutboxEntry),
) -> Result<Option<OutboxEntry>, StoreError> {
    let txn = store.db().begin_write()?;
    let updated = {
        let mut table = txn.open_table(OUTBOX)?;
        let current: Option<OutboxEntry> = match table.get((period_start, user))? {
            Some(v) => Some(decode_record(v.value()).map_err(|e| corrupt(format!("{period_start}/{user}"), e))?),
            None => None,
        };
        match current {
            Some(mut entry) if from.contains(&entry.state) => {
                change(&mut entry);
                table.insert((period_start, user), encode_record(&entry).as_slice())?;
                Some(entry)
            }
            _ => None,
        }
    };
    txn.commit()?;
    Ok(updated)
}

/// After a restart: entries left `sending` become `uncertain` (at most once); returns them.
pub fn recover(store: &Store, now: u64) -> Result<Vec<OutboxEntry>, StoreError> {
    let mut out = Vec::new();
    for e in entries(store, None)?.into_iter().filter(|e| e.state == OutboxState::Sending) {
        if let Some(e) = transition(store, e.period_start, &e.user, &[OutboxState::Sending], |e| {
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
        assert_eq!(queue(&s, 100, &rcpt(&["alice", "bob"]), from, &["bob".into()], 5).unwrap(), 2);
        assert_eq!(queue(&s, 100, &rcpt(&["alice", "bob", "carol"]), from, &[], 6).unwrap(), 1);
        let all = entries(&s, Some(100)).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[1].state, OutboxState::OptedOut);
        assert_eq!(all[0].message_id, "<turingwatch.100.alice@example.org>");
        assert_eq!(next_due(&s, 5).unwrap().unwrap().user, "alice");
    }

    #[test]
    fn a_mail_left_sending_is_not_due_again_after_recovery() {
        let s = store("recover");
        queue(&s, 100, &rcpt(&["alice", "bob"]), "a@b", &[], 0).unwrap();
        let sending = transition(&s, 100, "alice", &[OutboxState::Queued], |e| e.state = OutboxState::Sending).unwrap();
        assert!(sending.is_some());
        // A second sender cannot take the same entry.
        assert!(transition(&s, 100, "alice", &[OutboxState::Queued], |e| e.state = OutboxState::Sending)
            .unwrap()
            .is_none());
        let recovered = recover(&s, 9).unwrap();
        assert_eq!(recovered.len(), 1);
        assert_eq!(recovered[0].state, OutboxState::Uncertain);
        assert_eq!(next_due(&s, 10).unwrap().unwrap().user, "bob");
    }
}
