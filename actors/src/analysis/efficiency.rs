//! seff's efficiency formulas, applied to accounting records.
//!
//! - CPU efficiency = TotalCPU / (Elapsed × AllocCPUS)
//! - memory efficiency = max over steps of MaxRSS / requested memory for the whole job
//!   (per-node request × nodes, or per-CPU request × CPUs)
//! - time efficiency = Elapsed / time limit
//!
//! `turingwatch job` prints these, and tests check them against seff's own arithmetic on sacct's
//! numbers, so users can trust that our figures are the ones they already know.

use crate::job::JobRecord;

/// Efficiencies of one job as fractions (1.0 = 100 %); `None` where a figure is undefined.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Efficiency {
    pub cpu_frac: Option<f64>,
    pub mem_frac: Option<f64>,
    pub time_frac: Option<f64>,
    /// Core-seconds allocated (Elapsed × AllocCPUS).
    pub core_secs: u64,
    /// Core-seconds that went unused.
    pub wasted_core_secs: u64,
}

/// Computes seff's figures for a job.
pub fn efficiency(job: &JobRecord) -> Efficiency {
    let core_secs = job.elapsed_secs.saturating_mul(u64::from(job.alloc_cpus));
    let cpu_frac = (core_secs > 0).then(|| job.usage.total_cpu_ms as f64 / 1000.0 / core_secs as f64);
    let mem_frac = match (job.usage.max_rss_bytes, job.req_mem_bytes) {
        (Some(rss), Some(req)) if req > 0 => Some(rss as f64 / req as f64),
        _ => None,
    };
    let time_frac = match job.time_limit_secs {
        Some(limit) if limit > 0 => Some(job.elapsed_secs as f64 / limit as f64),
        _ => None,
    };
    let used_core_secs = job.usage.total_cpu_ms / 1000;
    Efficiency { cpu_frac, mem_frac, time_frac, core_secs, wasted_core_secs: core_secs.saturating_sub(used_core_secs) }
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
    }
}
