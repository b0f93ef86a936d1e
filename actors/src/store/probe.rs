//! A store writer for crash tests: commits in a loop and says what it committed.
//!
//! `turingwatch debug store-writer --db PATH` runs this. After each commit it prints
//! `committed <n>` and flushes, so a test that kills it with SIGKILL at any moment knows which
//! writes were acknowledged and must be present when the file is reopened.

use super::{Store, StoreError};
use crate::job::{JobId, JobRecord, MemRequest, StepId, Usage};
use crate::sample::StepSample;
use std::io::Write;
use std::path::Path;

/// Samples written with each probe job.
pub const SAMPLES_PER_ROUND: usize = 20;

/// Commits forever (or `rounds` times): each round one job, a batch of its samples, and the
/// round number as watermark — three transactions, so kills land between them too.
pub fn run(db: &Path, rounds: Option<u64>) -> Result<(), StoreError> {
    let store = Store::open(db)?;
    // Resume after the last round fully committed (a round cut short is simply redone:
    // job upserts and sample appends are idempotent).
    let first = store.meta(super::tables::IMPORT_WATERMARK_KEY)?.unwrap_or(0) + 1;
    let mut out = std::io::stdout().lock();
    let mut n = first;
    loop {
        if rounds.is_some_and(|r| n - first >= r) {
            return Ok(());
        }
        store.upsert_jobs(&[probe_job(n)], &[], None)?;
        let samples: Vec<_> = (0..SAMPLES_PER_ROUND as u64)
            .map(|i| {
                (
                    JobId(n),
                    StepId::BATCH,
                    StepSample { at: 1_000_000 + n * 100 + i, cpu_user_cs: i, ..Default::default() },
                )
            })
            .collect();
        store.append_samples("probe", &samples)?;
        store.set_meta(super::tables::IMPORT_WATERMARK_KEY, n)?;
        // The acknowledgement: only now is `n` promised to survive.
        if writeln!(out, "committed {n}").and_then(|_| out.flush()).is_err() {
            return Ok(());
        }
        n += 1;
    }
}

/// The job the probe writes as round `n` (tests rebuild it to compare).
pub fn probe_job(n: u64) -> JobRecord {
    JobRecord {
        name: format!("probe-{n}"),
        uid: Some(0),
        node_list: "probe".into(),
        req_mem: Some(MemRequest::PerNode(1 << 20)),
        req_mem_bytes: Some(1 << 20),
        usage: Usage { total_cpu_ms: n, user_cpu_ms: n, ..Usage::default() },
        imported_at: n,
        ..JobRecord::finished(n, "probe", n, 1)
    }
}
