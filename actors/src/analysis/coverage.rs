//! Sampling coverage of a period: how much of what its jobs were allocated the scrapers saw.
//!
//! The findings that come from samples (idle spans, cores in use, GPU use) exist only for the
//! part of the cluster that was sampled, so an admin needs to know how large that part is. Per
//! period: the core-hours allocated to the period's jobs (AllocCPUS × Elapsed), the core-hours
//! covered by samples (the same × the job's `sample_coverage_frac`), their share, and how many
//! jobs had no samples at all; the same pair for GPU-hours.
//!
//! The jobs are the ones the period's analysis reports (`analysis::load::belongs_to`): a
//! finished job whole, in the period it ended in; a running job in every period it runs in,
//! with its elapsed time so far. Jobs are not clipped to the period, so the figures match the
//! period's reports (a job running across a boundary counts in both periods' figures). The
//! service's own scraper jobs ([`Params::is_service_job`]) are left out, as from the analysis.
//!
//! What one job adds is decided in one place, [`job_coverage`]; the period's figures are sums of
//! it ([`PeriodCoverage::of`]).

use super::period::Period;
use super::summary::{JobAnalysis, Params};
use serde::{Deserialize, Serialize};

/// What one job adds to its period's coverage.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct JobCoverage {
    /// Core-seconds allocated: AllocCPUS × Elapsed.
    pub core_secs: f64,
    /// Core-seconds covered by samples: `core_secs` × the share of the run with samples.
    pub core_secs_sampled: f64,
    /// GPU-seconds allocated: allocated GPUs × Elapsed.
    pub gpu_secs: f64,
    /// GPU-seconds with GPU readings: GPUs with readings (at most the allocated ones) × Elapsed ×
    /// the share of the run with samples.
    pub gpu_secs_sampled: f64,
    /// Whether any step sample of the job was stored.
    pub sampled: bool,
    /// Whether the job was allocated GPUs.
    pub gpu_job: bool,
    /// Whether any GPU reading of the job was stored.
    pub gpu_sampled: bool,
}

/// What `job` adds to its period's coverage.
pub fn job_coverage(job: &JobAnalysis) -> JobCoverage {
    let elapsed = job.record.elapsed_secs as f64;
    // The series statistics keep it in 0..=1; a hostile or corrupt figure must not leak out.
    let frac = if job.sample_coverage_frac.is_finite() { job.sample_coverage_frac.clamp(0.0, 1.0) } else { 0.0 };
    let core_secs = elapsed * f64::from(job.record.alloc_cpus);
    let gpus = job.record.alloc_gpus();
    JobCoverage {
        core_secs,
        core_secs_sampled: core_secs * frac,
        // GPU-seconds as the analysis counts them: each physical GPU once, whatever the steps,
        // over the time its readings cover.
        gpu_secs: job.gpu_secs_alloc as f64,
        gpu_secs_sampled: job.gpu_secs_sampled.min(job.gpu_secs_alloc) as f64,
        sampled: job.samples > 0,
        gpu_job: gpus > 0,
        gpu_sampled: gpus > 0 && job.gpu_secs_sampled > 0,
    }
}

/// The sampling coverage of one period (stored with the period, in `raw.json` as `coverage`,
/// in `/api/data` for admins, and in `/metrics`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PeriodCoverage {
    pub period_start: u64,
    pub period_end: u64,
    /// Jobs counted (the period's reported jobs, without the service's own).
    pub jobs: u64,
    /// Jobs with at least one step sample, and those without any.
    pub jobs_sampled: u64,
    pub jobs_unsampled: u64,
    /// Core-hours allocated to the jobs (AllocCPUS × Elapsed).
    pub core_hours: f64,
    /// Core-hours covered by samples.
    pub core_hours_sampled: f64,
    /// `core_hours_sampled / core_hours`; `None` without allocated core-hours.
    pub core_hours_sampled_frac: Option<f64>,
    /// Jobs allocated GPUs, and those of them without any GPU reading.
    pub gpu_jobs: u64,
    pub gpu_jobs_unsampled: u64,
    /// GPU-hours allocated (GPUs × Elapsed).
    pub gpu_hours: f64,
    /// GPU-hours with GPU readings.
    pub gpu_hours_sampled: f64,
    /// `gpu_hours_sampled / gpu_hours`; `None` without allocated GPU-hours.
    pub gpu_hours_sampled_frac: Option<f64>,
    /// The figures in a sentence, for people.
    pub text: String,
}

impl PeriodCoverage {
    /// The coverage of `period` from its analysed jobs; service jobs are skipped.
    pub fn of<'a>(period: Period, jobs: impl IntoIterator<Item = &'a JobAnalysis>, params: &Params) -> Self {
        let mut c = PeriodCoverage { period_start: period.start, period_end: period.end, ..PeriodCoverage::default() };
        let (mut core, mut core_sampled, mut gpu, mut gpu_sampled) = (0.0, 0.0, 0.0, 0.0);
        for job in jobs.into_iter().filter(|j| !params.is_service_job(&j.record)) {
            let j = job_coverage(job);
            c.jobs += 1;
            if j.sampled {
                c.jobs_sampled += 1;
            } else {
                c.jobs_unsampled += 1;
            }
            if j.gpu_job {
                c.gpu_jobs += 1;
                c.gpu_jobs_unsampled += u64::from(!j.gpu_sampled);
            }
            core += j.core_secs;
            core_sampled += j.core_secs_sampled;
            gpu += j.gpu_secs;
            gpu_sampled += j.gpu_secs_sampled;
        }
        c.core_hours = core / 3_600.0;
        c.core_hours_sampled = core_sampled / 3_600.0;
        c.core_hours_sampled_frac = (core > 0.0).then(|| (core_sampled / core).min(1.0));
        c.gpu_hours = gpu / 3_600.0;
        c.gpu_hours_sampled = gpu_sampled / 3_600.0;
        c.gpu_hours_sampled_frac = (gpu > 0.0).then(|| (gpu_sampled / gpu).min(1.0));
        c.text = c.sentence();
        c
    }

    /// "42 % of the 1 234 core-hours were sampled; 17 jobs had no samples." (and the GPU figures
    /// when GPUs were allocated).
    pub fn sentence(&self) -> String {
        if self.jobs == 0 {
            return "No jobs in this period.".into();
        }
        let unsampled = match self.jobs_unsampled {
            0 => "every job had samples".to_string(),
            n if n == self.jobs => format!("none of the {} had samples", jobs_text(n)),
            n => format!("{} had no samples", jobs_text(n)),
        };
        let mut text = match self.core_hours_sampled_frac {
            Some(frac) => {
                format!(
                    "{} of the {} core-hours were sampled; {unsampled}.",
                    pct_text(frac),
                    hours_text(self.core_hours)
                )
            }
            None => format!("{} with no core-hours allocated yet; {unsampled}.", jobs_text(self.jobs)),
        };
        if let Some(frac) = self.gpu_hours_sampled_frac {
            let without = match self.gpu_jobs_unsampled {
                0 => String::new(),
                n => format!("; {n} of {} had no GPU readings", jobs_text(self.gpu_jobs)),
            };
            text.push_str(&format!(
                " GPUs: {} of the {} GPU-hours had readings{without}.",
                pct_text(frac),
                hours_text(self.gpu_hours)
            ));
        }
        text
    }
}

fn jobs_text(n: u64) -> String {
    if n == 1 {
        "1 job".into()
    } else {
        format!("{} jobs", grouped(n))
    }
}

/// A share as a whole percentage that never rounds a partial figure to 0 % or 100 %.
fn pct_text(frac: f64) -> String {
    let pct = frac * 100.0;
    if frac > 0.0 && pct < 1.0 {
        "< 1 %".into()
    } else if frac < 1.0 && pct >= 99.5 {
        "> 99 %".into()
    } else {
        format!("{pct:.0} %")
    }
}

/// Hours with one decimal below 10, else whole and grouped in thousands ("1 234").
fn hours_text(hours: f64) -> String {
    if hours < 10.0 {
        format!("{hours:.1}")
    } else {
        grouped(hours.round() as u64)
    }
}

/// `1234567` → `1 234 567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests;
