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
//!
//! Hostile input ([`Store::store_checked_batch`]): every sample is checked against its job's
//! accounting record and the series' previous stored sample (`sample::plausible`) inside the
//! same transaction, and only what passes is stored; refusals are counted by reason. No block
//! ever holds more rows than the decoder accepts (the excess is refused). A series reported by
//! the service's scrapers is theirs (`series_source`): a job owner's own report can neither
//! overwrite nor add to it, and the service's first report of a series an owner wrote replaces
//! the owner's samples. A stored block that does not decode is replaced, logged and counted,
//! never the end of the series.

use super::codec::encode_open_block;
use super::job_blocks::{block_of, find};
use super::job_codec::decode_job;
use super::tables::*;
use super::{decode_block, encode_block, Store, StoreError};
use crate::job::{JobId, StepId};
use crate::sample::plausible::{self, app_name_ok, check_gpu, check_sample, JobBounds, Limits, Reason, Refusals};
use crate::sample::{GpuReading, StepSample};
use redb::{ReadableTable, ReadableTableMetadata, Table, WriteTransaction};
use std::collections::{BTreeMap, HashMap};

/// What a report contributes to the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchContent {
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

/// How a report is checked before it is stored.
#[derive(Debug, Clone, Copy)]
pub struct Checks<'a> {
    pub limits: &'a Limits,
    /// Whether the sender is one of the service's scrapers (else a job's owner).
    pub from_service: bool,
    /// Whether samples are checked for plausibility (rows per block and names always are).
    pub plausibility: bool,
}

/// What storing a checked report did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ingested {
    pub stored: Stored,
    /// Samples, GPU readings and application names refused, by reason (never stored).
    pub refused: Refusals,
    /// Step samples and GPU readings stored.
    pub samples: u64,
    pub gpus: u64,
    /// Stored blocks that did not decode and were replaced by the new rows.
    pub corrupt_blocks: u64,
}

/// The rows a report's commit stored (after every check), for the export
/// (`Store::store_checked_batch_rows`): what is exported is exactly what was acknowledged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredRows {
    pub samples: Vec<(JobId, StepId, StepSample)>,
    pub gpus: Vec<(JobId, StepId, GpuReading)>,
}

/// Which kind of sender wrote a series (`series_source` values).
const SOURCE_SERVICE: u8 = 1;
const SOURCE_OWNER: u8 = 2;

static DEFAULT_LIMITS: std::sync::LazyLock<Limits> = std::sync::LazyLock::new(Limits::default);

impl Store {
    /// Stores a report of `node` once: if `(sender, report_id)` was seen, nothing is written.
    /// The report is treated as the service's own, unchecked but for block sizes and names
    /// (see [`Store::store_checked_batch`] for reports from the network).
    pub fn store_batch_once(
        &self,
        sender: &str,
        report_id: u64,
        received_at: u64,
        node: &str,
        content: &BatchContent,
    ) -> Result<Stored, StoreError> {
        let checks = Checks { limits: &DEFAULT_LIMITS, from_service: true, plausibility: false };
        Ok(self.store_checked_batch(sender, report_id, received_at, node, content, &checks)?.stored)
    }

    /// Stores a report of `node` once, keeping only what passes `checks` (see the module's
    /// doc): if `(sender, report_id)` was seen, nothing is written.
    pub fn store_checked_batch(
        &self,
        sender: &str,
        report_id: u64,
        received_at: u64,
        node: &str,
        content: &BatchContent,
        checks: &Checks<'_>,
    ) -> Result<Ingested, StoreError> {
        Ok(self.checked_batch(sender, report_id, received_at, node, content, checks, false)?.0)
    }

    /// [`Store::store_checked_batch`], also returning the rows it stored (none for a duplicate
    /// or a failed commit), in the order they were checked.
    pub fn store_checked_batch_rows(
        &self,
        sender: &str,
        report_id: u64,
        received_at: u64,
        node: &str,
        content: &BatchContent,
        checks: &Checks<'_>,
    ) -> Result<(Ingested, StoredRows), StoreError> {
        self.checked_batch(sender, report_id, received_at, node, content, checks, true)
    }

    #[allow(clippy::too_many_arguments)]
    fn checked_batch(
        &self,
        sender: &str,
        report_id: u64,
        received_at: u64,
        node: &str,
        content: &BatchContent,
        checks: &Checks<'_>,
        keep: bool,
    ) -> Result<(Ingested, StoredRows), StoreError> {
        let report = ScraperReport { sender, report_id, received_at, node, content, checks: *checks, keep };
        let mut out = self.store_reports(std::slice::from_ref(&report))?;
        Ok(out.pop().unwrap_or_else(|| (Ingested::nothing(), StoredRows::default())))
    }

    /// Stores several reports in ONE transaction (group commit: one commit, one sync, for
    /// reports that arrived together), each exactly as [`Store::store_checked_batch_rows`]
    /// would: its own duplicate check, checks and refusals; a report seen earlier in the same
    /// group is a duplicate. Returns one outcome per report, in order. An error stores nothing
    /// of any of them (the caller may then store each alone, so one cannot fail the others).
    pub fn store_reports(&self, reports: &[ScraperReport<'_>]) -> Result<Vec<(Ingested, StoredRows)>, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            let mut outcomes = Vec::with_capacity(reports.len());
            let mut wrote = false;
            for report in reports {
                let (out, rows, written) = write_report(&txn, report)?;
                wrote |= written;
                outcomes.push((out, rows));
            }
            if wrote {
                txn.commit()?;
            } // else nothing was written: the transaction is dropped
            Ok(outcomes)
        })
    }

    /// Stores step samples of one node. Samples are merged into their hour blocks; a sample whose
    /// (series, time) is already stored replaces it, so a resent sample is stored once.
    pub fn append_samples(&self, node: &str, samples: &[(JobId, StepId, StepSample)]) -> Result<(), StoreError> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            let checks = Checks { limits: &DEFAULT_LIMITS, from_service: true, plausibility: false };
            let mut out =
                Ingested { stored: Stored::New, refused: Refusals::default(), samples: 0, gpus: 0, corrupt_blocks: 0 };
            SeriesWriter::new(&txn, &checks, u64::MAX)?.write(node, samples, &[], &mut out)?;
            txn.commit()?;
            Ok(())
        })
    }

    /// Records applications seen in steps.
    pub fn add_apps(&self, apps: &[(JobId, StepId, String)]) -> Result<(), StoreError> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            write_apps(&txn, &DEFAULT_LIMITS, apps, &mut Refusals::default())?;
            txn.commit()?;
            Ok(())
        })
    }

    /// Drops the `reports_seen` marks received before `before` (unix seconds); returns how many.
    /// A scraper resends a report only while it is spooled (minutes, at most days), so marks
    /// older than a week only grow the file; a resend after that merges into the same samples.
    pub fn prune_reports_seen(&self, before: u64) -> Result<u64, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            let removed = {
                let mut seen = txn.open_table(REPORTS_SEEN)?;
                let len = seen.len()?;
                seen.retain(|_, received| received >= before)?;
                len - seen.len()?
            };
            txn.commit()?;
            Ok(removed)
        })
    }

    /// Number of `reports_seen` marks.
    pub fn reports_seen_count(&self) -> Result<u64, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let n = txn.open_table(REPORTS_SEEN)?.len()?;
            Ok(n)
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

type SeriesTable<'txn> = Table<'txn, (u64, u32, u32, u64), &'static [u8]>;

/// One report to store (see [`Store::store_reports`]).
#[derive(Debug, Clone, Copy)]
pub struct ScraperReport<'a> {
    /// Who sent it (node and uid): with `report_id`, the duplicate key.
    pub sender: &'a str,
    pub report_id: u64,
    pub received_at: u64,
    pub node: &'a str,
    pub content: &'a BatchContent,
    pub checks: Checks<'a>,
    /// Whether the rows stored are returned (for the export).
    pub keep: bool,
}

impl Ingested {
    fn nothing() -> Ingested {
        Ingested { stored: Stored::New, refused: Refusals::default(), samples: 0, gpus: 0, corrupt_blocks: 0 }
    }
}

/// Writes one report into `txn`: its mark, then what passes its checks; nothing but the
/// outcome for a duplicate or a name beyond the bounds (then the `false`: nothing written).
fn write_report(
    txn: &WriteTransaction,
    report: &ScraperReport<'_>,
) -> Result<(Ingested, StoredRows, bool), StoreError> {
    let ScraperReport { sender, report_id, received_at, node, content, checks, keep } = *report;
    let mut out = Ingested::nothing();
    // A name beyond the bounds is never stored, not even in the report's mark.
    if !plausible::node_name_ok(checks.limits, node) || sender.len() > checks.limits.max_node_name + 16 {
        let rows = content.samples.len() + content.gpus.len() + content.apps.len();
        out.refused.add(Reason::NameTooLong, rows as u64);
        return Ok((out, StoredRows::default(), false));
    }
    {
        let mut seen = txn.open_table(REPORTS_SEEN)?;
        if seen.get((sender, report_id))?.is_some() {
            out.stored = Stored::Duplicate;
            return Ok((out, StoredRows::default(), false));
        }
        seen.insert((sender, report_id), received_at)?;
    }
    let mut writer = SeriesWriter::new(txn, &checks, received_at)?;
    writer.keep = keep;
    writer.write(node, &content.samples, &content.gpus, &mut out)?;
    let kept = std::mem::take(&mut writer.kept);
    drop(writer);
    write_apps(txn, checks.limits, &content.apps, &mut out.refused)?;
    Ok((out, kept, true))
}

/// The tables a report's series are written to, open for one write transaction.
struct SeriesWriter<'txn, 'c> {
    txn: &'txn WriteTransaction,
    checks: &'c Checks<'c>,
    now: u64,
    samples: SeriesTable<'txn>,
    gpus: SeriesTable<'txn>,
    sources: Table<'txn, (u64, u32, u32), u8>,
    jobs: Table<'txn, u64, &'static [u8]>,
    bounds: HashMap<JobId, Option<JobBounds>>,
    /// Whether the rows written are kept in `kept` (for the export).
    keep: bool,
    kept: StoredRows,
}

impl<'txn, 'c> SeriesWriter<'txn, 'c> {
    fn new(txn: &'txn WriteTransaction, checks: &'c Checks<'c>, now: u64) -> Result<Self, StoreError> {
        Ok(SeriesWriter {
            txn,
            checks,
            now,
            samples: txn.open_table(SAMPLE_BLOCKS)?,
            gpus: txn.open_table(GPU_BLOCKS)?,
            sources: txn.open_table(SERIES_SOURCE)?,
            jobs: txn.open_table(JOB_BLOCKS)?,
            bounds: HashMap::new(),
            keep: false,
            kept: StoredRows::default(),
        })
    }

    fn write(
        &mut self,
        node: &str,
        samples: &[(JobId, StepId, StepSample)],
        gpus: &[(JobId, StepId, GpuReading)],
        out: &mut Ingested,
    ) -> Result<(), StoreError> {
        if samples.is_empty() && gpus.is_empty() {
            return Ok(());
        }
        if !plausible::node_name_ok(self.checks.limits, node) {
            out.refused.add(Reason::NameTooLong, (samples.len() + gpus.len()) as u64);
            return Ok(());
        }
        let node_id = intern_node(self.txn, node)?;
        let mut by_series: BTreeMap<(u64, u32), (Vec<StepSample>, Vec<GpuReading>)> = BTreeMap::new();
        for (job, step, sample) in samples {
            by_series.entry((job.0, step.0)).or_default().0.push(sample.clone());
        }
        for (job, step, reading) in gpus {
            by_series.entry((job.0, step.0)).or_default().1.push(reading.clone());
        }
        for ((job, step), (samples, gpus)) in by_series {
            let bounds = self.bounds(JobId(job), node);
            // A step runs only on its job's nodes: a report of it from another node is forged
            // or misrouted.
            if self.checks.plausibility && bounds.and_then(|b| b.on_node) == Some(false) {
                out.refused.add(Reason::NotJobNode, (samples.len() + gpus.len()) as u64);
                continue;
            }
            // The service takes an owner's series over only with data that passes the checks
            // on its own: an implausible service batch must not wipe what the owner reported.
            let plausible_alone = !self.checks.plausibility || {
                let ctx = self.context(bounds);
                samples.iter().any(|s| check_sample(&ctx, None, s).is_ok())
                    || gpus.iter().any(|g| check_gpu(&ctx, g).is_ok())
            };
            if !self.claim(job, step, node_id, plausible_alone)? {
                out.refused.add(Reason::ServiceSeries, (samples.len() + gpus.len()) as u64);
                continue;
            }
            self.write_samples(job, step, node_id, bounds, samples, out)?;
            self.write_gpus(job, step, node_id, bounds, gpus, out)?;
        }
        Ok(())
    }

    /// Whether this report may write the series; records who writes it. The service's first
    /// report of a series an owner wrote removes the owner's samples of it, when the service's
    /// data is `plausible` on its own (else the owner's series stays and the batch is refused).
    fn claim(&mut self, job: u64, step: u32, node: u32, plausible: bool) -> Result<bool, StoreError> {
        let key = (job, step, node);
        let source = self.sources.get(key)?.map(|v| v.value());
        let mine = if self.checks.from_service { SOURCE_SERVICE } else { SOURCE_OWNER };
        match (source, self.checks.from_service) {
            (Some(SOURCE_SERVICE), false) => return Ok(false),
            (Some(s), _) if s == mine => return Ok(true),
            (Some(_), true) if !plausible => return Ok(false),
            (Some(_), true) => {
                tracing::warn!(job, step, node, "the service's scraper replaces the samples a job's owner reported");
                let range = (job, step, node, 0)..=(job, step, node, u64::MAX);
                self.samples.retain_in(range.clone(), |_, _| false)?;
                self.gpus.retain_in(range, |_, _| false)?;
            }
            _ => {}
        }
        self.sources.insert(key, mine)?;
        Ok(true)
    }

    /// The job's accounting bounds for a report from `node`, if stored (looked up once per
    /// report; a report comes from one node).
    fn bounds(&mut self, job: JobId, node: &str) -> Option<JobBounds> {
        if let Some(b) = self.bounds.get(&job) {
            return *b;
        }
        let found = (|| {
            let block = self.jobs.get(block_of(job.0)).ok()??;
            let value = find(job.0, block.value()).ok()??;
            decode_job(value).ok().map(|j| JobBounds::of(&j, node))
        })();
        self.bounds.insert(job, found);
        found
    }

    fn context(&self, job: Option<JobBounds>) -> plausible::Context<'c> {
        plausible::Context { limits: self.checks.limits, job, now: self.now }
    }

    /// Merges step samples of one series into their hour blocks, each checked against the
    /// sample before it.
    fn write_samples(
        &mut self,
        job: u64,
        step: u32,
        node: u32,
        bounds: Option<JobBounds>,
        mut new: Vec<StepSample>,
        out: &mut Ingested,
    ) -> Result<(), StoreError> {
        if new.is_empty() {
            return Ok(());
        }
        let ctx = self.context(bounds);
        let max_rows = self.checks.limits.max_block_rows.min(plausible::DECODER_MAX_ROWS);
        new.sort_by_key(|s| s.at);
        for hour_new in new.chunk_by(|a, b| block_start(a.at) == block_start(b.at)) {
            let hour = block_start(hour_new[0].at);
            let key = (job, step, node, hour);
            let mut merged: Vec<StepSample> = read_block(&self.samples, key, "sample_blocks", out)?;
            // The series' last sample before this hour, for a sample that lands first in the
            // hour: read (a lookup and a block decode) only when one does, or when this hour's
            // block is new, which completes the block before it.
            let mut before: Option<Option<StepSample>> = None;
            if merged.is_empty() {
                before = Some(complete_block_before(&mut self.samples, (job, step, node), hour)?);
            }
            let mut changed = false;
            for sample in hour_new {
                let at = merged.partition_point(|s| s.at < sample.at);
                let replaces = merged.get(at).is_some_and(|s| s.at == sample.at);
                if self.checks.plausibility {
                    if at == 0 && before.is_none() {
                        before = Some(last_before(&self.samples, (job, step, node), hour)?);
                    }
                    let prev = if at > 0 { merged.get(at - 1) } else { before.as_ref().and_then(Option::as_ref) };
                    // A sample that lands before ones already stored must fit them too: its
                    // successor may not then go back or leap from it.
                    let next = merged.get(if replaces { at + 1 } else { at });
                    let fits = check_sample(&ctx, prev, sample)
                        .and_then(|()| next.map_or(Ok(()), |n| check_sample(&ctx, Some(sample), n)));
                    if let Err(reason) = fits {
                        out.refused.count(reason);
                        continue;
                    }
                }
                if replaces {
                    merged[at] = sample.clone();
                } else if merged.len() >= max_rows {
                    out.refused.count(Reason::BlockFull);
                    continue;
                } else {
                    merged.insert(at, sample.clone());
                }
                if self.keep {
                    self.kept.samples.push((JobId(job), StepId(step), sample.clone()));
                }
                out.samples += 1;
                changed = true;
            }
            if changed {
                self.samples.insert(key, encode_open_block(hour, &merged).as_slice())?;
            }
        }
        Ok(())
    }

    /// Merges GPU readings of one series into their hour blocks.
    fn write_gpus(
        &mut self,
        job: u64,
        step: u32,
        node: u32,
        bounds: Option<JobBounds>,
        new: Vec<GpuReading>,
        out: &mut Ingested,
    ) -> Result<(), StoreError> {
        if new.is_empty() {
            return Ok(());
        }
        let ctx = self.context(bounds);
        let max_rows = self.checks.limits.max_block_rows.min(plausible::DECODER_MAX_ROWS);
        let mut by_hour: BTreeMap<u64, Vec<GpuReading>> = BTreeMap::new();
        for reading in new {
            if self.checks.plausibility {
                if let Err(reason) = check_gpu(&ctx, &reading) {
                    out.refused.count(reason);
                    continue;
                }
            }
            by_hour.entry(block_start(reading.at)).or_default().push(reading);
        }
        for (hour, new) in by_hour {
            let key = (job, step, node, hour);
            let old: Vec<GpuReading> = read_block(&self.gpus, key, "gpu_blocks", out)?;
            if old.is_empty() {
                complete_block_before::<GpuReading>(&mut self.gpus, (job, step, node), hour)?;
            }
            let mut merged: BTreeMap<(u64, u32), GpuReading> = old.into_iter().map(|r| ((r.at, r.index), r)).collect();
            let mut changed = false;
            for reading in new {
                let id = (reading.at, reading.index);
                if !merged.contains_key(&id) && merged.len() >= max_rows {
                    out.refused.count(Reason::BlockFull);
                    continue;
                }
                if self.keep {
                    self.kept.gpus.push((JobId(job), StepId(step), reading.clone()));
                }
                merged.insert(id, reading);
                out.gpus += 1;
                changed = true;
            }
            if changed {
                let rows: Vec<GpuReading> = merged.into_values().collect();
                self.gpus.insert(key, encode_open_block(hour, &rows).as_slice())?;
            }
        }
        Ok(())
    }
}

/// The last sample of `series` stored before the block of `hour` (None when there is none or
/// its block does not decode).
fn last_before(
    table: &SeriesTable<'_>,
    (job, step, node): (u64, u32, u32),
    hour: u64,
) -> Result<Option<StepSample>, StoreError> {
    let Some(entry) = table.range((job, step, node, 0)..(job, step, node, hour))?.next_back() else {
        return Ok(None);
    };
    let (k, v) = entry?;
    Ok(decode_block::<StepSample>(k.value().3, v.value()).ok().and_then(|b| b.last().cloned()))
}

/// Completes the block of `series` stored before the block of `hour`, now that a later one
/// starts: re-encoded in its smallest form ([`encode_block`]; it was written bit-packed while
/// open) when that is shorter. Returns its last sample, as [`last_before`].
fn complete_block_before<T: super::Columns>(
    table: &mut SeriesTable<'_>,
    (job, step, node): (u64, u32, u32),
    hour: u64,
) -> Result<Option<T>, StoreError> {
    let (key, stored_len, rows) = {
        let Some(entry) = table.range((job, step, node, 0)..(job, step, node, hour))?.next_back() else {
            return Ok(None);
        };
        let (k, v) = entry?;
        let Ok(rows) = decode_block::<T>(k.value().3, v.value()) else {
            // Left as it is: the reader reports it, and merging into it replaces it.
            return Ok(None);
        };
        (k.value(), v.value().len(), rows)
    };
    let best = encode_block(key.3, &rows);
    if best.len() < stored_len {
        table.insert(key, best.as_slice())?;
    }
    Ok(rows.last().cloned())
}

/// A stored block's rows; a block that does not decode is logged, counted and read as empty
/// (the new rows replace it).
fn read_block<T: super::Columns>(
    table: &SeriesTable<'_>,
    key: (u64, u32, u32, u64),
    name: &'static str,
    out: &mut Ingested,
) -> Result<Vec<T>, StoreError> {
    let Some(value) = table.get(key)? else { return Ok(Vec::new()) };
    match decode_block(key.3, value.value()) {
        Ok(rows) => Ok(rows),
        Err(err) => {
            tracing::error!(table = name, key = ?key, error = %err, "corrupt sample block replaced");
            out.corrupt_blocks += 1;
            Ok(Vec::new())
        }
    }
}

fn write_apps(
    txn: &WriteTransaction,
    limits: &Limits,
    apps: &[(JobId, StepId, String)],
    refused: &mut Refusals,
) -> Result<(), StoreError> {
    if apps.is_empty() {
        return Ok(());
    }
    let mut table = txn.open_table(APP_USAGE)?;
    let mut known: HashMap<(u64, u32), usize> = HashMap::new();
    for (job, step, app) in apps {
        if !app_name_ok(limits, app) {
            refused.count(Reason::NameTooLong);
            continue;
        }
        let key = (job.0, step.0, app.as_str());
        if table.get(key)?.is_some() {
            continue;
        }
        let count = match known.get(&(job.0, step.0)) {
            Some(n) => *n,
            None => {
                table.range((job.0, step.0, "")..=(job.0, step.0, "\u{10ffff}"))?.take(limits.max_apps_per_step).count()
            }
        };
        if count >= limits.max_apps_per_step {
            refused.count(Reason::TooManyApps);
            known.insert((job.0, step.0), count);
            continue;
        }
        table.insert(key, ())?;
        known.insert((job.0, step.0), count + 1);
    }
    Ok(())
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
    use crate::store::tests_support::temp_db;

    /// The bytes stored under `key` in a sample or GPU block table, as they are on disk.
    fn stored_value(
        store: &Store,
        table: redb::TableDefinition<(u64, u32, u32, u64), &[u8]>,
        key: (u64, u32, u32, u64),
    ) -> Option<Vec<u8>> {
        store
            .with_db(|db| {
                let txn = db.begin_read()?;
                let table = txn.open_table(table)?;
                Ok(table.get(key)?.map(|v| v.value().to_vec()))
            })
            .unwrap()
    }

    #[test]
    fn a_report_is_stored_once_with_its_mark() {
        let store = Store::open(&temp_db("ingest")).unwrap();
        let content = BatchContent {
            samples: (0..3)
                .map(|i| (JobId(7), StepId::BATCH, StepSample { at: 1_000 + i, cpu_user_cs: i, ..Default::default() }))
                .collect(),
            gpus: vec![(JobId(7), StepId::BATCH, GpuReading { at: 1_000, index: 0, ..Default::default() })],
            apps: vec![(JobId(7), StepId::BATCH, "python3".into())],
        };
        assert!(!store.report_seen("n2", 42).unwrap());
        assert_eq!(store.store_batch_once("n2", 42, 5, "n2", &content).unwrap(), Stored::New);
        assert_eq!(store.store_batch_once("n2", 42, 6, "n2", &content).unwrap(), Stored::Duplicate);
        assert!(store.report_seen("n2", 42).unwrap());
        let samples = store.samples_of_job(JobId(7)).unwrap();
        assert_eq!(samples.values().map(Vec::len).sum::<usize>(), 3);
        assert_eq!(store.gpu_readings_of_job(JobId(7)).unwrap().values().map(Vec::len).sum::<usize>(), 1);
        assert_eq!(store.apps_of_job(JobId(7)).unwrap(), [(StepId::BATCH, "python3".to_string())]);
        assert_eq!(store.bump_counter("ingest_rejected_steps", 2).unwrap(), 2);
        assert_eq!(store.bump_counter("ingest_rejected_steps", 1).unwrap(), 3);
    }

    #[test]
    fn an_hour_block_is_written_bit_packed_while_open_and_in_its_smallest_form_once_the_next_hour_starts() {
        let store = Store::open(&temp_db("complete")).unwrap();
        // A perfectly regular series: deflated varints are far smaller than bit-packing here.
        let sample = |i: u64| StepSample {
            at: 7_200 + 20 * i,
            cpu_user_cs: 1_800 * i,
            rss_kib: 10_240 + i % 512,
            minor_faults: 300 * i,
            cpus: 1,
            threads: 2,
            processes: 1,
            ..Default::default()
        };
        let block = |hour: u64| stored_value(&store, SAMPLE_BLOCKS, (5, 0, 0, hour));
        let first_hour: Vec<StepSample> = (0..180).map(sample).collect();
        for chunk in first_hour.chunks(3) {
            let rows: Vec<_> = chunk.iter().map(|s| (JobId(5), StepId(0), s.clone())).collect();
            store.append_samples("n1", &rows).unwrap();
        }
        let open = block(7_200).unwrap();
        assert_eq!(open, encode_open_block(7_200, &first_hour));
        let best = encode_block(7_200, &first_hour);
        assert!(best.len() < open.len(), "deflate should win on this series: {} vs {}", best.len(), open.len());
        store.append_samples("n1", &[(JobId(5), StepId(0), sample(180))]).unwrap();
        assert_eq!(block(7_200).unwrap(), best, "the completed hour is re-encoded");
        assert_eq!(block(10_800).unwrap(), encode_open_block(10_800, &[sample(180)]));
        let all = store.samples_of_job(JobId(5)).unwrap();
        assert_eq!(all.values().next().unwrap().len(), 181);
    }

    #[test]
    fn a_gpu_hour_block_is_completed_the_same_way_when_the_next_hour_starts() {
        let store = Store::open(&temp_db("complete-gpu")).unwrap();
        let reading = |i: u64| GpuReading {
            at: 7_200 + 20 * i,
            index: 0,
            util_pct: 90 + (i % 5) as u32,
            mem_used_mib: 40_000 + i % 7,
            sm_clock_mhz: 1_980,
            power_mw: 650_000 + (i % 3) as u32 * 1_000,
            temp_c: 70,
            in_use_by_step: true,
            ..Default::default()
        };
        let block = |hour: u64| stored_value(&store, GPU_BLOCKS, (6, 0, 0, hour));
        let first_hour: Vec<GpuReading> = (0..180).map(reading).collect();
        for (id, chunk) in first_hour.chunks(3).enumerate() {
            let content = BatchContent {
                gpus: chunk.iter().map(|r| (JobId(6), StepId(0), r.clone())).collect(),
                ..BatchContent::default()
            };
            store.store_batch_once("n1", id as u64, 10_000, "n1", &content).unwrap();
        }
        let open = block(7_200).unwrap();
        assert_eq!(open, encode_open_block(7_200, &first_hour));
        let best = encode_block(7_200, &first_hour);
        assert!(best.len() < open.len(), "deflate should win on this series: {} vs {}", best.len(), open.len());
        let next = BatchContent { gpus: vec![(JobId(6), StepId(0), reading(180))], ..BatchContent::default() };
        store.store_batch_once("n1", 1_000, 10_000, "n1", &next).unwrap();
        assert_eq!(block(7_200).unwrap(), best, "the completed hour is re-encoded");
        assert_eq!(block(10_800).unwrap(), encode_open_block(10_800, &[reading(180)]));
        let all = store.gpu_readings_of_job(JobId(6)).unwrap();
        assert_eq!(all.values().next().unwrap().len(), 181);
    }

    #[test]
    fn the_rows_kept_for_export_are_exactly_the_stored_ones() {
        let store = Store::open(&temp_db("rows")).unwrap();
        let sample = |at, cpu| StepSample { at, cpu_user_cs: cpu, ..Default::default() };
        // The second sample's CPU counter goes back: refused, so never exported.
        let content = BatchContent {
            samples: vec![
                (JobId(9), StepId(0), sample(1_000, 50)),
                (JobId(9), StepId(0), sample(1_010, 20)),
                (JobId(9), StepId(0), sample(1_020, 60)),
            ],
            gpus: vec![(JobId(9), StepId(0), GpuReading { at: 1_000, index: 1, util_pct: 40, ..Default::default() })],
            apps: vec![],
        };
        let limits = Limits::default();
        let checks = Checks { limits: &limits, from_service: true, plausibility: true };
        let now = 2_000;
        let (ingested, rows) = store.store_checked_batch_rows("n1", 1, now, "n1", &content, &checks).unwrap();
        assert_eq!(ingested.refused.total(), 1, "{ingested:?}");
        let ats: Vec<u64> = rows.samples.iter().map(|(_, _, s)| s.at).collect();
        assert_eq!(ats, [1_000, 1_020]);
        assert_eq!(ingested.samples, rows.samples.len() as u64);
        assert_eq!(rows.gpus.len(), 1);
        // A resent report is acknowledged but stores, and so exports, nothing.
        let (again, rows) = store.store_checked_batch_rows("n1", 1, now, "n1", &content, &checks).unwrap();
        assert_eq!((again.stored, rows), (Stored::Duplicate, StoredRows::default()));
    }
}
