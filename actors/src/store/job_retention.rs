//! Job retention: jobs that ended longer ago than `[store] job_retention` go, with everything
//! keyed by them.
//!
//! Why: without it the job records (`job_blocks`), their index entries (`jobs_by_end_buckets`,
//! `jobs_by_user_buckets`), the applications seen (`app_usage`), the series owners
//! (`series_source`) and the summaries of a job grow by one set per job, forever. The trend
//! window needs a few periods of jobs; the default (`summary_retention`) keeps a job as long as
//! its summaries.
//!
//! Which jobs: the end-time index is bucketed by end time (`postings::END_BUCKET_SECS`), so the
//! candidates are the entries of the buckets before the cutoff, read in key order; a running job
//! (indexed at `u64::MAX`) is never one. A job goes with its entry in its job block (the block is
//! rewritten, or deleted when empty; `job_count` in `meta` follows), its index entries, its
//! `app_usage` and `series_source` rows, any raw `sample_blocks` / `gpu_blocks` left, and its
//! `sample_summaries` / `gpu_summaries` with their `summary_age` rows.
//!
//! Crash safety: each chunk of at most `JOB_CHUNK` jobs is ONE write transaction that deletes
//! all of those jobs' rows, so a crash leaves a job either whole or gone; the next pass finds
//! what is left by the same index and deletes it (a re-run is a no-op). A store error aborts the
//! chunk's transaction, so nothing of it is deleted. A job block or index bucket that does not
//! decode is left alone (its jobs too), logged and counted in `corrupt_job_blocks`; the scan
//! moves past it, so it never stops the pass. Ingest waits at most one chunk.

use super::job_blocks::{block_of, entries, BlockBuilder};
use super::job_codec::{decode_job, job_end};
use super::postings::{self, END_BUCKET_SECS, ID_BUCKET};
use super::tables::*;
use super::{Store, StoreError};
use redb::{ReadableTable, WriteTransaction};
use std::collections::BTreeMap;

/// Jobs deleted per write transaction.
pub const JOB_CHUNK: usize = 256;

/// Index buckets read per write transaction while looking for candidates (bounds the scan of a
/// chunk that finds only corrupt or already-handled buckets).
const SCAN_BUCKETS: usize = 4_096;

/// What a job retention pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobRetentionStats {
    pub jobs_deleted: u64,
    /// Job blocks or index buckets that did not decode (left alone with their jobs).
    pub corrupt_job_blocks: u64,
    pub transactions: u64,
}

/// Where the next chunk's scan of `jobs_by_end_buckets` starts: a bucket key, and the last
/// entry of that bucket already handled (entries up to it are skipped).
type Cursor = ((u64, u64), Option<[u64; 2]>);

impl Store {
    /// Deletes the jobs that ended before `cutoff` (unix seconds) and everything keyed by them,
    /// in chunks: see the module docs.
    pub fn apply_job_retention(&self, cutoff: u64) -> Result<JobRetentionStats, StoreError> {
        let mut stats = JobRetentionStats::default();
        let mut cursor: Cursor = ((0, 0), None);
        loop {
            let next = self.with_db(|db| {
                let txn = db.begin_write()?;
                let mut chunk = JobRetentionStats::default();
                let next = prune_chunk(&txn, cursor, cutoff, &mut chunk)?;
                txn.commit()?;
                Ok((next, chunk))
            })?;
            let (next, chunk) = next;
            stats.jobs_deleted += chunk.jobs_deleted;
            stats.corrupt_job_blocks += chunk.corrupt_job_blocks;
            stats.transactions += 1;
            match next {
                Some(c) => cursor = c,
                None => break,
            }
        }
        Ok(stats)
    }
}

/// One chunk: collects up to `JOB_CHUNK` jobs that ended before `cutoff` from `cursor` on and
/// deletes them. Returns where the next chunk starts, or `None` when the scan is done.
fn prune_chunk(
    txn: &WriteTransaction,
    cursor: Cursor,
    cutoff: u64,
    stats: &mut JobRetentionStats,
) -> Result<Option<Cursor>, StoreError> {
    let mut by_end = txn.open_table(JOBS_BY_END_BUCKETS)?;
    // 1. Candidates: (end, id) entries before the cutoff, by bucket.
    let mut candidates: BTreeMap<(u64, u64), Vec<[u64; 2]>> = BTreeMap::new();
    let mut found = 0usize;
    let mut next: Option<Cursor> = None;
    let stop = (cutoff / END_BUCKET_SECS + 1, 0);
    for (scanned, entry) in by_end.range(cursor.0..stop)?.enumerate() {
        let (key, value) = entry?;
        let key = key.value();
        if scanned >= SCAN_BUCKETS || found >= JOB_CHUNK {
            next = Some((key, None));
            break;
        }
        let list = match postings::decode::<2>(value.value()) {
            Ok(list) => list,
            Err(err) => {
                tracing::error!(bucket = ?key, error = %err, "corrupt jobs_by_end bucket: left alone by job retention");
                stats.corrupt_job_blocks += 1;
                continue;
            }
        };
        let skip_to = if key == cursor.0 { cursor.1 } else { None };
        let mut picked = Vec::new();
        for e in list.into_iter().filter(|e| e[0] < cutoff && skip_to.is_none_or(|s| *e > s)) {
            if found >= JOB_CHUNK {
                break;
            }
            picked.push(e);
            found += 1;
        }
        if found >= JOB_CHUNK {
            // The rest of this bucket (if any) is the next chunk's.
            next = Some((key, picked.last().copied()));
        }
        if !picked.is_empty() {
            candidates.insert(key, picked);
        }
        if next.is_some() {
            break;
        }
    }
    if candidates.is_empty() {
        return Ok(next);
    }
    // 2. The jobs' blocks: which candidates are stored, and their users. A block that does not
    // decode keeps its jobs (and their index entries).
    let mut blocks = txn.open_table(JOB_BLOCKS)?;
    let mut wanted: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new(); // block -> (id, end)
    for entry in candidates.values().flatten() {
        wanted.entry(block_of(entry[1])).or_default().push((entry[1], entry[0]));
    }
    let mut gone: Vec<[u64; 2]> = Vec::new(); // (end, id) removed from the index
    let mut users: BTreeMap<(String, u64), Vec<[u64; 1]>> = BTreeMap::new();
    let mut removed_jobs = 0u64;
    let mut buf = Vec::new();
    for (block, jobs) in &wanted {
        let stored = blocks.get(*block)?.map(|v| v.value().to_vec());
        let Some(stored) = stored else {
            // No block: the index entries are stale; drop them.
            gone.extend(jobs.iter().map(|(id, end)| [*end, *id]));
            continue;
        };
        let list = match entries(*block, &stored) {
            Ok(list) => list,
            Err(err) => {
                tracing::error!(block, error = %err, "corrupt job block: left alone by job retention");
                stats.corrupt_job_blocks += 1;
                continue;
            }
        };
        let mut keep: Vec<(u64, &[u8])> = Vec::with_capacity(list.len());
        let mut dropped = Vec::new();
        let mut bad = false;
        for (id, value) in &list {
            let Some((_, end)) = jobs.iter().find(|(j, _)| j == id) else {
                keep.push((*id, value));
                continue;
            };
            match (job_end(value), decode_job(value)) {
                // The index says it ended before the cutoff; the record agrees.
                (Ok(Some(stored_end)), Ok(job)) if stored_end == *end => dropped.push((*id, *end, job.user)),
                // The record changed (a later import): the index entry is stale.
                (Ok(_), Ok(_)) => {
                    gone.push([*end, *id]);
                    keep.push((*id, value));
                }
                (Err(err), _) | (_, Err(err)) => {
                    tracing::error!(job = id, error = %err, "corrupt job value: its block left alone by job retention");
                    bad = true;
                    break;
                }
            }
        }
        if bad {
            stats.corrupt_job_blocks += 1;
            continue;
        }
        // Index entries of jobs the block does not hold are stale.
        for (id, end) in jobs {
            if !list.iter().any(|(j, _)| j == id) {
                gone.push([*end, *id]);
            }
        }
        if dropped.is_empty() {
            continue;
        }
        if keep.is_empty() {
            blocks.remove(*block)?;
        } else {
            let mut builder = BlockBuilder::new(&mut buf);
            for (id, value) in &keep {
                builder.push(*id, |out| out.extend_from_slice(value));
            }
            blocks.insert(*block, buf.as_slice())?;
        }
        for (id, end, user) in dropped {
            gone.push([end, id]);
            users.entry((user, id / ID_BUCKET)).or_default().push([id]);
            delete_job_rows(txn, id)?;
            removed_jobs += 1;
        }
    }
    drop(blocks);
    // 3. The index entries.
    let mut by_bucket: BTreeMap<(u64, u64), Vec<[u64; 2]>> = BTreeMap::new();
    for e in gone {
        by_bucket.entry(postings::end_bucket(e[0], e[1])).or_default().push(e);
    }
    for (key, remove) in by_bucket {
        let old = by_end.get(key)?.map(|v| v.value().to_vec());
        match postings::apply(old.as_deref(), &remove, &[]) {
            Ok(Some(value)) => {
                by_end.insert(key, value.as_slice())?;
            }
            Ok(None) => {
                by_end.remove(key)?;
            }
            Err(err) => {
                tracing::error!(bucket = ?key, error = %err, "corrupt jobs_by_end bucket: left as is");
                stats.corrupt_job_blocks += 1;
            }
        }
    }
    drop(by_end);
    let mut by_user = txn.open_table(JOBS_BY_USER_BUCKETS)?;
    for ((user, bucket), remove) in users {
        let key = (user.as_str(), bucket);
        let old = by_user.get(key)?.map(|v| v.value().to_vec());
        match postings::apply(old.as_deref(), &remove, &[]) {
            Ok(Some(value)) => {
                by_user.insert(key, value.as_slice())?;
            }
            Ok(None) => {
                by_user.remove(key)?;
            }
            Err(err) => {
                tracing::error!(user, bucket, error = %err, "corrupt jobs_by_user bucket: left as is");
                stats.corrupt_job_blocks += 1;
            }
        }
    }
    drop(by_user);
    if removed_jobs > 0 {
        let mut meta = txn.open_table(META)?;
        let count = meta.get(JOB_COUNT_KEY)?.map(|v| v.value()).unwrap_or(0);
        meta.insert(JOB_COUNT_KEY, count.saturating_sub(removed_jobs))?;
    }
    stats.jobs_deleted += removed_jobs;
    // A full chunk continues from its cursor; otherwise the scan reached `stop` (or the bucket
    // limit, which set `next`).
    Ok(next)
}

/// Deletes every row keyed by job `id` outside the job tables.
fn delete_job_rows(txn: &WriteTransaction, id: u64) -> Result<(), StoreError> {
    {
        let mut apps = txn.open_table(APP_USAGE)?;
        let keys: Vec<(u32, String)> = apps
            .range((id, 0u32, "")..(id + 1, 0u32, ""))?
            .map(|e| e.map(|(k, _)| (k.value().1, k.value().2.to_string())))
            .collect::<Result<_, _>>()?;
        for (step, app) in &keys {
            apps.remove((id, *step, app.as_str()))?;
        }
    }
    {
        let mut source = txn.open_table(SERIES_SOURCE)?;
        let keys: Vec<_> = source
            .range((id, 0u32, 0u32)..(id + 1, 0u32, 0u32))?
            .map(|e| e.map(|(k, _)| k.value()))
            .collect::<Result<_, _>>()?;
        for key in keys {
            source.remove(key)?;
        }
    }
    for def in [SAMPLE_BLOCKS, GPU_BLOCKS] {
        let mut blocks = txn.open_table(def)?;
        let keys: Vec<_> = blocks
            .range((id, 0u32, 0u32, 0u64)..(id + 1, 0u32, 0u32, 0u64))?
            .map(|e| e.map(|(k, _)| k.value()))
            .collect::<Result<_, _>>()?;
        for key in keys {
            blocks.remove(key)?;
        }
    }
    let mut age = txn.open_table(SUMMARY_AGE)?;
    for (def, kind) in [(SAMPLE_SUMMARIES, 0u8), (GPU_SUMMARIES, 1u8)] {
        let mut summaries = txn.open_table(def)?;
        let keys: Vec<_> = summaries
            .range((id, 0u32, 0u32)..(id + 1, 0u32, 0u32))?
            .map(|e| e.map(|(k, v)| (k.value(), super::retention::summary_end(kind, v.value()))))
            .collect::<Result<_, _>>()?;
        for ((job, step, node), end) in keys {
            summaries.remove((job, step, node))?;
            // A summary that does not decode has no known age row; the summary pass deletes
            // the orphan row when it ages (removing a missing summary is a no-op).
            if let Some(end) = end {
                age.remove((end, job, step, node, kind))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobId, StepId};
    use crate::sample::StepSample;
    use crate::store::tests_support::job;
    use crate::store::RetentionPolicy;

    const DAY: u64 = 86_400;
    const T0: u64 = 1_800_000_000 - 1_800_000_000 % DAY;

    use crate::store::tests_support::temp_db;

    fn samples(job: u64, from: u64, n: u64) -> Vec<(JobId, StepId, StepSample)> {
        (0..n)
            .map(|i| {
                (
                    JobId(job),
                    StepId::BATCH,
                    StepSample { at: from + 60 * i, cpu_user_cs: 100 * i, cpus: 4, ..StepSample::default() },
                )
            })
            .collect()
    }

    /// Rows keyed by `job` in each table: apps, series_source, sample blocks, summaries, age.
    fn rows_of(store: &Store, id: u64) -> [usize; 5] {
        let db = store.test_db();
        let txn = db.begin_read().unwrap();
        let count3 = |def: redb::TableDefinition<(u64, u32, u32), &[u8]>| match txn.open_table(def) {
            Ok(t) => t.range((id, 0, 0)..(id + 1, 0, 0)).unwrap().count(),
            Err(_) => 0,
        };
        let apps = txn.open_table(APP_USAGE).unwrap().range((id, 0u32, "")..(id + 1, 0u32, "")).unwrap().count();
        let source = match txn.open_table(SERIES_SOURCE) {
            Ok(t) => t.range((id, 0, 0)..(id + 1, 0, 0)).unwrap().count(),
            Err(_) => 0,
        };
        let blocks = txn.open_table(SAMPLE_BLOCKS).unwrap().range((id, 0, 0, 0)..(id + 1, 0, 0, 0)).unwrap().count();
        let age = match txn.open_table(SUMMARY_AGE) {
            Ok(t) => t.iter().unwrap().filter(|e| e.as_ref().unwrap().0.value().1 == id).count(),
            Err(_) => 0,
        };
        [apps, source, blocks, count3(SAMPLE_SUMMARIES), age]
    }

    /// Job 1 ended on day 1, job 2 on day 2 (both summarised), job 3 on day 50, job 4 runs.
    fn four_jobs(store: &Store) {
        let jobs = vec![
            job(1, "alice", T0, Some(T0 + DAY)),
            job(2, "bob", T0 + DAY, Some(T0 + 2 * DAY)),
            job(3, "alice", T0 + 49 * DAY, Some(T0 + 50 * DAY)),
            job(4, "bob", T0, None),
        ];
        store.upsert_jobs(&jobs, &[], None).unwrap();
        for (id, from) in [(1, T0), (2, T0 + DAY), (3, T0 + 49 * DAY), (4, T0 + 49 * DAY)] {
            store.append_samples("n1", &samples(id, from, 100)).unwrap();
            // (The samples also claim their series in `series_source`.)
            store.add_apps(&[(JobId(id), StepId::BATCH, "python".into())]).unwrap();
        }
        // Raw 5 d at day 20: jobs 1 and 2 become summaries (with age rows).
        let stats = store.apply_retention(T0 + 20 * DAY, &RetentionPolicy::new(5 * DAY, 400 * DAY)).unwrap();
        assert_eq!(stats.series_summarised, 2);
    }

    #[test]
    fn ended_jobs_go_with_all_their_rows_and_running_and_recent_ones_stay() {
        let store = Store::open(&temp_db("prune")).unwrap();
        four_jobs(&store);
        assert_eq!(store.job_count().unwrap(), 4);
        assert_eq!(rows_of(&store, 1), [1, 1, 0, 1, 1]);
        assert_eq!(rows_of(&store, 3), [1, 1, 2, 0, 0]);
        // Cutoff day 30: jobs 1 and 2 ended before it.
        let stats = store.apply_job_retention(T0 + 30 * DAY).unwrap();
        assert_eq!((stats.jobs_deleted, stats.corrupt_job_blocks), (2, 0));
        for id in [1, 2] {
            assert!(store.job(JobId(id)).unwrap().is_none());
            assert_eq!(rows_of(&store, id), [0; 5], "job {id}");
        }
        assert_eq!(store.job_count().unwrap(), 2);
        assert!(store.job(JobId(3)).unwrap().is_some());
        assert!(store.job(JobId(4)).unwrap().is_some());
        assert_eq!(rows_of(&store, 3), [1, 1, 2, 0, 0]);
        assert_eq!(rows_of(&store, 4), [1, 1, 2, 0, 0]);
        assert_eq!(store.job_ids_of_user("alice").unwrap(), vec![JobId(3)]);
        assert_eq!(store.job_ids_of_user("bob").unwrap(), vec![JobId(4)]);
        let window: Vec<u64> = store.jobs_in_window(0, u64::MAX).unwrap().iter().map(|j| j.id.0).collect();
        assert_eq!(window, vec![3, 4]);
        // Re-run: a no-op.
        let again = store.apply_job_retention(T0 + 30 * DAY).unwrap();
        assert_eq!(again.jobs_deleted, 0);
        assert_eq!(store.job_count().unwrap(), 2);
        // Far later: job 3 goes, the running job 4 never does.
        let stats = store.apply_job_retention(u64::MAX - 1).unwrap();
        assert_eq!(stats.jobs_deleted, 1);
        assert!(store.job(JobId(4)).unwrap().is_some());
        assert_eq!(store.job_count().unwrap(), 1);
        // A block emptied entirely is deleted; job 4's block (0) still holds it.
        let db = store.test_db();
        let txn = db.begin_read().unwrap();
        assert_eq!(txn.open_table(JOB_BLOCKS).unwrap().iter().unwrap().count(), 1);
    }

    #[test]
    fn many_jobs_go_in_several_chunks() {
        let store = Store::open(&temp_db("chunks")).unwrap();
        let n = 3 * JOB_CHUNK as u64 + 7;
        let jobs: Vec<_> = (1..=n).map(|id| job(id, &format!("u{}", id % 7), T0 + id, Some(T0 + 2 * id))).collect();
        store.upsert_jobs(&jobs, &[], None).unwrap();
        // Every job but the last 10 ended before the cutoff.
        let stats = store.apply_job_retention(T0 + 2 * (n - 10) + 1).unwrap();
        assert_eq!(stats.jobs_deleted, n - 10);
        assert_eq!(stats.transactions, 3, "256 + 256 + 253: {stats:?}");
        assert_eq!(store.job_count().unwrap(), 10);
        assert_eq!(store.jobs_in_window(0, u64::MAX).unwrap().len(), 10);
    }

    #[test]
    fn a_corrupt_job_block_is_left_alone_and_counted() {
        let store = Store::open(&temp_db("corrupt")).unwrap();
        // Job 1 in block 0, job 17 in block 1: both ended long ago.
        store.upsert_jobs(&[job(1, "a", T0, Some(T0 + 10)), job(17, "a", T0, Some(T0 + 20))], &[], None).unwrap();
        store.append_samples("n1", &samples(1, T0, 10)).unwrap();
        {
            let db = store.test_db();
            let txn = db.begin_write().unwrap();
            txn.open_table(JOB_BLOCKS).unwrap().insert(0u64, &[1u8, 0, 200][..]).unwrap();
            txn.commit().unwrap();
        }
        let stats = store.apply_job_retention(T0 + DAY).unwrap();
        assert_eq!((stats.jobs_deleted, stats.corrupt_job_blocks), (1, 1));
        assert_eq!(rows_of(&store, 1)[2], 1, "job 1's samples kept with its corrupt block");
        assert!(store.job(JobId(17)).unwrap().is_none());
        // The pass ends, and the next one counts the block again without deleting anything.
        let again = store.apply_job_retention(T0 + DAY).unwrap();
        assert_eq!((again.jobs_deleted, again.corrupt_job_blocks), (0, 1));
    }
}
