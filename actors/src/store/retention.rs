//! The retention pass: raw sample and GPU blocks past `[store] raw_retention` become bounded
//! per-series summaries (`downsample.rs`), and summaries past `[store] summary_retention` go.
//! It starts with the job retention step (`job_retention.rs`): jobs that ended before
//! `[store] job_retention` go with every row keyed by them.
//!
//! Why in chunks: a pass over months of blocks in one write transaction would hold redb's single
//! writer (and so every ingest commit) for seconds. The pass runs as many small write
//! transactions, each summarising at most `chunk_series` series (and scanning a bounded number
//! of keys), so an ingest commit waits at most one chunk.
//!
//! Crash safety: a series' summary is written and its raw blocks deleted in the SAME write
//! transaction, so a crash leaves either the raw blocks (the next pass summarises them again) or
//! the summary, never neither; re-running a pass is idempotent. A series with a block that does
//! not decode is left raw (counted in `corrupt_series`): nothing is deleted on an error, and a
//! store error ends the pass before its chunk commits.
//!
//! Which series: a series (job, step, node) is summarised once ALL its blocks have aged out (the
//! end of its newest hour is older than `now - raw_retention`), so a running job keeps its raw
//! data. The scan walks `sample_blocks` in key order (job ids ascending, which is roughly start
//! order) and stops at the first series whose OLDEST block is newer than the cutoff: later job
//! ids started later, so the scan costs the straddling series, not the whole table. A job with a
//! lower id that started late delays the summarising of higher ids until it ages (bounded by
//! queue wait).

use super::columns::Columns;
use super::downsample::{decode_summary, downsample, encode_summary, extend, SUMMARY_POINTS};
use super::tables::{BLOCK_SECS, GPU_BLOCKS, GPU_SUMMARIES, SAMPLE_BLOCKS, SAMPLE_SUMMARIES, SUMMARY_AGE};
use super::{decode_block, Store, StoreError};
use crate::sample::{GpuReading, StepSample};
use redb::{ReadableTable, TableDefinition, WriteTransaction};

/// What a retention pass keeps, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct RetentionPolicy {
    /// Raw blocks whose hour ended longer ago than this are summarised and deleted.
    pub raw_retention: u64,
    /// Summaries whose series' last sample is older than this are deleted.
    pub summary_retention: u64,
    /// Most series summarised per write transaction.
    pub chunk_series: usize,
    /// Jobs that ended longer ago than this go with everything keyed by them
    /// (`job_retention.rs`); `[store] job_retention`.
    pub job_retention: u64,
}

impl RetentionPolicy {
    /// A policy keeping jobs as long as summaries (the `[store] job_retention` default).
    pub fn new(raw_retention: u64, summary_retention: u64) -> Self {
        RetentionPolicy { raw_retention, summary_retention, chunk_series: 64, job_retention: summary_retention }
    }

    /// The same policy with another job retention, seconds.
    pub fn with_job_retention(self, job_retention: u64) -> Self {
        RetentionPolicy { job_retention, ..self }
    }
}

/// What a pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionStats {
    pub series_summarised: u64,
    pub raw_blocks_deleted: u64,
    pub summaries_deleted: u64,
    /// Series left raw because a block did not decode.
    pub corrupt_series: u64,
    /// Jobs deleted past `job_retention`, with their rows (`job_retention.rs`).
    pub jobs_deleted: u64,
    /// Job blocks or job index buckets that did not decode (left alone with their jobs).
    pub corrupt_job_blocks: u64,
    /// Write transactions committed.
    pub transactions: u64,
}

/// Keys scanned per write transaction while looking for aged series.
const SCAN_KEYS: usize = 20_000;
/// Summaries deleted per write transaction.
const DELETE_CHUNK: usize = 2_000;

type Key = (u64, u32, u32, u64);
const KIND_SAMPLES: u8 = 0;
const KIND_GPU: u8 = 1;

impl Store {
    /// Runs one retention pass at time `now` (unix seconds): see the module docs.
    pub fn apply_retention(&self, now: u64, policy: &RetentionPolicy) -> Result<RetentionStats, StoreError> {
        let mut stats = RetentionStats::default();
        // Jobs first: the raw blocks of a job that goes need no summary.
        let jobs = self.apply_job_retention(now.saturating_sub(policy.job_retention))?;
        stats.jobs_deleted = jobs.jobs_deleted;
        stats.corrupt_job_blocks = jobs.corrupt_job_blocks;
        stats.transactions = jobs.transactions;
        let cutoff = now.saturating_sub(policy.raw_retention);
        for kind in [KIND_SAMPLES, KIND_GPU] {
            let mut cursor = (0u64, 0u32, 0u32);
            loop {
                let next = self.with_db(|db| {
                    let txn = db.begin_write()?;
                    let next = if kind == KIND_SAMPLES {
                        summarise_chunk::<StepSample>(
                            &txn,
                            SAMPLE_BLOCKS,
                            SAMPLE_SUMMARIES,
                            kind,
                            cursor,
                            cutoff,
                            policy,
                            &mut stats,
                        )?
                    } else {
                        summarise_chunk::<GpuReading>(
                            &txn,
                            GPU_BLOCKS,
                            GPU_SUMMARIES,
                            kind,
                            cursor,
                            cutoff,
                            policy,
                            &mut stats,
                        )?
                    };
                    txn.commit()?;
                    Ok(next)
                })?;
                stats.transactions += 1;
                match next {
                    Some(c) => cursor = c,
                    None => break,
                }
            }
        }
        let summary_cutoff = now.saturating_sub(policy.summary_retention);
        loop {
            let deleted = self.with_db(|db| {
                let txn = db.begin_write()?;
                let deleted = delete_old_summaries(&txn, summary_cutoff)?;
                txn.commit()?;
                Ok(deleted)
            })?;
            stats.transactions += 1;
            stats.summaries_deleted += deleted as u64;
            if deleted < DELETE_CHUNK {
                break;
            }
        }
        Ok(stats)
    }

    /// Numbers of raw sample blocks, sample summaries and their value bytes (soak bench, tests).
    pub fn retention_footprint(&self) -> Result<Footprint, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let mut out = Footprint::default();
            for (def, blocks, bytes) in [
                (SAMPLE_BLOCKS, &mut out.raw_blocks, &mut out.raw_bytes),
                (GPU_BLOCKS, &mut out.gpu_blocks, &mut out.gpu_bytes),
            ] {
                for entry in txn.open_table(def)?.iter()? {
                    *blocks += 1;
                    *bytes += entry?.1.value().len() as u64;
                }
            }
            for def in [SAMPLE_SUMMARIES, GPU_SUMMARIES] {
                match txn.open_table(def) {
                    Ok(table) => {
                        for entry in table.iter()? {
                            out.summaries += 1;
                            out.summary_bytes += entry?.1.value().len() as u64;
                        }
                    }
                    Err(redb::TableError::TableDoesNotExist(_)) => {}
                    Err(err) => return Err(err.into()),
                }
            }
            Ok(out)
        })
    }
}

impl Store {
    /// Entries of every table that grows with time (soak bench, tests): name and length; a
    /// table not created yet counts 0.
    pub fn table_rows(&self) -> Result<Vec<(&'static str, u64)>, StoreError> {
        use super::tables::*;
        use redb::{Key, ReadTransaction, ReadableTableMetadata, Value};
        fn rows<K: Key + 'static, V: Value + 'static>(
            txn: &ReadTransaction,
            def: TableDefinition<K, V>,
        ) -> Result<u64, StoreError> {
            match txn.open_table(def) {
                Ok(table) => Ok(table.len()?),
                Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
                Err(err) => Err(err.into()),
            }
        }
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let jobs = txn.open_table(META)?.get(JOB_COUNT_KEY)?.map(|v| v.value()).unwrap_or(0);
            Ok(vec![
                ("jobs", jobs),
                ("job_blocks", rows(&txn, JOB_BLOCKS)?),
                ("jobs_by_end_buckets", rows(&txn, JOBS_BY_END_BUCKETS)?),
                ("jobs_by_user_buckets", rows(&txn, JOBS_BY_USER_BUCKETS)?),
                ("reports_seen", rows(&txn, REPORTS_SEEN)?),
                ("app_usage", rows(&txn, APP_USAGE)?),
                ("series_source", rows(&txn, SERIES_SOURCE)?),
                ("sample_blocks", rows(&txn, SAMPLE_BLOCKS)?),
                ("gpu_blocks", rows(&txn, GPU_BLOCKS)?),
                ("sample_summaries", rows(&txn, SAMPLE_SUMMARIES)?),
                ("gpu_summaries", rows(&txn, GPU_SUMMARIES)?),
                ("summary_age", rows(&txn, SUMMARY_AGE)?),
                ("nodes", rows(&txn, NODES)?),
                ("periods", rows(&txn, PERIODS)?),
            ])
        })
    }
}

/// Sizes of what retention manages.
#[derive(Debug, Clone, Copy, Default)]
pub struct Footprint {
    pub raw_blocks: u64,
    pub raw_bytes: u64,
    pub gpu_blocks: u64,
    pub gpu_bytes: u64,
    pub summaries: u64,
    pub summary_bytes: u64,
}

/// One chunk: finds up to `chunk_series` aged series from `cursor` on, summarises each (merging
/// with a summary it already has) and deletes its raw blocks. Returns where the next chunk
/// starts, or `None` when the scan is done.
#[allow(clippy::too_many_arguments)]
fn summarise_chunk<T: Columns>(
    txn: &WriteTransaction,
    blocks_def: TableDefinition<Key, &[u8]>,
    summaries_def: TableDefinition<(u64, u32, u32), &[u8]>,
    kind: u8,
    cursor: (u64, u32, u32),
    cutoff: u64,
    policy: &RetentionPolicy,
    stats: &mut RetentionStats,
) -> Result<Option<(u64, u32, u32)>, StoreError> {
    let mut blocks = txn.open_table(blocks_def)?;
    // 1. Scan: which series have aged out entirely.
    let mut aged: Vec<(u64, u32, u32)> = Vec::new();
    let mut next = None;
    {
        let mut current: Option<((u64, u32, u32), u64, u64)> = None; // series, first hour, last hour
        let mut finished = true;
        let decide = |series: (u64, u32, u32), first: u64, last: u64, aged: &mut Vec<_>| -> bool {
            if last + BLOCK_SECS <= cutoff {
                aged.push(series);
            }
            first < cutoff // false: a series started after the cutoff, stop
        };
        for (scanned, entry) in blocks.range((cursor.0, cursor.1, cursor.2, 0)..)?.enumerate() {
            let (key, _) = entry?;
            let (job, step, node, hour) = key.value();
            let series = (job, step, node);
            match &mut current {
                Some((s, _, last)) if *s == series => *last = hour,
                _ => {
                    if let Some((s, first, last)) = current.take() {
                        if !decide(s, first, last, &mut aged) {
                            finished = true;
                            current = None;
                            next = None;
                            break;
                        }
                        if aged.len() >= policy.chunk_series || scanned >= SCAN_KEYS {
                            finished = false;
                            next = Some(series);
                            current = None;
                            break;
                        }
                    }
                    current = Some((series, hour, hour));
                }
            }
        }
        if let Some((s, first, last)) = current {
            decide(s, first, last, &mut aged);
        }
        if finished {
            next = None;
        }
    }
    // 2. Summarise and delete, series by series.
    let mut summaries = txn.open_table(summaries_def)?;
    let mut age = txn.open_table(SUMMARY_AGE)?;
    for (job, step, node) in aged {
        let range = (job, step, node, 0)..=(job, step, node, u64::MAX);
        let mut records: Vec<T> = Vec::new();
        let mut keys = Vec::new();
        let mut corrupt = false;
        for entry in blocks.range(range.clone())? {
            let (key, value) = entry?;
            let hour = key.value().3;
            match decode_block::<T>(hour, value.value()) {
                Ok(r) => records.extend(r),
                Err(err) => {
                    tracing::error!(job, step, node, hour, error = %err, "corrupt block: series left raw by retention");
                    corrupt = true;
                    break;
                }
            }
            keys.push(key.value());
        }
        if corrupt {
            stats.corrupt_series += 1;
            continue;
        }
        records.sort_by_key(|r| r.at());
        let old = match summaries.get((job, step, node))? {
            Some(v) => match decode_summary::<T>(v.value()) {
                Ok(s) => Some(s),
                Err(err) => {
                    tracing::error!(job, step, node, error = %err, "corrupt summary: series left raw by retention");
                    stats.corrupt_series += 1;
                    continue;
                }
            },
            None => None,
        };
        let summary = match &old {
            Some(old) => {
                if let Some(end) = old.max.last().map(|r| r.at()) {
                    age.remove((end, job, step, node, kind))?;
                }
                extend(old, &records, SUMMARY_POINTS)
            }
            None => downsample(&records, SUMMARY_POINTS),
        };
        let Some(end) = summary.max.last().map(|r| r.at()) else {
            // Blocks with no records: nothing to keep; drop the empty blocks.
            for key in &keys {
                blocks.remove(*key)?;
            }
            stats.raw_blocks_deleted += keys.len() as u64;
            continue;
        };
        summaries.insert((job, step, node), encode_summary(&summary).as_slice())?;
        age.insert((end, job, step, node, kind), ())?;
        for key in &keys {
            blocks.remove(*key)?;
        }
        stats.raw_blocks_deleted += keys.len() as u64;
        stats.series_summarised += 1;
    }
    Ok(next)
}

/// The last sample time of an encoded summary of `kind` (its `summary_age` key), or `None` if
/// it does not decode or is empty.
pub(super) fn summary_end(kind: u8, bytes: &[u8]) -> Option<u64> {
    if kind == KIND_GPU {
        decode_summary::<GpuReading>(bytes).ok()?.max.last().map(|r| r.at())
    } else {
        decode_summary::<StepSample>(bytes).ok()?.max.last().map(|r| r.at())
    }
}

/// Deletes up to `DELETE_CHUNK` summaries whose series ended before `cutoff`; returns how many.
fn delete_old_summaries(txn: &WriteTransaction, cutoff: u64) -> Result<usize, StoreError> {
    let mut age = txn.open_table(SUMMARY_AGE)?;
    let old: Vec<(u64, u64, u32, u32, u8)> = age
        .range((0, 0, 0, 0, 0)..(cutoff, 0, 0, 0, 0))?
        .take(DELETE_CHUNK)
        .map(|e| e.map(|(k, _)| k.value()))
        .collect::<Result<_, _>>()?;
    let mut samples = txn.open_table(SAMPLE_SUMMARIES)?;
    let mut gpus = txn.open_table(GPU_SUMMARIES)?;
    for key in &old {
        let (_, job, step, node, kind) = *key;
        if kind == KIND_GPU {
            gpus.remove((job, step, node))?;
        } else {
            samples.remove((job, step, node))?;
        }
        age.remove(*key)?;
    }
    Ok(old.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobId, StepId};

    use crate::store::tests_support::temp_db;

    fn sample(at: u64, i: u64) -> StepSample {
        StepSample { at, cpu_user_cs: 150 * i, rss_kib: 1_000 + (i * 37) % 500, cpus: 4, ..StepSample::default() }
    }

    const DAY: u64 = 86_400;

    /// Job 1 ran on day 0 (6 h), job 2 on day 10, job 3 runs from day 9 to day 11.
    fn three_jobs(store: &Store) {
        for (job, from, hours) in [(1u64, 0u64, 6u64), (2, 10 * DAY, 6), (3, 9 * DAY, 48)] {
            let batch: Vec<_> = (0..hours * 180)
                .map(|i| (JobId(job), StepId::BATCH, sample(1_000_000_000 - 1_000_000_000 % 3_600 + from + 20 * i, i)))
                .collect();
            store.append_samples("n1", &batch).unwrap();
        }
    }

    #[test]
    fn aged_series_become_bounded_summaries_and_read_back_with_their_totals() {
        let store = Store::open(&temp_db("aged")).unwrap();
        three_jobs(&store);
        let before = store.samples_of_job(JobId(1)).unwrap();
        let raw = before.values().next().unwrap().clone();
        let t0 = 1_000_000_000 - 1_000_000_000 % 3_600;
        // Day 15.5 with 5 d raw retention: jobs 1 and 2 aged out, job 3 (until day 11) did not.
        let policy = RetentionPolicy { chunk_series: 1, ..RetentionPolicy::new(5 * DAY, 30 * DAY) };
        let stats = store.apply_retention(t0 + 10 * DAY + DAY / 2 + 5 * DAY, &policy).unwrap();
        assert_eq!(stats.series_summarised, 2);
        assert_eq!(stats.raw_blocks_deleted, 12);
        let after = store.samples_of_job(JobId(1)).unwrap();
        let series = after.values().next().unwrap();
        assert_eq!(series.len(), SUMMARY_POINTS);
        assert_eq!(series.first(), raw.first());
        assert_eq!(series.last().map(|s| (s.at, s.cpu_user_cs)), raw.last().map(|s| (s.at, s.cpu_user_cs)));
        assert_eq!(series.iter().map(|s| s.rss_kib).max(), raw.iter().map(|s| s.rss_kib).max());
        assert_eq!(store.samples_of_job(JobId(3)).unwrap().values().next().unwrap().len(), 48 * 180);
        // The job data the analysis reads sees the summary too.
        assert_eq!(store.job_data(JobId(1)).unwrap().samples.values().next().unwrap().len(), SUMMARY_POINTS);
        // Idempotent: a second pass changes nothing.
        let again = store.apply_retention(t0 + 10 * DAY + DAY / 2 + 5 * DAY, &policy).unwrap();
        assert_eq!((again.series_summarised, again.raw_blocks_deleted), (0, 0));
        // Later, everything has aged; then the summaries age out too.
        let stats = store.apply_retention(t0 + 20 * DAY, &policy).unwrap();
        assert_eq!((stats.series_summarised, stats.raw_blocks_deleted), (1, 48));
        let f = store.retention_footprint().unwrap();
        assert_eq!((f.raw_blocks, f.summaries), (0, 3));
        let stats = store.apply_retention(t0 + 38 * DAY, &policy).unwrap();
        assert_eq!(stats.summaries_deleted, 1, "job 1 ended on day 0: past 30 d + 6 h");
        assert!(store.samples_of_job(JobId(1)).unwrap().is_empty());
        assert_eq!(store.samples_of_job(JobId(2)).unwrap().values().next().unwrap().len(), SUMMARY_POINTS);
    }

    #[test]
    fn a_corrupt_block_leaves_its_series_raw() {
        let store = Store::open(&temp_db("corrupt")).unwrap();
        three_jobs(&store);
        let t0 = 1_000_000_000 - 1_000_000_000 % 3_600;
        {
            let db = store.test_db();
            let txn = db.begin_write().unwrap();
            let mut blocks = txn.open_table(SAMPLE_BLOCKS).unwrap();
            let key = blocks.range((1, 0, 0, 0)..).unwrap().nth(1).unwrap().unwrap().0.value();
            assert_eq!((key.0, key.3), (1, t0 + 3_600));
            blocks.insert(key, &[9u8, 9, 9][..]).unwrap();
            drop(blocks);
            txn.commit().unwrap();
        }
        let before = store.retention_footprint().unwrap().raw_blocks;
        let policy = RetentionPolicy::new(5 * DAY, 30 * DAY);
        let stats = store.apply_retention(t0 + 30 * DAY, &policy).unwrap();
        assert_eq!(stats.corrupt_series, 1);
        assert_eq!(stats.series_summarised, 2);
        let f = store.retention_footprint().unwrap();
        assert_eq!(f.raw_blocks, 6, "job 1's blocks all kept (of {before})");
    }
}
