//! The configuration model: one struct per `[section]`, with every default in `Default`.
//!
//! Each key of the original turingopt (compile-time macros and environment variables, see
//! `turingopt.md` §8) is a key here with the same default. Missing keys take the default;
//! unknown keys are rejected by serde (`deny_unknown_fields`) so a typo never passes silently.

use crate::duration::Span;
use serde::{Deserialize, Serialize};

/// The whole configuration. Built by [`crate::load`], checked by [`crate::validate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub store: StoreConfig,
    pub slurm: SlurmConfig,
    pub accounting: AccountingConfig,
    pub scrape: ScrapeConfig,
    pub distributor: DistributorConfig,
    pub ingest: IngestConfig,
    pub analysis: AnalysisConfig,
    pub findings: FindingsConfig,
    pub mail: MailConfig,
    pub web: WebConfig,
    pub gpu: GpuConfig,
    pub energy: EnergyConfig,
    pub log: LogConfig,
    pub export: ExportConfig,
}

/// `[store]`: the embedded redb database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Database file (original `DEFAULT_DB_PATH` / `TURING_WATCH_DB_FILE`: `./turingwatch.db`).
    pub path: String,
    /// How long raw sample and GPU blocks are kept, by the end of their hour. Unset: the
    /// analysis period × (`TREND_PERIODS` + 2), one period more than the trend window plus the
    /// period itself (42 d with the 7 d default). Must exceed period × (1 + `TREND_PERIODS`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_retention: Option<Span>,
    /// How long the per-series summaries (at most `SUMMARY_POINTS` points of min / mean / max)
    /// that replace aged raw blocks are kept, by their series' last sample. At least `raw_retention`.
    pub summary_retention: Span,
    /// How long a job's record is kept after it ended, with everything keyed by it (index
    /// entries, applications, series owners, summaries; see `store::job_retention`). Unset:
    /// `summary_retention`. At least `raw_retention`. Running jobs are never pruned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_retention: Option<Span>,
    /// How often the retention pass runs.
    pub retention_interval: Span,
}

/// How many periods back a family trend reaches (the current one included): the trend window
/// is this many analysis periods. Read by the analysis and by the retention defaults.
pub const TREND_PERIODS: u64 = 4;

impl StoreConfig {
    /// Raw retention in seconds: the configured one, or the default that follows the period.
    pub fn raw_retention_secs(&self, analysis: &AnalysisConfig) -> u64 {
        match self.raw_retention {
            Some(span) => span.as_secs(),
            None => analysis.period.as_secs().saturating_mul(TREND_PERIODS + 2),
        }
    }

    /// Job retention in seconds: the configured one, or `summary_retention`.
    pub fn job_retention_secs(&self) -> u64 {
        self.job_retention.unwrap_or(self.summary_retention).as_secs()
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: "./turingwatch.db".into(),
            raw_retention: None,
            summary_retention: Span::secs(400 * 86_400),
            job_retention: None,
            retention_interval: Span::secs(600),
        }
    }
}

/// `[slurm]`: how SLURM's commands are run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlurmConfig {
    /// Directory holding sacct, squeue, sbatch… Empty: use `$PATH`.
    pub bin_dir: String,
    /// Longest a single SLURM command may run before it is killed.
    pub command_timeout: Span,
    /// Cluster name passed as `-M` to sacct. Empty: the local cluster.
    pub cluster: String,
}

impl Default for SlurmConfig {
    fn default() -> Self {
        SlurmConfig { bin_dir: String::new(), command_timeout: Span::secs(120), cluster: String::new() }
    }
}

/// `[accounting]`: the periodic import from slurmdbd.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccountingConfig {
    /// Time between imports (original `ACCOUNTING_RPC_INTERVAL`, 1 h).
    pub interval: Span,
    /// How far back the very first import reaches (original: 28 days).
    pub first_window: Span,
    /// Retries when slurmdbd is unreachable (original `SLURMDB_RECONNECT_MAX`, 5).
    pub reconnect_max: u32,
    /// Wait between those retries (original `SLURMDB_RECONNECT_WAIT`, 60 s); backoff doubles it.
    pub reconnect_wait: Span,
    /// Users whose jobs are imported but never analysed or mailed (original seed: root).
    pub skip_users: Vec<String>,
    /// Only this user's jobs are imported (`sacct --user`; the user-mode server inside a job).
    /// Empty: every user's (`--allusers`).
    pub user: String,
}

impl Default for AccountingConfig {
    fn default() -> Self {
        AccountingConfig {
            interval: Span::secs(3_600),
            first_window: Span::secs(28 * 86_400),
            reconnect_max: 5,
            reconnect_wait: Span::secs(60),
            skip_users: vec!["root".into()],
            user: String::new(),
        }
    }
}

/// `[scrape]`: the per-node sampler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScrapeConfig {
    /// Time between two samples (original `SCRAPE_INTERVAL`, 20 s).
    pub interval: Span,
    /// Length of one scraper run on a node (original `TOTAL_SCRAPE_TIME_PER_NODE`, 15 min).
    pub time_per_node: Span,
    /// Scraper allocations pending or running at once (original `SCRAPE_CONCURRENT_NODES`, 4).
    pub concurrent_nodes: u32,
    /// Where scrapers send reports. Empty: `http://<web.bind>` of this host.
    pub server_url: String,
    /// Local spool for reports the server has not acknowledged yet (a per-node subdirectory is
    /// used). Empty: `$STATE_DIRECTORY/spool` under a unit with `StateDirectory=`, else a private
    /// per-uid directory under /var/tmp.
    pub spool_dir: String,
    /// Largest size the spool may grow to; the oldest reports are dropped past it (and counted).
    pub spool_max_bytes: u64,
    /// Samples sent in one report at most; a report is also sent after each `report_every`.
    pub report_every: Span,
    /// Program names never listed as applications of a step (original ignore list).
    pub ignored_apps: Vec<String>,
    /// Where a step's cgroup counts its CPU time (and faults), its processes are listed and read
    /// (RSS, I/O, threads, program names) every this many samples; counters every sample.
    pub process_scan_every: u32,
    /// Known processes re-read per scan, round-robin; new processes are always read at once.
    pub process_rereads_per_scan: u32,
    /// Root of the cgroup file system.
    pub cgroup_root: String,
    /// Root of the proc file system.
    pub proc_root: String,
}

impl Default for ScrapeConfig {
    fn default() -> Self {
        ScrapeConfig {
            interval: Span::secs(20),
            time_per_node: Span::secs(900),
            concurrent_nodes: 4,
            server_url: String::new(),
            spool_dir: String::new(),
            spool_max_bytes: 256 * 1024 * 1024,
            report_every: Span::secs(60),
            ignored_apps: ["slurmstepd", "slurm_script", "srun", "turingwatch", "sleep"].map(String::from).to_vec(),
            process_scan_every: 4,
            process_rereads_per_scan: 32,
            cgroup_root: "/sys/fs/cgroup".into(),
            proc_root: "/proc".into(),
        }
    }
}

/// `[distributor]`: how scrapers get onto compute nodes through SLURM allocations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistributorConfig {
    /// A scraper job still pending after this is cancelled (original `ALLOCATION_TIMEOUT`, 120 s).
    pub allocation_timeout: Span,
    /// Job name of scraper jobs (original `SCRAPER_JOB_NAME`).
    pub job_name: String,
    /// Account to charge. Empty: chosen from the service account's associations.
    pub account: String,
    /// Partition to use. Empty: chosen per node from the partitions the account may use.
    pub partition: String,
    /// Memory asked for each scraper job (SLURM `--mem` syntax).
    pub memory: String,
    /// Path of the turingwatch binary as seen from compute nodes. Empty: this binary's path.
    pub binary: String,
    /// First wait after a node's allocation failed; doubles up to `backoff_max`.
    pub backoff_initial: Span,
    /// Longest wait between attempts on a failing node.
    pub backoff_max: Span,
    /// Time between distribution rounds.
    pub round_interval: Span,
    /// Run the distributor inside `turingwatch server` (rounds also start after each accounting
    /// import) instead of as its own `turingwatch distribute` service.
    pub in_server: bool,
}

impl Default for DistributorConfig {
    fn default() -> Self {
        DistributorConfig {
            allocation_timeout: Span::secs(120),
            job_name: "turingwatch".into(),
            account: String::new(),
            partition: String::new(),
            memory: "128M".into(),
            binary: String::new(),
            backoff_initial: Span::secs(60),
            backoff_max: Span::secs(3_600),
            round_interval: Span::secs(60),
            in_server: false,
        }
    }
}

/// `[ingest]`: the server's report endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Users whose MUNGE credentials may report any job (the service accounts).
    pub service_users: Vec<String>,
    /// Largest accepted report body.
    pub max_report_bytes: u64,
    /// Credentials older than this are refused (replay window).
    pub max_credential_age: Span,
    /// `munge` program used by scrapers to encode credentials.
    pub munge_command: String,
    /// `unmunge` program used by the server to decode them when `munge_library` is empty or
    /// cannot be loaded.
    pub unmunge_command: String,
    /// libmunge, loaded at start, which decodes credentials in-process (no program per report).
    pub munge_library: String,
    /// Whether a report's node must be the host that encoded its credential (or the peer).
    pub bind_nodes: bool,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            service_users: vec!["root".into()],
            max_report_bytes: 8 * 1024 * 1024,
            max_credential_age: Span::secs(300),
            munge_command: "munge".into(),
            unmunge_command: "unmunge".into(),
            munge_library: "libmunge.so.2".into(),
            bind_nodes: true,
        }
    }
}

/// `[analysis]`: periods and result bundles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalysisConfig {
    /// Length of one analysis period (original `ANALYZE_PERIOD_LENGTH`, 7 d).
    pub period: Span,
    /// Weekday a period starts on (`mon` … `sun`); used when `period` is a whole number of weeks.
    pub anchor_weekday: String,
    /// Local time of day a period starts at, `HH:MM`.
    pub anchor_time: String,
    /// IANA time zone of the anchor, or `local` for the system zone.
    pub timezone: String,
    /// Directory of the result bundles (original `analysis_result`).
    pub results_dir: String,
    /// Job families need this many past jobs before a right-sizing suggestion is made.
    pub rightsize_min_jobs: u32,
    /// Extra headroom added on top of the p95 figure in right-sizing suggestions.
    pub rightsize_margin_frac: f64,
    /// A period closes once the accounting import has passed its end, or this long after its
    /// end when no import advances (so a stalled importer does not hold mails back forever).
    pub close_grace: Span,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            period: Span::secs(7 * 86_400),
            anchor_weekday: "mon".into(),
            anchor_time: "00:00".into(),
            timezone: "local".into(),
            results_dir: "analysis_result".into(),
            rightsize_min_jobs: 5,
            rightsize_margin_frac: 0.2,
            close_grace: Span::secs(3_600),
        }
    }
}

/// `[findings]`: thresholds of every finding (original values from `turingopt.md` §4.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FindingsConfig {
    /// CPU underuse when used cores < this fraction of allocated cores (original 0.5).
    pub cpu_underuse_frac: f64,
    /// Memory underuse when peak < this fraction of requested memory (original 0.75).
    pub mem_underuse_frac: f64,
    /// "Low compute power" for jobs with at most this many CPUs and no GPU (original 8).
    pub low_compute_max_cpus: u32,
    /// GPU utilisation below this percent counts as low (original 13).
    pub gpu_low_util_pct: f64,
    /// "Try splitting" when the longest zero-utilisation run is ≥ this fraction (original 0.25).
    pub gpu_try_split_frac: f64,
    /// "Investigate GPU usage" when low + zero samples are ≥ this fraction (original 0.9).
    pub gpu_investigate_frac: f64,
    /// Minimum system time in a sample interval for the sys-ratio analysis (original 1 s).
    pub sys_ratio_min_sys: Span,
    /// Time limit far above use when elapsed < this fraction of the limit (original 0.75, disabled there).
    pub time_limit_use_frac: f64,
    /// Jobs shorter than this get no efficiency findings (too short to judge).
    pub min_runtime: Span,
    /// Idle allocation: no active process (or a GPU at 0 %) for at least this long, either
    /// continuously or in most of the sampling windows observed over at least this long.
    pub idle_for: Span,
    /// Page faults (minor + major) per second above which page-fault churn is reported...
    pub fault_churn_per_sec: f64,
    /// ...when the rate stays above it for at least this long, over at least three
    /// consecutive sampling intervals (a program first touching its memory is not churn).
    pub fault_churn_for: Span,
    /// Path of the turingwatch preload library named in system-time and page-fault fixes.
    pub preload_library: String,
}

impl Default for FindingsConfig {
    fn default() -> Self {
        FindingsConfig {
            cpu_underuse_frac: 0.5,
            mem_underuse_frac: 0.75,
            low_compute_max_cpus: 8,
            gpu_low_util_pct: 13.0,
            gpu_try_split_frac: 0.25,
            gpu_investigate_frac: 0.9,
            sys_ratio_min_sys: Span::secs(1),
            time_limit_use_frac: 0.75,
            min_runtime: Span::secs(300),
            idle_for: Span::secs(3_600),
            fault_churn_per_sec: 1_000.0,
            fault_churn_for: Span::secs(300),
            preload_library: "/usr/lib/turingwatch/libturingwatch_preload.so".into(),
        }
    }
}

/// How mail leaves the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailTransport {
    /// An SMTP relay (`smtp_server`, `smtp_port`).
    Smtp,
    /// The local `sendmail` program.
    Sendmail,
    /// Write `.eml` files into `file_dir` (dry run).
    File,
}

/// TLS on the SMTP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain SMTP (a relay on localhost).
    None,
    /// STARTTLS when the server offers it.
    Opportunistic,
    /// STARTTLS or fail.
    Required,
    /// TLS from the first byte (port 465).
    Wrapper,
}

/// When the server's mailer sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailSchedule {
    /// Whenever mails are due (at the rate limit).
    Continuous,
    /// Only after SIGUSR1, until the outbox has nothing due (a systemd timer sends the signal).
    OnSignal,
}

/// `[mail]`: per-user report mails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailConfig {
    /// `smtp`, `sendmail` or `file` (the default: nothing leaves the host until an admin says so).
    pub transport: MailTransport,
    pub smtp_server: String,
    pub smtp_port: u16,
    pub smtp_tls: SmtpTls,
    pub smtp_username: String,
    /// File holding the SMTP password (never the password itself).
    pub smtp_password_file: String,
    pub sendmail_command: String,
    /// Directory for the `file` transport.
    pub file_dir: String,
    /// Sender (original `ANALYZE_MAIL_CONTACT`).
    pub from: String,
    /// Reply-To (original `analyze_letter_reply_address`).
    pub reply_to: String,
    /// Cc on every mail (original `analyze_mail_cc`).
    pub cc: Vec<String>,
    /// Recipients are `user@domain` (original `analyze_letter_domain`).
    pub domain: String,
    /// Per-user recipient addresses that override `user@domain` (user name → address).
    pub addresses: std::collections::BTreeMap<String, String>,
    /// Subject line (original `analyze_letter_subject`).
    pub subject: String,
    /// Least time between two mails (original scripts: 60 s + up to 30 s).
    pub rate_limit: Span,
    /// Random extra wait added to `rate_limit`.
    pub rate_jitter: Span,
    /// Directory of admin-editable templates. Empty: the built-in ones.
    pub templates_dir: String,
    /// Users who get no mail.
    pub opt_out: Vec<String>,
    /// Weekdays on which no mail is sent (`sat`, `sun`, …).
    pub quiet_days: Vec<String>,
    /// Feedback form link (original `analyze_letter_feedback_link`).
    pub feedback_link: String,
    /// Public address of the report web site, for links in mails.
    pub web_base_url: String,
    /// Retries of a failing mail before it is parked as failed.
    pub max_attempts: u32,
    /// `continuous`: the server sends due mails as they come. `on_signal`: it sends only after a
    /// SIGUSR1 (from `turingwatch.mail.timer`), until nothing is due.
    pub schedule: MailSchedule,
    /// Share of users (0–0.5) whose report mails are held back, to measure whether the mails
    /// change anything (`analysis::outcome`); 0 (off) by default. Who is held back is fixed by
    /// a keyed hash of the user name with `holdout_salt`.
    pub holdout_share: f64,
    /// The site's secret for the holdout hash (required when `holdout_share` > 0): users cannot
    /// work out who is held back, and another salt draws another holdout.
    pub holdout_salt: String,
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            transport: MailTransport::File,
            smtp_server: "localhost".into(),
            smtp_port: 25,
            smtp_tls: SmtpTls::None,
            smtp_username: String::new(),
            smtp_password_file: String::new(),
            sendmail_command: "/usr/sbin/sendmail".into(),
            file_dir: "mail-out".into(),
            from: "Admin <webmaster@example.com.localhost>".into(),
            reply_to: String::new(),
            cc: Vec::new(),
            domain: "localhost".into(),
            addresses: std::collections::BTreeMap::new(),
            subject: "HPC Cluster Usage Summary".into(),
            rate_limit: Span::secs(60),
            rate_jitter: Span::secs(30),
            templates_dir: String::new(),
            opt_out: Vec::new(),
            quiet_days: Vec::new(),
            feedback_link: String::new(),
            web_base_url: String::new(),
            max_attempts: 8,
            schedule: MailSchedule::Continuous,
            holdout_share: 0.0,
            holdout_salt: String::new(),
        }
    }
}

/// `[web]`: the report site, JSON API and report ingest listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// Listen address (loopback by default: a reverse proxy terminates TLS and authenticates).
    pub bind: String,
    /// Header carrying the authenticated user name (original `X-AuthUser`).
    pub identity_header: String,
    /// Peers whose identity header is trusted (addresses or CIDR ranges).
    pub trusted_proxies: Vec<String>,
    /// Domains accepted in an identity such as `alice@example.org` (which then names `alice`);
    /// others are refused. Empty: only plain user names.
    pub identity_domains: Vec<String>,
    /// Users who see everything.
    pub admins: Vec<String>,
    /// Let SLURM account coordinators see the users of their accounts.
    pub coordinators_see_accounts: bool,
    /// How long the coordinator list read from sacctmgr is reused before it is read again.
    pub coordinator_cache_ttl: Span,
    /// Largest page of jobs one API call returns.
    pub max_page_size: u32,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            bind: "127.0.0.1:8080".into(),
            identity_header: "X-AuthUser".into(),
            trusted_proxies: vec!["127.0.0.1".into(), "::1".into()],
            identity_domains: Vec::new(),
            admins: Vec::new(),
            coordinators_see_accounts: true,
            coordinator_cache_ttl: Span::secs(300),
            max_page_size: 500,
        }
    }
}

/// Where GPU readings come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuSource {
    /// No GPU readings.
    None,
    /// NVIDIA's NVML library, loaded at run time.
    Nvml,
}

/// `[gpu]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GpuConfig {
    pub source: GpuSource,
    /// Path of `libnvidia-ml.so`. Empty: the loader's search path.
    pub nvml_library: String,
}

impl Default for GpuConfig {
    fn default() -> Self {
        GpuConfig { source: GpuSource::None, nvml_library: String::new() }
    }
}

/// `[energy]`: site factors of the energy estimate (the Green Algorithms model: runtime ×
/// (cores × watts per core × utilisation + memory × watts per GB) × PUE), used where no
/// counter measured the job, and the carbon intensity of the site's electricity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnergyConfig {
    /// Watts one busy core draws (a CPU's TDP / its cores; Green Algorithms' default is 12).
    pub watts_per_core: f64,
    /// Watts per GB of allocated memory (Green Algorithms: 0.3725).
    pub watts_per_gb: f64,
    /// Watts one busy GPU draws (its board power; 0 leaves GPUs out of estimates).
    pub watts_per_gpu: f64,
    /// Power usage effectiveness of the data centre (≥ 1).
    pub pue: f64,
    /// Grams of CO2-equivalent per kWh of the site's electricity.
    pub grams_co2e_per_kwh: f64,
    /// Per-partition factors that differ (`[energy.partitions.gpu] watts_per_core = 15.0`).
    pub partitions: std::collections::BTreeMap<String, EnergyFactors>,
}

/// Factors of one partition; unset ones are the site's.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnergyFactors {
    pub watts_per_core: Option<f64>,
    pub watts_per_gb: Option<f64>,
    pub watts_per_gpu: Option<f64>,
    pub pue: Option<f64>,
}

impl Default for EnergyConfig {
    fn default() -> Self {
        EnergyConfig {
            watts_per_core: 12.0,
            watts_per_gb: 0.3725,
            watts_per_gpu: 300.0,
            pue: 1.4,
            grams_co2e_per_kwh: 300.0,
            partitions: std::collections::BTreeMap::new(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter such as `info` or `turingwatch=debug` (`RUST_LOG` wins when set).
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::Text, level: "info".into() }
    }
}

/// `[export]`: per-job/step series to a Prometheus remote-write receiver, and who may scrape
/// `/metrics/jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExportConfig {
    /// Prometheus remote-write URL (`http://host:port/api/v1/write`); empty: no export.
    pub remote_write_url: String,
    /// How often buffered samples are sent.
    pub interval: Span,
    /// Most values kept while the receiver is unreachable; beyond it the oldest are dropped.
    pub max_buffered_samples: u64,
    /// Longest wait for the receiver's answer.
    pub timeout: Span,
    /// File holding a bearer token sent to the receiver (never the token itself in this file).
    pub bearer_token_file: String,
    /// File holding the bearer token that lets a scraper read `/metrics/jobs`; empty: only
    /// admins through the trusted proxy may.
    pub jobs_token_file: String,
}

impl Default for ExportConfig {
    fn default() -> Self {
        ExportConfig {
            remote_write_url: String::new(),
            interval: Span::secs(5),
            max_buffered_samples: 1_000_000,
            timeout: Span::secs(10),
            bearer_token_file: String::new(),
            jobs_token_file: String::new(),
        }
    }
}
