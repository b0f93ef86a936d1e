//! Storing samples, GPU readings and applications, and scraper reports exactly once.
//!
//! Samples are kept in hour blocks per series (`sample_blocks`, `gpu_blocks`, keyed by job,
//! step, node, hour): storing merges the new samples into their blocks, so a resent sample
//! replaces the one stored. Node names are interned (`nodes`, `node_names`).
//!
//! A report's samples, GPU readings, applications and its `(sender, report id)` mark in
//! `reports_seen` are written in ONE transaction: a crash before the commit stores nothing (the
//! scraper still has the report spooled and resends it), a crash after it has stored everything
//! and the mark (the resend is recognised and only acknowledged). The server acknowledges a
//! report only after this commit returns.

use super::tables::*;
use super::{decode_block, encode_block, Store, StoreError};
use crate::job::{JobId, StepId};
use crate::sample::{GpuReading, StepSample};
use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};
use std::collections::BTreeMap;

/// What a report contributes to the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportContent {
    pub samples: Vec<(JobId, StepId, StepSample)>,
    pub gpus: Vec<(JobId, StepId, GpuReading)>,
    pub apps: Vec<(JobId, StepId, String)>,
}

/// The size of a block table: its values and redb's pages for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockStats {
    pub blocks: u64,
    /// Bytes of encoded block values.
    pub value_bytes: u64,
    pub leaf_pages: u64,
    pub stored_bytes: u64,
    pub metadata_bytes: u64,
    pub fragmented_bytes: u64,
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
        self.with_db(|db| {
            let txn = db.begin_write()?;
            {
                let mut seen = txn.open_table(REPORTS_SEEN)?;
                if seen.get((sender, report_id))?.is_some() {
                    return Ok(Stored::Duplicate); // the transaction is dropped: nothing written
                }
                seen.insert((sender, report_id), received_at)?;
            }
            write_samples(&txn, node, &content.samples)?;
            write_gpu_readings(&txn, node, &content.gpus)?;
            write_apps(&txn, &content.apps)?;
            txn.commit()?;
            Ok(Stored::New)
        })
    }

    /// Stores step samples of one node. Samples are merged into their hour blocks; a sample whose
    /// (series, time) is already stored replaces it, so a resent sample is stored once.
    pub fn append_samples(&self, node: &str, samples: &[(JobId, StepId, StepSample)]) -> Result<(), StoreError> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            write_samples(&txn, node, samples)?;
            txn.commit()?;
            Ok(())
        })
    }

    /// Records applications seen in steps.
    pub fn add_apps(&self, apps: &[(JobId, StepId, String)]) -> Result<(), StoreError> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            write_apps(&txn, apps)?;
            txn.commit()?;
            Ok(())
        })
    }

    /// How much room the sample blocks take (for `benches/store_bytes.rs`).
    pub fn sample_block_stats(&self) -> Result<BlockStats, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let blocks = txn.open_table(SAMPLE_BLOCKS)?;
            let mut value_bytes = 0;
            for entry in blocks.iter()? {
                value_bytes += entry?.1.value().len() as u64;
            }
            let stats = blocks.stats()?;
            Ok(BlockStats {
                blocks: blocks.len()?,
                value_bytes,
                leaf_pages: stats.leaf_pages(),
                stored_bytes: stats.stored_bytes(),
                metadata_bytes: stats.metadata_bytes(),
                fragmented_bytes: stats.fragmented_bytes(),
            })
        })
    }

    /// Whether a report was stored.
    pub fn report_seen(&self, sender: &str, report_id: u64) -> Result<bool, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let seen = txn.open_table(REPORTS_SEEN)?.get((sender, report_id))?.is_some();
            Ok(seen)
        })
    }

    /// Adds `by` to a counter in `meta` (e.g. rejected reports), returning the new value.
    pub fn bump_counter(&self, key: &str, by: u64) -> Result<u64, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            let value = {
                let mut meta = txn.open_table(META)?;
                let value = meta.get(key)?.map(|v| v.value()).unwrap_or(0).saturating_add(by);
                meta.insert(key, value)?;
                value
            };
            txn.commit()?;
            Ok(value)
        })
    }
}

/// Merges step samples of one node into their hour blocks inside `txn`.
fn write_samples(
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
    }
    Ok(())
}

/// Merges GPU readings of one node into their hour blocks inside `txn`.
fn write_gpu_readings(
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

fn write_apps(txn: &WriteTransaction, apps: &[(JobId, StepId, String)]) -> Result<(), StoreError> {
    let mut table = txn.open_table(APP_USAGE)?;
    for (job, step, app) in apps {
        table.insert((job.0, step.0, app.as_str()), ())?;
    }
    Ok(())
}

/// Merges `new` into `merged` (both time-ordered by `at`); new entries replace equal times.
fn merge_by_time<T>(merged: &mut Vec<T>, new: Vec<T>, at: impl Fn(&T) -> u64) {
    for item in new {
        let t = at(&item);
        match merged.binary_search_by_key(&t, &at) {
            Ok(pos) => merged[pos] = item,
            Err(pos) => merged.insert(pos, item),
        }
    }
}

fn intern_node(txn: &WriteTransaction, node: &str) -> Result<u32, StoreError> {
    let mut nodes = txn.open_table(NODES)?;
    if let Some(id) = nodes.get(node)? {
        return Ok(id.value());
    }
    let id = u32::try_from(nodes.len()?).unwrap_or(u32::MAX);
    nodes.insert(node, id)?;
    txn.open_table(NODE_NAMES)?.insert(id, node)?;
    Ok(id)
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
