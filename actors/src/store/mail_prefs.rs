//! Users' own mail settings, chosen on the site: no mail at all, or no mail on some weekdays.
//!
//! One record per user (`mail_prefs`: user → record). The site writes it for the caller only
//! (the web layer decides who); the mailer reads it when a mail is due, so a change made after
//! a period closed still counts. Created by the first write, so it needs no migration; a user
//! without a record has chosen nothing (the `[mail]` settings apply).

use super::records::{decode_record, encode_record};
use super::tables::MAIL_PREFS;
use super::{Store, StoreError};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

/// One user's mail settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailPrefs {
    pub user: String,
    /// No report mail at all.
    pub opted_out: bool,
    /// Weekdays without mail, bit 0 = Monday … bit 6 = Sunday (a mail due then waits).
    pub quiet_days: u8,
    /// When the user last changed them, unix seconds.
    pub updated_at: u64,
}

impl Store {
    /// Stores a user's mail settings (replacing earlier ones).
    pub fn put_mail_prefs(&self, prefs: &MailPrefs) -> Result<(), StoreError> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            txn.open_table(MAIL_PREFS)?.insert(prefs.user.as_str(), encode_record(prefs).as_slice())?;
            txn.commit()?;
            Ok(())
        })
    }

    /// A user's mail settings, if they chose any.
    pub fn mail_prefs(&self, user: &str) -> Result<Option<MailPrefs>, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = match txn.open_table(MAIL_PREFS) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(err) => return Err(err.into()),
            };
            let value = table.get(user)?;
            value.map(|v| decode(user, v.value())).transpose()
        })
    }

    /// Every user's mail settings, by user name.
    pub fn all_mail_prefs(&self) -> Result<Vec<MailPrefs>, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = match txn.open_table(MAIL_PREFS) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(err) => return Err(err.into()),
            };
            let mut out = Vec::new();
            for entry in table.iter()? {
                let (key, value) = entry?;
                out.push(decode(key.value(), value.value())?);
            }
            Ok(out)
        })
    }
}

fn decode(user: &str, bytes: &[u8]) -> Result<MailPrefs, StoreError> {
    decode_record(bytes).map_err(|source| StoreError::Corrupt { table: "mail_prefs", key: user.to_string(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_kept_per_user_and_survive_reopening() {
        let dir = std::env::temp_dir().join(format!("tw-store-mail-prefs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.redb");
        {
            let s = Store::open(&path).unwrap();
            assert_eq!(s.mail_prefs("alice").unwrap(), None);
            assert!(s.all_mail_prefs().unwrap().is_empty());
            let alice = MailPrefs { user: "alice".into(), opted_out: true, quiet_days: 0, updated_at: 5 };
            s.put_mail_prefs(&alice).unwrap();
            s.put_mail_prefs(&MailPrefs { user: "bob".into(), quiet_days: 0b110_0000, ..MailPrefs::default() })
                .unwrap();
            s.put_mail_prefs(&MailPrefs { opted_out: false, updated_at: 6, ..alice }).unwrap();
        }
        let s = Store::open(&path).unwrap();
        let all = s.all_mail_prefs().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!((all[0].user.as_str(), all[0].opted_out, all[0].updated_at), ("alice", false, 6));
        assert_eq!(s.mail_prefs("bob").unwrap().unwrap().quiet_days, 0b110_0000);
    }
}
