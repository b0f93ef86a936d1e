//! Storing what sacct said: a parsed batch ([`commit_batch`]) or a window's raw output
//! ([`import_text`], the importer's path), each in one transaction with the watermark
//! (`Store::write_jobs`), and what changed for the other actors (new jobs, ended jobs, busy
//! nodes).
//!
//! `import_text` is where a large window's parsing and storing overlap: parsing costs about twice
//! the CPU of storing, so the output is cut into parts that parser threads parse while the
//! writer stores the parts before them (measured by `benches/accounting_import.rs`).

use super::ImportChanges;
use super::ImportSummary;
use crate::job::{JobRecord, StepRecord};
use crate::slurm::hostlist;
use crate::slurm::sacct_parse::{parse_sacct_part, split_parts, Part, SacctBatch};
use crate::store::{JobWriter, OwnerChange, Store, StoreError};
use std::collections::BTreeMap;
use std::time::Duration;

/// Stores a parsed batch and sets the watermark in one transaction; returns what changed
/// compared with what was stored before (new jobs, jobs that ended, busy nodes).
pub fn commit_batch(store: &Store, batch: SacctBatch, watermark: u64) -> Result<ImportSummary, StoreError> {
    let started = thread_cpu();
    let mut changes = Changes::new(watermark);
    store.write_jobs(Some(watermark), |writer| changes.write(writer, batch).map(drop))?;
    Ok(changes.finish(Duration::ZERO, thread_cpu().saturating_sub(started)))
}

/// Bytes of sacct output parsed at a time by [`import_text`] (about 1 500 jobs with steps).
const PART_BYTES: usize = 2 << 20;

/// Parses sacct output and stores it with the watermark in one transaction, like
/// [`commit_batch`] of `parse_sacct(text)`, but a large output is cut into parts
/// (`sacct_parse::split_parts`, so that the parts parse exactly as the whole) that are parsed on
/// other threads while the parts before them are written: parsing costs more CPU than storing,
/// so a large window is stored in well under the time of the two one after the other. Skipped
/// lines are logged and counted.
pub fn import_text(
    store: &Store,
    text: &str,
    tz: &jiff::tz::TimeZone,
    imported_at: u64,
    watermark: u64,
) -> Result<ImportSummary, StoreError> {
    import_in_parts(store, text, tz, imported_at, watermark, PART_BYTES)
}

fn import_in_parts(
    store: &Store,
    text: &str,
    tz: &jiff::tz::TimeZone,
    imported_at: u64,
    watermark: u64,
    part_bytes: usize,
) -> Result<ImportSummary, StoreError> {
    let parts = split_parts(text, part_bytes);
    let started = thread_cpu();
    let mut changes = Changes::new(watermark);
    // Parse CPU time, and whether it was spent on this thread (a window of one part).
    let (mut parse_cpu, mut inline) = (Duration::ZERO, false);
    store.write_jobs(Some(watermark), |writer| {
        if parts.len() <= 1 {
            inline = true;
            for part in parts {
                let before = thread_cpu();
                let batch = parse_sacct_part(part.text, tz, imported_at, part.lines_before);
                parse_cpu += thread_cpu().saturating_sub(before);
                changes.write(writer, batch)?;
            }
        } else {
            parse_cpu = parse_while_writing(&parts, tz, imported_at, |batch| changes.write(writer, batch))?;
        }
        Ok(())
    })?;
    let mut store_cpu = thread_cpu().saturating_sub(started);
    if inline {
        store_cpu = store_cpu.saturating_sub(parse_cpu);
    }
    Ok(changes.finish(parse_cpu, store_cpu))
}

/// Parses `parts` on parser threads (two where two CPUs are available, else one) and hands each
/// parsed part, in order, to `write` on this thread; returns the parsers' CPU time.
///
/// Parser k takes parts k, k + n, k + 2n… and stays at most two parts ahead; the writer takes
/// them round-robin, so the order is kept without reassembly. Written parts go back to the
/// parser that made them to be freed there: its allocator frees them cheaply and reuses the
/// memory for its next part, and the writer is the thread everything waits for at the end.
fn parse_while_writing(
    parts: &[Part<'_>],
    tz: &jiff::tz::TimeZone,
    imported_at: u64,
    mut write: impl FnMut(SacctBatch) -> Result<SacctBatch, StoreError>,
) -> Result<Duration, StoreError> {
    let parsers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 2).min(parts.len());
    std::thread::scope(|scope| {
        let mut lanes = Vec::with_capacity(parsers);
        let mut handles = Vec::with_capacity(parsers);
        for k in 0..parsers {
            let (sender, receiver) = crossbeam::channel::bounded(1);
            let (done_sender, done_receiver) = crossbeam::channel::unbounded::<SacctBatch>();
            handles.push(scope.spawn(move || {
                for part in parts.iter().skip(k).step_by(parsers) {
                    done_receiver.try_iter().for_each(drop);
                    let batch = parse_sacct_part(part.text, tz, imported_at, part.lines_before);
                    if sender.send(batch).is_err() {
                        break; // the writer failed and stopped listening
                    }
                }
                thread_cpu()
            }));
            lanes.push((receiver, done_sender));
        }
        for n in 0..parts.len() {
            let (receiver, done) = &lanes[n % parsers];
            let Ok(batch) = receiver.recv() else { break }; // that parser panicked: see below
            let batch = write(batch)?;
            // Once its parser is done, the writer frees what is left itself.
            let _ = done.send(batch);
        }
        drop(lanes);
        handles.into_iter().try_fold(Duration::ZERO, |cpu, handle| {
            Ok(cpu + handle.join().map_err(|_| StoreError::Worker("a sacct parser thread panicked"))?)
        })
    })
}

/// What an import changed, gathered part by part as the parts are written.
struct Changes {
    event: ImportChanges,
    busy: BTreeMap<String, u32>,
    jobs: usize,
    steps: usize,
    skipped_lines: usize,
    owner_changes: Vec<OwnerChange>,
}

impl Changes {
    fn new(watermark: u64) -> Self {
        Changes {
            event: ImportChanges { until: watermark, ..ImportChanges::default() },
            busy: BTreeMap::new(),
            jobs: 0,
            steps: 0,
            skipped_lines: 0,
            owner_changes: Vec::new(),
        }
    }

    /// Writes a parsed part and notes which jobs are new, which ended and which nodes are busy;
    /// hands the part back (for the caller to free where it is cheapest).
    fn write(&mut self, writer: &mut JobWriter<'_>, batch: SacctBatch) -> Result<SacctBatch, StoreError> {
        for skipped in &batch.skipped {
            tracing::warn!(line = skipped.line, field = skipped.field, reason = %skipped.reason, text = %skipped.text, "sacct line skipped");
        }
        self.skipped_lines += batch.skipped.len();
        let jobs: Vec<&JobRecord> = batch.jobs.iter().map(|(job, _)| job).collect();
        let steps: Vec<&StepRecord> = batch.jobs.iter().flat_map(|(_, steps)| steps).collect();
        let before = writer.write(&jobs, &steps)?;
        let refused = writer.take_owner_changes();
        for change in &refused {
            tracing::error!(
                job = %change.job,
                stored_user = %change.stored_user,
                stored_uid = ?change.stored_uid,
                new_user = %change.new_user,
                new_uid = ?change.new_uid,
                "ALARM: accounting record would change a stored job's owner; refused, the stored job is kept"
            );
        }
        for (job, was) in jobs.iter().zip(before) {
            if refused.iter().any(|c| c.job == job.id && c.new_user == job.user && c.new_uid == job.uid) {
                continue;
            }
            if was.is_none() {
                self.event.new.push(job.id);
            }
            if job.end_at.is_some() && was != Some(true) {
                self.event.finished.push(job.id);
            }
            if job.end_at.is_none() && job.state == "RUNNING" {
                for node in hostlist::expand(&job.node_list).unwrap_or_default() {
                    *self.busy.entry(node).or_default() += 1;
                }
            }
        }
        self.jobs += jobs.len() - refused.len().min(jobs.len());
        self.steps += steps.len();
        self.owner_changes.extend(refused);
        drop((jobs, steps));
        Ok(batch)
    }

    fn finish(mut self, parse_cpu: Duration, store_cpu: Duration) -> ImportSummary {
        self.event.busy_nodes = self.busy.into_iter().collect();
        self.event.busy_nodes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        ImportSummary {
            caught_up: true,
            jobs: self.jobs,
            steps: self.steps,
            skipped_lines: self.skipped_lines,
            owner_changes: self.owner_changes,
            event: self.event,
            parse_cpu,
            store_cpu,
        }
    }
}

/// CPU time of the calling thread (imports report parse and store time apart).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes into the timespec we own.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(u64::try_from(ts.tv_sec).unwrap_or(0), u32::try_from(ts.tv_nsec).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slurm::sacct_parse::parse_sacct;

    const WINDOW: &str = include_str!("../../../tests/fixtures/sacct/window.txt");
    const MALFORMED: &str = include_str!("../../../tests/fixtures/sacct/malformed.txt");

    #[test]
    fn parts_parsed_on_threads_store_what_one_batch_stores() {
        let dir = std::env::temp_dir().join(format!("tw-import-parts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let tz = jiff::tz::TimeZone::UTC;
        for (n, text) in [WINDOW, MALFORMED].into_iter().enumerate() {
            let whole = Store::open(&dir.join(format!("whole-{n}.redb"))).unwrap();
            let parted = Store::open(&dir.join(format!("parts-{n}.redb"))).unwrap();
            let a = commit_batch(&whole, parse_sacct(text, &tz, 5), 100).unwrap();
            // A part per job line: every part goes through a parser thread.
            let b = import_in_parts(&parted, text, &tz, 5, 100, 1).unwrap();
            assert_eq!((a.jobs, a.steps, a.skipped_lines, &a.event), (b.jobs, b.steps, b.skipped_lines, &b.event));
            assert!(b.jobs > 5 && b.event.new.len() == b.jobs);
            for (job, _) in parse_sacct(text, &tz, 5).jobs {
                assert_eq!(whole.job(job.id).unwrap(), parted.job(job.id).unwrap());
                assert_eq!(whole.steps(job.id).unwrap(), parted.steps(job.id).unwrap());
            }
            assert_eq!(whole.job_count().unwrap(), parted.job_count().unwrap());
            assert_eq!(whole.jobs_in_window(0, u64::MAX).unwrap(), parted.jobs_in_window(0, u64::MAX).unwrap());
            assert_eq!(parted.meta(crate::store::tables::IMPORT_WATERMARK_KEY).unwrap(), Some(100));
            // Imported again, in other parts: nothing is new and nothing is counted twice.
            let again = import_in_parts(&parted, text, &tz, 6, 200, 700).unwrap();
            assert!(again.event.new.is_empty());
            assert_eq!(parted.job_count().unwrap(), b.jobs as u64);
            assert_eq!(parted.meta(crate::store::tables::IMPORT_WATERMARK_KEY).unwrap(), Some(200));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
