//! Writing jobs and steps inside an open write transaction: the accounting import's hot path.
//!
//! A [`JobWriter`] holds the job tables (`job_blocks`, see `job_blocks`, and the bucketed
//! indexes `jobs_by_end_buckets` and `jobs_by_user_buckets`, see `postings`) open for the whole
//! transaction of [`Store::write_jobs`], so the importer can write a window part by part
//! (parsing the next part meanwhile) and commit it once with its watermark. A job's steps are
//! part of its value, so a block of sixteen new jobs is one read (finding nothing) and one
//! insert; each index bucket a part touches is rewritten once. Jobs are written in id order,
//! which keeps each B-tree insert on the pages the previous one touched.
//!
//! Upserts keep what the tables of schema 2 did: a job's record is replaced; its steps are
//! replaced step by step (a step stored before and missing from a later import is kept), and a
//! job imported without steps keeps the steps it had. Steps given without their job are added to
//! the stored job, or dropped if there is none. The number of jobs is kept in `meta`.
//!
//! A stored job never changes owner: a record of a stored job id with another user (or uid) is
//! refused, the stored job and its steps kept, and the refusal counted in `meta`
//! (`jobs_owner_change_refused`) and handed to the importer ([`JobWriter::take_owner_changes`])
//! to raise an alarm.

use super::job_blocks::{block_of, entries, BlockBuilder};
use super::job_codec::{decode_job, decode_job_steps, encode_job, job_end};
use super::postings::{self, end_bucket, ID_BUCKET};
use super::tables::{IMPORT_WATERMARK_KEY, JOBS_BY_END_BUCKETS, JOBS_BY_USER_BUCKETS, JOB_BLOCKS, JOB_COUNT_KEY, META};
use super::{Store, StoreError};
use crate::job::{JobId, JobRecord, StepRecord};
use redb::{ReadableTable, Table, WriteTransaction};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// What a written job was before the write: `None` if new, else whether it had ended.
pub type Before = Option<bool>;

/// The job tables of one write transaction, open for writing.
pub struct JobWriter<'txn> {
    blocks: Table<'txn, u64, &'static [u8]>,
    by_end: Table<'txn, (u64, u64), &'static [u8]>,
    by_user: Table<'txn, (&'static str, u64), &'static [u8]>,
    buf: Vec<u8>,
    /// Jobs that were not stored before, for the count in `meta`.
    added: u64,
    /// Records refused because they would change a stored job's owner.
    owner_changes: Vec<OwnerChange>,
    /// How many of them [`JobWriter::take_owner_changes`] has handed out (all are counted).
    owner_changes_counted: u64,
}

/// A record refused by the import: a job id already stored with another owner. The stored job
/// is kept; a changed owner means a forged record (e.g. one hidden in a job's name or submit
/// line) or a reused id, and is an alarm for the operator, never a silent rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerChange {
    pub job: JobId,
    pub stored_user: String,
    pub stored_uid: Option<u32>,
    pub new_user: String,
    pub new_uid: Option<u32>,
}

/// `meta` counter of imported records refused because they changed a stored job's owner.
pub const OWNER_CHANGE_REFUSED_KEY: &str = "jobs_owner_change_refused";

/// One job (by its index in the write) or steps alone, to be written into a block.
struct Op<'a> {
    id: u64,
    job: Option<usize>,
    steps: &'a [&'a StepRecord],
}

/// What writing one op found: its job's old end time if it was stored, and whether it was refused.
type Written = (Option<Option<u64>>, bool);

/// Index entries to remove and add, by bucket.
type Changes<K, const N: usize> = BTreeMap<K, (Vec<[u64; N]>, Vec<[u64; N]>)>;

impl Store {
    /// Runs `write` with a [`JobWriter`] in one write transaction and commits it with the job
    /// count and, if given, the import watermark: the watermark never moves unless the jobs
    /// written with it are stored. Nothing is written if `write` fails.
    pub fn write_jobs<T>(
        &self,
        watermark: Option<u64>,
        write: impl FnOnce(&mut JobWriter<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            let mut writer = JobWriter::open(&txn)?;
            let out = write(&mut writer)?;
            writer.finish(&txn, watermark)?;
            txn.commit()?;
            Ok(out)
        })
    }

    /// Inserts or replaces jobs and their steps, and (optionally) advances the import watermark,
    /// all in one transaction (see [`Store::write_jobs`]).
    pub fn upsert_jobs(
        &self,
        jobs: &[JobRecord],
        steps: &[StepRecord],
        watermark: Option<u64>,
    ) -> Result<(), StoreError> {
        self.write_jobs(watermark, |writer| {
            writer.write(&jobs.iter().collect::<Vec<_>>(), &steps.iter().collect::<Vec<_>>()).map(drop)
        })
    }
}

impl<'txn> JobWriter<'txn> {
    fn open(txn: &'txn WriteTransaction) -> Result<Self, StoreError> {
        Ok(JobWriter {
            blocks: txn.open_table(JOB_BLOCKS)?,
            by_end: txn.open_table(JOBS_BY_END_BUCKETS)?,
            by_user: txn.open_table(JOBS_BY_USER_BUCKETS)?,
            buf: Vec::with_capacity(16 << 10),
            added: 0,
            owner_changes: Vec::new(),
            owner_changes_counted: 0,
        })
    }

    /// Closes the tables, adds the new jobs to the job count and, if given, moves the watermark.
    fn finish(self, txn: &WriteTransaction, watermark: Option<u64>) -> Result<(), StoreError> {
        let added = self.added;
        let refused = self.owner_changes_counted + self.owner_changes.len() as u64;
        drop(self);
        let mut meta = txn.open_table(META)?;
        let count = meta.get(JOB_COUNT_KEY)?.map(|v| v.value()).unwrap_or(0);
        meta.insert(JOB_COUNT_KEY, count + added)?;
        if refused > 0 {
            let before = meta.get(OWNER_CHANGE_REFUSED_KEY)?.map(|v| v.value()).unwrap_or(0);
            meta.insert(OWNER_CHANGE_REFUSED_KEY, before.saturating_add(refused))?;
        }
        if let Some(mark) = watermark {
            meta.insert(IMPORT_WATERMARK_KEY, mark)?;
        }
        Ok(())
    }

    /// The records refused since the last call because they would change a stored job's owner
    /// (each stays counted in `meta` under [`OWNER_CHANGE_REFUSED_KEY`] when the write commits).
    pub fn take_owner_changes(&mut self) -> Vec<OwnerChange> {
        self.owner_changes_counted += self.owner_changes.len() as u64;
        std::mem::take(&mut self.owner_changes)
    }

    /// Inserts or replaces `jobs` and `steps` (the steps of any jobs, in any order); returns
    /// for each job, in the order given, what it was before. A job given twice ends as the later.
    pub fn write(&mut self, jobs: &[&JobRecord], steps: &[&StepRecord]) -> Result<Vec<Before>, StoreError> {
        let mut order: Vec<usize> = (0..jobs.len()).collect();
        order.sort_by_key(|&i| jobs[i].id);
        let mut steps = steps.to_vec();
        steps.sort_by_key(|s| (s.job, s.step));
        // A step given twice: the later one (a stable sort keeps it last) wins.
        let steps: Vec<&StepRecord> = steps
            .iter()
            .enumerate()
            .filter(|(n, s)| steps.get(n + 1).is_none_or(|next| (next.job, next.step) != (s.job, s.step)))
            .map(|(_, s)| *s)
            .collect();
        let ops = merge_ops(jobs, &order, &steps);
        let mut before = vec![None; jobs.len()];
        let mut ends: Changes<(u64, u64), 2> = BTreeMap::new();
        let mut users: Changes<(&str, u64), 1> = BTreeMap::new();
        let mut carried: Option<Option<u64>> = None;
        // The end of the last copy of a job written in this call (a job given twice), if any.
        let mut accepted: Option<u64> = None;
        for block_ops in ops.chunk_by(|a, b| block_of(a.id) == block_of(b.id)) {
            let olds = self.write_block(jobs, block_ops)?;
            for (n, (op, (old_end, refused))) in block_ops.iter().zip(olds).enumerate() {
                let Some(i) = op.job else { continue };
                let job = jobs[i];
                let id = op.id;
                before[i] = old_end.map(|end| end.is_some());
                if !refused {
                    accepted = Some(job.end_at.unwrap_or(u64::MAX));
                    users.entry((job.user.as_str(), id / ID_BUCKET)).or_default().1.push([id]);
                }
                // The index entry stored now: the old value's, or for a job given twice (adjacent
                // after the sort) the one carried from its first copy, whose own is never written.
                let indexed = carried.take().unwrap_or(old_end.map(|e| e.unwrap_or(u64::MAX)));
                if block_ops.get(n + 1).is_some_and(|next| next.id == id) {
                    carried = Some(indexed);
                    continue;
                }
                // A refused copy leaves the index as the stored value (or an earlier copy) has it.
                let Some(end) = accepted.take() else { continue };
                if indexed != Some(end) {
                    if let Some(old) = indexed {
                        ends.entry(end_bucket(old, id)).or_default().0.push([old, id]);
                    }
                    ends.entry(end_bucket(end, id)).or_default().1.push([end, id]);
                }
            }
        }
        for (key, (remove, add)) in ends {
            let old = self.by_end.get(key)?.map(|v| v.value().to_vec());
            match postings::apply(old.as_deref(), &remove, &add)
                .map_err(|e| corrupt("jobs_by_end_buckets", key.0, e))?
            {
                Some(value) => self.by_end.insert(key, value.as_slice())?,
                None => self.by_end.remove(key)?,
            };
        }
        for (key, (_, add)) in users {
            let old = self.by_user.get(key)?.map(|v| v.value().to_vec());
            if let Some(value) =
                postings::apply(old.as_deref(), &[], &add).map_err(|e| corrupt("jobs_by_user_buckets", key.1, e))?
            {
                self.by_user.insert(key, value.as_slice())?;
            }
        }
        Ok(before)
    }

    /// Writes the ops of one block; returns for each op its job's old end time if it was stored,
    /// and whether the op was refused (a stored job given with another owner: kept as stored).
    fn write_block(&mut self, jobs: &[&JobRecord], ops: &[Op<'_>]) -> Result<Vec<Written>, StoreError> {
        let block = block_of(ops[0].id);
        let stored = self.blocks.get(block)?.map(|v| v.value().to_vec());
        let fresh = ops.windows(2).all(|w| w[0].id < w[1].id) && ops.iter().all(|op| op.job.is_some());
        let mut olds = Vec::with_capacity(ops.len());
        match stored {
            // The import's usual case: new jobs only, encoded straight into the block.
            None if fresh => {
                let mut builder = BlockBuilder::new(&mut self.buf);
                for op in ops {
                    if let Some(i) = op.job {
                        builder.push(op.id, |out| encode_job(jobs[i], op.steps, out));
                    }
                    olds.push((None, false));
                }
                self.added += ops.len() as u64;
            }
            stored => {
                let mut state: Vec<(u64, Vec<u8>)> = match &stored {
                    Some(value) => entries(block, value)
                        .map_err(|e| corrupt("job_blocks", block, e))?
                        .into_iter()
                        .map(|(id, job)| (id, job.to_vec()))
                        .collect(),
                    None => Vec::new(),
                };
                for op in ops {
                    let at = state.binary_search_by_key(&op.id, |(id, _)| *id);
                    let old = at.ok().map(|at| state[at].1.as_slice());
                    let record = match (op.job, old) {
                        (Some(i), Some(old)) => {
                            let stored = decode_job(old).map_err(|e| corrupt("jobs", op.id, e))?;
                            let new = jobs[i];
                            let uid_changed = stored.uid.is_some() && new.uid.is_some() && stored.uid != new.uid;
                            if stored.user != new.user || uid_changed {
                                self.owner_changes.push(OwnerChange {
                                    job: new.id,
                                    stored_user: stored.user,
                                    stored_uid: stored.uid,
                                    new_user: new.user.clone(),
                                    new_uid: new.uid,
                                });
                                olds.push((Some(stored.end_at), true));
                                continue;
                            }
                            Some(Cow::Borrowed(new))
                        }
                        (Some(i), None) => Some(Cow::Borrowed(jobs[i])),
                        (None, Some(old)) => Some(Cow::Owned(decode_job(old).map_err(|e| corrupt("jobs", op.id, e))?)),
                        (None, None) => None,
                    };
                    let Some(record) = record else {
                        tracing::debug!(job = op.id, steps = op.steps.len(), "steps without a stored job dropped");
                        olds.push((None, false));
                        continue;
                    };
                    let mut value = Vec::new();
                    let old_end = merged_value(&record, op.steps, old, &mut value)?;
                    olds.push((old_end, false));
                    match at {
                        Ok(at) => state[at].1 = value,
                        Err(at) => {
                            state.insert(at, (op.id, value));
                            self.added += 1;
                        }
                    }
                }
                let mut builder = BlockBuilder::new(&mut self.buf);
                for (id, value) in &state {
                    builder.push(*id, |out| out.extend_from_slice(value));
                }
            }
        }
        self.blocks.insert(block, self.buf.as_slice())?;
        Ok(olds)
    }
}

/// The jobs (in id order) and the step groups, as one list of ops by id: a job's steps go with
/// its last copy; steps of jobs not given become ops of their own.
fn merge_ops<'a>(jobs: &[&JobRecord], order: &[usize], steps: &'a [&'a StepRecord]) -> Vec<Op<'a>> {
    let mut groups = steps.chunk_by(|a, b| a.job == b.job).peekable();
    let mut ops = Vec::with_capacity(order.len());
    for (n, &i) in order.iter().enumerate() {
        let id = jobs[i].id;
        while let Some(group) = groups.next_if(|g| g[0].job < id) {
            ops.push(Op { id: group[0].job.0, job: None, steps: group });
        }
        let last_copy = order.get(n + 1).is_none_or(|&next| jobs[next].id != id);
        let steps = if last_copy { groups.next_if(|g| g[0].job == id).unwrap_or_default() } else { &[] };
        ops.push(Op { id: id.0, job: Some(i), steps });
    }
    ops.extend(groups.map(|group| Op { id: group[0].job.0, job: None, steps: group }));
    ops
}

/// Encodes `job` with `steps` and the steps of its old value that `steps` lacks; returns the old
/// value's end time if there was one.
fn merged_value(
    job: &JobRecord,
    steps: &[&StepRecord],
    old: Option<&[u8]>,
    out: &mut Vec<u8>,
) -> Result<Option<Option<u64>>, StoreError> {
    let Some(old) = old else {
        encode_job(job, steps, out);
        return Ok(None);
    };
    let id = job.id.0;
    let old_end = job_end(old).map_err(|e| corrupt("jobs", id, e))?;
    let old_steps = decode_job_steps(job.id, old).map_err(|e| corrupt("jobs", id, e))?;
    let mut merged: Vec<&StepRecord> = steps.to_vec();
    merged.extend(old_steps.iter().filter(|o| steps.binary_search_by_key(&o.step, |s| s.step).is_err()));
    merged.sort_by_key(|s| s.step);
    encode_job(job, &merged, out);
    Ok(Some(old_end))
}

fn corrupt(table: &'static str, key: u64, source: super::RecordError) -> StoreError {
    StoreError::Corrupt { table, key: key.to_string(), source }
}
