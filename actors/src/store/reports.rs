//! Periods and per-user reports: what the analysis produces and the web site and mailer read.
//!
//! A report is stored once per (period, user) in three forms: JSON (the data, for the API and
//! the result bundle), HTML (the mail body, also shown on the site) and plain text (the mail's
//! alternative part). The analysis owns their content; this module only keeps them.

use super::records::{decode_record, encode_record};
use super::tables::{FINDINGS, PERIODS, PERIOD_COVERAGE};
use super::{Store, StoreError};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

/// One analysis period, `[start, end)` in unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodRecord {
    pub start: u64,
    pub end: u64,
    /// Closed periods are final: their results no longer change and their mails are queued.
    pub closed: bool,
    /// When the results were last refreshed.
    pub updated_at: u64,
}

/// One user's report for one period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserReport {
    pub period_start: u64,
    pub user: String,
    /// The report data as JSON text (the user's entry of raw.json).
    pub json: String,
    /// The rendered HTML report (the mail body).
    pub html: String,
    /// The plain-text alternative.
    pub text: String,
    /// Whether there is anything to say (false: the bundle gets `<user>.empty`).
    pub has_findings: bool,
    pub updated_at: u64,
}

impl Store {
    /// Inserts or replaces a period.
    pub fn put_period(&self, period: &PeriodRecord) -> Result<(), StoreError> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            txn.open_table(PERIODS)?.insert(period.start, encode_record(period).as_slice())?;
            txn.commit()?;
            Ok(())
        })
    }

    /// All periods, oldest first.
    pub fn periods(&self) -> Result<Vec<PeriodRecord>, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(PERIODS)?;
            let mut out = Vec::new();
            for entry in table.iter()? {
                let (key, value) = entry?;
                out.push(decode_record(value.value()).map_err(|source| StoreError::Corrupt {
                    table: "periods",
                    key: key.value().to_string(),
                    source,
                })?);
            }
            Ok(out)
        })
    }

    /// Inserts or replaces a period's sampling coverage (JSON text).
    pub fn put_period_coverage(&self, period_start: u64, json: &str) -> Result<(), StoreError> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            txn.open_table(PERIOD_COVERAGE)?.insert(period_start, json)?;
            txn.commit()?;
            Ok(())
        })
    }

    /// A period's sampling coverage (JSON text), if it was stored.
    pub fn period_coverage(&self, period_start: u64) -> Result<Option<String>, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = match txn.open_table(PERIOD_COVERAGE) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(err) => return Err(err.into()),
            };
            let value = table.get(period_start)?.map(|v| v.value().to_string());
            Ok(value)
        })
    }

    /// Replaces the reports of a period in one transaction (users missing from `reports` lose
    /// their old report for that period).
    pub fn put_reports(&self, period_start: u64, reports: &[UserReport]) -> Result<(), StoreError> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(FINDINGS)?;
                let old: Vec<String> = table
                    .range((period_start, "")..=(period_start, "\u{10ffff}"))?
                    .map(|e| e.map(|(k, _)| k.value().1.to_string()))
                    .collect::<Result<_, _>>()?;
                for user in &old {
                    table.remove((period_start, user.as_str()))?;
                }
                for report in reports {
                    table.insert((period_start, report.user.as_str()), encode_record(report).as_slice())?;
                }
            }
            txn.commit()?;
            Ok(())
        })
    }

    /// One user's report for a period.
    pub fn report(&self, period_start: u64, user: &str) -> Result<Option<UserReport>, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(FINDINGS)?;
            let value = table.get((period_start, user))?;
            value
                .map(|v| {
                    decode_record(v.value()).map_err(|source| StoreError::Corrupt {
                        table: "findings",
                        key: format!("{period_start}/{user}"),
                        source,
                    })
                })
                .transpose()
        })
    }

    /// Users with a report in a period.
    pub fn report_users(&self, period_start: u64) -> Result<Vec<String>, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(FINDINGS)?;
            let mut out = Vec::new();
            for entry in table.range((period_start, "")..=(period_start, "\u{10ffff}"))? {
                out.push(entry?.0.value().1.to_string());
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(user: &str) -> UserReport {
        UserReport {
            period_start: 100,
            user: user.into(),
            json: "{}".into(),
            html: "<p>hi</p>".into(),
            text: "hi".into(),
            has_findings: true,
            updated_at: 5,
        }
    }

    #[test]
    fn periods_and_reports_round_trip() {
        let dir = std::env::temp_dir().join(format!("tw-reports-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&dir.join("r.redb")).unwrap();
        store.put_period(&PeriodRecord { start: 100, end: 200, closed: false, updated_at: 150 }).unwrap();
        assert_eq!(store.periods().unwrap().len(), 1);
        store.put_reports(100, &[report("alice"), report("bob")]).unwrap();
        assert_eq!(store.report_users(100).unwrap(), ["alice", "bob"]);
        store.put_reports(100, &[report("bob")]).unwrap();
        assert_eq!(store.report_users(100).unwrap(), ["bob"]);
        assert_eq!(store.report(100, "bob").unwrap().unwrap().html, "<p>hi</p>");
        assert!(store.report(100, "alice").unwrap().is_none());
    }

    #[test]
    fn period_coverage_is_absent_until_written_then_replaced() {
        let dir = std::env::temp_dir().join(format!("tw-coverage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&dir.join("c.redb")).unwrap();
        // A store made before the table existed: reading finds nothing rather than failing.
        assert_eq!(store.period_coverage(100).unwrap(), None);
        store.put_period_coverage(100, r#"{"jobs":1}"#).unwrap();
        store.put_period_coverage(100, r#"{"jobs":2}"#).unwrap();
        assert_eq!(store.period_coverage(100).unwrap().as_deref(), Some(r#"{"jobs":2}"#));
        assert_eq!(store.period_coverage(200).unwrap(), None);
    }
}
