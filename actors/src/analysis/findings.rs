//! Findings: what is wrong with a job, why it matters, and the concrete change that fixes it.
//!
//! Every kind of the original (turingopt §4.3) is here with its threshold from `[findings]`,
//! plus the ones it lacked (time limit far above use, serial job on many cores, idle
//! allocation, page-fault churn, right-sizing). Accounting-based rules run for every job, so
//! coverage is complete without scraping; sample-based rules run where samples exist. Each
//! finding carries the numbers it was decided on, so a user can check the claim.
//!
//! GPUs are judged per physical device (all steps' readings merged, see `series::gpu_uses`)
//! and only on readings: a job allocated GPUs without any reading gets no GPU finding (its
//! analysis says "no GPU data"), and where only some GPUs were read the rest are left out and
//! counted in the evidence. A GPU is busy when a reading shows utilisation above 0 %. One at 0 %
//! in every reading whose memory the job's processes filled (at least `GPU_HELD_MEM_MIB` while
//! they had it open) is not called idle (no "no utilisation", underuse or idle finding: giving
//! it back would take the data away) but gets "investigate GPU usage". GPU evidence names the
//! device's peak memory and mean power beside its utilisation.

use super::efficiency::Efficiency;
use super::series::SeriesStats;
use crate::job::{JobId, JobRecord};
use serde::Serialize;
use turingwatch_config::FindingsConfig;

/// How urgent a finding is (the original's colours: red, orange, blue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Medium,
    Serious,
}

/// The kinds of findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    CpuUnderuse,
    LowConcurrency,
    SerialOnManyCores,
    LowComputePower,
    MemoryOversubscribed,
    MemoryUnderused,
    TimeLimitUnused,
    IdleAllocation,
    Jupyter,
    GpuUnderuse,
    GpuNoUtilisation,
    TrySplitting,
    InvestigateGpuUsage,
    SystemTimeRatio,
    PageFaultChurn,
    RightSize,
}

impl FindingKind {
    /// Every kind, in report order.
    pub const ALL: [FindingKind; 16] = [
        FindingKind::CpuUnderuse,
        FindingKind::LowConcurrency,
        FindingKind::SerialOnManyCores,
        FindingKind::LowComputePower,
        FindingKind::MemoryOversubscribed,
        FindingKind::MemoryUnderused,
        FindingKind::TimeLimitUnused,
        FindingKind::IdleAllocation,
        FindingKind::Jupyter,
        FindingKind::GpuUnderuse,
        FindingKind::GpuNoUtilisation,
        FindingKind::TrySplitting,
        FindingKind::InvestigateGpuUsage,
        FindingKind::SystemTimeRatio,
        FindingKind::PageFaultChurn,
        FindingKind::RightSize,
    ];

    /// The printed name (the original's, where it had one).
    pub fn title(self) -> &'static str {
        match self {
            FindingKind::CpuUnderuse => "CPU Underusage",
            FindingKind::LowConcurrency => "Low Concurrency",
            FindingKind::SerialOnManyCores => "Serial Job on Many Cores",
            FindingKind::LowComputePower => "Low Compute Power",
            FindingKind::MemoryOversubscribed => "Memory Oversubscribe",
            FindingKind::MemoryUnderused => "Memory Underusage",
            FindingKind::TimeLimitUnused => "Time Limit Far Above Use",
            FindingKind::IdleAllocation => "Idle Allocation",
            FindingKind::Jupyter => "Jupyter Detected",
            FindingKind::GpuUnderuse => "GPU Underusage",
            FindingKind::GpuNoUtilisation => "Completely No Util",
            FindingKind::TrySplitting => "Try Splitting",
            FindingKind::InvestigateGpuUsage => "Investigate GPU Usage",
            FindingKind::SystemTimeRatio => "System Time Ratio",
            FindingKind::PageFaultChurn => "Page Fault Churn",
            FindingKind::RightSize => "Right-size Requests",
        }
    }

    /// How urgent it is.
    pub fn severity(self) -> Severity {
        match self {
            FindingKind::CpuUnderuse
            | FindingKind::LowConcurrency
            | FindingKind::SerialOnManyCores
            | FindingKind::GpuUnderuse
            | FindingKind::GpuNoUtilisation
            | FindingKind::IdleAllocation => Severity::Serious,
            FindingKind::MemoryOversubscribed
            | FindingKind::MemoryUnderused
            | FindingKind::Jupyter
            | FindingKind::InvestigateGpuUsage
            | FindingKind::RightSize => Severity::Medium,
            FindingKind::LowComputePower
            | FindingKind::TimeLimitUnused
            | FindingKind::TrySplitting
            | FindingKind::SystemTimeRatio
            | FindingKind::PageFaultChurn => Severity::Info,
        }
    }

    /// Why it happens.
    pub fn cause(self) -> &'static str {
        match self {
            FindingKind::CpuUnderuse => "The job used far fewer CPU cores than it was allocated.",
            FindingKind::LowConcurrency => {
                "Never more than one core was busy at a time, although several were allocated."
            }
            FindingKind::SerialOnManyCores => {
                "The program ran serially (about one core busy) on a multi-core allocation."
            }
            FindingKind::LowComputePower => "The job ran on a few CPU cores and no GPU.",
            FindingKind::MemoryOversubscribed => "The job's peak memory reached or exceeded what it requested.",
            FindingKind::MemoryUnderused => "The job's peak memory stayed well below what it requested.",
            FindingKind::TimeLimitUnused => "The job ended long before its time limit.",
            FindingKind::IdleAllocation => {
                "The allocation was held with no active process (or an idle GPU) for a long time."
            }
            FindingKind::Jupyter => "A Jupyter notebook server ran inside a batch allocation.",
            FindingKind::GpuUnderuse => "Fewer GPUs were busy than were allocated.",
            FindingKind::GpuNoUtilisation => "An allocated GPU showed 0 % utilisation in every reading.",
            FindingKind::TrySplitting => "A GPU was idle for a long continuous stretch of the job.",
            FindingKind::InvestigateGpuUsage => "GPU utilisation was zero or very low in almost every reading.",
            FindingKind::SystemTimeRatio => {
                "Much of the CPU time was spent in the kernel (system time) rather than in the program."
            }
            FindingKind::PageFaultChurn => {
                "The program faulted pages in at a very high rate (memory allocated and freed repeatedly)."
            }
            FindingKind::RightSize => "Jobs of this family consistently ask for more than they use.",
        }
    }

    /// What it costs.
    pub fn impact(self) -> &'static str {
        match self {
            FindingKind::CpuUnderuse | FindingKind::LowConcurrency | FindingKind::SerialOnManyCores => {
                "Idle cores are blocked for other users, and your jobs wait longer in the queue for cores they do not use."
            }
            FindingKind::LowComputePower => "The job may run much longer than it would with more parallelism.",
            FindingKind::MemoryOversubscribed => "The job risks being killed for running out of memory, or slows down swapping.",
            FindingKind::MemoryUnderused => "Unused memory is blocked for other jobs and makes yours harder to schedule.",
            FindingKind::TimeLimitUnused => "Over-long time limits make the scheduler place your jobs later (backfill cannot use them).",
            FindingKind::IdleAllocation => "Every idle hour is an hour of cores (and GPUs) nobody can use.",
            FindingKind::Jupyter => "Notebook servers in batch jobs hold resources while you think, read or sleep.",
            FindingKind::GpuUnderuse | FindingKind::GpuNoUtilisation => {
                "GPUs are the scarcest resource on the cluster; an idle one is taken from another user."
            }
            FindingKind::TrySplitting | FindingKind::InvestigateGpuUsage => {
                "The GPU was allocated for the whole job but only needed for part of it."
            }
            FindingKind::SystemTimeRatio | FindingKind::PageFaultChurn => {
                "Time spent in the kernel is time not spent computing; the job runs slower than it could."
            }
            FindingKind::RightSize => "Over-asking makes every job of the family wait longer and blocks resources.",
        }
    }

    /// The general fix (a finding adds its concrete one).
    pub fn solution(self) -> &'static str {
        match self {
            FindingKind::CpuUnderuse | FindingKind::SerialOnManyCores | FindingKind::LowConcurrency => {
                "Request only the cores the program uses, or make it use them (threads, MPI ranks, e.g. OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK)."
            }
            FindingKind::LowComputePower => "If the job runs long, check whether it can use more cores or a GPU.",
            FindingKind::MemoryOversubscribed => "Request more memory, or reduce the program's memory use.",
            FindingKind::MemoryUnderused => "Request less memory: peak use plus a safety margin.",
            FindingKind::TimeLimitUnused => "Set --time closer to the real run time (with a margin).",
            FindingKind::IdleAllocation => "End jobs when the work is done; do not keep interactive allocations open while idle.",
            FindingKind::Jupyter => "Use the shared JupyterHub instead of running notebooks in batch jobs.",
            FindingKind::GpuUnderuse | FindingKind::GpuNoUtilisation => {
                "Check that the program really uses the GPU (CUDA_VISIBLE_DEVICES, framework device settings) or request fewer GPUs."
            }
            FindingKind::TrySplitting => "Split the job into a CPU part and a GPU part (e.g. with job dependencies).",
            FindingKind::InvestigateGpuUsage => "Profile the GPU part, or request a consultation session.",
            FindingKind::SystemTimeRatio | FindingKind::PageFaultChurn => {
                "Profile the program. If it allocates and frees large buffers repeatedly, run it with the turingwatch preload library, which recycles them."
            }
            FindingKind::RightSize => "Use the suggested requests for the next jobs of this family.",
        }
    }
}

/// One finding about one job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub severity: Severity,
    pub job: JobId,
    /// The numbers the finding was decided on, in words.
    pub evidence: String,
    /// The concrete change, e.g. `--mem=2G`.
    pub fix: String,
}

impl Finding {
    fn new(kind: FindingKind, job: JobId, evidence: String, fix: String) -> Finding {
        Finding { kind, severity: kind.severity(), job, evidence, fix }
    }
}

/// Names the preload library in fixes.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    pub config: &'a FindingsConfig,
    pub preload_library: &'a str,
}

/// The findings of one job from accounting (always) and samples (where present).
pub fn job_findings(
    job: &JobRecord,
    eff: &Efficiency,
    stats: Option<&SeriesStats>,
    apps: &[String],
    rules: &Rules<'_>,
) -> Vec<Finding> {
    let cfg = rules.config;
    let mut out = Vec::new();
    let id = job.id;
    let mut push = |kind, evidence: String, fix: String| out.push(Finding::new(kind, id, evidence, fix));
    let finished = !job.is_running();
    let judged = job.elapsed_secs >= cfg.min_runtime.as_secs();
    let gpus = job.alloc_gpus();
    let used_cores =
        if job.elapsed_secs > 0 { job.usage.total_cpu_ms as f64 / 1000.0 / job.elapsed_secs as f64 } else { 0.0 };

    // Memory limits are hard: report them even for short jobs. Used memory is SLURM's count
    // (the sum of the tasks' peaks, the largest step), or the sampled peaks where higher.
    let sampled_total = stats.map_or(0, |s| s.nodes.iter().map(|n| n.peak_mem_bytes).sum());
    let sampled_node = stats.map_or(0, |s| s.nodes.iter().map(|n| n.peak_mem_bytes).max().unwrap_or(0));
    let mem_peak = job.usage.mem_used().unwrap_or(0).max(sampled_total);
    let node_peak = job.usage.mem_node_peak().unwrap_or(0).max(sampled_node);
    if let Some(req) = job.req_mem_bytes.filter(|r| *r > 0) {
        if job.state == "OUT_OF_MEMORY" || mem_peak >= req {
            // The peak is cut off at the limit: ask for half as much again as the larger of the
            // two, on the fullest node.
            let per_node_req = req as f64 / f64::from(job.node_count.max(1));
            let (fix, _) =
                mem_advice(job, (node_peak as f64).max(per_node_req) * 1.5, (mem_peak.max(req) as f64) * 1.5);
            push(
                FindingKind::MemoryOversubscribed,
                format!("peak {} of {} requested (state {})", bytes_text(mem_peak), bytes_text(req), job.state),
                fix,
            );
        } else {
            let (fix, whole) = mem_advice(job, node_peak as f64 * 1.2, mem_peak as f64 * 1.2);
            if judged && finished && (mem_peak as f64) < cfg.mem_underuse_frac * req as f64 && whole < req {
                push(
                    FindingKind::MemoryUnderused,
                    format!(
                        "peak {} of {} requested ({:.0} %)",
                        bytes_text(mem_peak),
                        bytes_text(req),
                        mem_peak as f64 * 100.0 / req as f64
                    ),
                    fix,
                );
            }
        }
    }
    if !judged {
        return out;
    }
    let cpu_underuse = finished && eff.cpu_frac.is_some_and(|f| f < cfg.cpu_underuse_frac);
    if cpu_underuse {
        let want = (used_cores * 1.2).ceil().max(1.0) as u32;
        let fix = if want < job.alloc_cpus {
            format!("--cpus-per-task={want} (or --ntasks={want})")
        } else {
            "the program mostly waits (I/O, sleep, locks): profile it before asking for more".to_string()
        };
        push(
            FindingKind::CpuUnderuse,
            format!(
                "{:.1} of {} cores busy on average (CPU efficiency {:.1} %)",
                used_cores,
                job.alloc_cpus,
                eff.cpu_frac.unwrap_or(0.0) * 100.0
            ),
            fix,
        );
    }
    if finished && job.alloc_cpus >= 2 && gpus == 0 && (0.5..=1.25).contains(&used_cores) {
        push(
            FindingKind::SerialOnManyCores,
            format!("{used_cores:.2} cores busy on average out of {}", job.alloc_cpus),
            "--cpus-per-task=1, or run the program multi-threaded".to_string(),
        );
    }
    if job.alloc_cpus <= cfg.low_compute_max_cpus && gpus == 0 && !cpu_underuse && finished {
        push(
            FindingKind::LowComputePower,
            format!("{} core(s), no GPU, ran {}", job.alloc_cpus, duration_text(job.elapsed_secs)),
            "check whether the program can use more cores or a GPU".to_string(),
        );
    }
    if let (true, Some(limit)) = (finished, job.time_limit_secs.filter(|l| *l > 0)) {
        // Suggest 1.5 × the run time in whole minutes; only when that is below the limit.
        let suggested = ((job.elapsed_secs as f64 * 1.5).max(60.0) as u64).div_ceil(60) * 60;
        if (job.elapsed_secs as f64) < cfg.time_limit_use_frac * limit as f64 && suggested < limit {
            push(
                FindingKind::TimeLimitUnused,
                format!("ran {} of a {} limit", duration_text(job.elapsed_secs), duration_text(limit)),
                format!("--time={}", time_option(suggested)),
            );
        }
    }
    if apps.iter().any(|a| a.starts_with("jupyter-noteboo") || a.starts_with("jupyter-lab")) {
        push(FindingKind::Jupyter, format!("applications: {}", apps.join(", ")), "use JupyterHub".to_string());
    }
    let preload = format!("LD_PRELOAD={} <your program>", rules.preload_library);
    match stats.filter(|s| s.samples > 1 || !s.gpus.is_empty()) {
        Some(s) => sample_findings(job, s, rules, &preload, &mut push),
        None => {
            // Accounting-only system time ratio: kernel time at least a third of user time.
            let sys = job.usage.system_cpu_ms as f64 / 1000.0;
            if sys >= cfg.sys_ratio_min_sys.as_secs() as f64
                && job.usage.user_cpu_ms > 0
                && sys * 3.0 >= job.usage.user_cpu_ms as f64 / 1000.0
            {
                push(
                    FindingKind::SystemTimeRatio,
                    format!("system {:.0} s vs user {:.0} s", sys, job.usage.user_cpu_ms as f64 / 1000.0),
                    preload.clone(),
                );
            }
        }
    }
    out
}

fn sample_findings(
    job: &JobRecord,
    s: &SeriesStats,
    rules: &Rules<'_>,
    preload: &str,
    push: &mut impl FnMut(FindingKind, String, String),
) {
    let cfg = rules.config;
    let gpus = job.alloc_gpus();
    let cpu_sampled = s.samples > 1;
    if cpu_sampled && job.alloc_cpus > 1 && gpus == 0 && s.max_cores <= 1.1 {
        push(
            FindingKind::LowConcurrency,
            format!(
                "at most {:.2} cores busy in any of {} samples, {} allocated",
                s.max_cores, s.samples, job.alloc_cpus
            ),
            "--cpus-per-task=1, or parallelise the program".to_string(),
        );
    }
    let idle_fix = "end the job when its work is done (scancel), or use a shorter --time";
    if cpu_sampled && s.longest_idle_secs >= cfg.idle_for.as_secs() {
        push(
            FindingKind::IdleAllocation,
            format!("no CPU activity for {}", duration_text(s.longest_idle_secs)),
            idle_fix.to_string(),
        );
    } else if s.idle_windows.mostly_idle_over(cfg.idle_for.as_secs()) {
        // Scrapers that come and go (the distributor's windows) never see an hour at a stretch.
        let w = &s.idle_windows;
        push(
            FindingKind::IdleAllocation,
            format!(
                "no CPU activity in {} of {} sampling windows over {} ({} idle of {} observed)",
                w.idle_windows,
                w.windows,
                duration_text(w.idle_span_secs),
                duration_text(w.idle_secs),
                duration_text(w.observed_secs)
            ),
            idle_fix.to_string(),
        );
    }
    if s.sys_ratio.is_high() {
        push(
            FindingKind::SystemTimeRatio,
            format!(
                "{} of {} intervals with system/user ≥ 1/3 (score {:.1})",
                s.sys_ratio.high_intervals(),
                s.sys_ratio.intervals,
                s.sys_ratio.unified()
            ),
            preload.to_string(),
        );
    }
    // Sustained, not one burst: a program touching its arrays for the first time faults fast
    // for an interval or two.
    let churn = &s.fault_churn;
    if churn.intervals >= 3 && churn.secs >= cfg.fault_churn_for.as_secs() {
        push(
            FindingKind::PageFaultChurn,
            format!(
                "at least {:.0} page faults/s for {} ({} sampling intervals in a row; up to {:.0}/s)",
                churn.min_rate,
                duration_text(churn.secs),
                churn.intervals,
                s.max_fault_rate
            ),
            preload.to_string(),
        );
    }
    // GPUs are judged on their readings only: one without any (`[gpu] source = "none"`, no
    // NVML, a node not sampled) is neither busy nor idle; the job's analysis says "no GPU data".
    if gpus > 0 && !s.gpus.is_empty() {
        let read = s.gpus.len() as u64;
        let busy = s.gpus.iter().filter(|g| g.ever_busy()).count() as u64;
        let holding = s.gpus.iter().filter(|g| !g.ever_busy() && g.holds_memory()).count() as u64;
        let idle = read.saturating_sub(busy + holding);
        if idle > 0 {
            let mut evidence = if read < gpus {
                format!("{busy} of the {read} GPUs with readings ever busy ({} of {gpus} had no readings)", gpus - read)
            } else {
                format!("{busy} of {read} GPUs ever busy")
            };
            if holding > 0 {
                evidence.push_str(&format!("; {holding} more held memory without computing"));
            }
            // `--gres` counts GPUs per node.
            let keep = gpus.saturating_sub(idle).max(1).div_ceil(u64::from(job.node_count.max(1)));
            push(FindingKind::GpuUnderuse, evidence, format!("--gres=gpu:{keep}"));
        }
        let idle_limit = cfg.idle_for.as_secs();
        for g in &s.gpus {
            let n = f64::from(g.readings.max(1));
            let name = format!("GPU {}/{}", g.node, g.index);
            let figures = format!("peak memory {} MiB, mean power {:.0} W", g.peak_mem_mib, g.mean_power_w);
            if !g.ever_busy() && g.holds_memory() {
                // The job's processes keep data on it: not idle, but no kernel ever ran.
                push(
                    FindingKind::InvestigateGpuUsage,
                    format!(
                        "{name}: 0 % in all {} readings while the job's processes held {} MiB on it ({figures})",
                        g.readings, g.held_mem_mib
                    ),
                    "check that the program runs its kernels on this GPU, not only its data; profile it (e.g. nsys)"
                        .into(),
                );
                continue;
            }
            if !g.ever_busy() {
                push(
                    FindingKind::GpuNoUtilisation,
                    format!("{name}: 0 % in all {} readings ({figures})", g.readings),
                    "do not request this GPU".into(),
                );
            } else if f64::from(g.longest_zero_run) >= cfg.gpu_try_split_frac * n {
                push(
                    FindingKind::TrySplitting,
                    format!("{name}: idle for {} readings in a row of {} ({figures})", g.longest_zero_run, g.readings),
                    "run the CPU-only phase as a separate job".into(),
                );
            }
            if g.ever_busy() && f64::from(g.zero_util + g.low_util) >= cfg.gpu_investigate_frac * n {
                push(
                    FindingKind::InvestigateGpuUsage,
                    format!(
                        "{name}: mean {:.1} %, {} of {} readings below {} % ({figures})",
                        g.mean_util_pct,
                        g.zero_util + g.low_util,
                        g.readings,
                        cfg.gpu_low_util_pct
                    ),
                    "profile the GPU code (e.g. nsys) or ask for a consultation".into(),
                );
            }
            if g.longest_zero_secs >= idle_limit {
                push(
                    FindingKind::IdleAllocation,
                    format!("{name}: 0 % for {} ({figures})", duration_text(g.longest_zero_secs)),
                    "release GPUs you are not using".into(),
                );
            }
        }
    }
}

/// Bytes as a short human figure (`1.5 GiB`).
pub fn bytes_text(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.1} GiB", b / (1u64 << 30) as f64)
    } else if b >= (1u64 << 20) as f64 {
        format!("{:.0} MiB", b / (1u64 << 20) as f64)
    } else {
        format!("{:.0} KiB", b / 1024.0)
    }
}

/// A `--mem` value (per node) for a whole-job figure: rounded up to 32 MiB below 1 GiB,
/// 128 MiB up to 4 GiB, whole GiB above. Returns the option text and the whole-job bytes.
pub fn mem_rounded(total_bytes: f64, nodes: u32) -> (String, u64) {
    let nodes = nodes.max(1);
    let per_node_mib = (total_bytes / f64::from(nodes) / (1u64 << 20) as f64).max(1.0);
    let (text, mib) = if per_node_mib > 4096.0 {
        let g = (per_node_mib / 1024.0).ceil() as u64;
        (format!("{g}G"), g * 1024)
    } else {
        let step = if per_node_mib > 1024.0 { 128.0 } else { 32.0 };
        let m = ((per_node_mib / step).ceil() * step) as u64;
        (format!("{m}M"), m)
    };
    (text, (mib << 20) * u64::from(nodes))
}

/// Rounds a memory figure up as [`mem_rounded`] does (32 MiB steps below 1 GiB, 128 MiB up to
/// 4 GiB, whole GiB above): the option value and its MiB.
fn round_mib(mib: f64) -> (String, u64) {
    let mib = mib.max(1.0);
    if mib > 4096.0 {
        let g = (mib / 1024.0).ceil() as u64;
        (format!("{g}G"), g * 1024)
    } else {
        let step = if mib > 1024.0 { 128.0 } else { 32.0 };
        let m = ((mib / step).ceil() * step) as u64;
        (format!("{m}M"), m)
    }
}

/// The memory option for a job shaped like `job` that must hold `node_bytes` on its fullest
/// node and `total_bytes` in all (margins already added): `--mem-per-cpu` when the job asked
/// per CPU, else `--mem` (per node). Returns the option and the whole-job bytes it allocates.
///
/// Per node it is never below `node_bytes` nor `total_bytes / nodes`, so the whole job gets at
/// least `total_bytes`; per CPU it assumes the CPUs spread evenly over the nodes (as `-N` with
/// `-n`/`-c` gives), dividing by the whole CPUs each node has at least.
pub fn mem_advice(job: &JobRecord, node_bytes: f64, total_bytes: f64) -> (String, u64) {
    let nodes = u64::from(job.node_count.max(1));
    let per_node = node_bytes.max(total_bytes / nodes as f64) / (1u64 << 20) as f64;
    match job.req_mem {
        Some(crate::job::MemRequest::PerCpu(_)) => {
            let cpus = u64::from(job.alloc_cpus.max(1));
            let cpus_per_node = (cpus / nodes).max(1);
            let (text, mib) = round_mib(per_node / cpus_per_node as f64);
            (format!("--mem-per-cpu={text}"), (mib << 20) * cpus)
        }
        _ => {
            let (text, mib) = round_mib(per_node);
            (format!("--mem={text}"), (mib << 20) * nodes)
        }
    }
}

/// The `--mem` value of [`mem_rounded`].
pub fn mem_option(total_bytes: f64, nodes: u32) -> String {
    mem_rounded(total_bytes, nodes).0
}

/// A `--time` value, rounded up to whole minutes (`D-HH:MM:SS`).
pub fn time_option(secs: u64) -> String {
    let minutes = secs.div_ceil(60);
    let (d, h, m) = (minutes / 1440, minutes % 1440 / 60, minutes % 60);
    if d > 0 {
        format!("{d}-{h:02}:{m:02}:00")
    } else {
        format!("{h:02}:{m:02}:00")
    }
}

/// A duration as `1d 02:03:04` / `02:03:04`.
pub fn duration_text(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs % 86_400 / 3_600, secs % 3_600 / 60, secs % 60);
    if d > 0 {
        format!("{d}d {h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

#[cfg(test)]
mod tests;
