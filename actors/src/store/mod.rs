//! The embedded database: one redb file holding everything turingwatch knows.
//!
//! Jobs and steps from accounting, step and GPU samples from scrapers, applications, periods,
//! findings, the mail outbox and the import watermark. Every write is one redb transaction that
//! is durable when `commit` returns, so whatever a caller acknowledges after a store call
//! survives a `kill -9` (proved by `tests/crash.rs`). Blocking: call from a blocking context
//! (the store writer thread or `spawn_blocking`), never from an async executor thread.
//!
//! The store is the only door to its tables: every table is read and written through `Store`
//! methods, and the redb handle never leaves this module. By file: `job_writer.rs` (jobs and
//! steps; the import's transaction, [`Store::write_jobs`]), `job_reader.rs` (jobs, steps,
//! samples, GPU readings and applications; [`Store::period_data`] reads a period in one
//! transaction), `ingest.rs` (samples and scraper reports), `reports.rs` (periods, per-user
//! reports), `outbox.rs` (the mail outbox), `migrate.rs` (schema versions), `tables.rs` (every
//! table's key layout).

mod bitpack;
mod codec;
mod columns;
mod ingest;
mod job_blocks;
pub mod job_codec;
mod job_reader;
mod job_writer;
mod migrate;
mod outbox;
mod postings;
pub mod probe;
mod records;
mod reports;
pub mod tables;

pub use codec::{decode_block, encode_block};
pub use columns::{CodecError, Columns};
pub use ingest::{BlockStats, ReportContent, Stored};
pub use job_reader::{JobData, PeriodData};
pub use job_writer::{Before, JobWriter};
pub use migrate::{create_v1, CURRENT_SCHEMA};
pub use outbox::{OutboxEntry, OutboxState};
pub use records::{decode_record, encode_record, RecordError};
pub use reports::{PeriodRecord, UserReport};

use crate::job::{JobId, StepId};
use redb::Database;
use std::path::{Path, PathBuf};
use tables::*;

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("cannot open database {path}: {source}")]
    Open { path: PathBuf, source: Box<redb::DatabaseError> },
    #[error("database error: {0}")]
    Db(Box<redb::Error>),
    #[error("database schema {found} is newer than this turingwatch supports ({supported}); upgrade turingwatch")]
    NewerSchema { found: u64, supported: u64 },
    #[error("no migration from schema {from}")]
    NoMigration { from: u64 },
    #[error("corrupt value in table {table} at key {key}: {source}")]
    Corrupt { table: &'static str, key: String, source: RecordError },
    #[error("corrupt sample block in table {table} at key {key}: {source}")]
    CorruptBlock { table: &'static str, key: String, source: CodecError },
    #[error("{0}")]
    Worker(&'static str),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(err: $t) -> Self {
                StoreError::Db(Box::new(err.into()))
            }
        }
    )*};
}
from_redb!(redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);

/// A series of samples: which step on which node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey {
    pub job: JobId,
    pub step: StepId,
    pub node: String,
}

/// The database handle. Cheap to share behind an `Arc`.
pub struct Store {
    db: Database,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) the database and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Database::create(path)
            .map_err(|source| StoreError::Open { path: path.to_path_buf(), source: Box::new(source) })?;
        let txn = db.begin_write()?;
        let found = migrate::migrate(&txn)?;
        txn.commit()?;
        if found != 0 && found != CURRENT_SCHEMA {
            tracing::info!(from = found, to = CURRENT_SCHEMA, "store schema migrated");
        }
        Ok(Store { db, path: path.to_path_buf() })
    }

    /// Gives free pages back to the file system (after large deletions or many block rewrites).
    pub fn compact(&mut self) -> Result<bool, StoreError> {
        self.db.compact().map_err(|e| StoreError::Db(Box::new(e.into())))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version stored in the file.
    pub fn schema_version(&self) -> Result<u64, StoreError> {
        Ok(self.meta(SCHEMA_VERSION_KEY)?.unwrap_or(0))
    }

    /// Reads a `meta` value.
    pub fn meta(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(META)?;
        let value = table.get(key)?.map(|v| v.value());
        Ok(value)
    }

    /// Writes a `meta` value.
    pub fn set_meta(&self, key: &str, value: u64) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(META)?.insert(key, value)?;
        txn.commit()?;
        Ok(())
    }

    /// Number of jobs stored.
    pub fn job_count(&self) -> Result<u64, StoreError> {
        Ok(self.meta(JOB_COUNT_KEY)?.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests;

/// Record builders shared by unit tests of other modules.
#[cfg(test)]
pub(crate) mod tests_support {
    pub(crate) use super::tests::job;
}
