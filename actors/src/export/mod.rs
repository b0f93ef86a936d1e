//! Export of per-job/step series to the time-series databases sites already run: Prometheus
//! remote-write ([`remote_write`]) to `[export] remote_write_url`, and the Prometheus text of the
//! running jobs' latest samples (`GET /metrics/jobs`, [`series::Live::render`]).
//!
//! Only what the store acknowledged is exported: the ingest handler hands the rows a report's
//! commit stored (`Store::store_checked_batch_rows`) to the bounded [`Intake`], which never
//! blocks ingest (when full, the oldest rows are dropped and counted). The exporter actor
//! (`actors::exporter`) drains it, adds each job's user and account, and sends. Labels are
//! bounded: job, step, node, user, account (and a GPU's index): never a process id, a job name
//! or a command, so the number of series is the number of job steps times nodes.
//!
//! Everything here is pure (no actix, no I/O): the actor owns the clock, the store and the
//! network.

pub mod remote_write;
pub mod series;

use crate::store::StoredRows;
use std::collections::VecDeque;
use std::sync::Mutex;

/// The rows one report's commit stored, from `node`.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrived {
    pub node: String,
    pub rows: StoredRows,
    /// Unix time the report was stored.
    pub received_at: u64,
}

impl Arrived {
    /// Samples and GPU readings in it.
    pub fn len(&self) -> usize {
        self.rows.samples.len() + self.rows.gpus.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The queue from ingest to the exporter, bounded by rows: pushing never waits for the
/// exporter; beyond `max_rows` the oldest reports' rows are dropped (and counted by the caller).
#[derive(Debug)]
pub struct Intake {
    queue: Mutex<(VecDeque<Arrived>, usize)>,
    max_rows: usize,
}

impl Intake {
    pub fn new(max_rows: usize) -> Intake {
        Intake { queue: Mutex::new((VecDeque::new(), 0)), max_rows: max_rows.max(1) }
    }

    /// Queues `arrived`; returns how many rows were dropped to make room (the oldest first; a
    /// report larger than the whole queue keeps its newest rows' report only if it fits).
    pub fn push(&self, arrived: Arrived) -> u64 {
        if arrived.is_empty() {
            return 0;
        }
        let Ok(mut q) = self.queue.lock() else { return arrived.len() as u64 };
        let (queue, rows) = &mut *q;
        *rows += arrived.len();
        queue.push_back(arrived);
        let mut dropped = 0;
        while *rows > self.max_rows {
            let Some(old) = queue.pop_front() else { break };
            *rows -= old.len();
            dropped += old.len() as u64;
        }
        dropped
    }

    /// Everything queued, oldest first.
    pub fn drain(&self) -> Vec<Arrived> {
        let Ok(mut q) = self.queue.lock() else { return Vec::new() };
        q.1 = 0;
        q.0.drain(..).collect()
    }

    /// Rows queued.
    pub fn rows(&self) -> usize {
        self.queue.lock().map(|q| q.1).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobId, StepId};
    use crate::sample::StepSample;

    fn arrived(job: u64, n: u64) -> Arrived {
        let samples = (0..n).map(|i| (JobId(job), StepId(0), StepSample { at: i, ..Default::default() })).collect();
        Arrived { node: "n1".into(), rows: StoredRows { samples, gpus: vec![] }, received_at: 0 }
    }

    #[test]
    fn a_full_intake_drops_the_oldest_rows_and_says_how_many() {
        let intake = Intake::new(10);
        assert_eq!(intake.push(arrived(1, 4)), 0);
        assert_eq!(intake.push(arrived(2, 4)), 0);
        assert_eq!(intake.push(arrived(3, 4)), 4, "job 1's rows make room");
        assert_eq!(intake.rows(), 8);
        let jobs: Vec<u64> = intake.drain().iter().map(|a| a.rows.samples[0].0 .0).collect();
        assert_eq!(jobs, [2, 3]);
        assert_eq!(intake.rows(), 0);
        assert_eq!(intake.push(arrived(4, 0)), 0);
        assert!(intake.drain().is_empty());
    }
}
