//! The embedded database: one redb file holding everything turingwatch knows.
//!
//! Jobs and steps from accounting, step and GPU samples from scrapers, applications, periods,
//! findings, the mail outbox and the import watermark. Every write is one redb transaction that
//! is durable when `commit` returns, so whatever a caller acknowledges after a store call
//! survives a `kill -9` (proved by `tests/crash.rs`). Blocking: call from a blocking context
//! (the store writer thread or `spawn_blocking`), never from an async executor thread.

mod bitpack;
mod codec;
mod columns;
mod ingest;
mod job_blocks;
pub mod job_codec;
mod job_writer;
mod migrate;
mod postings;
pub mod probe;
mod records;
mod reports;
pub mod tables;

pub use codec::{decode_block, encode_block};
pub use columns::{CodecError, Columns};
pub use ingest::{ReportContent, Stored};
pub use job_writer::{Before, JobWriter};
pub use migrate::{create_v1, CURRENT_SCHEMA};
pub use records::{decode_record, encode_record, RecordError};
pub use reports::{PeriodRecord, UserReport};

use crate::job::{JobId, JobRecord, StepId, StepRecord};
use crate::sample::{GpuReading, StepSample};
use redb::{Database, ReadableTable, ReadableTableMetadata};
use std::collections::BTreeMap;
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

    /// The raw redb handle, for modules that own their own tables' logic.
    pub fn db(&self) -> &Database {
        &self.db
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

    /// Inserts or replaces jobs and their steps, and (optionally) advances the import watermark,
    /// all in one transaction: the watermark never moves unless the jobs are stored with it.
    pub fn upsert_jobs(
        &self,
        jobs: &[JobRecord],
        steps: &[StepRecord],
        watermark: Option<u64>,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        let mut writer = JobWriter::open(&txn)?;
        writer.write(&jobs.iter().collect::<Vec<_>>(), &steps.iter().collect::<Vec<_>>())?;
        writer.finish(&txn, watermark)?;
        txn.commit()?;
        Ok(())
    }

    /// One job, if stored.
    pub fn job(&self, id: JobId) -> Result<Option<JobRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(JOB_BLOCKS)?;
        let Some(block) = table.get(job_blocks::block_of(id.0))? else { return Ok(None) };
        job_writer::job_value(id, block.value())?.map(|v| decode_job_value(id.0, v)).transpose()
    }

    /// The steps of a job, in step-id order.
    pub fn steps(&self, id: JobId) -> Result<Vec<StepRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(JOB_BLOCKS)?;
        let Some(block) = table.get(job_blocks::block_of(id.0))? else { return Ok(Vec::new()) };
        Ok(job_writer::job_value(id, block.value())?
            .map(|v| job_writer::steps_of(id, v))
            .transpose()?
            .unwrap_or_default())
    }

    /// Number of jobs stored.
    pub fn job_count(&self) -> Result<u64, StoreError> {
        Ok(self.meta(JOB_COUNT_KEY)?.unwrap_or(0))
    }

    /// Jobs that were running at some time in `[from, to)`: ended at or after `from` (or still
    /// running) and started before `to`; by end time (running last), then id.
    pub fn jobs_in_window(&self, from: u64, to: u64) -> Result<Vec<JobRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let by_end = txn.open_table(JOBS_BY_END_BUCKETS)?;
        let blocks = txn.open_table(JOB_BLOCKS)?;
        let mut ended: Vec<[u64; 2]> = Vec::new();
        for entry in by_end.range(postings::end_bucket(from, 0)..)? {
            let (key, value) = entry?;
            let bucket = postings::decode::<2>(value.value()).map_err(|source| StoreError::Corrupt {
                table: "jobs_by_end_buckets",
                key: format!("{:?}", key.value()),
                source,
            })?;
            ended.extend(bucket.into_iter().filter(|[end, _]| *end >= from));
        }
        ended.sort_unstable();
        let mut out = Vec::new();
        for [_, id] in ended {
            let Some(block) = blocks.get(job_blocks::block_of(id))? else { continue };
            if let Some(value) = job_writer::job_value(JobId(id), block.value())? {
                let job = decode_job_value(id, value)?;
                if job.start_at.is_some_and(|s| s < to) {
                    out.push(job);
                }
            }
        }
        Ok(out)
    }

    /// Ids of a user's jobs, ascending.
    pub fn job_ids_of_user(&self, user: &str) -> Result<Vec<JobId>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(JOBS_BY_USER_BUCKETS)?;
        let mut out = Vec::new();
        for entry in table.range((user, 0)..=(user, u64::MAX))? {
            let (key, value) = entry?;
            let ids = postings::decode::<1>(value.value()).map_err(|source| StoreError::Corrupt {
                table: "jobs_by_user_buckets",
                key: format!("{:?}", key.value()),
                source,
            })?;
            out.extend(ids.into_iter().map(|[id]| JobId(id)));
        }
        Ok(out)
    }

    /// Stores step samples of one node. Samples are merged into their hour blocks; a sample whose
    /// (series, time) is already stored replaces it, so a resent sample is stored once.
    pub fn append_samples(&self, node: &str, samples: &[(JobId, StepId, StepSample)]) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        ingest::write_samples(&txn, node, samples)?;
        txn.commit()?;
        Ok(())
    }

    /// Stores GPU readings of one node, merged like [`Store::append_samples`].
    pub fn append_gpu_readings(&self, node: &str, readings: &[(JobId, StepId, GpuReading)]) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        ingest::write_gpu_readings(&txn, node, readings)?;
        txn.commit()?;
        Ok(())
    }

    /// All samples of a job, by series, in time order.
    pub fn samples_of_job(&self, job: JobId) -> Result<BTreeMap<SeriesKey, Vec<StepSample>>, StoreError> {
        let txn = self.db.begin_read()?;
        let blocks = txn.open_table(SAMPLE_BLOCKS)?;
        let names = txn.open_table(NODE_NAMES)?;
        let mut out: BTreeMap<SeriesKey, Vec<StepSample>> = BTreeMap::new();
        for entry in blocks.range((job.0, 0, 0, 0)..=(job.0, u32::MAX, u32::MAX, u64::MAX))? {
            let (key, value) = entry?;
            let (job_id, step, node, hour) = key.value();
            let samples: Vec<StepSample> = decode_block(hour, value.value()).map_err(|source| {
                StoreError::CorruptBlock { table: "sample_blocks", key: format!("{:?}", key.value()), source }
            })?;
            let node = node_name(&names, node)?;
            out.entry(SeriesKey { job: JobId(job_id), step: StepId(step), node }).or_default().extend(samples);
        }
        Ok(out)
    }

    /// All step samples taken in `[from, to)`, by series, in time order.
    pub fn samples_in_range(&self, from: u64, to: u64) -> Result<BTreeMap<SeriesKey, Vec<StepSample>>, StoreError> {
        let txn = self.db.begin_read()?;
        let hours = txn.open_table(SAMPLE_HOURS)?;
        let blocks = txn.open_table(SAMPLE_BLOCKS)?;
        let names = txn.open_table(NODE_NAMES)?;
        let mut out: BTreeMap<SeriesKey, Vec<StepSample>> = BTreeMap::new();
        if to <= from {
            return Ok(out);
        }
        for entry in hours.range((block_start(from), 0, 0, 0)..(to, 0, 0, 0))? {
            let (key, _) = entry?;
            let (hour, job, step, node) = key.value();
            let Some(value) = blocks.get((job, step, node, hour))? else {
                continue;
            };
            let samples: Vec<StepSample> =
                decode_block(hour, value.value()).map_err(|source| StoreError::CorruptBlock {
                    table: "sample_blocks",
                    key: format!("{:?}", (job, step, node, hour)),
                    source,
                })?;
            let node = node_name(&names, node)?;
            let series = out.entry(SeriesKey { job: JobId(job), step: StepId(step), node }).or_default();
            series.extend(samples.into_iter().filter(|s| s.at >= from && s.at < to));
        }
        Ok(out)
    }

    /// All GPU readings of a job, by series, in time order.
    pub fn gpu_readings_of_job(&self, job: JobId) -> Result<BTreeMap<SeriesKey, Vec<GpuReading>>, StoreError> {
        let txn = self.db.begin_read()?;
        let blocks = txn.open_table(GPU_BLOCKS)?;
        let names = txn.open_table(NODE_NAMES)?;
        let mut out: BTreeMap<SeriesKey, Vec<GpuReading>> = BTreeMap::new();
        for entry in blocks.range((job.0, 0, 0, 0)..=(job.0, u32::MAX, u32::MAX, u64::MAX))? {
            let (key, value) = entry?;
            let (job_id, step, node, hour) = key.value();
            let readings: Vec<GpuReading> = decode_block(hour, value.value()).map_err(|source| {
                StoreError::CorruptBlock { table: "gpu_blocks", key: format!("{:?}", key.value()), source }
            })?;
            let node = node_name(&names, node)?;
            out.entry(SeriesKey { job: JobId(job_id), step: StepId(step), node }).or_default().extend(readings);
        }
        Ok(out)
    }

    /// Records applications seen in steps.
    pub fn add_apps(&self, apps: &[(JobId, StepId, String)]) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(APP_USAGE)?;
            for (job, step, app) in apps {
                table.insert((job.0, step.0, app.as_str()), ())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Applications seen in a job, by step.
    pub fn apps_of_job(&self, job: JobId) -> Result<Vec<(StepId, String)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(APP_USAGE)?;
        let mut out = Vec::new();
        for entry in table.range((job.0, 0, "")..=(job.0, u32::MAX, "\u{10ffff}"))? {
            let (key, _) = entry?;
            let (_, step, app) = key.value();
            out.push((StepId(step), app.to_string()));
        }
        Ok(out)
    }
}

/// A `jobs` value of any format, or the error naming its key.
fn decode_job_value(id: u64, value: &[u8]) -> Result<JobRecord, StoreError> {
    job_codec::decode_job(value).map_err(|source| StoreError::Corrupt { table: "jobs", key: id.to_string(), source })
}

/// Merges `new` into `merged` (both time-ordered by `at`); new entries replace equal times.
fn merge_by_time<T>(merged: &mut Vec<T>, new: Vec<T>, at: impl Fn(&T) -> u64) {
    for item in new {
        let t = at(&item);
        match merged.binary_search_by_key(&t, &at) {
            Ok(pos) => merged[pos] = item,
            Err(pos) => merged.insert(pos, item),
        }
    }
}

fn intern_node(txn: &redb::WriteTransaction, node: &str) -> Result<u32, StoreError> {
    let mut nodes = txn.open_table(NODES)?;
    if let Some(id) = nodes.get(node)? {
        return Ok(id.value());
    }
    let id = u32::try_from(nodes.len()?).unwrap_or(u32::MAX);
    nodes.insert(node, id)?;
    txn.open_table(NODE_NAMES)?.insert(id, node)?;
    Ok(id)
}

fn node_name(names: &redb::ReadOnlyTable<u32, &str>, id: u32) -> Result<String, StoreError> {
    Ok(names.get(id)?.map(|n| n.value().to_string()).unwrap_or_else(|| format!("node#{id}")))
}

#[cfg(test)]
mod tests;

/// Record builders shared by unit tests of other modules.
#[cfg(test)]
pub(crate) mod tests_support {
    pub(crate) use super::tests::job;
}
