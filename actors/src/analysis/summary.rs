//! The analysis proper: jobs in, per-job and per-user results out. Pure functions over loaded
//! data (see `load.rs` for reading the store), so the benchmark and the tests run them directly.

use super::efficiency::{efficiency, with_live_samples, Efficiency};
use super::energy::{job_energy, Energy};
use super::findings::{job_findings, Finding, FindingKind, Rules, Severity};
use super::period::Period;
use super::rightsize::{rightsize, RightSize};
use super::series::{
    allocation_coverage, gpu_coverage, series_stats, GpuNoData, GpuUse, NodeUse, SeriesParams, SeriesStats, SysRatio,
};
use crate::job::{JobId, JobRecord, StepId, StepRecord};
use crate::sample::{GpuReading, StepSample};
use crate::store::SeriesKey;
use serde::Serialize;
use std::collections::BTreeMap;
use turingwatch_config::Config;

/// How many periods back a family trend reaches (the current one included).
pub const TREND_PERIODS: u64 = turingwatch_config::TREND_PERIODS;
/// How many jobs the "worst jobs" list holds.
pub const WORST_JOBS: usize = 5;

/// Everything stored about one job.
#[derive(Debug, Clone)]
pub struct JobInput {
    pub job: JobRecord,
    pub steps: Vec<StepRecord>,
    pub samples: BTreeMap<SeriesKey, Vec<StepSample>>,
    pub gpu: BTreeMap<SeriesKey, Vec<GpuReading>>,
    pub apps: Vec<(StepId, String)>,
}

impl JobInput {
    /// A job without steps, samples or applications (struct-update syntax adds what there is).
    pub fn new(job: JobRecord) -> JobInput {
        JobInput { job, steps: Vec::new(), samples: BTreeMap::new(), gpu: BTreeMap::new(), apps: Vec::new() }
    }
}

/// Parameters of the analysis, taken from the configuration once.
#[derive(Debug, Clone)]
pub struct Params {
    pub findings: turingwatch_config::FindingsConfig,
    pub preload_library: String,
    pub series: SeriesParams,
    pub rightsize_min_jobs: u32,
    pub rightsize_margin_frac: f64,
    pub period_secs: u64,
    /// The service's own scraper jobs: `[distributor] job_name` submitted by one of
    /// the service users (`service_user`: `[ingest] service_users` and the server's own user).
    /// They are neither analysed, mailed nor counted as waste.
    pub service_job_name: String,
    pub service_users: Vec<String>,
    /// Site factors of the energy estimate.
    pub energy: turingwatch_config::EnergyConfig,
}

impl Params {
    /// Reads the parameters from the configuration.
    pub fn from_config(config: &Config) -> Params {
        Params {
            findings: config.findings.clone(),
            preload_library: config.findings.preload_library.clone(),
            series: SeriesParams {
                max_gap_secs: config.scrape.interval.as_secs().max(1) * 3,
                sys_ratio_min_sys_cs: config.findings.sys_ratio_min_sys.as_secs() * 100,
                gpu_low_util_pct: config.findings.gpu_low_util_pct,
                fault_churn_per_sec: config.findings.fault_churn_per_sec,
            },
            rightsize_min_jobs: config.analysis.rightsize_min_jobs,
            rightsize_margin_frac: config.analysis.rightsize_margin_frac,
            period_secs: config.analysis.period.as_secs().max(1),
            service_job_name: config.distributor.job_name.clone(),
            service_users: crate::service_user::ServiceUsers::of_this_process(&config.ingest.service_users).names(),
            energy: config.energy.clone(),
        }
    }

    /// Whether `job` is one of the service's own scraper jobs.
    pub fn is_service_job(&self, job: &JobRecord) -> bool {
        !self.service_job_name.is_empty() && job.name == self.service_job_name && self.service_users.contains(&job.user)
    }
}

/// The analysis of one job: its record and steps, and what the samples and the rules say.
///
/// The record and steps are held as they are; the JSON (stored reports, `raw.json`, `turingwatch
/// job --json`) shows the figures of them that the reports use (`JobFigures`, `StepFigures`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobAnalysis {
    #[serde(flatten, serialize_with = "JobFigures::serialize_record")]
    pub record: JobRecord,
    pub efficiency: Efficiency,
    /// Share of the run covered by samples (0 without samples).
    pub sample_coverage_frac: f64,
    pub samples: u64,
    pub nodes: Vec<NodeUse>,
    pub gpus: Vec<GpuUse>,
    /// Why a job allocated GPUs has no GPU figures (and no GPU findings); `None` when a GPU was
    /// read or none was allocated.
    pub gpu_no_data: Option<GpuNoData>,
    /// GPU-seconds allocated (allocated GPUs × elapsed); summed per period for GPU coverage.
    pub gpu_secs_alloc: u64,
    /// GPU-seconds covered by GPU readings (at most `gpu_secs_alloc`).
    pub gpu_secs_sampled: u64,
    /// Allocated GPUs that have no reading (not judged).
    pub gpus_unread: u64,
    pub sys_ratio: SysRatio,
    pub apps: Vec<String>,
    #[serde(serialize_with = "StepFigures::serialize_steps")]
    pub steps: Vec<StepRecord>,
    pub findings: Vec<Finding>,
    /// Waste score used to rank jobs: idle core-hours plus unused GiB-hours / 4.
    pub waste: f64,
    /// Energy and carbon, measured or estimated (`analysis::energy`); `None` if it never ran.
    pub energy: Option<Energy>,
}

impl JobAnalysis {
    /// The job's id.
    pub fn id(&self) -> JobId {
        self.record.id
    }

    /// The most severe finding's severity.
    pub fn worst_severity(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }
}

/// The figures of a job record that the analysis's JSON shows (the job's id as `job`).
#[derive(Serialize)]
struct JobFigures<'a> {
    job: JobId,
    display_id: &'a str,
    name: &'a str,
    user: &'a str,
    account: &'a str,
    partition: &'a str,
    state: &'a str,
    start_at: Option<u64>,
    end_at: Option<u64>,
    elapsed_secs: u64,
    time_limit_secs: Option<u64>,
    node_list: &'a str,
    node_count: u32,
    alloc_cpus: u32,
    alloc_gpus: u64,
    req_mem_bytes: Option<u64>,
    max_rss_bytes: Option<u64>,
    /// Memory used as SLURM counts it (the sum of the tasks' peaks, the largest step).
    mem_used_bytes: Option<u64>,
    total_cpu_ms: u64,
    user_cpu_ms: u64,
    system_cpu_ms: u64,
}

impl JobFigures<'_> {
    fn serialize_record<S: serde::Serializer>(job: &JobRecord, serializer: S) -> Result<S::Ok, S::Error> {
        JobFigures {
            job: job.id,
            display_id: &job.display_id,
            name: &job.name,
            user: &job.user,
            account: &job.account,
            partition: &job.partition,
            state: &job.state,
            start_at: job.start_at,
            end_at: job.end_at,
            elapsed_secs: job.elapsed_secs,
            time_limit_secs: job.time_limit_secs,
            node_list: &job.node_list,
            node_count: job.node_count,
            alloc_cpus: job.alloc_cpus,
            alloc_gpus: job.alloc_gpus(),
            req_mem_bytes: job.req_mem_bytes,
            max_rss_bytes: job.usage.max_rss_bytes,
            mem_used_bytes: job.usage.mem_used(),
            total_cpu_ms: job.usage.total_cpu_ms,
            user_cpu_ms: job.usage.user_cpu_ms,
            system_cpu_ms: job.usage.system_cpu_ms,
        }
        .serialize(serializer)
    }
}

/// The figures of a step record that the analysis's JSON shows (the step id as text: `batch`, `0`).
#[derive(Serialize)]
struct StepFigures<'a> {
    step: String,
    name: &'a str,
    state: &'a str,
    elapsed_secs: u64,
    total_cpu_ms: u64,
    max_rss_bytes: Option<u64>,
    max_rss_node: &'a str,
}

impl StepFigures<'_> {
    fn serialize_steps<S: serde::Serializer>(steps: &[StepRecord], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(steps.iter().map(|s| StepFigures {
            step: s.step.to_string(),
            name: &s.name,
            state: &s.state,
            elapsed_secs: s.elapsed_secs,
            total_cpu_ms: s.usage.total_cpu_ms,
            max_rss_bytes: s.usage.max_rss_bytes,
            max_rss_node: &s.usage.max_rss_node,
        }))
    }
}

/// Analyses one job from its record and (when present) its samples.
pub fn analyze_job(input: &JobInput, params: &Params) -> JobAnalysis {
    let job = &input.job;
    let stats: Option<SeriesStats> = (!input.samples.is_empty() || !input.gpu.is_empty())
        .then(|| series_stats(&input.samples, &input.gpu, job.elapsed_secs, &params.series));
    let eff = match &stats {
        Some(s) => with_live_samples(efficiency(job), job, s),
        None => efficiency(job),
    };
    let mut apps: Vec<String> = input.apps.iter().map(|(_, a)| a.clone()).collect();
    apps.sort();
    apps.dedup();
    let rules = Rules { config: &params.findings, preload_library: &params.preload_library };
    // The service's own scraper jobs are shown with their figures but judged on nothing.
    let service = params.is_service_job(job);
    let findings = if service { Vec::new() } else { job_findings(job, &eff, stats.as_ref(), &apps, &rules) };
    let unused_mem = match (job.req_mem_bytes, job.usage.mem_used()) {
        (Some(req), Some(used)) if !job.is_running() => req.saturating_sub(used) as f64 / (1u64 << 30) as f64,
        _ => 0.0,
    };
    let waste = if service {
        0.0
    } else {
        (eff.wasted_core_secs as f64 + unused_mem * job.elapsed_secs as f64 / 4.0) / 3_600.0
    };
    let gpu = gpu_coverage(job.alloc_gpus(), job.elapsed_secs, stats.as_ref());
    let mut energy = job_energy(job, &eff, stats.as_ref(), &params.energy);
    if service {
        // The service's own jobs cost what they cost, but are nobody's waste.
        if let Some(e) = energy.as_mut() {
            (e.wasted_kwh, e.wasted_co2e_g) = (0.0, 0.0);
        }
    }
    let stats = stats.unwrap_or_default();
    JobAnalysis {
        record: job.clone(),
        efficiency: eff,
        sample_coverage_frac: allocation_coverage(&stats, job.node_count, job.elapsed_secs),
        samples: stats.samples,
        nodes: stats.nodes,
        gpus: stats.gpus,
        gpu_no_data: gpu.no_data,
        gpu_secs_alloc: gpu.secs_alloc,
        gpu_secs_sampled: gpu.secs_sampled,
        gpus_unread: gpu.unread,
        sys_ratio: stats.sys_ratio,
        apps,
        steps: input.steps.clone(),
        findings,
        waste,
        energy,
    }
}

/// A job family's efficiency in one of the recent periods.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrendPoint {
    /// 0 = this period, 1 = the one before, …
    pub periods_ago: u64,
    pub jobs: u32,
    pub mean_cpu_frac: Option<f64>,
    pub mean_mem_frac: Option<f64>,
}

/// A job family's trend across periods.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FamilyTrend {
    pub name: String,
    pub submit_line: String,
    pub points: Vec<TrendPoint>,
}

/// Counts of one finding kind in a user's period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KindCount {
    pub kind: FindingKind,
    pub title: &'static str,
    pub severity: Severity,
    pub jobs: usize,
    pub cause: &'static str,
    pub impact: &'static str,
    pub solution: &'static str,
}

/// One user's analysis of one period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserAnalysis {
    pub user: String,
    pub period: Period,
    pub jobs: Vec<JobAnalysis>,
    pub kinds: Vec<KindCount>,
    /// Ids of the worst jobs (by waste, with a serious or medium finding), worst first.
    pub worst: Vec<JobId>,
    pub families: Vec<FamilyTrend>,
    pub rightsize: Vec<RightSize>,
    pub alloc_core_hours: f64,
    pub used_core_hours: f64,
    /// Energy of the period's jobs and the part that was wasted, kWh, and their carbon, g CO2e.
    pub energy_kwh: f64,
    pub wasted_kwh: f64,
    pub co2e_g: f64,
    pub wasted_co2e_g: f64,
}

impl UserAnalysis {
    /// Whether there is anything worth a mail: a finding above informational.
    pub fn has_findings(&self) -> bool {
        self.jobs.iter().any(|j| j.worst_severity().is_some_and(|s| s >= Severity::Medium))
    }
}

/// Analyses one user's jobs in a period. `history` holds the user's jobs of all time (for trends
/// and right-sizing); it may include the period's own jobs.
pub fn analyze_user(
    user: &str,
    period: Period,
    inputs: &[JobInput],
    history: &[JobRecord],
    params: &Params,
) -> UserAnalysis {
    let mut jobs: Vec<JobAnalysis> = inputs.iter().map(|i| analyze_job(i, params)).collect();
    jobs.sort_by_key(JobAnalysis::id);

    let mut by_family: BTreeMap<String, Vec<&JobRecord>> = BTreeMap::new();
    for j in history {
        by_family.entry(j.family_key()).or_default().push(j);
    }
    let mut rightsizes = Vec::new();
    let mut families = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for input in inputs {
        let job = &input.job;
        let family = job.family_key();
        if !seen.insert(family.clone()) {
            continue;
        }
        let mut members: Vec<&JobRecord> = by_family.get(&family).cloned().unwrap_or_default();
        if !members.iter().any(|m| m.id == job.id) {
            members.push(job);
        }
        let latest =
            inputs.iter().map(|i| &i.job).filter(|j| j.family_key() == family).max_by_key(|j| j.id).unwrap_or(job);
        if let Some(r) = rightsize(&job.name, &members, latest, params.rightsize_min_jobs, params.rightsize_margin_frac)
        {
            if let Some(target) = jobs.iter_mut().find(|a| a.id() == latest.id) {
                target.findings.push(Finding {
                    kind: FindingKind::RightSize,
                    severity: FindingKind::RightSize.severity(),
                    job: latest.id,
                    evidence: format!(
                        "p95 over {} jobs: peak {}, elapsed {}, {:.1} cores",
                        r.jobs,
                        super::findings::bytes_text(r.p95_peak_mem_bytes),
                        super::findings::duration_text(r.p95_elapsed_secs),
                        r.p95_cores
                    ),
                    fix: r.options(),
                });
            }
            rightsizes.push(r);
        }
        families.push(trend(job, &members, period, params.period_secs));
    }

    let mut kinds = Vec::new();
    for kind in FindingKind::ALL {
        let n = jobs.iter().filter(|j| j.findings.iter().any(|f| f.kind == kind)).count();
        if n > 0 {
            kinds.push(KindCount {
                kind,
                title: kind.title(),
                severity: kind.severity(),
                jobs: n,
                cause: kind.cause(),
                impact: kind.impact(),
                solution: kind.solution(),
            });
        }
    }
    kinds.sort_by(|a, b| b.severity.cmp(&a.severity).then(b.jobs.cmp(&a.jobs)));
    let mut ranked: Vec<&JobAnalysis> =
        jobs.iter().filter(|j| j.worst_severity().is_some_and(|s| s >= Severity::Medium)).collect();
    ranked.sort_by(|a, b| b.waste.total_cmp(&a.waste).then(a.id().cmp(&b.id())));
    let worst = ranked.iter().take(WORST_JOBS).map(|j| j.id()).collect();
    // Only jobs with a CPU figure: a running job's CPU time is not reported yet, and counting
    // its allocation against no use would pull the overall figure towards 0 %.
    let measured = || jobs.iter().filter(|j| j.efficiency.cpu_frac.is_some());
    let alloc_core_hours = measured().map(|j| j.efficiency.core_secs as f64).sum::<f64>() / 3_600.0;
    let used_core_hours = measured().map(|j| j.record.usage.total_cpu_ms as f64 / 1000.0).sum::<f64>() / 3_600.0;
    let energy = |f: fn(&Energy) -> f64| jobs.iter().filter_map(|j| j.energy.as_ref()).map(f).sum::<f64>();
    let (energy_kwh, wasted_kwh) = (energy(|e| e.kwh), energy(|e| e.wasted_kwh));
    let (co2e_g, wasted_co2e_g) = (energy(|e| e.co2e_g), energy(|e| e.wasted_co2e_g));
    UserAnalysis {
        user: user.to_string(),
        period,
        energy_kwh,
        wasted_kwh,
        co2e_g,
        wasted_co2e_g,
        jobs,
        kinds,
        worst,
        families,
        rightsize: rightsizes,
        alloc_core_hours,
        used_core_hours,
    }
}

fn trend(job: &JobRecord, members: &[&JobRecord], period: Period, period_secs: u64) -> FamilyTrend {
    let mut points: Vec<TrendPoint> = (0..TREND_PERIODS)
        .map(|k| TrendPoint { periods_ago: k, jobs: 0, mean_cpu_frac: None, mean_mem_frac: None })
        .collect();
    let mut sums = vec![(0.0, 0u32, 0.0, 0u32); TREND_PERIODS as usize];
    for m in members {
        let Some(end) = m.end_at else { continue };
        if end >= period.end {
            continue;
        }
        let ago = (period.end - 1 - end) / period_secs;
        let Some(slot) = sums.get_mut(ago as usize) else { continue };
        let e = efficiency(m);
        points[ago as usize].jobs += 1;
        if let Some(c) = e.cpu_frac {
            slot.0 += c;
            slot.1 += 1;
        }
        if let Some(mm) = e.mem_frac {
            slot.2 += mm;
            slot.3 += 1;
        }
    }
    for (p, s) in points.iter_mut().zip(sums) {
        p.mean_cpu_frac = (s.1 > 0).then(|| s.0 / f64::from(s.1));
        p.mean_mem_frac = (s.3 > 0).then(|| s.2 / f64::from(s.3));
    }
    FamilyTrend { name: job.name.clone(), submit_line: job.submit_line.clone(), points }
}

#[cfg(test)]
pub(crate) mod tests;
