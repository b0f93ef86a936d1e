//! The terminal report of one job (`turingwatch job`), laid out like `seff` so its users find
//! the figures where they expect them, followed by what seff cannot say: per-node peaks from
//! samples, GPU use, sample coverage and findings with their fix.

use crate::analysis::findings::{bytes_text, duration_text};
use crate::analysis::summary::JobAnalysis;
use std::fmt::Write;

/// Where the job's data came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The turingwatch store (accounting import, plus samples when scraped).
    Store,
    /// The server's client API (its store, with the samples of running jobs).
    Server,
    /// SLURM's accounting, asked directly (the job is not in the store, or the store is busy).
    Slurm,
}

fn seconds_text(ms: u64) -> String {
    format!("{}.{:03}", duration_text(ms / 1000), ms % 1000)
}

/// Renders the report.
pub fn render_job_text(j: &JobAnalysis, source: Source) -> String {
    let mut out = String::new();
    let e = &j.efficiency;
    let _ = writeln!(out, "Job ID: {}", j.record.display_id);
    let _ = writeln!(out, "Job name: {}", j.record.name);
    let _ = writeln!(out, "User/Account: {}/{}", j.record.user, j.record.account);
    let _ = writeln!(out, "Partition: {}", j.record.partition);
    let _ = writeln!(out, "State: {}", j.record.state);
    let _ = writeln!(out, "Nodes: {} ({})", j.record.node_count, j.record.node_list);
    let _ = writeln!(out, "Cores: {}", j.record.alloc_cpus);
    if j.record.alloc_gpus() > 0 {
        let note = match (j.gpu_no_data, j.gpus_unread) {
            (Some(why), _) => format!(" ({})", why.text()),
            (None, 0) => String::new(),
            (None, n) => format!(" ({n} without GPU readings, not judged)"),
        };
        let _ = writeln!(out, "GPUs: {}{note}", j.record.alloc_gpus());
    }
    let limit = j.record.time_limit_secs.map_or_else(|| "UNLIMITED".to_string(), duration_text);
    let _ = writeln!(
        out,
        "Elapsed: {} of {} time limit{}",
        duration_text(j.record.elapsed_secs),
        limit,
        match (e.time_frac, e.time_no_data) {
            (Some(f), _) => format!(" ({:.2}%)", f * 100.0),
            (None, Some(why)) => format!(" (time used {})", why.text()),
            (None, None) => String::new(),
        }
    );
    let _ = writeln!(out, "CPU Utilized: {}", seconds_text(j.record.usage.total_cpu_ms));
    match (e.cpu_frac, e.cpu_no_data) {
        (Some(f), _) if e.cpu_live => {
            let _ = writeln!(out, "CPU Efficiency: {:.2}% so far (from samples; the job is running)", f * 100.0);
        }
        (Some(f), _) => {
            let _ = writeln!(out, "CPU Efficiency: {:.2}% of {} core-walltime", f * 100.0, duration_text(e.core_secs));
        }
        (None, why) => {
            let _ = writeln!(out, "CPU Efficiency: {}", why.map_or("n/a", |w| w.text()));
        }
    }
    let _ = writeln!(out, "Memory Utilized: {}", e.mem_used_bytes.map_or_else(|| "n/a".into(), bytes_text));
    match (e.mem_frac, j.record.req_mem_bytes) {
        (Some(f), Some(req)) => {
            let live = if e.mem_live { " so far (resident peak from samples)" } else { "" };
            let _ = writeln!(out, "Memory Efficiency: {:.2}% of {}{live}", f * 100.0, bytes_text(req));
        }
        _ => {
            let _ = writeln!(out, "Memory Efficiency: {}", e.mem_no_data.map_or("n/a", |w| w.text()));
        }
    }
    if j.samples > 0 {
        let _ = writeln!(out, "Samples: {} (coverage {:.0}% of the run)", j.samples, j.sample_coverage_frac * 100.0);
        for n in &j.nodes {
            // Page cache is shown apart: the kernel drops it before it would kill the job.
            let cache = if n.peak_cache_bytes > 0 || n.peak_charged_bytes > n.peak_mem_bytes {
                format!(
                    " (page cache up to {}; {} with cache)",
                    bytes_text(n.peak_cache_bytes),
                    bytes_text(n.peak_charged_bytes)
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "  {}: peak resident memory {}{}, cores busy mean {:.2} / max {:.2}{}",
                n.node,
                bytes_text(n.peak_mem_bytes),
                cache,
                n.mean_cores,
                n.max_cores,
                if n.cpus > 0 { format!(" of {}", n.cpus) } else { String::new() }
            );
        }
        for g in &j.gpus {
            let _ = writeln!(
                out,
                "  GPU {}/{}: mean {:.1}% utilisation, {} of {} readings at 0%, peak memory {} MiB, mean power {:.0} W",
                g.node, g.index, g.mean_util_pct, g.zero_util, g.readings, g.peak_mem_mib, g.mean_power_w
            );
        }
    } else {
        let _ = writeln!(out, "Samples: none (coverage 0%; figures from SLURM accounting)");
    }
    if !j.steps.is_empty() {
        let _ = writeln!(out, "Steps:");
        for s in &j.steps {
            let _ = writeln!(
                out,
                "  {:<12} {:<16} {:<12} elapsed {} cpu {} maxrss {}",
                s.step,
                s.name,
                s.state,
                duration_text(s.elapsed_secs),
                seconds_text(s.usage.total_cpu_ms),
                s.usage.max_rss_bytes.map_or_else(|| "n/a".into(), bytes_text)
            );
        }
    }
    if j.findings.is_empty() {
        let _ = writeln!(out, "Findings: none");
    } else {
        let _ = writeln!(out, "Findings:");
        for f in &j.findings {
            let _ = writeln!(out, "  [{:?}] {}: {}", f.severity, f.kind.title(), f.evidence);
            let _ = writeln!(out, "      why: {}", f.kind.cause());
            let _ = writeln!(out, "      fix: {}", f.fix);
        }
    }
    let _ = writeln!(
        out,
        "Source: {}",
        match source {
            Source::Store => "turingwatch store",
            Source::Server => "turingwatch server",
            Source::Slurm => "SLURM accounting (sacct)",
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::summary::analyze_job;
    use crate::analysis::summary::tests::{alice_inputs, params};

    #[test]
    fn prints_seff_style_figures_and_findings() {
        let inputs = alice_inputs();
        let j = analyze_job(&inputs[0], &params());
        let text = render_job_text(&j, Source::Slurm);
        // 0.1 s of CPU over 600 s × 2 cores.
        assert!(text.contains("CPU Efficiency: 0.01% of 00:20:00 core-walltime"), "{text}");
        assert!(text.contains("Memory Efficiency: 75.00% of 2.0 GiB"), "{text}");
        assert!(text.contains("CPU Underusage") && text.contains("fix: --cpus-per-task=1"), "{text}");
        assert!(text.contains("Samples: none (coverage 0%"));
        assert!(text.ends_with("Source: SLURM accounting (sacct)\n"));
    }

    #[test]
    fn a_running_job_shows_no_data_yet_and_an_unlimited_limit_no_percentage() {
        let mut inputs = alice_inputs();
        inputs[0].job.end_at = None;
        inputs[0].job.time_limit_secs = None;
        let j = analyze_job(&inputs[0], &params());
        let text = render_job_text(&j, Source::Store);
        assert!(text.contains("CPU Efficiency: no data yet (job running)"), "{text}");
        assert!(text.contains("of UNLIMITED time limit (time used n/a (no time limit))"), "{text}");
        assert!(!text.contains("0.00%"), "{text}");
    }

    #[test]
    fn a_gpu_job_shows_whether_its_gpus_were_read() {
        use crate::sample::GpuReading;
        use crate::store::SeriesKey;
        let mut input = alice_inputs().remove(0);
        input.job.alloc_tres = crate::job::Tres(vec![("gres/gpu".into(), 2)]);
        let text = render_job_text(&analyze_job(&input, &params()), Source::Store);
        assert!(text.contains("GPUs: 2 (no GPU data (job not sampled))"), "{text}");
        assert!(!text.contains("GPU Underusage"), "{text}");
        // One of the two read, every 20 s at 50 %, 4 GiB, 120 W.
        let key = SeriesKey { job: input.job.id, step: crate::job::StepId(0), node: "g1".into() };
        let reading = |i: u64| GpuReading {
            at: 1_000 + i * 20,
            util_pct: 50,
            mem_used_mib: 4_096,
            power_mw: 120_000,
            in_use_by_step: true,
            ..GpuReading::default()
        };
        input.gpu.insert(key.clone(), (0..10).map(reading).collect());
        input.samples.insert(key, crate::analysis::series::tests::burn(10, 0.0, 10));
        let text = render_job_text(&analyze_job(&input, &params()), Source::Store);
        assert!(text.contains("GPUs: 2 (1 without GPU readings, not judged)"), "{text}");
        assert!(
            text.contains(
                "GPU g1/0: mean 50.0% utilisation, 0 of 10 readings at 0%, peak memory 4096 MiB, mean power 120 W"
            ),
            "{text}"
        );
    }
}
