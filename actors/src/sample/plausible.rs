//! Whether a reported sample fits its job: the server's checks on what a scraper (any user's
//! own, or a forged one) claims, before anything is stored.
//!
//! A job stored while pending (no start yet: it started since the last import) is checked only
//! against the time received and its CPUs; a job not stored at all against generic node bounds.
//!
//! Pure functions of the job's accounting record, the series' previous stored sample and the
//! sample itself. A sample is accepted only if its time lies inside the job's run (with
//! [`Limits::time_slack_secs`] on both sides, and never after the time it was received), its CPU
//! counters never go back, the CPU time added since the previous sample fits the job's CPUs
//! over the time passed (× [`Limits::cpu_slack`], plus [`Limits::cpu_extra_cs`]), the CPU
//! time counted since the job started fits the same bound, memory fits the node, and its
//! counts (threads, processes, CPUs) are bounded. A GPU reading must name a device below
//! [`Limits::max_gpu_index`] and hold values a GPU can have. Refusals are counted by
//! [`Reason`] in [`Refusals`]; the caller stores only what is accepted.
//!
//! Page faults and I/O counters are summed over a step's live processes by the scraper (its
//! /proc mode), so they drop when a process ends: a drop is accepted, a leap beyond
//! [`Limits::max_io_kib_per_sec`] / [`Limits::max_faults_per_sec`] is refused.

use super::{GpuReading, StepSample};
use crate::job::JobRecord;

/// Why a sample or GPU reading was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Its time lies outside the job's run (or after it was received).
    OutsideRun,
    /// A CPU counter is below the series' previous sample.
    CounterDecreased,
    /// More CPU time than the job's CPUs could give over the time passed.
    CpuLeap,
    /// Faults or I/O grew faster than any node could.
    CounterLeap,
    /// Memory above what the node has.
    Memory,
    /// Threads, processes or CPUs beyond any node.
    Counts,
    /// A GPU index or a GPU value out of range.
    Gpu,
    /// The hour block of the series holds as many rows as a block may.
    BlockFull,
    /// The series is reported by the service's scrapers; an owner's report may not touch it.
    ServiceSeries,
    /// A node or application name longer than allowed.
    NameTooLong,
    /// More applications in a step than kept.
    TooManyApps,
    /// The job's accounting record lists its nodes, and the report's node is not one of them.
    NotJobNode,
}

impl Reason {
    pub const ALL: [Reason; 12] = [
        Reason::OutsideRun,
        Reason::CounterDecreased,
        Reason::CpuLeap,
        Reason::CounterLeap,
        Reason::Memory,
        Reason::Counts,
        Reason::Gpu,
        Reason::BlockFull,
        Reason::ServiceSeries,
        Reason::NameTooLong,
        Reason::TooManyApps,
        Reason::NotJobNode,
    ];

    /// The label used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::OutsideRun => "outside_run",
            Reason::CounterDecreased => "counter_decreased",
            Reason::CpuLeap => "cpu_leap",
            Reason::CounterLeap => "counter_leap",
            Reason::Memory => "memory",
            Reason::Counts => "counts",
            Reason::Gpu => "gpu",
            Reason::BlockFull => "block_full",
            Reason::ServiceSeries => "service_series",
            Reason::NameTooLong => "name_too_long",
            Reason::TooManyApps => "too_many_apps",
            Reason::NotJobNode => "not_job_node",
        }
    }

    fn index(self) -> usize {
        Reason::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// Refused samples, readings and names, counted by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refusals {
    counts: [u64; Reason::ALL.len()],
}

impl Refusals {
    pub fn count(&mut self, reason: Reason) {
        self.add(reason, 1);
    }

    pub fn add(&mut self, reason: Reason, n: u64) {
        let slot = &mut self.counts[reason.index()];
        *slot = slot.saturating_add(n);
    }

    pub fn get(&self, reason: Reason) -> u64 {
        self.counts[reason.index()]
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, b| a.saturating_add(*b))
    }

    /// Adds another set of counts.
    pub fn merge(&mut self, other: &Refusals) {
        for reason in Reason::ALL {
            self.add(reason, other.get(reason));
        }
    }

    /// The non-zero counts, by reason.
    pub fn by_reason(&self) -> impl Iterator<Item = (Reason, u64)> + '_ {
        Reason::ALL.into_iter().map(|r| (r, self.get(r))).filter(|(_, n)| *n > 0)
    }
}

/// The bounds of the checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Seconds a sample may lie before the job's start or after its end (clocks differ).
    pub time_slack_secs: u64,
    /// Factor on the CPU time the job's CPUs can give (accounting rounding, hyperthreads).
    pub cpu_slack: f64,
    /// CPU time always allowed on top, centiseconds (counters read at slightly different times).
    pub cpu_extra_cs: u64,
    /// CPUs assumed when the job's record is unknown or says none.
    pub default_cpus: u32,
    /// Memory of the node, KiB (64 TiB when not known).
    pub mem_kib: u64,
    pub max_threads: u32,
    pub max_processes: u32,
    pub max_cpus: u32,
    /// GPU indexes must be below this.
    pub max_gpu_index: u32,
    /// GPU memory in use, MiB.
    pub max_gpu_mem_mib: u64,
    pub max_io_kib_per_sec: u64,
    pub max_faults_per_sec: u64,
    /// Rows one (job, step, node, hour) block may hold: at most what the block decoder accepts.
    pub max_block_rows: usize,
    /// Longest node name, bytes.
    pub max_node_name: usize,
    /// Longest application name, bytes.
    pub max_app_name: usize,
    /// Most applications kept per step.
    pub max_apps_per_step: usize,
}

/// Rows a block decoder accepts (`store::bitpack`'s limit).
pub const DECODER_MAX_ROWS: usize = 1 << 16;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            time_slack_secs: 120,
            cpu_slack: 1.25,
            cpu_extra_cs: 500,
            default_cpus: 1_024,
            mem_kib: 64 << 30, // 64 TiB
            max_threads: 4_194_304,
            max_processes: 4_194_304,
            max_cpus: 65_536,
            max_gpu_index: 64,
            max_gpu_mem_mib: 16 << 20,   // 16 TiB
            max_io_kib_per_sec: 1 << 30, // 1 TiB/s
            max_faults_per_sec: 1 << 32,
            max_block_rows: DECODER_MAX_ROWS,
            max_node_name: 64,
            max_app_name: 256,
            max_apps_per_step: 256,
        }
    }
}

/// What the checks need of a job's accounting record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JobBounds {
    pub start_at: Option<u64>,
    pub end_at: Option<u64>,
    /// CPUs allocated to the job (an upper bound of those on any one of its nodes); 0 unknown.
    pub alloc_cpus: u32,
    /// Whether the report's node is one of the job's; `None` when the record lists no nodes
    /// (stored while pending).
    pub on_node: Option<bool>,
}

impl JobBounds {
    /// The bounds of `job` for a report from `node`.
    pub fn of(job: &JobRecord, node: &str) -> JobBounds {
        JobBounds {
            start_at: job.start_at,
            end_at: job.end_at,
            alloc_cpus: job.alloc_cpus,
            on_node: on_job_node(&job.node_list, node),
        }
    }
}

/// Whether `node` is in the SLURM host list `node_list` (`n[1-3,7]`); `None` when the list is
/// empty or "None assigned" (a job that has not started), or cannot be read.
pub fn on_job_node(node_list: &str, node: &str) -> Option<bool> {
    let list = node_list.trim();
    if list.is_empty() || list.starts_with("None") || list == "(null)" {
        return None;
    }
    crate::slurm::hostlist::expand(list).ok().map(|nodes| nodes.iter().any(|n| n == node))
}

/// What a sample is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub limits: &'a Limits,
    /// The job's record, if the store has it.
    pub job: Option<JobBounds>,
    /// When the report was received.
    pub now: u64,
}

impl Context<'_> {
    fn cpus(&self) -> u64 {
        match self.job {
            Some(job) if job.alloc_cpus > 0 => u64::from(job.alloc_cpus),
            _ => u64::from(self.limits.default_cpus),
        }
    }

    /// CPU centiseconds `cpus` CPUs can give in `secs` seconds, with the slack.
    fn cpu_bound(&self, secs: u64) -> u64 {
        let cs = self.cpus() as f64 * secs as f64 * 100.0 * self.limits.cpu_slack;
        (cs.min(u64::MAX as f64 / 2.0) as u64).saturating_add(self.limits.cpu_extra_cs)
    }

    fn time_ok(&self, at: u64) -> bool {
        let slack = self.limits.time_slack_secs;
        if at > self.now.saturating_add(slack) {
            return false;
        }
        let Some(job) = self.job else { return true };
        // Stored while pending: the job started since the last import, its start is not known yet.
        let Some(start) = job.start_at else { return true };
        let end = job.end_at.unwrap_or(u64::MAX);
        at.saturating_add(slack) >= start && at <= end.saturating_add(slack)
    }
}

/// Checks a step sample against its series' previous stored (accepted) sample.
pub fn check_sample(ctx: &Context<'_>, prev: Option<&StepSample>, s: &StepSample) -> Result<(), Reason> {
    let limits = ctx.limits;
    if !ctx.time_ok(s.at) {
        return Err(Reason::OutsideRun);
    }
    if [s.rss_kib, s.mem_current_kib, s.mem_peak_kib, s.resident_kib, s.cache_kib].iter().any(|m| *m > limits.mem_kib) {
        return Err(Reason::Memory);
    }
    if s.threads > limits.max_threads || s.processes > limits.max_processes || s.cpus > limits.max_cpus {
        return Err(Reason::Counts);
    }
    let cpu = s.cpu_user_cs.saturating_add(s.cpu_sys_cs);
    // All CPU time counted since the job started fits its CPUs over that time.
    if let Some(start) = ctx.job.and_then(|j| j.start_at) {
        let ran = s.at.saturating_sub(start).saturating_add(limits.time_slack_secs);
        if cpu > ctx.cpu_bound(ran) {
            return Err(Reason::CpuLeap);
        }
    }
    let Some(prev) = prev else { return Ok(()) };
    if s.cpu_user_cs < prev.cpu_user_cs || s.cpu_sys_cs < prev.cpu_sys_cs {
        return Err(Reason::CounterDecreased);
    }
    let dt = s.at.saturating_sub(prev.at);
    let dcpu = cpu - prev.cpu_user_cs.saturating_add(prev.cpu_sys_cs).min(cpu);
    if dcpu > ctx.cpu_bound(dt) {
        return Err(Reason::CpuLeap);
    }
    // Dropping is allowed (a process ended); growth is bounded.
    let grew = |now: u64, before: u64| now.saturating_sub(before);
    let per = |rate: u64| rate.saturating_mul(dt.max(1));
    if grew(s.read_kib, prev.read_kib) > per(limits.max_io_kib_per_sec)
        || grew(s.write_kib, prev.write_kib) > per(limits.max_io_kib_per_sec)
        || grew(s.minor_faults, prev.minor_faults) > per(limits.max_faults_per_sec)
        || grew(s.major_faults, prev.major_faults) > per(limits.max_faults_per_sec)
    {
        return Err(Reason::CounterLeap);
    }
    Ok(())
}

/// Checks a GPU reading.
pub fn check_gpu(ctx: &Context<'_>, g: &GpuReading) -> Result<(), Reason> {
    if !ctx.time_ok(g.at) {
        return Err(Reason::OutsideRun);
    }
    let limits = ctx.limits;
    if g.index >= limits.max_gpu_index || g.util_pct > 100 || g.mem_used_mib > limits.max_gpu_mem_mib {
        return Err(Reason::Gpu);
    }
    Ok(())
}

/// Whether a node name may be stored.
pub fn node_name_ok(limits: &Limits, node: &str) -> bool {
    !node.is_empty() && node.len() <= limits.max_node_name
}

/// Whether an application name may be stored.
pub fn app_name_ok(limits: &Limits, app: &str) -> bool {
    app.len() <= limits.max_app_name
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: u64 = 1_000_000;

    fn ctx(limits: &Limits, cpus: u32) -> Context<'_> {
        Context {
            limits,
            job: Some(JobBounds {
                start_at: Some(START),
                end_at: Some(START + 3_600),
                alloc_cpus: cpus,
                on_node: None,
            }),
            now: START + 4_000,
        }
    }

    fn at(t: u64, cpu_cs: u64) -> StepSample {
        StepSample { at: START + t, cpu_user_cs: cpu_cs, ..Default::default() }
    }

    #[test]
    fn a_plausible_series_is_accepted() {
        let limits = Limits::default();
        let c = ctx(&limits, 4);
        // Four CPUs busy for 30 s: 12 000 cs.
        assert_eq!(check_sample(&c, None, &at(30, 12_000)), Ok(()));
        assert_eq!(check_sample(&c, Some(&at(30, 12_000)), &at(60, 24_000)), Ok(()));
        // Memory and faults/IO that drop are fine.
        let prev = StepSample { read_kib: 5_000, minor_faults: 900, ..at(60, 24_000) };
        assert_eq!(check_sample(&c, Some(&prev), &at(90, 30_000)), Ok(()));
        assert_eq!(
            check_gpu(&c, &GpuReading { at: START + 10, index: 7, util_pct: 100, ..Default::default() }),
            Ok(())
        );
    }

    #[test]
    fn the_cpu_leap_that_aborted_the_server_is_refused() {
        let limits = Limits::default();
        let c = ctx(&limits, 4);
        let leap = at(60, 400_000_000_000_000);
        assert_eq!(check_sample(&c, Some(&at(30, 12_000)), &leap), Err(Reason::CpuLeap));
        assert_eq!(check_sample(&c, None, &leap), Err(Reason::CpuLeap), "a first sample is bounded by the job's run");
        // Just above 4 CPUs × 30 s × 1.25 + the constant.
        assert_eq!(check_sample(&c, Some(&at(30, 0)), &at(60, 15_000 + 501)), Err(Reason::CpuLeap));
        assert_eq!(check_sample(&c, Some(&at(30, 0)), &at(60, 15_000 + 500)), Ok(()));
        // A sys-time leap counts too, and u64::MAX does not overflow anything.
        let sys = StepSample { cpu_sys_cs: u64::MAX, ..at(60, u64::MAX) };
        assert_eq!(check_sample(&c, Some(&at(30, 0)), &sys), Err(Reason::CpuLeap));
        // Without a job record the generic node bound still holds.
        let unknown = Context { job: None, ..c };
        assert_eq!(check_sample(&unknown, Some(&at(30, 0)), &leap), Err(Reason::CpuLeap));
    }

    #[test]
    fn counters_that_go_back_and_other_leaps_are_refused() {
        let limits = Limits::default();
        let c = ctx(&limits, 4);
        assert_eq!(check_sample(&c, Some(&at(30, 12_000)), &at(60, 11_999)), Err(Reason::CounterDecreased));
        let sys_back = StepSample { cpu_sys_cs: 1, ..at(60, 12_000) };
        let prev = StepSample { cpu_sys_cs: 2, ..at(30, 12_000) };
        assert_eq!(check_sample(&c, Some(&prev), &sys_back), Err(Reason::CounterDecreased));
        let io = StepSample { write_kib: u64::MAX, ..at(60, 12_000) };
        assert_eq!(check_sample(&c, Some(&at(30, 12_000)), &io), Err(Reason::CounterLeap));
        let faults = StepSample { major_faults: u64::MAX, ..at(60, 12_000) };
        assert_eq!(check_sample(&c, Some(&at(30, 12_000)), &faults), Err(Reason::CounterLeap));
    }

    #[test]
    fn samples_outside_the_run_memory_and_counts_beyond_a_node_are_refused() {
        let limits = Limits::default();
        let c = ctx(&limits, 4);
        assert_eq!(
            check_sample(&c, None, &StepSample { at: START - 121, ..Default::default() }),
            Err(Reason::OutsideRun)
        );
        assert_eq!(check_sample(&c, None, &StepSample { at: START - 120, ..Default::default() }), Ok(()));
        assert_eq!(check_sample(&c, None, &at(3_600 + 121, 0)), Err(Reason::OutsideRun));
        let running = Context { job: Some(JobBounds { end_at: None, ..c.job.unwrap() }), ..c };
        assert_eq!(check_sample(&running, None, &at(3_600 + 121, 0)), Ok(()));
        assert_eq!(check_sample(&running, None, &at(4_000 + 121, 0)), Err(Reason::OutsideRun), "from the future");
        // Imported while pending: started since, only the future is out.
        let pending =
            Context { job: Some(JobBounds { start_at: None, end_at: None, alloc_cpus: 4, on_node: None }), ..c };
        assert_eq!(check_sample(&pending, None, &at(10, 0)), Ok(()));
        assert_eq!(check_sample(&pending, None, &at(4_000 + 121, 0)), Err(Reason::OutsideRun));
        let mem = StepSample { rss_kib: (64 << 30) + 1, ..at(10, 0) };
        assert_eq!(check_sample(&c, None, &mem), Err(Reason::Memory));
        let small_node = Limits { mem_kib: 1 << 20, ..Limits::default() };
        let peak = StepSample { mem_peak_kib: (1 << 20) + 1, ..at(10, 0) };
        assert_eq!(check_sample(&ctx(&small_node, 4), None, &peak), Err(Reason::Memory));
        for s in [
            StepSample { threads: u32::MAX, ..at(10, 0) },
            StepSample { processes: u32::MAX, ..at(10, 0) },
            StepSample { cpus: u32::MAX, ..at(10, 0) },
        ] {
            assert_eq!(check_sample(&c, None, &s), Err(Reason::Counts));
        }
    }

    #[test]
    fn gpu_readings_out_of_range_are_refused_and_refusals_are_counted_by_reason() {
        let limits = Limits::default();
        let c = ctx(&limits, 4);
        let g = GpuReading { at: START + 10, ..Default::default() };
        assert_eq!(check_gpu(&c, &GpuReading { index: 64, ..g.clone() }), Err(Reason::Gpu));
        assert_eq!(check_gpu(&c, &GpuReading { util_pct: 101, ..g.clone() }), Err(Reason::Gpu));
        assert_eq!(check_gpu(&c, &GpuReading { mem_used_mib: u64::MAX, ..g.clone() }), Err(Reason::Gpu));
        assert_eq!(check_gpu(&c, &GpuReading { at: START + 9_000, ..g }), Err(Reason::OutsideRun));
        let mut refused = Refusals::default();
        refused.count(Reason::Gpu);
        refused.add(Reason::CpuLeap, 2);
        let mut more = Refusals::default();
        more.count(Reason::Gpu);
        refused.merge(&more);
        assert_eq!(refused.total(), 4);
        assert_eq!(
            refused.by_reason().map(|(r, n)| (r.as_str(), n)).collect::<Vec<_>>(),
            [("cpu_leap", 2), ("gpu", 2)]
        );
        assert!(!node_name_ok(&limits, &"n".repeat(65)));
        assert!(node_name_ok(&limits, &"n".repeat(64)));
        assert!(!node_name_ok(&limits, ""));
        assert!(!app_name_ok(&limits, &"a".repeat(257)));
    }

    #[test]
    fn a_step_is_on_its_jobs_nodes_only_when_the_record_lists_them() {
        assert_eq!(on_job_node("n[1-3,7]", "n2"), Some(true));
        assert_eq!(on_job_node("n[1-3,7]", "n7"), Some(true));
        assert_eq!(on_job_node("n[1-3,7]", "n4"), Some(false));
        assert_eq!(on_job_node("gpu01", "gpu01"), Some(true));
        assert_eq!(on_job_node("None assigned", "n1"), None);
        assert_eq!(on_job_node("", "n1"), None);
    }
}
