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
//! start), so finding the next mail due reads the queue, not years of sent mail.

use crate::store::tables::{OUTBOX, OUTBOX_QUEUED};
use crate::store::{decode_record, encode_record, Store, StoreError};
use redb::{ReadableTable, ReadableTableMetadata};
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

/// Writes an entry and keeps the queued index in step with it.
fn put(
    table: &mut redb::Table<(u64, &'static str), &'static [u8]>,
    queued: &mut redb::Table<(u64, &'static str), u64>,
    entry: &OutboxEntry,
) -> Result<(), StoreError> {
    let key = (entry.period_start, entry.user.as_str());
    table.insert(key, encode_record(entry).as_slice())?;
    if entry.state == OutboxState::Queued {
        queued.insert(key, entry.next_attempt_at)?;
    } else {
        queued.remove(key)?;
    }
    Ok(())
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
        let mut queued = txn.open_table(OUTBOX_QUEUED)?;
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
            put(&mut table, &mut queued, &entry)?;
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

/// The next entry due for sending at `now` (queued, its time come, oldest period first), and
/// how many entries are queued.
pub fn next_due(store: &Store, now: u64) -> Result<(Option<OutboxEntry>, u64), StoreError> {
    let txn = store.db().begin_read()?;
    let queued = txn.open_table(OUTBOX_QUEUED)?;
    let table = txn.open_table(OUTBOX)?;
    let count = queued.len()?;
    for item in queued.iter()? {
        let (key, at) = item?;
        if at.value() > now {
            continue;
        }
        let (p, u) = key.value();
        let Some(value) = table.get((p, u))? else { continue };
        let entry: OutboxEntry = decode_record(value.value()).map_err(|e| corrupt(format!("{p}/{u}"), e))?;
        if entry.state == OutboxState::Queued && entry.next_attempt_at <= now {
            return Ok((Some(entry), count));
        }
    }
    Ok((None, count))
}

/// Rebuilds the queued index from the outbox (at mailer start; stores from before the index
/// existed get it here). Returns how many entries are queued.
pub fn rebuild_queued_index(store: &Store) -> Result<u64, StoreError> {
    let all = entries(store, None)?;
    let txn = store.db().begin_write()?;
    let count = {
        let mut queued = txn.open_table(OUTBOX_QUEUED)?;
        queued.retain(|_, _| false)?;
        let mut count = 0;
        for e in all.iter().filter(|e| e.state == OutboxState::Queued) {
            queued.insert((e.period_start, e.user.as_str()), e.next_attempt_at)?;
            count += 1;
        }
        count
    };
    txn.commit()?;
    Ok(count)
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
        let mut queued = txn.open_table(OUTBOX_QUEUED)?;
        let current: Option<OutboxEntry> = match table.get((period_start, user))? {
            Some(v) => Some(decode_record(v.value()).map_err(|e| corrupt(format!("{period_start}/{user}"), e))?),
            None => None,
        };
        match current {
            Some(mut entry) if from.contains(&entry.state) => {
                change(&mut entry);
                put(&mut table, &mut queued, &entry)?;
                Some(entry)
            }
            _ => None,
        }
    };
    txn.commit()?;
    Ok(updated)
}

/// After a restart: the queued index is rebuilt, and entries left `sending` become `uncertain`
/// (at most once); returns those.
pub fn recover(store: &Store, now: u64) -> Result<Vec<OutboxEntry>, StoreError> {
    rebuild_queued_index(store)?;
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
        assert_eq!(next_due(&s, 5).unwrap().0.unwrap().user, "alice");
        assert_eq!(next_due(&s, 5).unwrap().1, 2, "alice and carol are queued; bob opted out");
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
        assert_eq!(next_due(&s, 10).unwrap().0.unwrap().user, "bob");
    }

    #[test]
    fn the_queued_index_follows_every_change_and_is_rebuilt_from_the_outbox() {
        let s = store("index");
        queue(&s, 100, &rcpt(&["alice", "bob"]), "a@b", &[], 0).unwrap();
        queue(&s, 200, &rcpt(&["alice"]), "a@b", &[], 0).unwrap();
        // A retry later: not due now, due then; the count still includes it.
        transition(&s, 100, "alice", &[OutboxState::Queued], |e| e.next_attempt_at = 50).unwrap();
        let (due, count) = next_due(&s, 10).unwrap();
        assert_eq!((due.map(|e| (e.period_start, e.user)), count), (Some((100, "bob".into())), 3));
        transition(&s, 100, "bob", &[OutboxState::Queued], |e| e.state = OutboxState::Sent).unwrap();
        let (due, count) = next_due(&s, 10).unwrap();
        assert_eq!((due.map(|e| (e.period_start, e.user)), count), (Some((200, "alice".into())), 2));
        assert_eq!(next_due(&s, 60).unwrap().0.map(|e| e.period_start), Some(100), "oldest period first");
        // An index lost (a store from before it existed) comes back from the outbox.
        let txn = s.db().begin_write().unwrap();
        txn.delete_table(OUTBOX_QUEUED).unwrap();
        txn.commit().unwrap();
        assert_eq!(rebuild_queued_index(&s).unwrap(), 2);
        assert_eq!(next_due(&s, 60).unwrap(), next_due(&s, 60).unwrap());
        assert_eq!(next_due(&s, 60).unwrap().1, 2);
    }
}
