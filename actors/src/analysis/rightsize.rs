//! Right-sizing: concrete `--mem`, `--time`, `--cpus-per-task` for a job family, from its history.
//!
//! A family is a user's jobs with the same name and submit line (as the original grouped them).
//! From the finished jobs of the family, the p95 of peak memory, elapsed time and busy cores, plus
//! a safety margin, gives requests that would have fitted 95 % of past runs. A suggestion is made
//! only when the family has enough history and at least one request would shrink noticeably.
//! Memory is SLURM's count (the sum of the tasks' peaks): the request is per node (`--mem`)
//! from the fullest node, or per CPU (`--mem-per-cpu`) when the job asked per CPU, and never
//! holds less than the p95 of the whole job's use plus the margin.

use super::findings::{mem_advice, time_option};
use crate::job::JobRecord;
use serde::Serialize;

/// A request is worth changing when the suggestion is below this fraction of it.
const SHRINK_FRAC: f64 = 0.75;

/// Suggested requests for one job family.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RightSize {
    pub family: String,
    pub jobs: usize,
    pub p95_peak_mem_bytes: u64,
    pub p95_elapsed_secs: u64,
    pub p95_cores: f64,
    /// `--mem=…` (or `--mem-per-cpu=…` when the job asks per CPU), present when it would
    /// shrink the current request.
    pub mem: Option<String>,
    pub time: Option<String>,
    pub cpus: Option<String>,
}

impl RightSize {
    /// The options as one line, e.g. `--mem=300M --time=00:10:00`.
    pub fn options(&self) -> String {
        [&self.mem, &self.time, &self.cpus].into_iter().flatten().cloned().collect::<Vec<_>>().join(" ")
    }
}

/// The p-th percentile (0..=100) by nearest rank of unsorted values.
pub fn percentile(values: &mut [f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * values.len() as f64).ceil().max(1.0) as usize;
    values.get(rank.min(values.len()) - 1).copied()
}

/// Suggests requests for a family from its history; `latest` is the job whose requests are compared.
pub fn rightsize(
    family: &str,
    history: &[&JobRecord],
    latest: &JobRecord,
    min_jobs: u32,
    margin_frac: f64,
) -> Option<RightSize> {
    let done: Vec<&&JobRecord> = history.iter().filter(|j| !j.is_running() && j.elapsed_secs > 0).collect();
    if done.len() < min_jobs as usize || done.is_empty() {
        return None;
    }
    let scale = 1.0 + margin_frac;
    let mut mem: Vec<f64> = done.iter().filter_map(|j| j.usage.mem_used()).map(|b| b as f64).collect();
    let mut node_mem: Vec<f64> = done.iter().filter_map(|j| j.usage.mem_node_peak()).map(|b| b as f64).collect();
    let mut elapsed: Vec<f64> = done.iter().map(|j| j.elapsed_secs as f64).collect();
    let mut cores: Vec<f64> =
        done.iter().map(|j| j.usage.total_cpu_ms as f64 / 1000.0 / j.elapsed_secs as f64).collect();
    let p95_mem = percentile(&mut mem, 95.0).unwrap_or(0.0);
    let p95_node_mem = percentile(&mut node_mem, 95.0).unwrap_or(0.0);
    let p95_elapsed = percentile(&mut elapsed, 95.0).unwrap_or(0.0);
    let p95_cores = percentile(&mut cores, 95.0).unwrap_or(0.0);

    let (mem_advice_text, mem_advice_bytes) = mem_advice(latest, p95_node_mem * scale, p95_mem * scale);
    let mem_opt = latest
        .req_mem_bytes
        .filter(|req| p95_mem > 0.0 && (mem_advice_bytes as f64) < SHRINK_FRAC * *req as f64)
        .map(|_| mem_advice_text);
    let time_opt = latest
        .time_limit_secs
        .filter(|limit| p95_elapsed * scale < SHRINK_FRAC * *limit as f64)
        .map(|_| format!("--time={}", time_option((p95_elapsed * scale).max(60.0) as u64)));
    let want_cpus = (p95_cores * scale).ceil().max(1.0) as u32;
    let cpus_opt = (f64::from(want_cpus) < SHRINK_FRAC * f64::from(latest.alloc_cpus) && latest.alloc_gpus() == 0)
        .then(|| format!("--cpus-per-task={want_cpus}"));
    if mem_opt.is_none() && time_opt.is_none() && cpus_opt.is_none() {
        return None;
    }
    Some(RightSize {
        family: family.to_string(),
        jobs: done.len(),
        p95_peak_mem_bytes: p95_mem as u64,
        p95_elapsed_secs: p95_elapsed as u64,
        p95_cores,
        mem: mem_opt,
        time: time_opt,
        cpus: cpus_opt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests_support::job;

    fn run(id: u64, rss_mib: u64, elapsed: u64) -> JobRecord {
        let mut j = job(id, "alice", 0, Some(elapsed));
        j.start_at = Some(0);
        j.end_at = Some(elapsed);
        j.elapsed_secs = elapsed;
        j.usage.max_rss_bytes = Some(rss_mib << 20);
        j.req_mem_bytes = Some(4 << 30);
        j.time_limit_secs = Some(86_400);
        j.alloc_cpus = 8;
        j.usage.total_cpu_ms = elapsed * 1_000; // one core busy
        j
    }

    #[test]
    fn nearest_rank_percentile() {
        let mut v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&mut v, 95.0), Some(19.0));
        assert_eq!(percentile(&mut [], 95.0), None);
        assert_eq!(percentile(&mut [7.0], 95.0), Some(7.0));
    }

    #[test]
    fn suggests_mem_time_and_cpus_from_the_p95_with_margin() {
        let jobs: Vec<JobRecord> = (1..=20).map(|i| run(i, 100 + i * 10, 600 + i * 10)).collect();
        let refs: Vec<&JobRecord> = jobs.iter().collect();
        let r = rightsize("fam", &refs, &jobs[19], 5, 0.2).unwrap();
        // p95 of 110..=300 MiB is 290 MiB; ×1.2 = 348 MiB → 352M (32 MiB steps).
        assert_eq!(r.p95_peak_mem_bytes, 290 << 20);
        assert_eq!(r.mem.as_deref(), Some("--mem=352M"));
        // p95 elapsed 790 s ×1.2 = 948 s → 16 min.
        assert_eq!(r.time.as_deref(), Some("--time=00:16:00"));
        assert_eq!(r.cpus.as_deref(), Some("--cpus-per-task=2"));
        assert_eq!(r.options(), "--mem=352M --time=00:16:00 --cpus-per-task=2");
    }

    #[test]
    fn no_suggestion_without_enough_history_or_waste() {
        let jobs: Vec<JobRecord> = (1..=3).map(|i| run(i, 100, 600)).collect();
        let refs: Vec<&JobRecord> = jobs.iter().collect();
        assert!(rightsize("fam", &refs, &jobs[2], 5, 0.2).is_none());
        let mut tight: Vec<JobRecord> = (1..=6).map(|i| run(i, 3_900, 80_000)).collect();
        for j in &mut tight {
            j.alloc_cpus = 1;
        }
        let refs: Vec<&JobRecord> = tight.iter().collect();
        assert!(rightsize("fam", &refs, &tight[5], 5, 0.2).is_none());
    }
}
