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
//! samples, GPU readings and applications; [`Store::each_user_of_period`] reads a period in one
//! transaction), `ingest.rs` (samples and scraper reports), `reports.rs` (periods, per-user
//! reports), `outbox.rs` (the mail outbox), `migrate.rs` (schema versions), `tables.rs` (every
//! table's key layout).

mod bitpack;
mod codec;
mod columns;
pub mod downsample;
mod ingest;
mod job_blocks;
pub mod job_codec;
mod job_reader;
mod job_retention;
mod job_writer;
mod mail_prefs;
mod migrate;
mod outbox;
mod postings;
pub mod probe;
mod records;
mod reports;
mod retention;
pub mod tables;

pub use codec::{decode_block, encode_block};
pub use columns::{CodecError, Columns};
pub use ingest::{BatchContent, BlockStats, Checks, Ingested, ScraperReport, Stored, StoredRows};
pub use job_reader::{JobData, PeriodData, UserPeriodData};
pub use job_retention::JobRetentionStats;
pub use job_writer::{Before, JobWriter, OwnerChange, OWNER_CHANGE_REFUSED_KEY};
pub use mail_prefs::MailPrefs;
pub use migrate::{create_v1, CURRENT_SCHEMA};
pub use outbox::{OutboxEntry, OutboxState};
pub use records::{decode_record, encode_record, RecordError};
pub use reports::{PeriodRecord, UserReport};
pub use retention::{Footprint, RetentionPolicy, RetentionStats};

use crate::job::{JobId, StepId};
use redb::Database;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::RwLock;
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
    #[error("no database at {0}")]
    Missing(PathBuf),
    #[error("cannot create database {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
    #[error("database schema {found} is not this turingwatch's ({supported}); a read-only open does not migrate")]
    NotCurrent { found: u64, supported: u64 },
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

impl StoreError {
    /// Whether this is a storage I/O error (disk full, EIO…), after which redb refuses every
    /// operation of that `Database` until it is reopened.
    pub fn is_io(&self) -> bool {
        match self {
            StoreError::Db(err) => matches!(**err, redb::Error::Io(_) | redb::Error::PreviousIo),
            StoreError::Open { source, .. } => {
                matches!(
                    **source,
                    redb::DatabaseError::Storage(redb::StorageError::Io(_) | redb::StorageError::PreviousIo)
                )
            }
            _ => false,
        }
    }
}

/// A series of samples: which step on which node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey {
    pub job: JobId,
    pub step: StepId,
    pub node: String,
}

/// Opens the database file (a test may put a failing storage backend under it).
type Opener = Box<dyn Fn(&Path) -> Result<Database, redb::DatabaseError> + Send + Sync>;

/// The database handle. Cheap to share behind an `Arc`.
///
/// Disk full: after one storage I/O error redb refuses every later operation of that
/// `Database` (`PreviousIo`) until it is reopened. The store notices the error, marks itself
/// broken and reopens the file on its next call (or on [`Store::reopen`]), so a running server
/// works again once space returns; whatever was committed before is in the reopened file (a
/// commit that failed was never acknowledged). Every call holds the handle's read lock for its
/// whole transaction, so a reopen (the write lock) waits for the calls in flight.
pub struct Store {
    db: RwLock<Option<Database>>,
    broken: AtomicBool,
    reopens: AtomicU64,
    path: PathBuf,
    opener: Opener,
    /// Opened by [`Store::open_existing`]: never migrated, never created.
    read_only: bool,
}

/// The open database, for tests that look at tables directly.
#[cfg(test)]
struct DbGuard<'a>(std::sync::RwLockReadGuard<'a, Option<Database>>);

#[cfg(test)]
impl std::ops::Deref for DbGuard<'_> {
    type Target = Database;
    fn deref(&self) -> &Database {
        self.0.as_ref().unwrap()
    }
}

/// Creates a new database at `path` whole or not at all: made and given its tables under a
/// temporary name (redb writes its header and first pages in several steps), then linked into
/// place, never replacing a file another process made meanwhile. A crash while a database is
/// first created leaves only the temporary file, which the next start removes, and never an
/// unopenable `path`. Returns the open database, or `None` when another process created `path`
/// first (open theirs).
fn create_whole(path: &Path, opener: &Opener) -> Result<Option<Database>, StoreError> {
    let io = |source| StoreError::Create { path: path.to_path_buf(), source };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "store".into());
    let tmp = path.with_file_name(format!(".{name}.creating"));
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(io(err)),
    }
    // The handle stays open across the link: the file is the same inode under its final name.
    let db = open_db(opener, &tmp, false)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => return Ok(None),
        Err(err) => return Err(io(err)),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(Some(db))
}

fn open_db(opener: &Opener, path: &Path, read_only: bool) -> Result<Database, StoreError> {
    let db = opener(path).map_err(|source| StoreError::Open { path: path.to_path_buf(), source: Box::new(source) })?;
    if read_only {
        let found = {
            let txn = db.begin_read()?;
            match txn.open_table(META) {
                Ok(meta) => meta.get(SCHEMA_VERSION_KEY)?.map(|v| v.value()).unwrap_or(0),
                Err(redb::TableError::TableDoesNotExist(_)) => 0,
                Err(err) => return Err(err.into()),
            }
        };
        if found != CURRENT_SCHEMA {
            return Err(StoreError::NotCurrent { found, supported: CURRENT_SCHEMA });
        }
        return Ok(db);
    }
    let txn = db.begin_write()?;
    let found = migrate::migrate(&txn)?;
    txn.commit()?;
    if found != 0 && found != CURRENT_SCHEMA {
        tracing::info!(from = found, to = CURRENT_SCHEMA, "store schema migrated");
    }
    Ok(db)
}

impl Store {
    /// Opens (or creates) the database and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let opener: Opener = Box::new(|path| Database::create(path));
        if !path.exists() {
            if let Some(db) = create_whole(path, &opener)? {
                return Ok(Store::from_db(path, db, opener, false));
            }
        }
        Store::open_with(path, opener)
    }

    /// Opens a database that exists, for reading (`turingwatch job`): a missing file is
    /// [`StoreError::Missing`] (nothing is created), and a file of another schema is
    /// [`StoreError::NotCurrent`] (nothing is migrated). redb opens the file read-write and locks
    /// it, so this fails while the server holds the store, and for users who may not write it.
    pub fn open_existing(path: &Path) -> Result<Store, StoreError> {
        if !path.is_file() {
            return Err(StoreError::Missing(path.to_path_buf()));
        }
        Store::build(path, Box::new(|path| Database::open(path)), true)
    }

    fn open_with(path: &Path, opener: Opener) -> Result<Store, StoreError> {
        Store::build(path, opener, false)
    }

    fn build(path: &Path, opener: Opener, read_only: bool) -> Result<Store, StoreError> {
        let db = open_db(&opener, path, read_only)?;
        Ok(Store::from_db(path, db, opener, read_only))
    }

    fn from_db(path: &Path, db: Database, opener: Opener, read_only: bool) -> Store {
        Store {
            db: RwLock::new(Some(db)),
            broken: AtomicBool::new(false),
            reopens: AtomicU64::new(0),
            path: path.to_path_buf(),
            opener,
            read_only,
        }
    }

    /// Runs one store call on the open database; reopens it first if an I/O error broke it, and
    /// marks it broken if this call meets one.
    fn with_db<T>(&self, call: impl FnOnce(&Database) -> Result<T, StoreError>) -> Result<T, StoreError> {
        if self.broken.load(Ordering::Acquire) {
            self.reopen()?;
        }
        let guard = {
            let guard = self.db.read().unwrap_or_else(|e| e.into_inner());
            if guard.is_none() {
                drop(guard);
                self.reopen()?;
                self.db.read().unwrap_or_else(|e| e.into_inner())
            } else {
                guard
            }
        };
        let Some(db) = guard.as_ref() else {
            return Err(StoreError::Worker("store is closed after an I/O error and could not be reopened"));
        };
        let out = call(db);
        drop(guard);
        if let Err(err) = &out {
            if err.is_io() && !self.broken.swap(true, Ordering::AcqRel) {
                tracing::error!(error = %err, path = %self.path.display(), "store I/O error: reopening the database on the next call");
            }
        }
        out
    }

    /// The open database, for tests that look at tables directly.
    #[cfg(test)]
    fn test_db(&self) -> DbGuard<'_> {
        DbGuard(self.db.read().unwrap())
    }

    /// Closes and reopens the database file (after an I/O error such as a full disk). On failure
    /// the store stays broken and the next call tries again.
    pub fn reopen(&self) -> Result<(), StoreError> {
        let mut db = self.db.write().unwrap_or_else(|e| e.into_inner());
        if !self.broken.load(Ordering::Acquire) && db.is_some() {
            return Ok(()); // another call reopened it meanwhile
        }
        // The old handle must be closed (its file lock released) before the file opens again.
        *db = None;
        let fresh = open_db(&self.opener, &self.path, self.read_only)?;
        *db = Some(fresh);
        self.broken.store(false, Ordering::Release);
        self.reopens.fetch_add(1, Ordering::Relaxed);
        tracing::info!(path = %self.path.display(), "store reopened after an I/O error");
        Ok(())
    }

    /// False while an I/O error has left the store waiting to be reopened.
    pub fn healthy(&self) -> bool {
        !self.broken.load(Ordering::Acquire)
    }

    /// How often the database was reopened after an I/O error.
    pub fn reopen_count(&self) -> u64 {
        self.reopens.load(Ordering::Relaxed)
    }

    /// Gives free pages back to the file system (after large deletions or many block rewrites).
    pub fn compact(&mut self) -> Result<bool, StoreError> {
        let db = self.db.get_mut().unwrap_or_else(|e| e.into_inner());
        let Some(db) = db.as_mut() else { return Err(StoreError::Worker("store is closed")) };
        db.compact().map_err(|e| StoreError::Db(Box::new(e.into())))
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
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(META)?;
            let value = table.get(key)?.map(|v| v.value());
            Ok(value)
        })
    }

    /// Writes a `meta` value.
    pub fn set_meta(&self, key: &str, value: u64) -> Result<(), StoreError> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            txn.open_table(META)?.insert(key, value)?;
            txn.commit()?;
            Ok(())
        })
    }

    /// Number of jobs stored.
    pub fn job_count(&self) -> Result<u64, StoreError> {
        Ok(self.meta(JOB_COUNT_KEY)?.unwrap_or(0))
    }
}

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod reopen_tests;
#[cfg(test)]
mod tests;

/// Record builders shared by unit tests of other modules.
#[cfg(test)]
pub(crate) mod tests_support {
    pub(crate) use super::tests::{job, temp_db};
}
