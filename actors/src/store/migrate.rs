//! Schema versions and forward migrations.
//!
//! The version lives in `meta.schema_version`. Opening a database runs every migration from its
//! version to [`CURRENT_SCHEMA`] inside one write transaction, so a crash mid-migration leaves
//! the old version intact. A database written by a newer turingwatch is refused, not misread.
//! (The original exited with code 2 after migrating and needed a restart; this one carries on.)
//!
//! History:
//! - 1: jobs, steps, end-time index, nodes, samples, GPU samples, apps, periods, findings, outbox.
//! - 2: `jobs_by_user` index, backfilled from the jobs table.
//! - 3: jobs are kept sixteen to a value (`job_blocks`) with their steps (format 2, `job_codec`)
//!   instead of a `jobs` value per job and a `steps` value per step, and the end-time and user
//!   indexes hold buckets of jobs (`postings`) instead of an entry per job: the import does one
//!   B-tree insert per sixteen jobs instead of five per job. The job count moves to `meta`. Job
//!   values without steps may stay format 1 (`job_codec` reads both).
//! - 4: the tables nothing read are dropped: `sample_blocks_by_time` (an index of sample blocks
//!   by hour) and `step_cpus` (CPUs per step and node). Samples are read by job.

use super::job_blocks::{block_of, BlockBuilder};
use super::job_codec::{decode_job, encode_job};
use super::postings::{apply, end_bucket, ID_BUCKET};
use super::records::{decode_record, RecordError};
use super::tables::*;
use super::StoreError;
use crate::job::StepRecord;
use redb::{ReadableTable, WriteTransaction};

/// The schema this build writes.
pub const CURRENT_SCHEMA: u64 = 4;

/// Brings the database to [`CURRENT_SCHEMA`]; returns the version it found (0 for a new file).
pub fn migrate(txn: &WriteTransaction) -> Result<u64, StoreError> {
    let found = {
        let meta = txn.open_table(META)?;
        let version = meta.get(SCHEMA_VERSION_KEY)?.map(|v| v.value());
        version
    };
    let found = match found {
        Some(v) => v,
        None => {
            create_v1(txn)?;
            0
        }
    };
    if found > CURRENT_SCHEMA {
        return Err(StoreError::NewerSchema { found, supported: CURRENT_SCHEMA });
    }
    let mut version = found.max(1);
    while version < CURRENT_SCHEMA {
        match version {
            1 => v1_to_v2(txn)?,
            2 => v2_to_v3(txn)?,
            3 => v3_to_v4(txn)?,
            other => return Err(StoreError::NoMigration { from: other }),
        }
        version += 1;
    }
    txn.open_table(META)?.insert(SCHEMA_VERSION_KEY, CURRENT_SCHEMA)?;
    Ok(found)
}

/// Creates the tables of schema 1 and stamps the version (also used by tests to make old files).
pub fn create_v1(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(META)?;
    txn.open_table(JOBS)?;
    txn.open_table(STEPS)?;
    txn.open_table(JOBS_BY_END)?;
    txn.open_table(NODES)?;
    txn.open_table(NODE_NAMES)?;
    txn.open_table(SAMPLE_BLOCKS)?;
    txn.open_table(SAMPLE_HOURS)?;
    txn.open_table(GPU_BLOCKS)?;
    txn.open_table(APP_USAGE)?;
    txn.open_table(STEP_CPUS)?;
    txn.open_table(PERIODS)?;
    txn.open_table(FINDINGS)?;
    txn.open_table(OUTBOX)?;
    txn.open_table(REPORTS_SEEN)?;
    txn.open_table(META)?.insert(SCHEMA_VERSION_KEY, 1)?;
    Ok(())
}

/// Schema 2 adds the per-user job index and fills it from the jobs already stored.
fn v1_to_v2(txn: &WriteTransaction) -> Result<(), StoreError> {
    let jobs = txn.open_table(JOBS)?;
    let mut by_user = txn.open_table(JOBS_BY_USER)?;
    for entry in jobs.iter()? {
        let (id, value) = entry?;
        let job = decode_job(value.value()).map_err(|source| StoreError::Corrupt {
            table: "jobs",
            key: id.value().to_string(),
            source,
        })?;
        by_user.insert((job.user.as_str(), job.id.0), ())?;
    }
    Ok(())
}

/// Schema 3 keeps jobs sixteen to a value with their steps (`job_blocks`, format 2 where a job
/// has steps) and replaces the per-job index entries by buckets; the tables `jobs`, `steps`,
/// `jobs_by_end` and `jobs_by_user` are dropped.
fn v2_to_v3(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut ends: Vec<((u64, u64), [u64; 2])> = Vec::new();
    let mut users: Vec<((String, u64), [u64; 1])> = Vec::new();
    let mut count = 0;
    {
        let jobs = txn.open_table(JOBS)?;
        let steps = txn.open_table(STEPS)?;
        let mut blocks = txn.open_table(JOB_BLOCKS)?;
        let mut block: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut buf = Vec::new();
        for entry in jobs.iter()? {
            let (id, value) = entry?;
            let (id, value) = (id.value(), value.value());
            let job = decode_job(value).map_err(|source| corrupt(id, source))?;
            let mut job_steps = Vec::new();
            for step in steps.range((id, 0)..=(id, u32::MAX))? {
                let (key, step) = step?;
                job_steps.push(decode_record::<StepRecord>(step.value()).map_err(|source| StoreError::Corrupt {
                    table: "steps",
                    key: format!("{:?}", key.value()),
                    source,
                })?);
            }
            let stored = if job_steps.is_empty() {
                value.to_vec()
            } else {
                let mut out = Vec::new();
                encode_job(&job, &job_steps.iter().collect::<Vec<_>>(), &mut out);
                out
            };
            if block.first().is_some_and(|(first, _)| block_of(*first) != block_of(id)) {
                write_block(&mut blocks, &block, &mut buf)?;
                block.clear();
            }
            block.push((id, stored));
            count += 1;
            let end = job.end_at.unwrap_or(u64::MAX);
            ends.push((end_bucket(end, id), [end, id]));
            users.push(((job.user, id / ID_BUCKET), [id]));
        }
        write_block(&mut blocks, &block, &mut buf)?;
    }
    let mut by_end = txn.open_table(JOBS_BY_END_BUCKETS)?;
    ends.sort_unstable();
    for bucket in ends.chunk_by(|a, b| a.0 == b.0) {
        let add: Vec<[u64; 2]> = bucket.iter().map(|e| e.1).collect();
        if let Some(value) = apply(None, &[], &add).map_err(|source| corrupt(bucket[0].1[1], source))? {
            by_end.insert(bucket[0].0, value.as_slice())?;
        }
    }
    let mut by_user = txn.open_table(JOBS_BY_USER_BUCKETS)?;
    users.sort_unstable();
    for bucket in users.chunk_by(|a, b| a.0 == b.0) {
        let add: Vec<[u64; 1]> = bucket.iter().map(|e| e.1).collect();
        if let Some(value) = apply(None, &[], &add).map_err(|source| corrupt(bucket[0].1[0], source))? {
            by_user.insert((bucket[0].0 .0.as_str(), bucket[0].0 .1), value.as_slice())?;
        }
    }
    txn.open_table(META)?.insert(JOB_COUNT_KEY, count)?;
    txn.delete_table(JOBS)?;
    txn.delete_table(STEPS)?;
    txn.delete_table(JOBS_BY_END)?;
    txn.delete_table(JOBS_BY_USER)?;
    Ok(())
}

/// Schema 4 drops the tables no reader used: `sample_blocks_by_time` and `step_cpus`.
fn v3_to_v4(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.delete_table(SAMPLE_HOURS)?;
    txn.delete_table(STEP_CPUS)?;
    Ok(())
}

/// Writes one block of migrated jobs (nothing for an empty block).
fn write_block(
    blocks: &mut redb::Table<u64, &[u8]>,
    jobs: &[(u64, Vec<u8>)],
    buf: &mut Vec<u8>,
) -> Result<(), StoreError> {
    let Some((first, _)) = jobs.first() else { return Ok(()) };
    let mut builder = BlockBuilder::new(buf);
    for (id, value) in jobs {
        builder.push(*id, |out| out.extend_from_slice(value));
    }
    blocks.insert(block_of(*first), buf.as_slice())?;
    Ok(())
}

fn corrupt(id: u64, source: RecordError) -> StoreError {
    StoreError::Corrupt { table: "jobs", key: id.to_string(), source }
}
