//! Group commit of scraper reports: reports that arrive while a commit is running are stored
//! together in the next one.
//!
//! Why: each commit makes redb write its changed pages and sync the file; at hundreds of
//! reports a second that sync, not the checks, is what bounds ingest. One thread owns the
//! writing: it takes the first report waiting, then every other one already queued (at most
//! `MAX_GROUP`), stores them in one transaction (`Store::store_reports`) and answers each. With
//! one report at a time this is exactly one commit per report, with no added wait: a group
//! forms only from reports that would otherwise have waited for the store's write lock.
//!
//! Every answer is sent after the commit returned, so an acknowledged report is durable. If a
//! group fails, each of its reports is stored alone, so one report cannot fail the others; each
//! then gets its own outcome.

use crate::sample::plausible::Limits;
use crate::store::{BatchContent, Checks, Ingested, ScraperReport, Store, StoreError, StoredRows};
use std::sync::Arc;

/// Most reports stored in one transaction.
pub const MAX_GROUP: usize = 64;

/// A report handed to the writing thread, with everything it needs.
#[derive(Debug)]
pub struct Pending {
    pub sender: String,
    pub report_id: u64,
    pub received_at: u64,
    pub node: String,
    pub content: BatchContent,
    pub limits: Limits,
    pub from_service: bool,
    pub keep: bool,
}

type Answer = Result<(Ingested, StoredRows), StoreError>;

struct Job {
    report: Pending,
    reply: tokio::sync::oneshot::Sender<Answer>,
}

/// Why a report was not stored by the group writer.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("the report queue is full")]
    Full,
    #[error("the writing thread is gone")]
    Gone,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The handle ingest workers submit reports to; the thread ends when the last handle is dropped.
#[derive(Clone)]
pub struct GroupCommitter {
    queue: crossbeam::channel::Sender<Job>,
}

impl GroupCommitter {
    /// Starts the writing thread for `store`, with room for `capacity` reports waiting.
    pub fn start(store: Arc<Store>, capacity: usize) -> std::io::Result<GroupCommitter> {
        let (queue, jobs) = crossbeam::channel::bounded::<Job>(capacity);
        std::thread::Builder::new().name("group-commit".into()).spawn(move || write_loop(&store, &jobs))?;
        Ok(GroupCommitter { queue })
    }

    /// Stores `report` (in a group with others waiting) and answers after the commit.
    pub async fn store(&self, report: Pending) -> Result<(Ingested, StoredRows), CommitError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.queue.try_send(Job { report, reply }).map_err(|err| match err {
            crossbeam::channel::TrySendError::Full(_) => CommitError::Full,
            crossbeam::channel::TrySendError::Disconnected(_) => CommitError::Gone,
        })?;
        Ok(answer.await.map_err(|_| CommitError::Gone)??)
    }
}

fn write_loop(store: &Store, jobs: &crossbeam::channel::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let answers = store_group(store, &group);
        for (job, answer) in group.into_iter().zip(answers) {
            // A worker that gave up waiting has dropped its receiver: nothing to tell.
            let _ = job.reply.send(answer);
        }
    }
}

/// Stores `group` in one transaction; if that fails, each report alone.
fn store_group(store: &Store, group: &[Job]) -> Vec<Answer> {
    let reports: Vec<ScraperReport<'_>> = group.iter().map(|job| as_report(&job.report)).collect();
    match store.store_reports(&reports) {
        Ok(outcomes) if outcomes.len() == reports.len() => outcomes.into_iter().map(Ok).collect(),
        Ok(_) => reports.iter().map(|r| store_alone(store, r)).collect(),
        Err(err) if reports.len() > 1 => {
            tracing::warn!(error = %err, reports = reports.len(), "a group of reports could not be stored together; storing each alone");
            reports.iter().map(|r| store_alone(store, r)).collect()
        }
        Err(err) => vec![Err(err)],
    }
}

fn store_alone(store: &Store, report: &ScraperReport<'_>) -> Answer {
    let mut outcomes = store.store_reports(std::slice::from_ref(report))?;
    outcomes.pop().ok_or(StoreError::Worker("no outcome for a stored report"))
}

fn as_report(pending: &Pending) -> ScraperReport<'_> {
    ScraperReport {
        sender: &pending.sender,
        report_id: pending.report_id,
        received_at: pending.received_at,
        node: &pending.node,
        content: &pending.content,
        checks: Checks { limits: &pending.limits, from_service: pending.from_service, plausibility: true },
        keep: pending.keep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobId, StepId};
    use crate::sample::StepSample;
    use crate::store::Stored;

    fn pending(sender: &str, id: u64, job: u64, at: u64) -> Pending {
        let sample = StepSample { at, cpus: 1, processes: 1, threads: 1, ..StepSample::default() };
        Pending {
            sender: sender.into(),
            report_id: id,
            received_at: at,
            node: "n1".into(),
            content: BatchContent { samples: vec![(JobId(job), StepId(0), sample)], ..BatchContent::default() },
            limits: Limits::default(),
            from_service: true,
            keep: true,
        }
    }

    #[test]
    fn reports_submitted_together_are_each_stored_once_and_answered_in_order() {
        let dir = std::env::temp_dir().join(format!("tw-group-commit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = Arc::new(Store::open(&dir.join("db.redb")).unwrap());
        let committer = GroupCommitter::start(Arc::clone(&store), 256).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let answers = runtime.block_on(async {
            let mut waiting = Vec::new();
            for i in 0..200u64 {
                // Report 7 is sent twice: the second copy is a duplicate, in or out of its group.
                let id = if i == 150 { 7 } else { i };
                let c = committer.clone();
                waiting
                    .push(tokio::spawn(async move { c.store(pending("n1/0", id, 1_000 + id, 1_800_000_000)).await }));
            }
            let mut answers = Vec::new();
            for w in waiting {
                answers.push(w.await.unwrap().unwrap());
            }
            answers
        });
        for (i, (ingested, rows)) in answers.iter().enumerate() {
            if i == 150 {
                assert_eq!(ingested.stored, Stored::Duplicate);
                assert!(rows.samples.is_empty());
            } else {
                assert_eq!(ingested.stored, Stored::New, "report {i}");
                assert_eq!(ingested.samples, 1, "report {i}");
                assert_eq!(rows.samples[0].0, JobId(1_000 + i as u64));
            }
        }
        assert_eq!(store.reports_seen_count().unwrap(), 200 - 1);
        for i in [0u64, 7, 199] {
            assert!(store.report_seen("n1/0", i).unwrap(), "report {i} marked");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_report_with_a_name_beyond_bounds_in_a_group_does_not_stop_the_others() {
        let dir = std::env::temp_dir().join(format!("tw-group-commit-names-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&dir.join("db.redb")).unwrap();
        let long = "x".repeat(100_000);
        let group = [pending("n1/0", 1, 11, 1_800_000_000), pending(&long, 2, 12, 1_800_000_000)];
        let jobs: Vec<ScraperReport<'_>> = group.iter().map(as_report).collect();
        let outcomes = store.store_reports(&jobs).unwrap();
        assert_eq!(outcomes[0].0.samples, 1);
        assert_eq!(outcomes[1].0.samples, 0);
        assert_eq!(outcomes[1].0.refused.total(), 1);
        assert!(store.report_seen("n1/0", 1).unwrap());
        assert!(!store.report_seen(&long, 2).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
