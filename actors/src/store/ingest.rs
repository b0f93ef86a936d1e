//! Storing scraper reports exactly once.
//!
//! A report's samples, GPU readings, applications and its `(sender, report id)` mark in
//! `reports_seen` are written in ONE transaction: a crash before the commit stores nothing (the
//! scraper still has the report spooled and resends it), a crash after it has stored everything
//! and the mark (the resend is recognised and only acknowledged). The server acknowledges a
//! report only after this commit returns.

use super::tables::*;
use super::{decode_block, encode_block, intern_node, merge_by_time, Store, StoreError};
use crate::job::{JobId, StepId};
use crate::sample::{GpuReading, StepSample};
use redb::{ReadableTable, WriteTransaction};
use std::collections::BTreeMap;

/// What a report contributes to the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportContent {
    pub samples: Vec<(JobId, StepId, StepSample)>,
    pub gpus: Vec<(JobId, StepId, GpuReading)>,
    pub apps: Vec<(JobId, StepId, String)>,
}

/// Whether a report was stored now or had been stored before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    New,
    Duplicate,
}

impl Store {
    /// Stores a report of `node` once: if `(sender, report_id)` was seen, nothing is written.
    pub fn store_report_once(
        &self,
        sender: &str,
        report_id: u64,
        received_at: u64,
        node: &str,
        content: &ReportContent,
    ) -> Result<Stored, StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut seen = txn.open_table(REPORTS_SEEN)?;
            if seen.get((sender, report_id))?.is_some() {
                return Ok(Stored::Duplicate); // the transaction is dropped: nothing written
            }
            seen.insert((sender, report_id), received_at)?;
        }
        write_samples(&txn, node, &content.samples)?;
        write_gpu_readings(&txn, node, &content.gpus)?;
        {
            let mut table = txn.open_table(APP_USAGE)?;
            for (job, step, app) in &content.apps {
                table.insert((job.0, step.0, app.as_str()), ())?;
            }
        }
        txn.commit()?;
        Ok(Stored::New)
    }

    /// Whether a report was stored.
    pub fn report_seen(&self, sender: &str, report_id: u64) -> Result<bool, StoreError> {
        let txn = self.db.begin_read()?;
        let seen = txn.open_table(REPORTS_SEEN)?.get((sender, report_id))?.is_some();
        Ok(seen)
    }

    /// Adds `by` to a counter in `meta` (e.g. rejected reports), returning the new value.
    pub fn bump_counter(&self, key: &str, by: u64) -> Result<u64, StoreError> {
        let txn = self.db.begin_write()?;
        let value = {
            let mut meta = txn.open_table(META)?;
            let value = meta.get(key)?.map(|v| v.value()).unwrap_or(0).saturating_add(by);
            meta.insert(key, value)?;
            value
        };
        txn.commit()?;
        Ok(value)
    }
}

/// Merges step samples of one node into their hour blocks inside `txn`.
pub(super) fn write_samples(
    txn: &WriteTransaction,
    node: &str,
    samples: &[(JobId, StepId, StepSample)],
) -> Result<(), StoreError> {
    if samples.is_empty() {
        return Ok(());
    }
    let node_id = intern_node(txn, node)?;
    let mut grouped: BTreeMap<(u64, u32, u64), Vec<StepSample>> = BTreeMap::new();
    for (job, step, sample) in samples {
        grouped.entry((job.0, step.0, block_start(sample.at))).or_default().push(sample.clone());
    }
    let mut blocks = txn.open_table(SAMPLE_BLOCKS)?;
    let mut hours = txn.open_table(SAMPLE_HOURS)?;
    for ((job, step, hour), new) in grouped {
        let key = (job, step, node_id, hour);
        let mut merged: Vec<StepSample> = match blocks.get(key)? {
            Some(v) => decode_block(hour, v.value()).map_err(|source| StoreError::CorruptBlock {
                table: "sample_blocks",
                key: format!("{key:?}"),
                source,
            })?,
            None => Vec::new(),
        };
        merge_by_time(&mut merged, new, |s| s.at);
        blocks.insert(key, encode_block(hour, &merged).as_slice())?;
        hours.insert((hour, job, step, node_id), ())?;
    }
    Ok(())
}

/// Merges GPU readings of one node into their hour blocks inside `txn`.
pub(super) fn write_gpu_readings(
    txn: &WriteTransaction,
    node: &str,
    readings: &[(JobId, StepId, GpuReading)],
) -> Result<(), StoreError> {
    if readings.is_empty() {
        return Ok(());
    }
    let node_id = intern_node(txn, node)?;
    let mut grouped: BTreeMap<(u64, u32, u64), Vec<GpuReading>> = BTreeMap::new();
    for (job, step, reading) in readings {
        grouped.entry((job.0, step.0, block_start(reading.at))).or_default().push(reading.clone());
    }
    let mut blocks = txn.open_table(GPU_BLOCKS)?;
    for ((job, step, hour), new) in grouped {
        let key = (job, step, node_id, hour);
        let mut merged: Vec<GpuReading> = match blocks.get(key)? {
            Some(v) => decode_block(hour, v.value()).map_err(|source| StoreError::CorruptBlock {
                table: "gpu_blocks",
                key: format!("{key:?}"),
                source,
            })?,
            None => Vec::new(),
        };
        merged.retain(|old| !new.iter().any(|n| n.at == old.at && n.index == old.index));
        merged.extend(new);
        merged.sort_by_key(|r| (r.at, r.index));
        blocks.insert(key, encode_block(hour, &merged).as_slice())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_stored_once_with_its_mark() {
        let dir = std::env::temp_dir().join(format!("turingwatch-store-ingest-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&dir.join("db.redb")).unwrap();
        let content = ReportContent {
            samples: (0..3)
                .map(|i| (JobId(7), StepId::BATCH, StepSample { at: 1_000 + i, cpu_user_cs: i, ..Default::default() }))
                .collect(),
            gpus: vec![(JobId(7), StepId::BATCH, GpuReading { at: 1_000, index: 0, ..Default::default() })],
            apps: vec![(JobId(7), StepId::BATCH, "python3".into())],
        };
        assert!(!store.report_seen("n2", 42).unwrap());
        assert_eq!(store.store_report_once("n2", 42, 5, "n2", &content).unwrap(), Stored::New);
        assert_eq!(store.store_report_once("n2", 42, 6, "n2", &content).unwrap(), Stored::Duplicate);
        assert!(store.report_seen("n2", 42).unwrap());
        let samples = store.samples_of_job(JobId(7)).unwrap();
        assert_eq!(samples.values().map(Vec::len).sum::<usize>(), 3);
        assert_eq!(store.gpu_readings_of_job(JobId(7)).unwrap().values().map(Vec::len).sum::<usize>(), 1);
        assert_eq!(store.apps_of_job(JobId(7)).unwrap(), [(StepId::BATCH, "python3".to_string())]);
        assert_eq!(store.bump_counter("ingest_rejected_steps", 2).unwrap(), 2);
        assert_eq!(store.bump_counter("ingest_rejected_steps", 1).unwrap(), 3);
    }
}
