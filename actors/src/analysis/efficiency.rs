//! seff's efficiency formulas, applied to accounting records.
//!
//! - CPU efficiency = TotalCPU / (Elapsed × AllocCPUS)
//! - memory efficiency = memory used / memory allocated to the whole job (AllocTRES `mem`:
//!   per-node request × nodes, or per-CPU request × CPUs). Memory used is SLURM's count: per
//!   step the sum over its tasks of each task's peak (`TRESUsageInTot` mem, what seff reads;
//!   on several nodes MaxRSS × NTasks where that is larger, what reportseff reads, see
//!   `job::step_memory`), the largest over the steps.
//! - time efficiency = Elapsed / time limit; none for an unlimited limit
//!
//! A running job has no CPU figure from accounting: SLURM reports a step's CPU time when the
//! step ends, so TotalCPU / (Elapsed × AllocCPUS) would read 0 % for a job that is busy. Where
//! scrapers sampled it, the figures come from the samples instead ([`with_live_samples`]:
//! cores busy over the sampled time, resident peak), marked `cpu_live` / `mem_live`; otherwise they are absent
//! with the reason ([`NoData`]), never 0.
//!
//! `turingwatch job` prints these, and tests check them against seff's own arithmetic on sacct's
//! numbers, so users can trust that our figures are the ones they already know.

use crate::job::JobRecord;

/// Why a figure is absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoData {
    /// The job still runs: SLURM reports CPU time (and memory peaks) when its steps end.
    Running,
    /// The job has no elapsed time (it never ran, or ended at once).
    NoElapsedTime,
    /// SLURM reported no memory figure for any step.
    NoMemoryFigure,
    /// The job asked for no memory (or SLURM did not say how much it got).
    NoMemoryRequest,
    /// The job has no time limit (UNLIMITED, or the partition's limit is unlimited).
    Unlimited,
}

impl NoData {
    /// For people: what to show instead of the figure.
    pub fn text(self) -> &'static str {
        match self {
            NoData::Running => "no data yet (job running)",
            NoData::NoElapsedTime => "no data (no elapsed time)",
            NoData::NoMemoryFigure => "no data (SLURM reported no memory use)",
            NoData::NoMemoryRequest => "n/a (no memory request)",
            NoData::Unlimited => "n/a (no time limit)",
        }
    }
}

/// Efficiencies of one job as fractions (1.0 = 100 %); `None` where a figure is undefined, with
/// the reason beside it.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Efficiency {
    pub cpu_frac: Option<f64>,
    pub mem_frac: Option<f64>,
    pub time_frac: Option<f64>,
    /// Why `cpu_frac` is absent.
    #[serde(default)]
    pub cpu_no_data: Option<NoData>,
    /// Why `mem_frac` is absent.
    #[serde(default)]
    pub mem_no_data: Option<NoData>,
    /// Why `time_frac` is absent.
    #[serde(default)]
    pub time_no_data: Option<NoData>,
    /// Memory used as SLURM counts it (the numerator of `mem_frac`).
    #[serde(default)]
    pub mem_used_bytes: Option<u64>,
    /// Core-seconds allocated (Elapsed × AllocCPUS).
    pub core_secs: u64,
    /// Core-seconds that went unused.
    pub wasted_core_secs: u64,
    /// A running job's CPU figure comes from its samples, not accounting.
    #[serde(default)]
    pub cpu_live: bool,
    /// A running job's memory figure comes from its samples (resident peak).
    #[serde(default)]
    pub mem_live: bool,
}

/// A running job's CPU and memory figures from its samples: cores busy on average over the
/// sampled intervals of each node, summed over nodes, per allocated core; resident peaks summed
/// over nodes, per requested byte. Finished jobs, and figures the samples cannot give, keep
/// accounting's.
pub fn with_live_samples(
    mut eff: Efficiency,
    job: &JobRecord,
    stats: &crate::analysis::series::SeriesStats,
) -> Efficiency {
    if !job.is_running() {
        return eff;
    }
    let sampled: Vec<_> = stats.nodes.iter().filter(|n| n.samples >= 2).collect();
    if !sampled.is_empty() && job.alloc_cpus > 0 {
        let cores: f64 = sampled.iter().map(|n| n.mean_cores).sum();
        eff.cpu_frac = Some(cores / f64::from(job.alloc_cpus));
        eff.cpu_no_data = None;
        eff.cpu_live = true;
    }
    let resident: u64 = stats.nodes.iter().map(|n| n.peak_mem_bytes).fold(0, u64::saturating_add);
    if let (Some(req), true) = (job.req_mem_bytes.filter(|r| *r > 0), resident > 0 && eff.mem_frac.is_none()) {
        eff.mem_frac = Some(resident as f64 / req as f64);
        eff.mem_no_data = None;
        eff.mem_used_bytes = Some(resident);
        eff.mem_live = true;
    }
    eff
}

/// Computes seff's figures for a job.
pub fn efficiency(job: &JobRecord) -> Efficiency {
    let core_secs = job.elapsed_secs.saturating_mul(u64::from(job.alloc_cpus));
    let running = job.is_running();
    let (cpu_frac, cpu_no_data) = if running {
        (None, Some(NoData::Running))
    } else if core_secs == 0 {
        (None, Some(NoData::NoElapsedTime))
    } else {
        (Some(job.usage.total_cpu_ms as f64 / 1000.0 / core_secs as f64), None)
    };
    let mem_used_bytes = job.usage.mem_used();
    let (mem_frac, mem_no_data) = match (mem_used_bytes, job.req_mem_bytes) {
        (_, None | Some(0)) => (None, Some(NoData::NoMemoryRequest)),
        (Some(used), Some(req)) => (Some(used as f64 / req as f64), None),
        (None, Some(_)) if running => (None, Some(NoData::Running)),
        (None, Some(_)) => (None, Some(NoData::NoMemoryFigure)),
    };
    let (time_frac, time_no_data) = match job.time_limit_secs {
        Some(limit) if limit > 0 => (Some(job.elapsed_secs as f64 / limit as f64), None),
        _ => (None, Some(NoData::Unlimited)),
    };
    // A running job's CPU time is not known yet: nothing counts as wasted before it ends.
    let used_core_secs = if running { core_secs } else { job.usage.total_cpu_ms / 1000 };
    Efficiency {
        cpu_frac,
        mem_frac,
        time_frac,
        cpu_no_data,
        mem_no_data,
        time_no_data,
        mem_used_bytes,
        core_secs,
        wasted_core_secs: core_secs.saturating_sub(used_core_secs),
        cpu_live: false,
        mem_live: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests_support::job;

    #[test]
    fn seff_formulas_on_the_recorded_burn_job() {
        // Job 1 of slurm-22.05-samples/sacct-P.txt: Elapsed 00:00:20, TotalCPU 00:19.211,
        // AllocCPUS 1, ReqMem 400M, MaxRSS (1.batch) 315260K.
        let mut j = job(1, "root", 0, Some(20));
        j.elapsed_secs = 20;
        j.usage.total_cpu_ms = 19_211;
        j.alloc_cpus = 1;
        j.req_mem_bytes = Some(400 << 20);
        j.usage.max_rss_bytes = Some(315_260 << 10);
        j.time_limit_secs = Some(300);
        let e = efficiency(&j);
        assert!((e.cpu_frac.unwrap() - 0.96055).abs() < 1e-4);
        assert!((e.mem_frac.unwrap() - 0.76968).abs() < 1e-4);
        assert!((e.time_frac.unwrap() - 20.0 / 300.0).abs() < 1e-9);
        assert_eq!(e.core_secs, 20);
    }

    #[test]
    fn undefined_figures_are_none() {
        let mut j = job(2, "a", 0, None);
        j.elapsed_secs = 0;
        j.req_mem_bytes = None;
        j.time_limit_secs = None;
        let e = efficiency(&j);
        assert_eq!((e.cpu_frac, e.mem_frac, e.time_frac), (None, None, None));
        assert_eq!(e.time_no_data, Some(NoData::Unlimited));
        assert_eq!(e.mem_no_data, Some(NoData::NoMemoryRequest));
    }

    #[test]
    fn a_running_job_has_no_cpu_figure_rather_than_zero() {
        let mut j = job(3, "a", 0, None);
        j.elapsed_secs = 600;
        j.alloc_cpus = 4;
        j.req_mem_bytes = Some(1 << 30);
        j.usage.max_rss_bytes = None;
        let e = efficiency(&j);
        assert!(j.is_running());
        assert_eq!((e.cpu_frac, e.cpu_no_data), (None, Some(NoData::Running)));
        assert_eq!((e.mem_frac, e.mem_no_data), (None, Some(NoData::Running)));
        assert_eq!(e.wasted_core_secs, 0);
        let json = serde_json::to_value(e).unwrap();
        assert_eq!(json["cpu_frac"], serde_json::Value::Null);
        assert_eq!(json["cpu_no_data"], "running");
    }

    #[test]
    fn memory_is_the_sum_of_task_peaks_against_the_whole_allocation() {
        use crate::job::{JobId, StepId, StepRecord, Tres};
        use crate::slurm::sacct_parse::fold_steps_into_job;
        // Job 54 of the dev cluster: -N1 -n2 --mem=1G, srun of 2 tasks × 300 MB.
        // sacct: 54.0 MaxRSS 317427712, TRESUsageInTot mem=634855424; reportseff 59.1 %.
        let mut j = job(54, "alice", 0, Some(12));
        j.elapsed_secs = 12;
        j.req_mem_bytes = Some(1 << 30);
        let step = |id, nodes, tasks, max: u64, tot: u64| {
            let mut s = StepRecord {
                job: JobId(54),
                step: id,
                name: String::new(),
                state: "COMPLETED".into(),
                exit_code: 0,
                exit_signal: 0,
                start_at: Some(0),
                end_at: Some(12),
                elapsed_secs: 12,
                node_list: String::new(),
                node_count: nodes,
                task_count: tasks,
                alloc_cpus: 2,
                usage: crate::job::Usage { max_rss_bytes: Some(max), ..Default::default() },
                tres_usage_in_tot: Tres(vec![("mem".into(), tot)]),
                tres_usage_in_max: Tres(vec![("mem".into(), max)]),
                submit_line: String::new(),
            };
            s.derive_memory();
            s
        };
        let steps = [step(StepId::BATCH, 1, 1, 3_895_296, 3_895_296), step(StepId(0), 1, 2, 317_427_712, 634_855_424)];
        fold_steps_into_job(&mut j, &steps);
        let e = efficiency(&j);
        assert!((e.mem_frac.unwrap() - 634_855_424.0 / (1u64 << 30) as f64).abs() < 1e-9);
        assert!((e.mem_frac.unwrap() * 100.0 - 59.1).abs() < 0.1);
        // Job 56: -N2 -n2 --mem=1G (2 GiB in all); 22.05's total counts one node's task only.
        let mut two = job(56, "alice", 0, Some(9));
        two.req_mem_bytes = Some(2 << 30);
        two.node_count = 2;
        fold_steps_into_job(&mut two, &[step(StepId(0), 2, 2, 317_427_712, 317_427_712)]);
        assert_eq!(two.usage.mem_used_bytes, Some(634_855_424));
        assert_eq!(two.usage.mem_node_peak_bytes, Some(317_427_712));
        assert!((efficiency(&two).mem_frac.unwrap() * 100.0 - 29.6).abs() < 0.1);
    }

    #[test]
    fn a_running_job_reads_its_samples_and_a_finished_one_its_accounting() {
        use crate::analysis::series::{
            series_stats,
            tests::{burn, params},
        };
        use crate::job::StepId;
        use crate::store::SeriesKey;
        use std::collections::BTreeMap;
        let mut j = job(7, "alice", 0, None);
        (j.state, j.elapsed_secs, j.usage) = ("RUNNING".into(), 400, Default::default());
        j.alloc_cpus = 4;
        j.req_mem_bytes = Some(1 << 30);
        let mut samples = BTreeMap::new();
        samples.insert(SeriesKey { job: j.id, step: StepId::BATCH, node: "n1".into() }, burn(10, 3.0, 256));
        let stats = series_stats(&samples, &BTreeMap::new(), 400, &params());
        let live = with_live_samples(efficiency(&j), &j, &stats);
        assert!((live.cpu_frac.unwrap() - 0.75).abs() < 1e-6, "{live:?}");
        assert!((live.mem_frac.unwrap() - 0.25).abs() < 1e-9);
        assert!(live.cpu_live && live.mem_live && live.cpu_no_data.is_none());
        // Without samples it stays "no data yet", never 0 %.
        let none = with_live_samples(efficiency(&j), &j, &Default::default());
        assert_eq!((none.cpu_frac, none.cpu_no_data), (None, Some(NoData::Running)));
        // Finished: accounting's figure, whatever the samples say.
        (j.state, j.end_at) = ("COMPLETED".into(), Some(400));
        j.usage.total_cpu_ms = 400_000;
        let done = with_live_samples(efficiency(&j), &j, &stats);
        assert!((done.cpu_frac.unwrap() - 0.25).abs() < 1e-9 && !done.cpu_live);
    }
}
