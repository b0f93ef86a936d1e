//! The JSON contract of `/api/*`: every type the site sends, in one place.
//!
//! These types belong to the web crate (not the store) so the HTTP contract changes only when
//! this file does; the daemon's backend converts its records into them. Units are in the field
//! names (`_secs`, `_bytes`, `_frac`, `_at` = unix seconds) so the UI never guesses.

use serde::Serialize;

/// `GET /api/user`: who the caller is and what they may see.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UserInfo {
    pub user: String,
    pub admin: bool,
    /// Accounts whose users this caller may see as a SLURM coordinator.
    pub coordinator_of: Vec<String>,
    /// Other users this caller may see (empty for admins: they see everyone).
    pub visible_users: Vec<String>,
}

/// One analysis period.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PeriodInfo {
    pub start: u64,
    pub end: u64,
    pub closed: bool,
    pub updated_at: u64,
}

/// A stored report as the backend hands it over (the analysis owns its content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReport {
    pub period_start: u64,
    pub user: String,
    pub json: String,
    pub html: String,
    pub has_findings: bool,
    pub updated_at: u64,
}

/// `GET /api/report`: one user's report for one period.
#[derive(Debug, Clone, Serialize)]
pub struct ReportView {
    pub period: PeriodInfo,
    pub user: String,
    /// The mail body, shown as "my report" (in a sandboxed frame).
    pub html: String,
    /// The report data; `null` when the stored JSON does not parse (then `data_raw` has it).
    pub data: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_raw: Option<String>,
    pub has_findings: bool,
    pub updated_at: u64,
}

/// One job, summarised for lists, the data table and the job page.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct JobSummary {
    pub id: u64,
    pub display_id: String,
    pub name: String,
    pub user: String,
    pub account: String,
    pub partition: String,
    pub state: String,
    pub submit_at: Option<u64>,
    pub start_at: Option<u64>,
    pub end_at: Option<u64>,
    pub elapsed_secs: u64,
    pub time_limit_secs: Option<u64>,
    pub alloc_cpus: u32,
    pub node_count: u32,
    pub node_list: String,
    pub req_mem_bytes: Option<u64>,
    pub max_rss_bytes: Option<u64>,
    pub gpus: u64,
    /// Memory used as SLURM's tools count it: per step the sum over its tasks of each task's
    /// peak, the largest step (`max_rss_bytes` is the largest single task's).
    pub mem_used_bytes: Option<u64>,
    /// seff's CPU efficiency (TotalCPU / (Elapsed × AllocCPUS)); for a running job the cores
    /// busy in its samples per allocated core (`cpu_live`); `null` without elapsed time or, for a
    /// running job, before it has two samples on a node, with the reason in `cpu_no_data`.
    pub cpu_frac: Option<f64>,
    /// Why `cpu_frac` is `null`: `running` (SLURM reports CPU time when steps end),
    /// `no_elapsed_time`.
    pub cpu_no_data: Option<String>,
    /// `cpu_frac` comes from the samples of a running job, not from accounting.
    pub cpu_live: bool,
    /// Memory efficiency: `mem_used_bytes` / memory allocated to the whole job.
    pub mem_frac: Option<f64>,
    /// Why `mem_frac` is `null`: `running`, `no_memory_figure`, `no_memory_request`.
    pub mem_no_data: Option<String>,
    /// `mem_frac` and `mem_used_bytes` are a running job's resident peak from its samples.
    pub mem_live: bool,
    /// Where the live figures start (unix seconds): the job list reads only a recent window of
    /// a running job's samples; `null` when they cover every sample (the job page).
    pub live_since: Option<u64>,
    /// Elapsed / time limit; `null` for an unlimited limit (`time_no_data`: `unlimited`).
    pub time_frac: Option<f64>,
    pub time_no_data: Option<String>,
    pub core_hours: f64,
    pub wasted_core_hours: f64,
    pub gpu_hours: f64,
    /// Mean GPU utilisation over the job's readings; `None` without readings.
    pub gpu_util_frac: Option<f64>,
    /// GPU-hours times the idle fraction; `None` without readings.
    pub wasted_gpu_hours: Option<f64>,
}

/// `GET /api/jobs`: one page of jobs.
#[derive(Debug, Clone, Serialize)]
pub struct JobPage {
    pub total: usize,
    pub page: usize,
    pub page_size: usize,
    pub jobs: Vec<JobSummary>,
}

/// One step of a job: a row of the job page's step table.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StepRow {
    pub step: String,
    pub name: String,
    pub state: String,
    pub elapsed_secs: u64,
    pub alloc_cpus: u32,
    pub total_cpu_secs: f64,
    pub max_rss_bytes: Option<u64>,
    pub node_list: String,
}

/// An analysis finding about a job as the site shows it: its kind, a sentence, and what to
/// change.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FindingText {
    /// Stable machine name of the analysis finding (`cpu_underuse`, `memory_underused`, …).
    pub kind: String,
    pub message: String,
    /// A concrete change to the job script, when there is one.
    pub fix: Option<String>,
}

/// Measurements of one node of a job over time: summed over the job's steps on the node
/// (`step` absent), or of one step on one node (`step` set). Rates are differences of the
/// cumulative counters between a step's consecutive samples over the time between them; the
/// first sample of a step has no rate (0).
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct NodeSeries {
    pub node: String,
    /// The step (`batch`, `0`, …) for a per-step series; absent for the node's sum.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Sample times, unix seconds.
    pub t: Vec<u64>,
    /// Cores in use (CPU seconds per second, user + system).
    pub cores: Vec<f64>,
    /// The user-mode and kernel-mode parts of `cores`.
    pub user_cores: Vec<f64>,
    pub sys_cores: Vec<f64>,
    /// Resident memory (page cache excluded).
    pub rss_bytes: Vec<u64>,
    /// Page cache charged to the job and not mapped by it (0 where unknown).
    pub cache_bytes: Vec<u64>,
    /// I/O through read/write calls (`rchar`/`wchar`: page cache hits included), bytes per second.
    pub read_bytes_per_sec: Vec<f64>,
    pub write_bytes_per_sec: Vec<f64>,
    /// Page faults per second.
    pub minor_faults_per_sec: Vec<f64>,
    pub major_faults_per_sec: Vec<f64>,
}

/// Readings of one GPU of a job over time.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct GpuSeries {
    pub node: String,
    pub index: u32,
    pub t: Vec<u64>,
    pub util_pct: Vec<u32>,
    pub mem_used_mib: Vec<u64>,
    /// Power draw, watts.
    pub power_w: Vec<f64>,
}

/// `GET /api/jobs/{id}`.
#[derive(Debug, Clone, Serialize)]
pub struct JobDetail {
    pub summary: JobSummary,
    pub steps: Vec<StepRow>,
    pub findings: Vec<FindingText>,
    /// What the job asked for per node, drawn as lines on the plots.
    pub cores_requested_per_node: f64,
    pub mem_requested_per_node_bytes: Option<u64>,
    pub series: Vec<NodeSeries>,
    /// The same measurements per step and node (the extern step left out).
    pub step_series: Vec<NodeSeries>,
    pub gpu_series: Vec<GpuSeries>,
    /// Memory peaks from the samples, summed over the nodes' peaks; `null` without samples.
    pub sampled_memory: Option<SampledMemory>,
    /// Energy and carbon; `null` for a job that never ran.
    pub energy: Option<JobEnergy>,
}

/// A job's memory peaks as its samples saw them: per node the largest value at one sample,
/// summed over nodes.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct SampledMemory {
    /// Resident memory (anonymous, mapped, shared; page cache excluded): what the job needs.
    pub resident_peak_bytes: u64,
    /// Page cache charged to the job, shown apart (the kernel drops it before killing the job).
    pub cache_peak_bytes: u64,
    /// As the cgroup charges it (page cache included).
    pub charged_peak_bytes: u64,
}

/// `GET /api/data`: the flat table behind the admin pivot view (one row per job).
#[derive(Debug, Clone, Serialize)]
pub struct DataTable {
    pub period: PeriodInfo,
    pub rows: Vec<JobSummary>,
    /// The period's sampling coverage over all users: admins only (`null` for everyone else,
    /// and before the period's first analysis).
    pub coverage: Option<PeriodCoverage>,
}

/// How much of a period's allocation the scrapers sampled, over every user's jobs (the
/// service's own scraper jobs left out). Jobs are the period's reported ones: a finished job
/// whole in the period it ended in, a running one with its elapsed time so far.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct PeriodCoverage {
    pub jobs: u64,
    /// Jobs with at least one sample, and those without any.
    pub jobs_sampled: u64,
    pub jobs_unsampled: u64,
    /// Core-hours allocated (AllocCPUS × Elapsed) and covered by samples.
    pub core_hours: f64,
    pub core_hours_sampled: f64,
    /// `core_hours_sampled / core_hours`; `null` without allocated core-hours.
    pub core_hours_sampled_frac: Option<f64>,
    /// Jobs allocated GPUs, and those of them without any GPU reading.
    pub gpu_jobs: u64,
    pub gpu_jobs_unsampled: u64,
    /// GPU-hours allocated and with GPU readings.
    pub gpu_hours: f64,
    pub gpu_hours_sampled: f64,
    /// `gpu_hours_sampled / gpu_hours`; `null` without allocated GPU-hours.
    pub gpu_hours_sampled_frac: Option<f64>,
    /// The figures in a sentence ("42 % of the 1 234 core-hours were sampled; 17 jobs had no samples.").
    pub text: String,
}

/// A user's own mail settings (`GET`/`POST /api/settings`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct MailPrefs {
    pub user: String,
    /// No report mail at all.
    pub opted_out: bool,
    /// Weekdays (`mon` … `sun`) on which no mail is sent; a mail due then waits.
    pub quiet_days: Vec<String>,
    /// When the user last changed them; `null` when they never did (the defaults apply).
    pub updated_at: Option<u64>,
    /// The admins' `[mail] opt_out` list names this user: no mail whatever they choose here.
    pub opted_out_by_admin: bool,
}

/// `GET /api/settings`: the caller's settings and the token a `POST` must carry.
#[derive(Debug, Clone, Serialize)]
pub struct SettingsView {
    pub prefs: MailPrefs,
    /// Send back as the `X-CSRF-Token` header of `POST /api/settings`.
    pub csrf_token: String,
    /// Weekdays on which nobody gets mail (`[mail] quiet_days`).
    pub site_quiet_days: Vec<String>,
}

/// The body of `POST /api/settings`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsChange {
    /// Whose settings: only the caller's own are accepted (absent means the caller).
    #[serde(default)]
    pub user: Option<String>,
    pub opted_out: bool,
    #[serde(default)]
    pub quiet_days: Vec<String>,
}

/// `GET /api/settings/all` (admins): who chose what, and who the admins opted out.
#[derive(Debug, Clone, Serialize)]
pub struct AllSettings {
    /// Users who chose settings on the site, by name.
    pub users: Vec<MailPrefs>,
    /// `[mail] opt_out`.
    pub opted_out_by_admin: Vec<String>,
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorBody {
    /// The HTTP status, repeated for clients that only see the body.
    pub status: u16,
    /// Stable machine name (`forbidden`, `not_found`, `bad_request`, …).
    pub error: &'static str,
    /// A sentence for a human.
    pub message: String,
}

/// A job's energy and carbon (`analysis::energy`), with the factors the figures use.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct JobEnergy {
    pub kwh: f64,
    pub co2e_g: f64,
    /// The energy of what was allocated and not used.
    pub wasted_kwh: f64,
    pub wasted_co2e_g: f64,
    /// `measured` (RAPL and NVML counters), `mixed` or `estimated` (the Green Algorithms model).
    pub source: String,
    /// The factors, named: `12 W/core, 0.3725 W/GB, 300 W/GPU, PUE 1.4, 300 g CO2e/kWh`.
    pub factors: String,
}

/// One row of the energy ranking: a user's or an account's jobs in the period.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EnergyRow {
    pub name: String,
    pub jobs: u32,
    pub kwh: f64,
    pub co2e_g: f64,
    pub wasted_kwh: f64,
    pub wasted_co2e_g: f64,
}

/// `GET /api/admin/energy?period=` (admins only): users and accounts by wasted kWh, most first.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EnergyRanking {
    pub period: PeriodInfo,
    pub factors: String,
    pub users: Vec<EnergyRow>,
    pub accounts: Vec<EnergyRow>,
}

/// A proportion with its 95 % interval.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize, PartialEq)]
pub struct RateView {
    pub rate: f64,
    pub low: f64,
    pub high: f64,
}

/// A difference of proportions with its 95 % interval.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize, PartialEq)]
pub struct DifferenceView {
    pub difference: f64,
    pub low: f64,
    pub high: f64,
}

/// Mailed or held-back users for one finding kind (see `analysis::outcome`).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct ArmView {
    pub pairs: u32,
    pub followed: u32,
    pub recurred: u32,
    pub recurrence: Option<RateView>,
    pub families: u32,
    pub wasted_core_hours_per_job_before: Option<f64>,
    pub wasted_core_hours_per_job_after: Option<f64>,
}

/// One finding kind's outcomes.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct KindOutcomeView {
    pub kind: String,
    /// The kind's title as the mails name it.
    #[serde(default)]
    pub title: String,
    pub mailed: ArmView,
    pub held: ArmView,
    /// Recurrence mailed − held back with its 95 % interval; `null` without a holdout.
    pub effect: Option<DifferenceView>,
}

/// `GET /api/admin/outcomes` (admins only): whether the findings recur after the mails.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct OutcomesView {
    pub periods: u32,
    pub method: String,
    /// The configured holdout share (0 = off).
    #[serde(default)]
    pub holdout_share: f64,
    /// Stored reports that could not be read (left out).
    #[serde(default)]
    pub unreadable_reports: u32,
    pub kinds: Vec<KindOutcomeView>,
}
