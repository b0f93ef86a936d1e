//! The accounting importer: brings every job from SLURM's accounting into the store, in
//! windows, without loss, and tells the other actors what changed.
//!
//! Each import asks sacct for the jobs active in (watermark − overlap, now], upserts them with
//! their steps and moves the watermark to the window's end in ONE store transaction, so a crash
//! between imports neither loses a window (the watermark did not move) nor duplicates a job (the
//! store is keyed by JobIDRaw and upserts replace). The overlap of `WINDOW_OVERLAP_SECS`
//! re-reads the end of the previous window because sacct's window queries lag up to ~5 s behind
//! a job's end (and slurmctld hands records over late after a slurmdbd outage); the re-read jobs
//! are simply upserted again. A window spans at most `MAX_WINDOW_SECS`; a longer gap (the first
//! import's 28 days) is caught up window after window.
//!
//! When sacct fails (slurmdbd unreachable, timeout), the import is retried `reconnect_max` times
//! with exponential backoff from `reconnect_wait`; then it fails, the importer actor
//! (`actors/accounting.rs`) stops, and its supervisor restarts it after a growing delay. The
//! watermark stays where it was, so the missed window is imported once slurmdbd is back.
//! No actix here: the actor is a thin shell over [`ImportJob`].

mod commit;

pub use commit::{commit_batch, import_text};

use crate::backoff::Backoff;
use crate::clock::unix_now;
use crate::job::JobId;
use crate::slurm::sacct::{fetch_window_text, SacctError, Window};
use crate::slurm::SlurmRunner;
use crate::store::tables::IMPORT_WATERMARK_KEY;
use crate::store::{Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use turingwatch_config::Config;

/// How far each window reaches back before the watermark: covers sacct's ~5 s lag, and job
/// records slurmctld hands to slurmdbd late after an outage of slurmdbd.
pub const WINDOW_OVERLAP_SECS: u64 = 300;

/// Longest window asked of sacct at once: the 28-day first import (or catching up after a long
/// stop) goes in daily windows, each committed with its watermark, so one sacct call stays
/// bounded in time and memory and progress survives a restart.
pub const MAX_WINDOW_SECS: u64 = 86_400;

/// What an import changed (published to the other actors as `JobsImported`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportChanges {
    /// End of the window imported (the new watermark), unix seconds.
    pub until: u64,
    /// Jobs seen for the first time.
    pub new: Vec<JobId>,
    /// Jobs that ended since the previous import.
    pub finished: Vec<JobId>,
    /// Nodes with running jobs and how many running steps (or jobs) each has, busiest first.
    pub busy_nodes: Vec<(String, u32)>,
}

/// What an import stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    /// Whether the window reached `now` (else the next window follows at once).
    pub caught_up: bool,
    pub jobs: usize,
    pub steps: usize,
    pub skipped_lines: usize,
    /// Records refused because they would change a stored job's owner (each logged as an
    /// alarm; counted in `meta.jobs_owner_change_refused`).
    pub owner_changes: Vec<crate::store::OwnerChange>,
    pub event: ImportChanges,
    /// CPU time spent parsing and storing (they overlap in wall time: see [`import_text`]).
    pub parse_cpu: Duration,
    pub store_cpu: Duration,
}

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("sacct: {0}")]
    Sacct(#[from] SacctError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("store task failed: {0}")]
    Task(String),
}

impl ImportError {
    /// Whether the window itself may be at fault: sacct answered, but not with output for it
    /// (a query too large for slurmdbd, a record it cannot print). An unreachable slurmdbd and
    /// every store error are never the window's fault: those windows are retried until they
    /// work, never skipped (data is never dropped on a transient error).
    pub fn blames_window(&self) -> bool {
        matches!(self, ImportError::Sacct(err) if !err.is_unreachable())
    }
}

/// Shortest window a failing window is narrowed to before it is skipped, seconds.
pub const MIN_NARROWED_SECS: u64 = 600;

/// Failures of a shortest window before it is skipped.
pub const SKIP_AFTER_FAILURES: u32 = 3;

/// What to do about a window that failed in a way that blames the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Narrowing {
    /// Try again with windows of at most this many seconds.
    Narrow(u64),
    /// Give up on `[from, to)`: move the watermark past it (and raise the alarm).
    Skip { from: u64, to: u64 },
}

/// The rule for a window that keeps failing: halve it (down to [`MIN_NARROWED_SECS`]), then
/// skip that shortest window after [`SKIP_AFTER_FAILURES`] failures. `failures_at_min` counts
/// the failures of the shortest window so far (the caller keeps it across restarts).
pub fn narrow(window: &Window, failures_at_min: u32) -> Narrowing {
    let span = window.to.saturating_sub(window.from);
    if span > MIN_NARROWED_SECS {
        return Narrowing::Narrow((span / 2).max(MIN_NARROWED_SECS));
    }
    if failures_at_min + 1 < SKIP_AFTER_FAILURES {
        return Narrowing::Narrow(MIN_NARROWED_SECS);
    }
    Narrowing::Skip { from: window.from, to: window.to }
}

/// The watermark that makes the next window start at `to` (past a skipped window).
pub fn watermark_after_skip(to: u64) -> u64 {
    to.saturating_add(WINDOW_OVERLAP_SECS)
}

/// The window the next import covers, given the stored watermark.
pub fn next_window(watermark: Option<u64>, now: u64, first_window_secs: u64) -> Window {
    let from = match watermark {
        Some(mark) => mark.saturating_sub(WINDOW_OVERLAP_SECS),
        None => now.saturating_sub(first_window_secs),
    };
    Window { from, to: now.min(from.saturating_add(MAX_WINDOW_SECS)).max(from), user: None }
}

/// Everything one import needs; cheap to clone into the import future.
#[derive(Clone)]
pub struct ImportJob {
    store: Arc<Store>,
    runner: SlurmRunner,
    tz: jiff::tz::TimeZone,
    first_window_secs: u64,
    /// Only this user's jobs (`[accounting] user`); `None`: every user's.
    user: Option<String>,
    reconnect_max: u32,
    reconnect_wait: Duration,
}

impl ImportJob {
    /// An import of `[accounting]`'s windows from `[slurm]`'s sacct into `store`.
    pub fn new(config: &Config, store: Arc<Store>) -> ImportJob {
        let acct = &config.accounting;
        ImportJob {
            store,
            runner: SlurmRunner::new(&config.slurm),
            tz: jiff::tz::TimeZone::system(),
            first_window_secs: acct.first_window.as_secs(),
            user: (!acct.user.is_empty()).then(|| acct.user.clone()),
            reconnect_max: acct.reconnect_max,
            reconnect_wait: acct.reconnect_wait.get(),
        }
    }

    /// One import with retries: sacct (retried with backoff), then the store commit.
    pub async fn run(self) -> Result<ImportSummary, ImportError> {
        self.run_within(None).await.map_err(|(err, _)| err)
    }

    /// [`ImportJob::run`] with windows of at most `max_span` seconds; a failure says which
    /// window failed.
    pub async fn run_within(self, max_span: Option<u64>) -> Result<ImportSummary, (ImportError, Window)> {
        let store = self.store.clone();
        let watermark = blocking(move || store.meta(IMPORT_WATERMARK_KEY)).await.map_err(|e| (e, Window::default()))?;
        let mut backoff = Backoff::new(self.reconnect_wait, self.reconnect_wait.saturating_mul(16));
        loop {
            let now = unix_now();
            let mut window = next_window(watermark, now, self.first_window_secs);
            window.user = self.user.clone();
            if let Some(span) = max_span {
                window.to = window.to.min(window.from.saturating_add(span));
            }
            match fetch_window_text(&self.runner, &window, &self.tz).await {
                Ok(text) => {
                    let (store, tz, to) = (self.store.clone(), self.tz.clone(), window.to);
                    let mut summary = blocking(move || import_text(&store, &text, &tz, now, to))
                        .await
                        .map_err(|e| (e, window.clone()))?;
                    summary.caught_up = window.to >= now;
                    tracing::info!(
                        from = window.from,
                        until = window.to,
                        jobs = summary.jobs,
                        steps = summary.steps,
                        new = summary.event.new.len(),
                        finished = summary.event.finished.len(),
                        skipped_lines = summary.skipped_lines,
                        parse_cpu_secs = summary.parse_cpu.as_secs_f64(),
                        store_cpu_secs = summary.store_cpu.as_secs_f64(),
                        "accounting import committed"
                    );
                    return Ok(summary);
                }
                Err(err) if backoff.attempts() < self.reconnect_max => {
                    let wait = backoff.next_delay();
                    tracing::warn!(
                        error = %err,
                        unreachable = err.is_unreachable(),
                        attempt = backoff.attempts(),
                        of = self.reconnect_max,
                        wait_secs = wait.as_secs_f64(),
                        "accounting import failed, retrying"
                    );
                    tokio::time::sleep(wait).await;
                }
                Err(err) => return Err((err.into(), window)),
            }
        }
    }

    /// Moves the watermark past a window that was skipped.
    pub async fn skip_window(&self, to: u64) -> Result<(), ImportError> {
        let store = self.store.clone();
        blocking(move || {
            store.set_meta(IMPORT_WATERMARK_KEY, watermark_after_skip(to))?;
            store.bump_counter(SKIPPED_WINDOWS_KEY, 1).map(|_| ())
        })
        .await
    }
}

/// `meta` counter of accounting windows skipped because they kept failing.
pub const SKIPPED_WINDOWS_KEY: &str = "import_windows_skipped";

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ImportError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => Ok(result?),
        Err(join) => Err(ImportError::Task(join.to_string())),
    }
}

/// `turingwatch accounting`: what an import of the given window would store, printed, without
/// touching the store. `since`/`until` are sacct times or durations ago (`2h`, `3d`).
pub fn print_only(
    config: &turingwatch_config::Config,
    since: Option<&str>,
    until: Option<&str>,
    user: Option<&str>,
    json: bool,
) -> Result<String, ImportError> {
    let tz = jiff::tz::TimeZone::system();
    let now = unix_now();
    let default_since = format!("{}s", config.accounting.interval.as_secs());
    let start = sacct_time_arg(since.unwrap_or(&default_since), now, &tz)?;
    let end = match until {
        Some(until) => sacct_time_arg(until, now, &tz)?,
        None => crate::slurm::sacct::sacct_time(now, &tz)?,
    };
    let runner = SlurmRunner::new(&config.slurm);
    let delimiter = crate::slurm::delimited::Delimiter::random();
    let args = crate::slurm::sacct::window_args(&runner, &delimiter, &start, &end, user);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ImportError::Task(e.to_string()))?;
    let batch = runtime.block_on(crate::slurm::sacct::fetch_with_args(&runner, &args, &delimiter, &tz, now))?;
    if json {
        crate::slurm::sacct_print::render_json(&batch).map_err(|e| ImportError::Task(e.to_string()))
    } else {
        Ok(crate::slurm::sacct_print::render_text(&batch, &tz))
    }
}

/// `turingwatch debug store-jobs`: stored jobs with their steps and how often each appears in
/// the by-user index, the job count and the watermark, as JSON (for the end-to-end tests).
pub fn debug_store_jobs(db: &std::path::Path, ids: &[u64]) -> Result<String, ImportError> {
    let store = Store::open(db)?;
    let mut jobs = Vec::new();
    for &id in ids {
        let Some(job) = store.job(crate::job::JobId(id))? else { continue };
        let indexed = store.job_ids_of_user(&job.user)?.iter().filter(|j| j.0 == id).count();
        let steps = store.steps(job.id)?;
        jobs.push(serde_json::json!({ "job": job, "steps": steps, "in_user_index": indexed }));
    }
    let doc = serde_json::json!({
        "job_count": store.job_count()?,
        "watermark": store.meta(IMPORT_WATERMARK_KEY)?,
        "jobs": jobs,
    });
    Ok(doc.to_string())
}

/// A duration ago (`2h`, `3d`, `90m`) becomes an absolute local time; anything else is passed to
/// sacct as written (it accepts `2026-11-25T10:00`, `now-2hours`, `MMDD`…).
fn sacct_time_arg(text: &str, now: u64, tz: &jiff::tz::TimeZone) -> Result<String, SacctError> {
    match turingwatch_config::parse_span(text) {
        Ok(span) => crate::slurm::sacct::sacct_time(now.saturating_sub(span.as_secs()), tz),
        Err(_) => Ok(text.trim().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_that_keeps_failing_is_halved_then_skipped() {
        let w = |from, to| Window { from, to, user: None };
        assert_eq!(narrow(&w(0, 86_400), 0), Narrowing::Narrow(43_200));
        assert_eq!(narrow(&w(0, 1_000), 0), Narrowing::Narrow(MIN_NARROWED_SECS));
        assert_eq!(narrow(&w(0, 600), 0), Narrowing::Narrow(600));
        assert_eq!(narrow(&w(0, 600), SKIP_AFTER_FAILURES - 2), Narrowing::Narrow(600));
        assert_eq!(narrow(&w(100, 700), SKIP_AFTER_FAILURES - 1), Narrowing::Skip { from: 100, to: 700 });
        // After a skip the next window starts where the skipped one ended.
        let next = next_window(Some(watermark_after_skip(700)), 10_000, 3_600);
        assert_eq!(next.from, 700);
    }

    #[test]
    fn only_failures_that_blame_the_window_narrow_it() {
        use crate::slurm::SlurmError;
        let refused = SacctError::Slurm(SlurmError::Failed {
            program: "sacct".into(),
            status: "exit status: 1".into(),
            stderr: "sacct: error: Query result exceeds size limit".into(),
        });
        assert!(ImportError::Sacct(refused).blames_window());
        let down = SacctError::Slurm(SlurmError::Failed {
            program: "sacct".into(),
            status: "exit status: 1".into(),
            stderr: "sacct: error: Problem talking to the database: Connection refused".into(),
        });
        assert!(!ImportError::Sacct(down).blames_window());
        assert!(!ImportError::Task("x".into()).blames_window());
    }
    use crate::slurm::sacct_parse::parse_sacct;

    const WINDOW: &str = include_str!("../../../tests/fixtures/sacct/window.txt");

    #[test]
    fn durations_ago_become_times_and_absolute_times_pass_through() {
        let tz = jiff::tz::TimeZone::UTC;
        assert_eq!(sacct_time_arg("2h", 1_795_644_165, &tz).unwrap(), "2026-11-25T20:02:45");
        assert_eq!(sacct_time_arg("3d", 1_795_644_165, &tz).unwrap(), "2026-11-22T22:02:45");
        assert_eq!(sacct_time_arg("2026-11-25T10:00", 0, &tz).unwrap(), "2026-11-25T10:00");
    }

    #[test]
    fn windows_overlap_the_previous_one_and_the_first_reaches_back() {
        assert_eq!(next_window(None, 100_000, 3_600), Window { from: 96_400, to: 100_000, user: None });
        // A 28-day first window is imported a day at a time.
        let first = next_window(None, 10_000_000, 28 * 86_400);
        assert_eq!((first.from, first.to), (10_000_000 - 28 * 86_400, 10_000_000 - 27 * 86_400));
        let second = next_window(Some(first.to), 10_000_000, 28 * 86_400);
        assert_eq!(second.from, first.to - WINDOW_OVERLAP_SECS);
        assert_eq!(next_window(Some(99_000), 100_000, 3_600).from, 99_000 - WINDOW_OVERLAP_SECS);
        assert_eq!(next_window(Some(10), 20, 3_600).from, 0);
    }

    #[test]
    fn reimporting_a_window_is_idempotent_and_reports_changes_once() {
        let dir = std::env::temp_dir().join(format!("tw-acct-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&dir.join("s.redb")).unwrap();
        let tz = jiff::tz::TimeZone::UTC;
        // Job 12 first seen running (its end cleared), then finished.
        let mut running = parse_sacct(WINDOW, &tz, 1);
        for (job, steps) in &mut running.jobs {
            if job.id == JobId(12) {
                job.end_at = None;
                job.state = "RUNNING".into();
                steps.truncate(1);
            }
        }
        let first = commit_batch(&store, running, 1_000).unwrap();
        assert_eq!(first.event.new.len(), 9);
        assert!(!first.event.finished.contains(&JobId(12)));
        assert_eq!(first.event.busy_nodes, [("n1".to_string(), 1)]);
        let done = parse_sacct(WINDOW, &tz, 2);
        let second = commit_batch(&store, done.clone(), 2_000).unwrap();
        assert!(second.event.new.is_empty());
        assert_eq!(second.event.finished, [JobId(12)]);
        assert!(second.event.busy_nodes.is_empty());
        let third = commit_batch(&store, done, 3_000).unwrap();
        assert!(third.event.new.is_empty() && third.event.finished.is_empty());
        assert_eq!(store.job_count().unwrap(), 9);
        let stored = store.job(JobId(12)).unwrap().unwrap();
        assert_eq!((stored.state.as_str(), stored.usage.max_rss_bytes), ("COMPLETED", Some(219_496_448)));
        assert_eq!(store.steps(JobId(12)).unwrap().len(), 2);
        assert_eq!(store.meta(IMPORT_WATERMARK_KEY).unwrap(), Some(3_000));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
