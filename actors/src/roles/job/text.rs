//! The terminal report of one job (`turingwatch job`), laid out like `seff` so its users find
//! the figures where they expect them, followed by what seff cannot say: per-node peaks from
//! samples, GPU use, sample coverage and findings with their fix.
//!
//! Figures get bar charts (`CPU [#########...........]  45 %`), per node where the job was
//! sampled. Rendering is pure: the caller says whether to colour ([`use_colour`]: a terminal,
//! and no `NO_COLOR`), so piped output carries no escape codes.

use crate::analysis::findings::{bytes_text, duration_text};
use crate::analysis::summary::JobAnalysis;
use std::fmt::Write;

/// Width of a bar chart, characters between the brackets.
const BAR_WIDTH: usize = 20;

/// Whether to colour: only on a terminal, and not when `NO_COLOR` is set to anything non-empty
/// (<https://no-color.org>).
pub fn use_colour(stdout_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stdout_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// How a figure reads: well used, worth a look, or poorly used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Good,
    Fair,
    Poor,
}

impl Level {
    /// Use of cores or GPUs: 70 % and more is good, under 30 % poor.
    fn of_use(frac: f64) -> Level {
        if frac >= 0.7 {
            Level::Good
        } else if frac >= 0.3 {
            Level::Fair
        } else {
            Level::Poor
        }
    }

    /// Memory against the request: half or more is good, under a fifth poor, and near the
    /// limit (over 90 %) worth a look, since the kernel kills a job that goes over.
    fn of_memory(frac: f64) -> Level {
        if frac > 0.9 {
            Level::Fair
        } else if frac >= 0.5 {
            Level::Good
        } else if frac >= 0.2 {
            Level::Fair
        } else {
            Level::Poor
        }
    }

    /// Green, orange (the terminal's yellow), red.
    fn ansi(self) -> &'static str {
        match self {
            Level::Good => "\x1b[32m",
            Level::Fair => "\x1b[33m",
            Level::Poor => "\x1b[31m",
        }
    }
}

/// `LABEL [#####...............]  25 %`, the bar and figure coloured by `level` when `colour`.
/// Fractions over 1 fill the bar and show their figure.
fn bar(label: &str, frac: f64, level: Level, colour: bool) -> String {
    let frac = if frac.is_finite() { frac.max(0.0) } else { 0.0 };
    let filled = ((frac.min(1.0) * BAR_WIDTH as f64).round() as usize).min(BAR_WIDTH);
    let body = format!("[{}{}] {:>3.0} %", "#".repeat(filled), ".".repeat(BAR_WIDTH - filled), frac * 100.0);
    if colour {
        format!("{label:<4} {}{body}\x1b[0m", level.ansi())
    } else {
        format!("{label:<4} {body}")
    }
}

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

/// Renders the report; `colour` adds ANSI colours to the bar charts; with a `web_base_url`
/// (`[mail] web_base_url`) the job's page on the site is linked as the mail links it.
pub fn render_job_text(j: &JobAnalysis, source: Source, colour: bool, web_base_url: &str) -> String {
    let mut out = String::new();
    let e = &j.efficiency;
    let nodes = u64::from(j.record.node_count.max(1));
    let mem_per_node = j.record.req_mem_bytes.filter(|r| *r > 0).map(|r| r / nodes);
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
    if let Some(f) = e.cpu_frac {
        let _ = writeln!(out, "  {}", bar("CPU", f, Level::of_use(f), colour));
    }
    if let Some(f) = e.mem_frac {
        let _ = writeln!(out, "  {}", bar("Mem", f, Level::of_memory(f), colour));
    }
    if let Some(en) = &j.energy {
        use crate::analysis::energy::{co2e_text, energy_text, EnergySource};
        let how = match en.source {
            EnergySource::Measured => "measured (RAPL)",
            EnergySource::Mixed => "CPU and memory measured (RAPL), GPUs estimated",
            EnergySource::Estimated => "estimated from [energy]",
        };
        let _ = writeln!(
            out,
            "Energy: {} ({}), {} wasted ({}); {how}",
            energy_text(en.kwh),
            co2e_text(en.co2e_g),
            energy_text(en.wasted_kwh),
            co2e_text(en.wasted_co2e_g)
        );
    }
    if j.samples > 0 {
        let _ = writeln!(out, "Samples: {} (coverage {:.0}% of the run)", j.samples, j.sample_coverage_frac * 100.0);
        for n in &j.nodes {
            let cpus = if n.cpus > 0 { f64::from(n.cpus) } else { f64::from(j.record.alloc_cpus) / nodes as f64 };
            if cpus > 0.0 {
                let f = n.mean_cores / cpus;
                let _ = writeln!(out, "  {:<10} {}", n.node, bar("CPU", f, Level::of_use(f), colour));
            }
            if let Some(limit) = mem_per_node {
                let f = n.peak_mem_bytes as f64 / limit as f64;
                let _ = writeln!(
                    out,
                    "  {:<10} {} of {}",
                    "",
                    bar("Mem", f, Level::of_memory(f), colour),
                    bytes_text(limit)
                );
            }
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
    } else {
        let _ = writeln!(out, "Samples: none (coverage 0%; figures from SLURM accounting)");
    }
    // GPU readings come apart from the cgroup samples: a job may have either.
    for g in &j.gpus {
        let f = g.mean_util_pct / 100.0;
        let _ = writeln!(
            out,
            "  {:<10} {} (GPU {}), memory peak {} MiB",
            g.node,
            bar("GPU", f, Level::of_use(f), colour),
            g.index,
            g.peak_mem_mib
        );
        let _ = writeln!(
            out,
            "  GPU {}/{}: mean {:.1}% utilisation, {} of {} readings at 0%, peak memory {} MiB, mean power {:.0} W",
            g.node, g.index, g.mean_util_pct, g.zero_util, g.readings, g.peak_mem_mib, g.mean_power_w
        );
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
    let base = web_base_url.trim_end_matches('/');
    if !base.is_empty() {
        // The site's route, as the mail links it.
        let _ = writeln!(out, "Web: {base}/#/job/{}", j.id());
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
        let text = render_job_text(&j, Source::Slurm, false, "");
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
        let text = render_job_text(&j, Source::Store, false, "");
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
        let text = render_job_text(&analyze_job(&input, &params()), Source::Store, false, "");
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
        let text = render_job_text(&analyze_job(&input, &params()), Source::Store, false, "");
        assert!(text.contains("GPUs: 2 (1 without GPU readings, not judged)"), "{text}");
        assert!(
            text.contains(
                "GPU g1/0: mean 50.0% utilisation, 0 of 10 readings at 0%, peak memory 4096 MiB, mean power 120 W"
            ),
            "{text}"
        );
    }

    /// Job 1 of alice's inputs (2 CPUs, 2 GiB) sampled on n1: 1 of the node's 4 cores busy,
    /// 512 MiB resident.
    fn sampled() -> JobAnalysis {
        let mut input = alice_inputs().remove(0);
        let key = crate::store::SeriesKey { job: input.job.id, step: crate::job::StepId::BATCH, node: "n1".into() };
        input.samples.insert(key, crate::analysis::series::tests::burn(10, 1.0, 512));
        analyze_job(&input, &params())
    }

    #[test]
    fn bars_per_node_are_plain_without_colour() {
        let text = render_job_text(&sampled(), Source::Store, false, "");
        assert!(text.contains("\n  CPU  [....................]   0 %\n"), "{text}");
        assert!(text.contains("\n  Mem  [###############.....]  75 %\n"), "{text}");
        assert!(text.contains("  n1         CPU  [#####...............]  25 %\n"), "{text}");
        assert!(text.contains("             Mem  [#####...............]  25 % of 2.0 GiB\n"), "{text}");
        assert!(!text.contains('\x1b'), "no escape codes: {text:?}");
    }

    #[test]
    fn bars_are_coloured_by_threshold_on_a_terminal() {
        let text = render_job_text(&sampled(), Source::Store, true, "");
        // 0 % and 25 % of the cores: red; 75 % of the memory: green; 25 %: orange.
        assert!(text.contains("CPU  \x1b[31m[....................]   0 %\x1b[0m"), "{text:?}");
        assert!(text.contains("Mem  \x1b[32m[###############.....]  75 %\x1b[0m"), "{text:?}");
        assert!(text.contains("CPU  \x1b[31m[#####...............]  25 %\x1b[0m"), "{text:?}");
        assert!(text.contains("Mem  \x1b[33m[#####...............]  25 %\x1b[0m of 2.0 GiB"), "{text:?}");
        // Colour changes nothing but the escapes.
        let plain = render_job_text(&sampled(), Source::Store, false, "");
        let stripped = ["\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[0m"].iter().fold(text, |t, c| t.replace(c, ""));
        assert_eq!(stripped, plain);
    }

    #[test]
    fn bars_are_bounded_and_levels_follow_thresholds() {
        assert_eq!(bar("CPU", 3.0, Level::Good, false), "CPU  [####################] 300 %");
        assert_eq!(bar("CPU", f64::NAN, Level::Poor, false), "CPU  [....................]   0 %");
        assert_eq!(bar("CPU", -1.0, Level::Poor, false), "CPU  [....................]   0 %");
        assert_eq!([0.1, 0.3, 0.7].map(Level::of_use), [Level::Poor, Level::Fair, Level::Good]);
        assert_eq!([0.1, 0.3, 0.6, 0.95].map(Level::of_memory), [Level::Poor, Level::Fair, Level::Good, Level::Fair]);
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(!use_colour(false, None));
        assert!(!use_colour(true, Some("1".into())));
        assert!(use_colour(true, Some("".into())), "an empty NO_COLOR is unset");
    }

    #[test]
    fn the_web_link_is_shown_only_when_configured() {
        let j = sampled();
        let text = render_job_text(&j, Source::Server, false, "https://tw.example/site/");
        assert!(text.contains("\nWeb: https://tw.example/site/#/job/1\n"), "{text}");
        assert!(!render_job_text(&j, Source::Server, false, "").contains("Web:"));
    }

    #[test]
    fn each_gpu_gets_a_utilisation_bar_and_its_memory() {
        use crate::sample::GpuReading;
        let mut input = alice_inputs().remove(0);
        input.job.alloc_tres = crate::job::Tres(vec![("gres/gpu".into(), 1)]);
        let key = crate::store::SeriesKey { job: input.job.id, step: crate::job::StepId(0), node: "g1".into() };
        let reading = |i: u64| GpuReading {
            at: 1_000 + i * 20,
            util_pct: 80,
            mem_used_mib: 2_048,
            in_use_by_step: true,
            ..GpuReading::default()
        };
        input.gpu.insert(key, (0..10).map(reading).collect());
        let text = render_job_text(&analyze_job(&input, &params()), Source::Store, false, "");
        assert!(
            text.contains("  g1         GPU  [################....]  80 % (GPU 0), memory peak 2048 MiB\n"),
            "{text}"
        );
    }
}
