//! Operational metrics, served as Prometheus text on `GET /metrics`.
//!
//! Plain atomics in one struct that `actors/system.rs` hands to every part of the server (no global
//! registry): counters only go up, gauges are set. Rendering is a pure function of the values,
//! so tests compare text. Labels are fixed sets (reasons, states), never user or job ids, so the
//! number of series stays small.

use crate::analysis::coverage::PeriodCoverage;
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

/// A value that is set, with a fraction (its bits in an atomic).
#[derive(Debug, Default)]
pub struct FloatGauge(AtomicU64);

impl FloatGauge {
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// One period's sampling coverage as exported (`turingwatch_period_*{period="current"|"last"}`).
/// Nothing is exported for a period while `present` is 0 (none stored yet).
#[derive(Debug, Default)]
pub struct PeriodGauges {
    pub present: Gauge,
    pub start: Gauge,
    pub jobs: Gauge,
    pub jobs_unsampled: Gauge,
    pub core_hours: FloatGauge,
    pub core_hours_sampled: FloatGauge,
    pub gpu_hours: FloatGauge,
    pub gpu_hours_sampled: FloatGauge,
}

impl PeriodGauges {
    /// Sets the gauges from a period's coverage; `None` stops exporting them.
    pub fn set(&self, coverage: Option<&PeriodCoverage>) {
        let Some(c) = coverage else {
            self.present.set(0);
            return;
        };
        self.start.set(c.period_start);
        self.jobs.set(c.jobs);
        self.jobs_unsampled.set(c.jobs_unsampled);
        self.core_hours.set(c.core_hours);
        self.core_hours_sampled.set(c.core_hours_sampled);
        self.gpu_hours.set(c.gpu_hours);
        self.gpu_hours_sampled.set(c.gpu_hours_sampled);
        self.present.set(1);
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

/// Reasons the client API (`turingwatch job`, admin commands) refuses a request (the label
/// values of `client_requests_refused_total`).
pub const CLIENT_REFUSE_REASONS: &[&str] =
    &["unauthenticated", "rate_limited", "busy", "bad_id", "forbidden", "oversized", "bad_request"];

/// Why a scraper placement failed (the label values of `scraper_jobs_failed_total`): the
/// submission (`submit_error`, `no_partition`), still pending at the allocation timeout
/// (`pending_timeout`), how sacct says the job ended (`failed`, `out_of_memory`, `timeout`,
/// `node_fail`, `cancelled`, `other`), or a scraper step in a job that exited non-zero
/// (`step_failed`).
pub const SCRAPER_FAILURE_REASONS: &[&str] = &[
    "submit_error",
    "no_partition",
    "pending_timeout",
    "failed",
    "out_of_memory",
    "timeout",
    "node_fail",
    "cancelled",
    "other",
    "step_failed",
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
    /// Client API requests refused, per [`CLIENT_REFUSE_REASONS`] entry.
    pub client_refused: [Counter; CLIENT_REFUSE_REASONS.len()],
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
    /// Failed scraper placements, per [`SCRAPER_FAILURE_REASONS`] entry.
    pub scraper_jobs_failed: [Counter; 10],
    /// Scraper steps running inside users' jobs on packed nodes.
    pub scraper_steps_running: Gauge,
    /// 1 when the distributor can start scraper steps inside users' jobs (it runs as root).
    pub scraper_steps_possible: Gauge,
    /// Nodes with every CPU allocated that no scraper samples (the distributor cannot start
    /// steps there; a node agent can).
    pub packed_nodes_unsampled: Gauge,
    pub mails_queued: Gauge,
    pub mails_sent_total: Counter,
    pub mails_failed_total: Counter,
    pub store_size_bytes: Gauge,
    /// Supervised restarts, per entry of [`ACTORS`].
    pub actor_restarts: [Counter; 6],
    /// Sampling coverage of the period running now and of the latest closed one (set by the
    /// rollover from the store after each period cycle).
    pub period_current: PeriodGauges,
    pub period_last: PeriodGauges,
    /// Remote-write export: values delivered, requests that failed, values dropped (buffer
    /// full or refused by the receiver), values waiting.
    pub export_samples_sent_total: Counter,
    pub export_requests_failed_total: Counter,
    pub export_dropped_total: Counter,
    pub export_pending: Gauge,
    /// Retention passes (`actors::retention`): series summarised, raw blocks and summaries
    /// deleted, failed passes, and the last pass's duration.
    pub retention_series_summarised_total: Counter,
    pub retention_raw_blocks_deleted_total: Counter,
    pub retention_summaries_deleted_total: Counter,
    pub retention_failures_total: Counter,
    pub retention_last_pass_ms: Gauge,
    /// Job retention (`store::job_retention`): jobs deleted past `[store] job_retention` with
    /// their rows, and job blocks or index buckets left alone because they did not decode.
    pub retention_jobs_deleted_total: Counter,
    pub retention_corrupt_job_blocks_total: Counter,
}

impl Metrics {
    /// Counts a rejected report under one of [`REJECT_REASONS`] (unknown reasons count as malformed).
    pub fn reject(&self, reason: &str) {
        let i = REJECT_REASONS.iter().position(|r| *r == reason).unwrap_or(3);
        self.reports_rejected[i].inc();
    }

    /// Counts a refused client API request under one of [`CLIENT_REFUSE_REASONS`] (unknown
    /// reasons count as `bad_request`).
    pub fn client_refused(&self, reason: &str) {
        let i = CLIENT_REFUSE_REASONS.iter().position(|r| *r == reason).unwrap_or(CLIENT_REFUSE_REASONS.len() - 1);
        self.client_refused[i].inc();
    }

    /// Counts refused samples by reason.
    pub fn refuse_samples(&self, refused: &Refusals) {
        for (reason, n) in refused.by_reason() {
            if let Some(i) = Reason::ALL.iter().position(|r| *r == reason) {
                self.samples_refused[i].add(n);
            }
        }
    }

    /// Counts a failed scraper placement under one of [`SCRAPER_FAILURE_REASONS`] (unknown
    /// reasons count as `other`).
    pub fn scraper_failed(&self, reason: &str) {
        let i = SCRAPER_FAILURE_REASONS.iter().position(|r| *r == reason).unwrap_or(8);
        self.scraper_jobs_failed[i].inc();
    }

    /// Failed scraper placements of `reason` so far.
    pub fn scraper_failures(&self, reason: &str) -> u64 {
        SCRAPER_FAILURE_REASONS.iter().position(|r| *r == reason).map_or(0, |i| self.scraper_jobs_failed[i].get())
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
        let client: Vec<(String, u64)> = CLIENT_REFUSE_REASONS
            .iter()
            .zip(&self.client_refused)
            .map(|(reason, c)| (format!("{{reason=\"{reason}\"}}"), c.get()))
            .collect();
        metric(
            "client_requests_refused_total",
            "counter",
            "Client API requests (turingwatch job, admin commands) refused, by reason.",
            &client,
        );
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
        let failed: Vec<(String, u64)> = SCRAPER_FAILURE_REASONS
            .iter()
            .zip(&self.scraper_jobs_failed)
            .map(|(reason, c)| (format!("{{reason=\"{reason}\"}}"), c.get()))
            .collect();
        metric(
            "scraper_jobs_failed_total",
            "counter",
            "Scraper placements that failed, by reason (counted where the distributor runs: in the server, or its own --metrics-bind).",
            &failed,
        );
        metric(
            "scraper_steps_running",
            "gauge",
            "Scraper steps running inside users' jobs on nodes whose CPUs are all allocated.",
            &one(self.scraper_steps_running.get()),
        );
        metric(
            "scraper_steps_possible",
            "gauge",
            "1 when the distributor can start scraper steps inside users' jobs (it runs as root), else 0.",
            &one(self.scraper_steps_possible.get()),
        );
        metric(
            "packed_nodes_unsampled",
            "gauge",
            "Nodes with every CPU allocated that no distributor scraper samples (run the node agent there).",
            &one(self.packed_nodes_unsampled.get()),
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
        metric(
            "retention_series_summarised_total",
            "counter",
            "Series whose aged raw blocks were replaced by a summary.",
            &one(self.retention_series_summarised_total.get()),
        );
        metric(
            "retention_raw_blocks_deleted_total",
            "counter",
            "Raw sample and GPU blocks deleted by retention (after their summary).",
            &one(self.retention_raw_blocks_deleted_total.get()),
        );
        metric(
            "retention_summaries_deleted_total",
            "counter",
            "Summaries deleted past [store] summary_retention.",
            &one(self.retention_summaries_deleted_total.get()),
        );
        metric(
            "retention_failures_total",
            "counter",
            "Retention passes that stopped on an error (nothing uncommitted is deleted).",
            &one(self.retention_failures_total.get()),
        );
        metric(
            "retention_last_pass_milliseconds",
            "gauge",
            "Duration of the last retention pass.",
            &one(self.retention_last_pass_ms.get()),
        );
        metric(
            "retention_jobs_deleted_total",
            "counter",
            "Jobs deleted past [store] job_retention, with every row keyed by them.",
            &one(self.retention_jobs_deleted_total.get()),
        );
        metric(
            "retention_corrupt_job_blocks_total",
            "counter",
            "Job blocks or job index buckets left alone by job retention because they did not decode.",
            &one(self.retention_corrupt_job_blocks_total.get()),
        );
        metric(
            "export_samples_sent_total",
            "counter",
            "Values delivered to the remote-write receiver.",
            &one(self.export_samples_sent_total.get()),
        );
        metric(
            "export_requests_failed_total",
            "counter",
            "Remote-write requests that failed (retried, or dropped on 4xx).",
            &one(self.export_requests_failed_total.get()),
        );
        metric(
            "export_dropped_total",
            "counter",
            "Values never exported: buffer full or refused by the receiver.",
            &one(self.export_dropped_total.get()),
        );
        metric("export_pending", "gauge", "Values waiting to be sent.", &one(self.export_pending.get()));
        self.render_periods(&mut out);
        out
    }

    /// The `turingwatch_period_*` gauges: one line per period that has a stored coverage; a
    /// share only where its denominator is not 0.
    fn render_periods(&self, out: &mut String) {
        type Figure<'a> = (&'a str, &'a str, &'a dyn Fn(&PeriodGauges) -> Option<f64>);
        let ratio = |num: f64, den: f64| (den > 0.0).then(|| (num / den).min(1.0));
        let figures: [Figure; 9] = [
            ("period_start_timestamp_seconds", "Start of the period (unix seconds).", &|g| Some(g.start.get() as f64)),
            ("period_jobs", "Jobs reported in the period (the service's own scraper jobs left out).", &|g| {
                Some(g.jobs.get() as f64)
            }),
            ("period_unsampled_jobs", "Jobs of the period without any sample.", &|g| {
                Some(g.jobs_unsampled.get() as f64)
            }),
            ("period_core_hours", "Core-hours allocated to the period's jobs (AllocCPUS x Elapsed).", &|g| {
                Some(g.core_hours.get())
            }),
            ("period_sampled_core_hours", "Core-hours of the period's jobs covered by samples.", &|g| {
                Some(g.core_hours_sampled.get())
            }),
            ("period_sample_coverage_ratio", "Share of the period's core-hours covered by samples (0..1).", &|g| {
                ratio(g.core_hours_sampled.get(), g.core_hours.get())
            }),
            ("period_gpu_hours", "GPU-hours allocated to the period's jobs.", &|g| Some(g.gpu_hours.get())),
            ("period_sampled_gpu_hours", "GPU-hours of the period's jobs with GPU readings.", &|g| {
                Some(g.gpu_hours_sampled.get())
            }),
            ("period_gpu_sample_coverage_ratio", "Share of the period's GPU-hours with GPU readings (0..1).", &|g| {
                ratio(g.gpu_hours_sampled.get(), g.gpu_hours.get())
            }),
        ];
        let slots = [("current", &self.period_current), ("last", &self.period_last)];
        for (name, help, value) in figures {
            let _ = writeln!(
                out,
                "# HELP turingwatch_{name} {help} period: current = the period running now, last = the latest closed one."
            );
            let _ = writeln!(out, "# TYPE turingwatch_{name} gauge");
            for (label, g) in slots.iter().filter(|(_, g)| g.present.get() == 1) {
                if let Some(v) = value(g).filter(|v| v.is_finite()) {
                    let _ = writeln!(out, "turingwatch_{name}{{period=\"{label}\"}} {v}");
                }
            }
        }
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
        m.scraper_failed("failed");
        m.scraper_failed("bogus");
        let mut refused = Refusals::default();
        refused.add(Reason::CpuLeap, 2);
        m.refuse_samples(&refused);
        let text = m.render(1_060);
        assert!(text.contains("turingwatch_samples_refused_total{reason=\"cpu_leap\"} 2\n"), "{text}");
        assert!(text.contains("turingwatch_samples_refused_total{reason=\"block_full\"} 0\n"));
        assert!(text.contains("turingwatch_reports_received_total 3\n"), "{text}");
        assert!(text.contains("turingwatch_reports_rejected_total{reason=\"replayed\"} 1\n"));
        assert!(text.contains("turingwatch_reports_rejected_total{reason=\"malformed\"} 1\n"));
        let client = Metrics::default();
        client.client_refused("forbidden");
        client.client_refused("no such reason");
        let client = client.render(0);
        assert!(client.contains("turingwatch_client_requests_refused_total{reason=\"forbidden\"} 1\n"), "{client}");
        assert!(client.contains("turingwatch_client_requests_refused_total{reason=\"bad_request\"} 1\n"), "{client}");
        assert!(client.contains("turingwatch_client_requests_refused_total{reason=\"busy\"} 0\n"), "{client}");
        assert!(text.contains("turingwatch_actor_restarts_total{actor=\"accounting\"} 2\n"));
        assert!(text.contains("turingwatch_actor_restarts_total{actor=\"mailer\"} 0\n"));
        assert_eq!((m.restarts_of("accounting"), m.restarts_of("nonsense")), (2, 0));
        assert!(text.contains("turingwatch_import_lag_seconds 60\n"));
        assert!(text.contains("turingwatch_scraper_jobs_failed_total{reason=\"failed\"} 1\n"), "{text}");
        assert!(text.contains("turingwatch_scraper_jobs_failed_total{reason=\"other\"} 1\n"));
        assert_eq!(m.scraper_failures("failed"), 1);
        assert!(text.contains("# TYPE turingwatch_mails_sent_total counter\n"));
        // Every sample line belongs to a declared metric.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(text.contains(&format!("# TYPE {name} ")), "undeclared {name}");
        }
    }

    #[test]
    fn period_coverage_is_exported_per_period_once_known() {
        let m = Metrics::default();
        let text = m.render(0);
        assert!(text.contains("# TYPE turingwatch_period_sample_coverage_ratio gauge\n"), "{text}");
        assert!(!text.contains("{period="), "nothing before a coverage is stored: {text}");
        let current = PeriodCoverage {
            period_start: 1_800_000_000,
            jobs: 20,
            jobs_unsampled: 17,
            core_hours: 1_234.0,
            core_hours_sampled: 518.28,
            ..PeriodCoverage::default()
        };
        m.period_current.set(Some(&current));
        m.period_last.set(Some(&PeriodCoverage { period_start: 1_799_395_200, jobs: 0, ..PeriodCoverage::default() }));
        let text = m.render(0);
        for line in [
            "turingwatch_period_start_timestamp_seconds{period=\"current\"} 1800000000\n",
            "turingwatch_period_jobs{period=\"current\"} 20\n",
            "turingwatch_period_unsampled_jobs{period=\"current\"} 17\n",
            "turingwatch_period_core_hours{period=\"current\"} 1234\n",
            "turingwatch_period_sampled_core_hours{period=\"current\"} 518.28\n",
            "turingwatch_period_sample_coverage_ratio{period=\"current\"} 0.42\n",
            "turingwatch_period_gpu_hours{period=\"current\"} 0\n",
            "turingwatch_period_start_timestamp_seconds{period=\"last\"} 1799395200\n",
            "turingwatch_period_core_hours{period=\"last\"} 0\n",
        ] {
            assert!(text.contains(line), "{line} missing from {text}");
        }
        // No share without a denominator: no GPUs now, no core-hours in the last period.
        assert!(!text.contains("turingwatch_period_gpu_sample_coverage_ratio{"), "{text}");
        assert!(!text.contains("turingwatch_period_sample_coverage_ratio{period=\"last\"}"), "{text}");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(text.contains(&format!("# TYPE {name} gauge")) || !name.starts_with("turingwatch_period"));
        }
        m.period_current.set(None);
        assert!(!m.render(0).contains("{period=\"current\"}"));
    }

    #[test]
    fn no_watermark_means_no_lag() {
        assert!(Metrics::default().render(5_000).contains("turingwatch_import_lag_seconds 0\n"));
    }
}
