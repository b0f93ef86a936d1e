//! Writing jobs and steps inside an open write transaction: the accounting import's hot path.
//!
//! A [`JobWriter`] holds the job tables (`jobs`, and the bucketed indexes `jobs_by_end_buckets`
//! and `jobs_by_user_buckets`, see `postings`) open for the whole transaction, so the importer
//! can write a window part by part (parsing the next part meanwhile) and commit it once with its
//! watermark. Per job it does one insert and no read: a job's steps are part of its value, and
//! the insert hands back the old value, whose end time (read from its first bytes, see
//! `job_codec`) says whether the job's end-time index entry moves. Each index bucket a part
//! touches is rewritten once. Jobs are inserted in id order, which keeps each B-tree insert on
//! the pages the previous one touched.
//!
//! Upserts keep what the per-step table of schema 2 did: a job's record is replaced; its steps
//! are replaced step by step (a step stored before and missing from a later import is kept), and
//! a job imported without steps keeps the steps it had. Steps given without their job are added
//! to the stored job, or dropped if there is none.

use super::job_codec::{decode_job, decode_job_steps, encode_job, job_end};
use super::postings::{self, end_bucket, ID_BUCKET};
use super::tables::{JOBS, JOBS_BY_END_BUCKETS, JOBS_BY_USER_BUCKETS};
use super::StoreError;
use crate::job::{JobId, JobRecord, StepRecord};
use redb::{ReadableTable, Table, WriteTransaction};
use std::collections::BTreeMap;

/// What a written job was before the write: `None` if new, else whether it had ended.
pub type Before = Option<bool>;

/// The job tables of one write transaction, open for writing.
pub struct JobWriter<'txn> {
    jobs: Table<'txn, u64, &'static [u8]>,
    by_end: Table<'txn, (u64, u64), &'static [u8]>,
    by_user: Table<'txn, (&'static str, u64), &'static [u8]>,
    buf: Vec<u8>,
}

/// Index entries to remove and add, by bucket.
type Changes<K, const N: usize> = BTreeMap<K, (Vec<[u64; N]>, Vec<[u64; N]>)>;

impl<'txn> JobWriter<'txn> {
    pub fn open(txn: &'txn WriteTransaction) -> Result<Self, StoreError> {
        Ok(JobWriter {
            jobs: txn.open_table(JOBS)?,
            by_end: txn.open_table(JOBS_BY_END_BUCKETS)?,
            by_user: txn.open_table(JOBS_BY_USER_BUCKETS)?,
            buf: Vec::with_capacity(4096),
        })
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
        let mut groups = steps.chunk_by(|a, b| a.job == b.job).peekable();
        let mut before = vec![None; jobs.len()];
        let mut ends: Changes<(u64, u64), 2> = BTreeMap::new();
        let mut users: Changes<(&str, u64), 1> = BTreeMap::new();
        let mut carried: Option<Option<u64>> = None;
        for (n, &i) in order.iter().enumerate() {
            let job = jobs[i];
            let id = job.id.0;
            // Steps of jobs not in this write go to the stored job, if any.
            while let Some(group) = groups.next_if(|g| g[0].job < job.id) {
                self.add_steps(group)?;
            }
            let given = groups.next_if(|g| g[0].job == job.id).unwrap_or_default();
            let old_end = self.put(job, given)?;
            before[i] = old_end.map(|end| end.is_some());
            let end = job.end_at.unwrap_or(u64::MAX);
            // The index entry stored now: the old value's, or for a job given twice (adjacent
            // after the sort) the one carried from its first copy, whose own is never written.
            let indexed = carried.take().unwrap_or(old_end.map(|e| e.unwrap_or(u64::MAX)));
            if order.get(n + 1).is_some_and(|&next| jobs[next].id.0 == id) {
                carried = Some(indexed);
            } else if indexed != Some(end) {
                if let Some(old) = indexed {
                    ends.entry(end_bucket(old, id)).or_default().0.push([old, id]);
                }
                ends.entry(end_bucket(end, id)).or_default().1.push([end, id]);
            }
            users.entry((job.user.as_str(), id / ID_BUCKET)).or_default().1.push([id]);
        }
        for group in groups {
            self.add_steps(group)?;
        }
        for (key, (remove, add)) in ends {
            let old = self.by_end.get(key)?.map(|v| v.value().to_vec());
            match postings::apply(old.as_deref(), &remove, &add).map_err(|e| corrupt("jobs_by_end_buckets", key.0, e))? {
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

    /// Stores a job with its given steps (merged with the steps it had); returns its old end
    /// time if it was stored before.
    fn put(&mut self, job: &JobRecord, steps: &[&StepRecord]) -> Result<Option<Option<u64>>, StoreError> {
        let id = job.id.0;
        self.buf.clear();
        encode_job(job, steps, &mut self.buf);
        let old_steps = match self.jobs.insert(id, self.buf.as_slice())? {
            None => return Ok(None),
            Some(old) => {
                let old = old.value();
                let end = job_end(old).map_err(|e| corrupt("jobs", id, e))?;
                (end, decode_job_steps(job.id, old).map_err(|e| corrupt("jobs", id, e))?)
            }
        };
        let (old_end, old_steps) = old_steps;
        let mut merged: Vec<&StepRecord> = steps.to_vec();
        merged.extend(old_steps.iter().filter(|o| steps.binary_search_by_key(&o.step, |s| s.step).is_err()));
        if merged.len() > steps.len() {
            merged.sort_by_key(|s| s.step);
            self.buf.clear();
            encode_job(job, &merged, &mut self.buf);
            self.jobs.insert(id, self.buf.as_slice())?;
        }
        Ok(Some(old_end))
    }

    /// Adds steps to a stored job that is not part of this write.
    fn add_steps(&mut self, steps: &[&StepRecord]) -> Result<(), StoreError> {
        let job = steps[0].job;
        let stored = self.jobs.get(job.0)?.map(|v| v.value().to_vec());
        match stored {
            Some(value) => {
                let record = decode_job(&value).map_err(|e| corrupt("jobs", job.0, e))?;
                self.put(&record, steps)?;
            }
            None => tracing::debug!(job = job.0, steps = steps.len(), "steps without a stored job dropped"),
        }
        Ok(())
    }
}

fn corrupt(table: &'static str, key: u64, source: super::RecordError) -> StoreError {
    StoreError::Corrupt { table, key: key.to_string(), source }
}

/// The steps stored with one job.
pub fn steps_of(job: JobId, value: &[u8]) -> Result<Vec<StepRecord>, StoreError> {
    decode_job_steps(job, value).map_err(|source| corrupt("jobs", job.0, source))
}
