//! Operational metrics, served as Prometheus text on `GET /metrics`.
//!
//! Plain atomics in one struct that `actors/system.rs` hands to every part of the server (no global
//! registry): counters only go up, gauges are set. Rendering is a pure function of the values,
//! so tests compare text. Labels are fixed sets (reasons, states), never user or job ids, so the
//! number of series stays small.

use crate::sample::plausible::{Reason, Refusals};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that is set.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Reasons a report can be rejected at ingest (the label values of `reports_rejected_total`).
pub const REJECT_REASONS: &[&str] = &[
    "unauthenticated",
    "replayed",
    "oversized",
    "malformed",
    "foreign_job",
    "store_error",
    "rate_limited",
    "busy",
    "slow_body",
    "wrong_node",
    "unknown_node",
    "lookup_budget",
];

/// Supervised actors (the label values of `actor_restarts_total`): the server's importer
/// (`accounting`), allocator, rollover and mailer, and the scrape role's sampler and reporter.
pub const ACTORS: &[&str] = &["accounting", "allocator", "rollover", "mailer", "sampler", "reporter"];

/// Every metric the server exports.
#[derive(Debug, Default)]
pub struct Metrics {
    pub import_last_success_at: Gauge,
    pub import_watermark: Gauge,
    pub import_failures_total: Counter,
    /// Steps of batches dropped because the sender may not report their jobs.
    pub report_steps_rejected_total: Counter,
    /// Accounting windows skipped because they kept failing (an alarm: their jobs are missing).
    pub import_windows_skipped_total: Counter,
    pub jobs_imported_total: Counter,
    pub sacct_lines_malformed_total: Counter,
    pub reports_received_total: Counter,
    pub reports_rejected: [Counter; REJECT_REASONS.len()],
    pub samples_stored_total: Counter,
    /// Samples, GPU readings and names refused at ingest, per [`Reason::ALL`] entry.
    pub samples_refused: [Counter; Reason::ALL.len()],
    /// Imported records refused because they would change a stored job's owner.
    pub jobs_owner_change_refused_total: Counter,
    /// 1 while the store works, 0 while an I/O error has it waiting to be reopened.
    pub store_healthy: Gauge,
    /// Times the store was reopened after an I/O error (disk full).
    pub store_reopens: Gauge,
    pub scraper_jobs_pending: Gauge,
    pub scraper_jobs_running: Gauge,
    pub scraper_jobs_failed_total: Counter,
    pub mails_queued: Gauge,
    pub mails_sent_total: Counter,
    pub mails_failed_total: Counter,
    pub store_size_bytes: Gauge,
    /// Supervised restarts, per entry of [`ACTORS`].
    pub actor_restarts: [Counter; 6],
}

impl Metrics {
    /// Counts a rejected report under one of [`REJECT_REASONS`] (unknown reasons count as malformed).
    pub fn reject(&self, reason: &str) {
        let i = REJECT_REASONS.iter().position(|r| *r == reason).unwrap_or(3);
        self.reports_rejected[i].inc();
    }

    /// Counts refused samples by reason.
    pub fn refuse_samples(&self, refused: &Refusals) {
        for (reason, n) in refused.by_reason() {
            if let Some(i) = Reason::ALL.iter().position(|r| *r == reason) {
                self.samples_refused[i].add(n);
            }
        }
    }

    /// Counts a supervised restart of one of [`ACTORS`] (an unknown name is not counted).
    pub fn actor_restarted(&self, actor: &str) {
        if let Some(i) = ACTORS.iter().position(|a| *a == actor) {
            self.actor_restarts[i].inc();
        }
    }

    /// Supervised restarts of `actor` so far.
    pub fn restarts_of(&self, actor: &str) -> u64 {
        ACTORS.iter().position(|a| *a == actor).map_or(0, |i| self.actor_restarts[i].get())
    }

    /// Prometheus text exposition (version 0.0.4), `now` being the current unix time.
    pub fn render(&self, now: u64) -> String {
        let mut out = String::with_capacity(4096);
        let last = self.import_last_success_at.get();
        let watermark = self.import_watermark.get();
        let lag = if watermark == 0 { 0 } else { now.saturating_sub(watermark) };
        let mut metric = |name: &str, kind: &str, help: &str, lines: &[(String, u64)]| {
            let _ = writeln!(out, "# HELP turingwatch_{name} {help}");
            let _ = writeln!(out, "# TYPE turingwatch_{name} {kind}");
            for (labels, value) in lines {
                let _ = writeln!(out, "turingwatch_{name}{labels} {value}");
            }
        };
        let one = |v: u64| vec![(String::new(), v)];
        metric(
            "import_last_success_timestamp_seconds",
            "gauge",
            "Unix time of the last committed accounting import.",
            &one(last),
        );
        metric(
            "import_lag_seconds",
            "gauge",
            "Seconds since the accounting watermark (how far behind SLURM the store is).",
            &one(lag),
        );
        metric(
            "import_failures_total",
            "counter",
            "Accounting imports that failed.",
            &one(self.import_failures_total.get()),
        );
        metric(
            "report_steps_rejected_total",
            "counter",
            "Steps of scraper batches dropped: the sender may not report those jobs.",
            &one(self.report_steps_rejected_total.get()),
        );
        metric(
            "import_windows_skipped_total",
            "counter",
            "Accounting windows skipped after they kept failing (their jobs are not imported).",
            &one(self.import_windows_skipped_total.get()),
        );
        metric(
            "jobs_imported_total",
            "counter",
            "Job records written by the accounting import.",
            &one(self.jobs_imported_total.get()),
        );
        metric(
            "sacct_lines_malformed_total",
            "counter",
            "sacct lines skipped as malformed.",
            &one(self.sacct_lines_malformed_total.get()),
        );
        metric(
            "reports_received_total",
            "counter",
            "Scraper reports received.",
            &one(self.reports_received_total.get()),
        );
        let rejected: Vec<(String, u64)> = REJECT_REASONS
            .iter()
            .zip(&self.reports_rejected)
            .map(|(reason, c)| (format!("{{reason=\"{reason}\"}}"), c.get()))
            .collect();
        metric("reports_rejected_total", "counter", "Scraper reports rejected, by reason.", &rejected);
        metric("samples_stored_total", "counter", "Step samples stored.", &one(self.samples_stored_total.get()));
        let refused: Vec<(String, u64)> = Reason::ALL
            .iter()
            .zip(&self.samples_refused)
            .map(|(reason, c)| (format!("{{reason=\"{}\"}}", reason.as_str()), c.get()))
            .collect();
        metric(
            "samples_refused_total",
            "counter",
            "Reported samples, GPU readings and names refused at ingest (never stored), by reason.",
            &refused,
        );
        metric(
            "jobs_owner_change_refused_total",
            "counter",
            "Imported records refused because they would change a stored job's owner.",
            &one(self.jobs_owner_change_refused_total.get()),
        );
        metric(
            "scraper_jobs",
            "gauge",
            "Scraper jobs of the distributor, by state.",
            &[
                ("{state=\"pending\"}".to_string(), self.scraper_jobs_pending.get()),
                ("{state=\"running\"}".to_string(), self.scraper_jobs_running.get()),
            ],
        );
        metric(
            "scraper_jobs_failed_total",
            "counter",
            "Scraper allocations that failed or timed out (counted when the distributor runs in the server).",
            &one(self.scraper_jobs_failed_total.get()),
        );
        metric("mails_queued", "gauge", "Mails waiting in the outbox.", &one(self.mails_queued.get()));
        metric("mails_sent_total", "counter", "Mails sent.", &one(self.mails_sent_total.get()));
        metric("mails_failed_total", "counter", "Mail attempts that failed.", &one(self.mails_failed_total.get()));
        let restarts: Vec<(String, u64)> = ACTORS
            .iter()
            .zip(&self.actor_restarts)
            .map(|(actor, c)| (format!("{{actor=\"{actor}\"}}"), c.get()))
            .collect();
        metric("actor_restarts_total", "counter", "Supervised actor restarts, by actor.", &restarts);
        metric("store_size_bytes", "gauge", "Size of the store file.", &one(self.store_size_bytes.get()));
        metric(
            "store_healthy",
            "gauge",
            "1 while the store works, 0 while an I/O error (disk full) has it waiting to be reopened.",
            &one(self.store_healthy.get()),
        );
        metric(
            "store_reopens",
            "gauge",
            "Times the store was reopened after an I/O error since the server started.",
            &one(self.store_reopens.get()),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text_with_labels() {
        let m = Metrics::default();
        m.reports_received_total.add(3);
        m.reject("replayed");
        m.reject("nonsense");
        m.actor_restarted("accounting");
        m.actor_restarted("accounting");
        m.import_watermark.set(1_000);
        let mut refused = Refusals::default();
        refused.add(Reason::CpuLeap, 2);
        m.refuse_samples(&refused);
        let text = m.render(1_060);
        assert!(text.contains("turingwatch_samples_refused_total{reason=\"cpu_leap\"} 2\n"), "{text}");
        assert!(text.contains("turingwatch_samples_refused_total{reason=\"block_full\"} 0\n"));
        assert!(text.contains("turingwatch_reports_received_total 3\n"), "{text}");
        assert!(text.contains("turingwatch_reports_rejected_total{reason=\"replayed\"} 1\n"));
        assert!(text.contains("turingwatch_reports_rejected_total{reason=\"malformed\"} 1\n"));
        assert!(text.contains("turingwatch_actor_restarts_total{actor=\"accounting\"} 2\n"));
        assert!(text.contains("turingwatch_actor_restarts_total{actor=\"mailer\"} 0\n"));
        assert_eq!((m.restarts_of("accounting"), m.restarts_of("nonsense")), (2, 0));
        assert!(text.contains("turingwatch_import_lag_seconds 60\n"));
        assert!(text.contains("# TYPE turingwatch_mails_sent_total counter\n"));
        // Every sample line belongs to a declared metric.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(text.contains(&format!("# TYPE {name} ")), "undeclared {name}");
        }
    }

    #[test]
    fn no_watermark_means_no_lag() {
        assert!(Metrics::default().render(5_000).contains("turingwatch_import_lag_seconds 0\n"));
    }
}
