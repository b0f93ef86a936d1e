//! Writing jobs and steps inside an open write transaction: the accounting import's hot path.
//!
//! A [`JobWriter`] holds the four tables a job touches (`jobs`, `job_steps`, `jobs_by_end`,
//! `jobs_by_user`) open for the whole transaction, so the importer can write a window part by
//! part (parsing the next part meanwhile) and commit it once with its watermark. Per job it does
//! one insert per table and no read: the job insert hands back the old value, whose end time
//! (read from its first bytes, see `job_codec`) says whether the end-time index entry moves.
//! Keys are inserted in key order (jobs and steps by id, index entries sorted), which keeps each
//! B-tree insert on the pages the previous one touched.
//!
//! Upserts keep what the per-step table did: a job's value is replaced; its steps are replaced
//! step by step (a step stored before and missing from a later import is kept), and a job
//! imported without steps keeps the steps it had.

use super::job_codec::{decode_steps, encode_job, encode_steps, job_end};
use super::tables::{JOBS, JOBS_BY_END, JOBS_BY_USER, JOB_STEPS};
use super::StoreError;
use crate::job::{JobId, JobRecord, StepRecord};
use redb::{Table, WriteTransaction};

/// What a written job was before the write: `None` if new, else whether it had ended.
pub type Before = Option<bool>;

/// The job tables of one write transaction, open for writing.
pub struct JobWriter<'txn> {
    jobs: Table<'txn, u64, &'static [u8]>,
    steps: Table<'txn, u64, &'static [u8]>,
    by_end: Table<'txn, (u64, u64), ()>,
    by_user: Table<'txn, (&'static str, u64), ()>,
    buf: Vec<u8>,
}

impl<'txn> JobWriter<'txn> {
    pub fn open(txn: &'txn WriteTransaction) -> Result<Self, StoreError> {
        Ok(JobWriter {
            jobs: txn.open_table(JOBS)?,
            steps: txn.open_table(JOB_STEPS)?,
            by_end: txn.open_table(JOBS_BY_END)?,
            by_user: txn.open_table(JOBS_BY_USER)?,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Inserts or replaces `jobs` and `steps` (the steps of any jobs, in any order); returns
    /// for each job, in the order given, what it was before. A job given twice ends as the later.
    pub fn write(&mut self, jobs: &[&JobRecord], steps: &[&StepRecord]) -> Result<Vec<Before>, StoreError> {
        let mut order: Vec<usize> = (0..jobs.len()).collect();
        order.sort_by_key(|&i| jobs[i].id);
        let mut before = vec![None; jobs.len()];
        let (mut gone, mut ends, mut users) = (Vec::new(), Vec::with_capacity(jobs.len()), Vec::new());
        users.reserve(jobs.len());
        let mut carried: Option<Option<u64>> = None;
        for (n, &i) in order.iter().enumerate() {
            let job = jobs[i];
            let id = job.id.0;
            self.buf.clear();
            encode_job(job, &mut self.buf);
            let old_end = match self.jobs.insert(id, self.buf.as_slice())? {
                Some(old) => Some(job_end(old.value()).map_err(|source| corrupt("jobs", id, source))?),
                None => None,
            };
            before[i] = old_end.map(|end| end.is_some());
            let end = job.end_at.unwrap_or(u64::MAX);
            // The index entry stored now: the old value's, or for a job given twice (adjacent
            // after the sort) the one carried from its first copy, whose own is never written.
            let indexed = carried.take().unwrap_or(old_end.map(|e| e.unwrap_or(u64::MAX)));
            if order.get(n + 1).is_some_and(|&next| jobs[next].id.0 == id) {
                carried = Some(indexed);
            } else if indexed != Some(end) {
                gone.extend(indexed.map(|old| (old, id)));
                ends.push((end, id));
            }
            users.push((job.user.as_str(), id));
        }
        self.write_steps(steps)?;
        gone.sort_unstable();
        for key in gone {
            self.by_end.remove(key)?;
        }
        ends.sort_unstable();
        for key in ends {
            self.by_end.insert(key, ())?;
        }
        users.sort_unstable();
        users.dedup();
        for key in users {
            self.by_user.insert(key, ())?;
        }
        Ok(before)
    }

    /// One `job_steps` value per job, steps in step-id order; merged with the stored steps when
    /// the job had some.
    fn write_steps(&mut self, steps: &[&StepRecord]) -> Result<(), StoreError> {
        let mut sorted = steps.to_vec();
        sorted.sort_by_key(|s| (s.job, s.step));
        // A step given twice: the later one (a stable sort keeps it last) wins.
        let keep: Vec<&StepRecord> = sorted
            .iter()
            .enumerate()
            .filter(|(n, s)| sorted.get(n + 1).is_none_or(|next| (next.job, next.step) != (s.job, s.step)))
            .map(|(_, s)| *s)
            .collect();
        for group in keep.chunk_by(|a, b| a.job == b.job) {
            let job = group[0].job;
            self.buf.clear();
            encode_steps(group, &mut self.buf);
            let old = match self.steps.insert(job.0, self.buf.as_slice())? {
                Some(old) => decode_steps(job, old.value()).map_err(|source| corrupt("job_steps", job.0, source))?,
                None => continue,
            };
            let mut merged: Vec<&StepRecord> = group.to_vec();
            merged.extend(old.iter().filter(|o| group.binary_search_by_key(&o.step, |s| s.step).is_err()));
            if merged.len() > group.len() {
                merged.sort_by_key(|s| s.step);
                self.buf.clear();
                encode_steps(&merged, &mut self.buf);
                self.steps.insert(job.0, self.buf.as_slice())?;
            }
        }
        Ok(())
    }
}

fn corrupt(table: &'static str, key: u64, source: super::RecordError) -> StoreError {
    StoreError::Corrupt { table, key: key.to_string(), source }
}

/// The steps of one job from its `job_steps` value.
pub fn steps_of(job: JobId, value: &[u8]) -> Result<Vec<StepRecord>, StoreError> {
    decode_steps(job, value).map_err(|source| corrupt("job_steps", job.0, source))
}
