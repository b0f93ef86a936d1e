//! The outbox tables: one entry per (period, user) in `outbox`, and the queued ones in
//! `outbox_queued` with their next attempt time.
//!
//! This file keeps the tables; the life of an entry (who queues it, what a transition means,
//! what a restart does) is told in `mail/outbox.rs`. Every change of an entry goes through
//! [`put`], which writes the queued index in the same transaction, so the index can never
//! disagree with the outbox for longer than an uncommitted transaction. Entries are inserted
//! only where none exists, which makes queueing a period twice a no-op.

use super::records::{decode_record, encode_record, RecordError};
use super::tables::{OUTBOX, OUTBOX_QUEUED};
use super::{Store, StoreError};
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
    /// The user is in the holdout (`mail::holdout`): never sent, kept so the decision is on
    /// record. Added last, so entries of older builds decode as before.
    Held,
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

type OutboxTable<'txn> = redb::Table<'txn, (u64, &'static str), &'static [u8]>;
type QueuedTable<'txn> = redb::Table<'txn, (u64, &'static str), u64>;

fn corrupt(key: String, source: RecordError) -> StoreError {
    StoreError::Corrupt { table: "outbox", key, source }
}

fn decode(period_start: u64, user: &str, value: &[u8]) -> Result<OutboxEntry, StoreError> {
    decode_record(value).map_err(|e| corrupt(format!("{period_start}/{user}"), e))
}

/// Writes an entry and keeps the queued index in step with it.
fn put(table: &mut OutboxTable<'_>, queued: &mut QueuedTable<'_>, entry: &OutboxEntry) -> Result<(), StoreError> {
    let key = (entry.period_start, entry.user.as_str());
    table.insert(key, encode_record(entry).as_slice())?;
    if entry.state == OutboxState::Queued {
        queued.insert(key, entry.next_attempt_at)?;
    } else {
        queued.remove(key)?;
    }
    Ok(())
}

impl Store {
    /// Inserts, in one transaction, the entries whose (period, user) has none yet; returns how
    /// many were inserted.
    pub fn add_outbox_entries(&self, entries: &[OutboxEntry]) -> Result<usize, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            let mut added = 0;
            {
                let mut table = txn.open_table(OUTBOX)?;
                let mut queued = txn.open_table(OUTBOX_QUEUED)?;
                for entry in entries {
                    if table.get((entry.period_start, entry.user.as_str()))?.is_some() {
                        continue;
                    }
                    put(&mut table, &mut queued, entry)?;
                    added += 1;
                }
            }
            txn.commit()?;
            Ok(added)
        })
    }

    /// All entries, or those of one period, in (period, user) order.
    pub fn outbox_entries(&self, period_start: Option<u64>) -> Result<Vec<OutboxEntry>, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(OUTBOX)?;
            let (lo, hi) = match period_start {
                Some(p) => (p, p),
                None => (0, u64::MAX),
            };
            let mut out = Vec::new();
            for entry in table.range((lo, "")..=(hi, "\u{10ffff}"))? {
                let (key, value) = entry?;
                let (p, u) = key.value();
                out.push(decode(p, u, value.value())?);
            }
            Ok(out)
        })
    }

    /// The next entry due for sending at `now` (queued, its time come, oldest period first), and
    /// how many entries are queued.
    pub fn next_due_mail(&self, now: u64) -> Result<(Option<OutboxEntry>, u64), StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
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
                let entry = decode(p, u, value.value())?;
                if entry.state == OutboxState::Queued && entry.next_attempt_at <= now {
                    return Ok((Some(entry), count));
                }
            }
            Ok((None, count))
        })
    }

    /// Rebuilds the queued index from the outbox in one transaction (at mailer start; stores
    /// from before the index existed get it here). Returns how many entries are queued.
    pub fn rebuild_outbox_queue(&self) -> Result<u64, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            let count = {
                let table = txn.open_table(OUTBOX)?;
                let mut queued = txn.open_table(OUTBOX_QUEUED)?;
                queued.retain(|_, _| false)?;
                let mut count = 0;
                for item in table.iter()? {
                    let (key, value) = item?;
                    let (p, u) = key.value();
                    let entry = decode(p, u, value.value())?;
                    if entry.state == OutboxState::Queued {
                        queued.insert((p, u), entry.next_attempt_at)?;
                        count += 1;
                    }
                }
                count
            };
            txn.commit()?;
            Ok(count)
        })
    }

    /// Changes an entry in one transaction, only if its state is one of `from`; returns the new
    /// entry (`None`: no entry, or not in one of those states, and nothing was written).
    pub fn outbox_transition(
        &self,
        period_start: u64,
        user: &str,
        from: &[OutboxState],
        change: impl FnOnce(&mut OutboxEntry),
    ) -> Result<Option<OutboxEntry>, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            let updated = {
                let mut table = txn.open_table(OUTBOX)?;
                let mut queued = txn.open_table(OUTBOX_QUEUED)?;
                let current = match table.get((period_start, user))? {
                    Some(v) => Some(decode(period_start, user, v.value())?),
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
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(name: &str) -> Store {
        let dir = std::env::temp_dir().join(format!("tw-store-outbox-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Store::open(&dir.join("o.redb")).unwrap()
    }

    fn entry(period_start: u64, user: &str) -> OutboxEntry {
        OutboxEntry {
            period_start,
            user: user.into(),
            to: format!("{user}@example.org"),
            message_id: format!("<{period_start}.{user}@example.org>"),
            state: OutboxState::Queued,
            attempts: 0,
            next_attempt_at: 0,
            updated_at: 0,
            sent_at: None,
            last_error: String::new(),
        }
    }

    #[test]
    fn the_queued_index_follows_every_change_and_is_rebuilt_from_the_outbox() {
        let s = store("index");
        s.add_outbox_entries(&[entry(100, "alice"), entry(100, "bob"), entry(200, "alice")]).unwrap();
        // A retry later: not due now, due then; the count still includes it.
        s.outbox_transition(100, "alice", &[OutboxState::Queued], |e| e.next_attempt_at = 50).unwrap();
        let (due, count) = s.next_due_mail(10).unwrap();
        assert_eq!((due.map(|e| (e.period_start, e.user)), count), (Some((100, "bob".into())), 3));
        s.outbox_transition(100, "bob", &[OutboxState::Queued], |e| e.state = OutboxState::Sent).unwrap();
        let (due, count) = s.next_due_mail(10).unwrap();
        assert_eq!((due.map(|e| (e.period_start, e.user)), count), (Some((200, "alice".into())), 2));
        assert_eq!(s.next_due_mail(60).unwrap().0.map(|e| e.period_start), Some(100), "oldest period first");
        // An index lost (a store from before it existed) comes back from the outbox.
        let txn = s.test_db().begin_write().unwrap();
        txn.delete_table(OUTBOX_QUEUED).unwrap();
        txn.commit().unwrap();
        assert_eq!(s.rebuild_outbox_queue().unwrap(), 2);
        assert_eq!(s.next_due_mail(60).unwrap(), s.next_due_mail(60).unwrap());
        assert_eq!(s.next_due_mail(60).unwrap().1, 2);
    }

    #[test]
    fn an_entry_is_added_once_and_changed_only_from_the_states_given() {
        let s = store("once");
        assert_eq!(s.add_outbox_entries(&[entry(100, "alice")]).unwrap(), 1);
        let again = OutboxEntry { to: "other@example.org".into(), ..entry(100, "alice") };
        assert_eq!(s.add_outbox_entries(&[again, entry(100, "bob")]).unwrap(), 1);
        assert_eq!(s.outbox_entries(Some(100)).unwrap()[0].to, "alice@example.org");
        assert!(s.outbox_transition(100, "alice", &[OutboxState::Sending], |e| e.attempts = 9).unwrap().is_none());
        assert!(s.outbox_transition(100, "carol", &[OutboxState::Queued], |e| e.attempts = 9).unwrap().is_none());
        assert_eq!(s.outbox_entries(None).unwrap().iter().map(|e| e.attempts).sum::<u32>(), 0);
    }
}
