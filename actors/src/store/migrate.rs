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
//! - 3: `job_steps` (one value per job, compact) replaces `steps` (one postcard value per step):
//!   the import writes a job's steps with one insert instead of one per step, in a third of the
//!   bytes. Job values may be format 1 or 2 (`job_codec` reads both), so they are not rewritten.

use super::job_codec::{decode_job, encode_steps};
use super::records::decode_record;
use super::tables::*;
use super::StoreError;
use crate::job::StepRecord;
use redb::{ReadableTable, TableHandle, WriteTransaction};

/// The schema this build writes.
pub const CURRENT_SCHEMA: u64 = 3;

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

/// Schema 3 moves every job's steps from `steps` into one `job_steps` value and drops `steps`.
fn v2_to_v3(txn: &WriteTransaction) -> Result<(), StoreError> {
    let exists = txn.list_tables()?.any(|t| t.name() == STEPS.name());
    if exists {
        let steps = txn.open_table(STEPS)?;
        let mut job_steps = txn.open_table(JOB_STEPS)?;
        let mut group: Vec<StepRecord> = Vec::new();
        let mut buf = Vec::new();
        let mut flush = |group: &mut Vec<StepRecord>, job_steps: &mut redb::Table<u64, &[u8]>| {
            let Some(first) = group.first() else { return Ok::<(), StoreError>(()) };
            let job = first.job.0;
            buf.clear();
            encode_steps(&group.iter().collect::<Vec<_>>(), &mut buf);
            job_steps.insert(job, buf.as_slice())?;
            group.clear();
            Ok(())
        };
        for entry in steps.iter()? {
            let (key, value) = entry?;
            let step: StepRecord = decode_record(value.value()).map_err(|source| StoreError::Corrupt {
                table: "steps",
                key: format!("{:?}", key.value()),
                source,
            })?;
            if group.first().is_some_and(|first| first.job != step.job) {
                flush(&mut group, &mut job_steps)?;
            }
            group.push(step);
        }
        flush(&mut group, &mut job_steps)?;
    }
    txn.delete_table(STEPS)?;
    txn.open_table(JOB_STEPS)?;
    Ok(())
}
