//! The accounting importer actor: runs an import ([`ImportJob`], domain) at start and then every
//! `[accounting] interval` after the previous one ended, and publishes `JobsImported` after each
//! committed import.
//!
//! An import that still fails after its `reconnect_max` retries is a failure the importer
//! cannot handle: it stops, and its supervisor restarts it after a delay that grows with each
//! restart in a row (from `reconnect_wait` up to 16 × `reconnect_wait`, with jitter). The
//! watermark is in the store, so the restarted importer picks up the window it missed.
//!
//! A window whose failure blames the window (sacct answers with an error, not "unreachable")
//! is narrowed by half on each failure, down to `MIN_NARROWED_SECS`, and that shortest window is
//! skipped after `SKIP_AFTER_FAILURES` failures: the watermark moves past it, the skip is logged
//! as an error and counted (`/metrics`, and `import_windows_skipped` in the store), and the
//! import goes on. An unreachable slurmdbd or a failing store never skips anything.

use super::messages::JobsImported;
use super::shared::Shared;
use super::supervision::Restarts;
use crate::accounting::{narrow, ImportJob, Narrowing};
use crate::clock::unix_now;
use crate::metrics::Metrics;
use actix::prelude::*;
use std::sync::Arc;
use std::time::Duration;

/// The importer actor.
pub struct AccountingImporter {
    job: ImportJob,
    interval: Duration,
    subscribers: Vec<Recipient<JobsImported>>,
    metrics: Arc<Metrics>,
    restarts: Restarts,
    /// Windows narrowed to this span after failures that blame the window (kept across restarts).
    max_span: Option<u64>,
    /// Failures of the shortest window so far.
    failures_at_min: u32,
}

impl AccountingImporter {
    /// An importer for the server's config and store, publishing to `subscribers`.
    pub fn new(shared: &Shared, subscribers: Vec<Recipient<JobsImported>>) -> Self {
        let acct = &shared.config.accounting;
        let wait = acct.reconnect_wait.get();
        AccountingImporter {
            job: ImportJob::new(&shared.config, shared.store.clone()),
            interval: acct.interval.get(),
            subscribers,
            metrics: shared.metrics.clone(),
            restarts: Restarts::new("accounting", wait, wait.saturating_mul(16), shared.metrics.clone()),
            max_span: None,
            failures_at_min: 0,
        }
    }

    fn schedule(&self, ctx: &mut Context<Self>, after: Duration) {
        ctx.run_later(after, |importer, ctx| importer.import(ctx));
    }

    fn import(&mut self, ctx: &mut Context<Self>) {
        let work = self.job.clone().run_within(self.max_span);
        ctx.spawn(work.into_actor(self).map(|result, importer, ctx| match result {
            Ok(summary) => {
                let m = &importer.metrics;
                m.import_last_success_at.set(unix_now());
                m.import_watermark.set(summary.event.until);
                m.jobs_imported_total.add(summary.jobs as u64);
                m.sacct_lines_malformed_total.add(summary.skipped_lines as u64);
                m.jobs_owner_change_refused_total.add(summary.owner_changes.len() as u64);
                importer.restarts.succeeded();
                (importer.max_span, importer.failures_at_min) = (None, 0);
                for subscriber in &importer.subscribers {
                    subscriber.do_send(JobsImported(summary.event.clone()));
                }
                let next = if summary.caught_up { importer.interval } else { Duration::ZERO };
                importer.schedule(ctx, next);
            }
            Err((err, window)) => {
                importer.metrics.import_failures_total.inc();
                if err.blames_window() {
                    match narrow(&window, importer.failures_at_min) {
                        Narrowing::Narrow(span) => {
                            if Some(span) == importer.max_span {
                                importer.failures_at_min += 1;
                            }
                            importer.max_span = Some(span);
                            tracing::warn!(from = window.from, to = window.to, next_span_secs = span, error = %err, "accounting window failed; narrowing it");
                        }
                        Narrowing::Skip { from, to } => {
                            tracing::error!(from, to, error = %err, "accounting window keeps failing: SKIPPED (its jobs are not imported; `turingwatch accounting --since/--until` shows them)");
                            importer.metrics.import_windows_skipped_total.inc();
                            (importer.max_span, importer.failures_at_min) = (None, 0);
                            let job = importer.job.clone();
                            ctx.spawn(
                                async move { job.skip_window(to).await }.into_actor(importer).map(|done, importer, ctx| {
                                    match done {
                                        Ok(()) => importer.schedule(ctx, Duration::ZERO),
                                        Err(err) => importer.restarts.fail(ctx, &format_args!("cannot skip a window: {err}")),
                                    }
                                }),
                            );
                            return;
                        }
                    }
                }
                importer.restarts.fail(ctx, &format_args!("accounting import gave up: {err}"));
            }
        }));
    }
}

impl Actor for AccountingImporter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let delay = self.restarts.take_delay();
        tracing::info!(
            interval_secs = self.interval.as_secs(),
            delay_secs = delay.as_secs(),
            "accounting importer started"
        );
        self.schedule(ctx, delay);
    }
}

impl Supervised for AccountingImporter {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        // Restart later, not at once: slurmdbd was unreachable a moment ago.
        self.restarts.restarting();
    }
}

/// Starts the importer under a supervisor.
pub fn start(shared: &Shared, subscribers: Vec<Recipient<JobsImported>>) -> Addr<AccountingImporter> {
    let importer = AccountingImporter::new(shared, subscribers);
    Supervisor::start(move |_| importer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::WINDOW_OVERLAP_SECS;
    use crate::store::tables::IMPORT_WATERMARK_KEY;
    use crate::store::Store;

    const WINDOW: &str = include_str!("../../../tests/fixtures/sacct/window.txt");

    /// Collects what the importer publishes.
    struct Probe(Arc<std::sync::Mutex<Vec<JobsImported>>>);

    impl Actor for Probe {
        type Context = Context<Self>;
    }

    impl Handler<JobsImported> for Probe {
        type Result = ();
        fn handle(&mut self, msg: JobsImported, _: &mut Context<Self>) {
            self.0.lock().unwrap().push(msg);
        }
    }

    /// A stand-in `sacct` that records its arguments, fails like an unreachable slurmdbd while
    /// the file `down` exists, and prints the recorded window fixture otherwise.
    #[actix_rt::test]
    async fn the_importer_backs_off_restarts_keeps_its_window_and_publishes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("tw-acct-actor-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::write(dir.join("window.txt"), WINDOW).unwrap();
        std::fs::write(dir.join("down"), "").unwrap();
        let d = dir.display();
        let print = crate::slurm::delimited::shell_print_with_given_delimiter(&format!("{d}/window.txt"));
        let script = format!(
            "#!/bin/sh\necho \"$@\" >> {d}/calls\nif [ -e {d}/down ]; then echo 'sacct: error: Problem talking to the database: Connection refused' >&2; exit 1; fi\n{print}"
        );
        std::fs::write(dir.join("bin/sacct"), script).unwrap();
        std::fs::set_permissions(dir.join("bin/sacct"), std::fs::Permissions::from_mode(0o755)).unwrap();

        let mut config = turingwatch_config::Config::default();
        config.slurm.bin_dir = dir.join("bin").display().to_string();
        config.accounting.reconnect_max = 1;
        config.accounting.reconnect_wait = turingwatch_config::Span::secs(1);
        let store = Arc::new(Store::open(&dir.join("store.redb")).unwrap());
        let watermark = unix_now() - 1_000;
        store.set_meta(IMPORT_WATERMARK_KEY, watermark).unwrap();
        let metrics = Arc::new(Metrics::default());
        let shared = Shared { config: Arc::new(config), store: store.clone(), metrics: metrics.clone() };
        let received = Arc::new(std::sync::Mutex::new(Vec::new()));
        let probe = Probe(received.clone()).start();
        let _importer = start(&shared, vec![probe.recipient()]);

        let calls = || std::fs::read_to_string(dir.join("calls")).unwrap_or_default();
        // First attempt, one retry, give up, restart by the supervisor, attempt again.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while calls().lines().count() < 3 {
            assert!(std::time::Instant::now() < deadline, "calls: {}", calls());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(received.lock().unwrap().is_empty(), "published while sacct failed");
        assert_eq!(store.meta(IMPORT_WATERMARK_KEY).unwrap(), Some(watermark));
        std::fs::remove_file(dir.join("down")).unwrap();
        while received.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "nothing published; calls: {}", calls());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let JobsImported(event) = received.lock().unwrap()[0].clone();
        assert!(metrics.restarts_of("accounting") >= 1, "the supervisor's restart is counted");
        assert_eq!(event.new.len(), 9);
        assert_eq!(event.finished.len(), 9);
        assert!(event.until > watermark);
        assert_eq!(store.meta(IMPORT_WATERMARK_KEY).unwrap(), Some(event.until));
        assert_eq!(store.job_count().unwrap(), 9);
        // Every attempt asked for the same start: the failed window was not skipped.
        let tz = jiff::tz::TimeZone::system();
        let start =
            format!("--starttime={}", crate::slurm::sacct::sacct_time(watermark - WINDOW_OVERLAP_SECS, &tz).unwrap());
        let all_calls = calls();
        assert!(all_calls.lines().count() >= 4);
        assert!(all_calls.lines().all(|l| l.split(' ').any(|a| a == start)), "{all_calls}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
