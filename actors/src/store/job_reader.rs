//! Reading jobs and what belongs to them: steps, samples, GPU readings, applications.
//!
//! The writer's counterpart (`job_writer.rs`): a job is read from its block in `job_blocks`,
//! its steps from its own value; samples and GPU readings are range scans of `(job, ..)` in
//! their block tables. The one-job calls ([`Store::job`], [`Store::samples_of_job`]…) each take
//! a read transaction of their own; [`Store::job_data`] and [`Store::each_user_of_period`] read all the
//! analysis needs for a job or a period in ONE read transaction, so the analysis sees one
//! consistent state of the store and pays one transaction, not four per job.

use super::job_blocks::{block_of, entries, find};
use super::job_codec::{decode_job, decode_job_steps};
use super::postings;
use super::tables::{
    block_start, APP_USAGE, GPU_BLOCKS, GPU_SUMMARIES, JOBS_BY_END_BUCKETS, JOBS_BY_USER_BUCKETS, JOB_BLOCKS,
    NODE_NAMES, SAMPLE_BLOCKS, SAMPLE_SUMMARIES,
};
use super::{decode_block, Columns, RecordError, SeriesKey, Store, StoreError};
use crate::job::{JobId, JobRecord, StepId, StepRecord};
use crate::sample::{GpuReading, StepSample};
use redb::{ReadOnlyTable, ReadTransaction};
use std::collections::BTreeMap;

/// What is stored about one job besides its record.
#[derive(Debug, Clone, Default)]
pub struct JobData {
    /// In step-id order.
    pub steps: Vec<StepRecord>,
    /// By series, each in time order.
    pub samples: BTreeMap<SeriesKey, Vec<StepSample>>,
    /// By series, each in time order.
    pub gpu: BTreeMap<SeriesKey, Vec<GpuReading>>,
    /// Applications seen, by step.
    pub apps: Vec<(StepId, String)>,
    /// Sample and GPU blocks that did not decode: skipped (and logged), not the end of the read.
    pub corrupt_blocks: u64,
}

/// What the analysis of a period reads, from one read transaction.
#[derive(Debug, Clone, Default)]
pub struct PeriodData {
    /// The jobs of the window that were kept, by end time (running last) then id, with their data.
    pub jobs: Vec<(JobRecord, JobData)>,
    /// Every stored job of each user who has a job in `jobs`, by id (trends, right-sizing).
    pub history: BTreeMap<String, Vec<JobRecord>>,
    /// Sample and GPU blocks of those jobs that did not decode and were skipped.
    pub corrupt_blocks: u64,
}

/// One user's part of a period (see [`Store::each_user_of_period`]).
#[derive(Debug, Clone, Default)]
pub struct UserPeriodData {
    pub user: String,
    /// The user's kept jobs of the window, by end time (running last) then id, with their data.
    pub jobs: Vec<(JobRecord, JobData)>,
    /// Every stored job of the user, by id (trends, right-sizing).
    pub history: Vec<JobRecord>,
    /// Sample and GPU blocks of those jobs that did not decode and were skipped.
    pub corrupt_blocks: u64,
}

type Blocks = ReadOnlyTable<u64, &'static [u8]>;
type SeriesBlocks = ReadOnlyTable<(u64, u32, u32, u64), &'static [u8]>;
type Names = ReadOnlyTable<u32, &'static str>;
type Apps = ReadOnlyTable<(u64, u32, &'static str), ()>;
type Summaries = ReadOnlyTable<(u64, u32, u32), &'static [u8]>;

/// A summary table, or `None` before the first retention pass created it.
fn open_summaries(
    txn: &ReadTransaction,
    def: redb::TableDefinition<(u64, u32, u32), &[u8]>,
) -> Result<Option<Summaries>, StoreError> {
    match txn.open_table(def) {
        Ok(table) => Ok(Some(table)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// Adds a job's summarised series (`retention.rs`) to what its raw blocks gave: a series whose
/// raw blocks aged out reads as its summary's maxima (`downsample.rs` says why the maxima), and
/// raw samples written after the summary (a late report) follow it in time order.
fn add_summaries<T: Columns>(
    out: &mut BTreeMap<SeriesKey, Vec<T>>,
    summaries: Option<&Summaries>,
    names: &Names,
    job: JobId,
    table: &'static str,
    corrupt: &mut u64,
) -> Result<(), StoreError> {
    let Some(summaries) = summaries else { return Ok(()) };
    for entry in summaries.range((job.0, 0, 0)..=(job.0, u32::MAX, u32::MAX))? {
        let (key, value) = entry?;
        let (job_id, step, node) = key.value();
        let summary = match super::downsample::decode_summary::<T>(value.value()) {
            Ok(summary) => summary,
            Err(source) => {
                tracing::error!(table, key = ?key.value(), error = %source, "corrupt summary skipped");
                *corrupt += 1;
                continue;
            }
        };
        let node = node_name(names, node)?;
        let series = out.entry(SeriesKey { job: JobId(job_id), step: StepId(step), node }).or_default();
        let mut merged = summary.max;
        merged.append(series);
        merged.sort_by_key(|r| r.at());
        merged.dedup_by_key(|r| r.at());
        *series = merged;
    }
    Ok(())
}

/// The tables a job's data is read from, open in one read transaction.
struct JobTables {
    blocks: Blocks,
    samples: SeriesBlocks,
    gpus: SeriesBlocks,
    names: Names,
    apps: Apps,
    sample_summaries: Option<Summaries>,
    gpu_summaries: Option<Summaries>,
}

impl JobTables {
    fn open(txn: &ReadTransaction) -> Result<Self, StoreError> {
        Ok(JobTables {
            blocks: txn.open_table(JOB_BLOCKS)?,
            samples: txn.open_table(SAMPLE_BLOCKS)?,
            gpus: txn.open_table(GPU_BLOCKS)?,
            names: txn.open_table(NODE_NAMES)?,
            apps: txn.open_table(APP_USAGE)?,
            sample_summaries: open_summaries(txn, SAMPLE_SUMMARIES)?,
            gpu_summaries: open_summaries(txn, GPU_SUMMARIES)?,
        })
    }

    fn data(&self, id: JobId) -> Result<JobData, StoreError> {
        let mut corrupt_blocks = 0;
        let mut samples = read_series(&self.samples, &self.names, id, 0, "sample_blocks", &mut corrupt_blocks)?;
        add_summaries(
            &mut samples,
            self.sample_summaries.as_ref(),
            &self.names,
            id,
            "sample_summaries",
            &mut corrupt_blocks,
        )?;
        let mut gpu = read_series(&self.gpus, &self.names, id, 0, "gpu_blocks", &mut corrupt_blocks)?;
        add_summaries(&mut gpu, self.gpu_summaries.as_ref(), &self.names, id, "gpu_summaries", &mut corrupt_blocks)?;
        Ok(JobData {
            steps: read_steps(&self.blocks, id)?,
            samples,
            gpu,
            apps: read_apps(&self.apps, id)?,
            corrupt_blocks,
        })
    }
}

impl Store {
    /// One job, if stored.
    pub fn job(&self, id: JobId) -> Result<Option<JobRecord>, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            read_job(&txn.open_table(JOB_BLOCKS)?, id)
        })
    }

    /// The steps of a job, in step-id order.
    pub fn steps(&self, id: JobId) -> Result<Vec<StepRecord>, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            read_steps(&txn.open_table(JOB_BLOCKS)?, id)
        })
    }

    /// Jobs that were running at some time in `[from, to)`: ended at or after `from` (or still
    /// running) and started before `to`; by end time (running last), then id.
    pub fn jobs_in_window(&self, from: u64, to: u64) -> Result<Vec<JobRecord>, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            read_window(&txn.open_table(JOBS_BY_END_BUCKETS)?, &txn.open_table(JOB_BLOCKS)?, from, to)
        })
    }

    /// Ids of a user's jobs, ascending.
    pub fn job_ids_of_user(&self, user: &str) -> Result<Vec<JobId>, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            read_user_ids(&txn.open_table(JOBS_BY_USER_BUCKETS)?, user)
        })
    }

    /// All samples of a job, by series, in time order.
    pub fn samples_of_job(&self, job: JobId) -> Result<BTreeMap<SeriesKey, Vec<StepSample>>, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let names = txn.open_table(NODE_NAMES)?;
            let mut out = read_series(&txn.open_table(SAMPLE_BLOCKS)?, &names, job, 0, "sample_blocks", &mut 0)?;
            let summaries = open_summaries(&txn, SAMPLE_SUMMARIES)?;
            add_summaries(&mut out, summaries.as_ref(), &names, job, "sample_summaries", &mut 0)?;
            Ok(out)
        })
    }

    /// A job's samples taken at or after `since`, by series, in time order: only the blocks
    /// that can hold them are decoded (at most two per series for the last hour), so a running
    /// job's recent figures cost the same however long it has run.
    pub fn samples_of_job_since(
        &self,
        job: JobId,
        since: u64,
    ) -> Result<BTreeMap<SeriesKey, Vec<StepSample>>, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let (blocks, names) = (txn.open_table(SAMPLE_BLOCKS)?, txn.open_table(NODE_NAMES)?);
            let mut out = read_series(&blocks, &names, job, block_start(since), "sample_blocks", &mut 0)?;
            for series in out.values_mut() {
                series.retain(|s: &StepSample| s.at >= since);
            }
            out.retain(|_, series| !series.is_empty());
            Ok(out)
        })
    }

    /// All GPU readings of a job, by series, in time order.
    pub fn gpu_readings_of_job(&self, job: JobId) -> Result<BTreeMap<SeriesKey, Vec<GpuReading>>, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let names = txn.open_table(NODE_NAMES)?;
            let mut out = read_series(&txn.open_table(GPU_BLOCKS)?, &names, job, 0, "gpu_blocks", &mut 0)?;
            let summaries = open_summaries(&txn, GPU_SUMMARIES)?;
            add_summaries(&mut out, summaries.as_ref(), &names, job, "gpu_summaries", &mut 0)?;
            Ok(out)
        })
    }

    /// Applications seen in a job, by step.
    pub fn apps_of_job(&self, job: JobId) -> Result<Vec<(StepId, String)>, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            read_apps(&txn.open_table(APP_USAGE)?, job)
        })
    }

    /// A job's steps, samples, GPU readings and applications, read in one transaction.
    pub fn job_data(&self, job: JobId) -> Result<JobData, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            JobTables::open(&txn)?.data(job)
        })
    }

    /// Everything the analysis of `[from, to)` reads, in one transaction: the jobs of the window
    /// (see [`Store::jobs_in_window`]) for which `keep` is true, each with its data, and the
    /// job history of every user among them. Holds the whole period in memory: the analysis
    /// reads it a user at a time ([`Store::each_user_of_period`]).
    pub fn period_data(&self, from: u64, to: u64, keep: impl Fn(&JobRecord) -> bool) -> Result<PeriodData, StoreError> {
        let mut out = PeriodData::default();
        self.each_user_of_period(from, to, keep, |user| {
            out.corrupt_blocks += user.corrupt_blocks;
            out.history.insert(user.user, user.history);
            out.jobs.extend(user.jobs);
        })?;
        out.jobs.sort_by_key(|(job, _)| (job.end_at.unwrap_or(u64::MAX), job.id));
        Ok(out)
    }

    /// What the analysis of `[from, to)` reads, one user at a time, in ONE read transaction:
    /// the job records of the window for which `keep` is true are read first (records only),
    /// then for each of their users in name order the data of those jobs and the user's whole
    /// history, handed to `each` and dropped before the next user is read. So the memory a
    /// period needs is its job records plus its largest user's samples, not all its samples
    /// (a week of a 10 000-node cluster is some 100 M samples, ~14 GB decoded).
    pub fn each_user_of_period(
        &self,
        from: u64,
        to: u64,
        keep: impl Fn(&JobRecord) -> bool,
        mut each: impl FnMut(UserPeriodData),
    ) -> Result<(), StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let tables = JobTables::open(&txn)?;
            let mut by_user: BTreeMap<String, Vec<JobRecord>> = BTreeMap::new();
            for job in read_window(&txn.open_table(JOBS_BY_END_BUCKETS)?, &tables.blocks, from, to)? {
                if keep(&job) {
                    by_user.entry(job.user.clone()).or_default().push(job);
                }
            }
            let user_ids = txn.open_table(JOBS_BY_USER_BUCKETS)?;
            for (user, records) in by_user {
                let mut part = UserPeriodData { jobs: Vec::with_capacity(records.len()), ..UserPeriodData::default() };
                for job in records {
                    let data = tables.data(job.id)?;
                    part.corrupt_blocks += data.corrupt_blocks;
                    part.jobs.push((job, data));
                }
                part.history = read_jobs(&tables.blocks, &read_user_ids(&user_ids, &user)?)?;
                part.user = user;
                each(part);
            }
            Ok(())
        })
    }
}

fn corrupt(table: &'static str, key: u64, source: RecordError) -> StoreError {
    StoreError::Corrupt { table, key: key.to_string(), source }
}

/// Job `id`'s value from its block's value, if stored.
fn job_value(id: JobId, block: &[u8]) -> Result<Option<&[u8]>, StoreError> {
    find(id.0, block).map_err(|source| corrupt("job_blocks", block_of(id.0), source))
}

/// A `jobs` value of any format, or the error naming its key.
fn decode_job_value(id: u64, value: &[u8]) -> Result<JobRecord, StoreError> {
    decode_job(value).map_err(|source| corrupt("jobs", id, source))
}

fn read_job(blocks: &Blocks, id: JobId) -> Result<Option<JobRecord>, StoreError> {
    let Some(block) = blocks.get(block_of(id.0))? else { return Ok(None) };
    job_value(id, block.value())?.map(|v| decode_job_value(id.0, v)).transpose()
}

fn read_steps(blocks: &Blocks, id: JobId) -> Result<Vec<StepRecord>, StoreError> {
    let Some(block) = blocks.get(block_of(id.0))? else { return Ok(Vec::new()) };
    let Some(value) = job_value(id, block.value())? else { return Ok(Vec::new()) };
    decode_job_steps(id, value).map_err(|source| corrupt("jobs", id.0, source))
}

/// The stored jobs among `ids`, in the order given; each block is read once per run of ids in it.
fn read_jobs(blocks: &Blocks, ids: &[JobId]) -> Result<Vec<JobRecord>, StoreError> {
    let mut out = Vec::with_capacity(ids.len());
    for run in ids.chunk_by(|a, b| block_of(a.0) == block_of(b.0)) {
        let block = block_of(run[0].0);
        let Some(value) = blocks.get(block)? else { continue };
        let stored = entries(block, value.value()).map_err(|source| corrupt("job_blocks", block, source))?;
        for id in run {
            if let Some((_, value)) = stored.iter().find(|(entry, _)| *entry == id.0) {
                out.push(decode_job_value(id.0, value)?);
            }
        }
    }
    Ok(out)
}

fn read_window(
    by_end: &ReadOnlyTable<(u64, u64), &'static [u8]>,
    blocks: &Blocks,
    from: u64,
    to: u64,
) -> Result<Vec<JobRecord>, StoreError> {
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
        let Some(block) = blocks.get(block_of(id))? else { continue };
        // A job that does not decode is skipped (and logged), not the end of the window.
        let job = job_value(JobId(id), block.value()).and_then(|v| v.map(|v| decode_job_value(id, v)).transpose());
        match job {
            Ok(Some(job)) if job.start_at.is_some_and(|s| s < to) => out.push(job),
            Ok(_) => {}
            Err(err) => tracing::error!(job = id, error = %err, "corrupt job skipped"),
        }
    }
    Ok(out)
}

fn read_user_ids(
    by_user: &ReadOnlyTable<(&'static str, u64), &'static [u8]>,
    user: &str,
) -> Result<Vec<JobId>, StoreError> {
    let mut out = Vec::new();
    for entry in by_user.range((user, 0)..=(user, u64::MAX))? {
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

/// A job's series from a block table (`sample_blocks` or `gpu_blocks`), by series, in time order,
/// from the blocks starting at or after `from_block` (0: all; earlier ones are not decoded).
/// A block that does not decode is skipped, logged and counted in `corrupt`.
fn read_series<T: Columns>(
    blocks: &SeriesBlocks,
    names: &Names,
    job: JobId,
    from_block: u64,
    table: &'static str,
    corrupt: &mut u64,
) -> Result<BTreeMap<SeriesKey, Vec<T>>, StoreError> {
    let mut out: BTreeMap<SeriesKey, Vec<T>> = BTreeMap::new();
    for entry in blocks.range((job.0, 0, 0, 0)..=(job.0, u32::MAX, u32::MAX, u64::MAX))? {
        let (key, value) = entry?;
        let (job_id, step, node, hour) = key.value();
        if hour < from_block {
            continue;
        }
        let records: Vec<T> = match decode_block(hour, value.value()) {
            Ok(records) => records,
            Err(source) => {
                tracing::error!(table, key = ?key.value(), error = %source, "corrupt sample block skipped");
                *corrupt += 1;
                continue;
            }
        };
        let node = node_name(names, node)?;
        out.entry(SeriesKey { job: JobId(job_id), step: StepId(step), node }).or_default().extend(records);
    }
    Ok(out)
}

fn read_apps(apps: &Apps, job: JobId) -> Result<Vec<(StepId, String)>, StoreError> {
    let mut out = Vec::new();
    for entry in apps.range((job.0, 0, "")..=(job.0, u32::MAX, "\u{10ffff}"))? {
        let (key, _) = entry?;
        let (_, step, app) = key.value();
        out.push((StepId(step), app.to_string()));
    }
    Ok(out)
}

fn node_name(names: &Names, id: u32) -> Result<String, StoreError> {
    Ok(names.get(id)?.map(|n| n.value().to_string()).unwrap_or_else(|| format!("node#{id}")))
}
