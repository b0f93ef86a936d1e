//! What a job's scraped samples say: cores in use over time, memory peaks per node, idle spans,
//! system-time ratios, page-fault rates, GPU utilisation, and how much of the run was sampled.
//!
//! Counters are cumulative, so every figure comes from differences between consecutive samples
//! of the same node: cores in use over an interval = Δ(user + system CPU) / Δt. Steps sampled on
//! the same node at the same instant are summed first, so a node's figure is the job's use of it.

use crate::sample::{GpuReading, StepSample};
use crate::store::SeriesKey;
use serde::Serialize;
use std::collections::BTreeMap;

/// Below this many cores a node counts as idle over an interval.
const IDLE_CORES: f64 = 0.02;

/// Sample statistics of one node of a job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeUse {
    pub node: String,
    pub samples: u32,
    pub mean_cores: f64,
    pub max_cores: f64,
    /// Peak resident memory of the job's steps on the node (anonymous, mapped and shared
    /// memory; page cache excluded): what findings judge.
    pub peak_mem_bytes: u64,
    /// Most page cache seen charged to the job's steps on the node at one sample.
    pub peak_cache_bytes: u64,
    /// Peak memory as the cgroup charges it (`memory.peak` / `max_usage_in_bytes`, page cache
    /// included), the figure the kernel compares with the limit; the resident peak where the
    /// cgroup gives none.
    pub peak_charged_bytes: u64,
    /// CPU time the job's steps used on the node up to the last sample (the cumulative
    /// counters, so time before the first sample counts), seconds.
    pub cpu_secs: f64,
    /// Seconds of the run covered by this node's samples (intervals up to the gap limit).
    pub covered_secs: u64,
    /// Energy RAPL measured for the job's steps on the node (their shares), joules; 0 where
    /// nothing measured it. A scraper restart (the counter drops) starts a new count.
    pub energy_j: f64,
    /// CPUs in the job's cpuset on this node (0 when unknown).
    pub cpus: u32,
    /// Samples by cores in use (rounded up): index = cores, value = count.
    pub cores_histogram: Vec<u32>,
}

/// The original's system-time ratio buckets over intervals with at least the minimum system time.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct SysRatio {
    pub intervals: u32,
    pub r10_33: u32,
    pub r33_66: u32,
    pub r66_100: u32,
    /// Intervals with system time above user time.
    pub over_100: u32,
    /// Sum of the ratios above 1.
    pub over_100_sum: f64,
}

impl SysRatio {
    /// `n(33–66) + 2·n(66–100) + 3·Σ(ratios > 1)`: high when system time is about ≥ 1/3 of user time.
    pub fn unified(&self) -> f64 {
        f64::from(self.r33_66) + 2.0 * f64::from(self.r66_100) + 3.0 * self.over_100_sum
    }

    /// The original's rule: the unified score reaches the number of qualifying intervals.
    pub fn is_high(&self) -> bool {
        self.intervals > 0 && self.unified() >= f64::from(self.intervals)
    }

    /// Intervals whose system time was at least a third of the user time.
    pub fn high_intervals(&self) -> u32 {
        self.r33_66 + self.r66_100 + self.over_100
    }
}

/// Memory a GPU must hold for one of the job's processes (that had it open) before a GPU at 0 %
/// utilisation counts as used for data rather than idle, MiB.
pub const GPU_HELD_MEM_MIB: u64 = 1024;

/// Readings of one physical GPU of a job: the readings of every step that saw the device,
/// merged into one per instant (see [`gpu_uses`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuUse {
    pub node: String,
    pub index: u32,
    /// Instants the GPU was read at: one per sampling sweep, however many steps saw it.
    pub readings: u32,
    /// Steps whose readings include the GPU.
    pub steps: u32,
    pub mean_util_pct: f64,
    pub zero_util: u32,
    pub low_util: u32,
    /// Longest run of consecutive zero-utilisation readings; a gap between readings longer than
    /// `max_gap_secs` ends a run (nobody saw the GPU then).
    pub longest_zero_run: u32,
    /// Longest span with zero utilisation, seconds (first to last reading of such a run).
    pub longest_zero_secs: u64,
    /// Highest device memory in use in any reading, MiB.
    pub peak_mem_mib: u64,
    /// Highest device memory in use in a reading where one of the job's processes had the
    /// device open, MiB (0 when none had).
    pub held_mem_mib: u64,
    pub mean_power_w: f64,
    pub mean_sm_clock_mhz: f64,
    pub used_by_job: bool,
    /// Energy NVML's total-energy counter measured for the device over the run, joules (see
    /// [`gpu_counter_energy`]); `None` where the device has no counter or fewer than two
    /// readings carry it.
    pub energy_j: Option<f64>,
    /// Seconds of the run covered by readings: intervals between consecutive readings up to
    /// `max_gap_secs`; a lone reading covers `max_gap_secs` (at most the run).
    pub covered_secs: u64,
}

impl GpuUse {
    /// Utilisation above 0 % in some reading.
    pub fn ever_busy(&self) -> bool {
        self.zero_util < self.readings
    }

    /// One of the job's processes held at least [`GPU_HELD_MEM_MIB`] on the device.
    pub fn holds_memory(&self) -> bool {
        self.held_mem_mib >= GPU_HELD_MEM_MIB
    }
}

/// Why a job that was allocated GPUs has no GPU figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GpuNoData {
    /// The job was not sampled at all.
    NotSampled,
    /// The job was sampled, but no GPU was read: `[gpu] source = "none"` (the default), or no
    /// NVML library or driver on its nodes.
    NoGpuReadings,
}

impl GpuNoData {
    /// For people: what to show instead of GPU figures.
    pub fn text(self) -> &'static str {
        match self {
            GpuNoData::NotSampled => "no GPU data (job not sampled)",
            GpuNoData::NoGpuReadings => "no GPU data (no GPU readings: [gpu] source is \"none\" or NVML is absent)",
        }
    }
}

/// How much of a job's GPU allocation its readings cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct GpuCoverage {
    /// Why there are no GPU figures at all; `None` when a GPU was read or none was allocated.
    pub no_data: Option<GpuNoData>,
    /// GPU-seconds allocated: allocated GPUs × elapsed seconds.
    pub secs_alloc: u64,
    /// GPU-seconds covered by readings: each GPU read's covered seconds (at most the elapsed
    /// time), summed, at most `secs_alloc`.
    pub secs_sampled: u64,
    /// Allocated GPUs without any reading (allocated minus GPUs read, at least 0).
    pub unread: u64,
}

/// The GPU coverage of a job allocated `alloc_gpus` GPUs for `elapsed_secs`, from its sample
/// statistics (`None`: not sampled).
pub fn gpu_coverage(alloc_gpus: u64, elapsed_secs: u64, stats: Option<&SeriesStats>) -> GpuCoverage {
    let secs_alloc = alloc_gpus.saturating_mul(elapsed_secs);
    let gpus = stats.map_or(&[][..], |s| s.gpus.as_slice());
    let secs_sampled =
        gpus.iter().fold(0u64, |sum, g| sum.saturating_add(g.covered_secs.min(elapsed_secs))).min(secs_alloc);
    let no_data = match stats {
        _ if alloc_gpus == 0 || !gpus.is_empty() => None,
        Some(s) if s.samples > 0 => Some(GpuNoData::NoGpuReadings),
        _ => Some(GpuNoData::NotSampled),
    };
    GpuCoverage { no_data, secs_alloc, secs_sampled, unread: alloc_gpus.saturating_sub(gpus.len() as u64) }
}

/// Share of a job's allocation (its nodes × its run) covered by samples: a job of four nodes
/// sampled on one for its whole run is a quarter covered.
pub fn allocation_coverage(stats: &SeriesStats, node_count: u32, elapsed_secs: u64) -> f64 {
    let nodes = u64::from(node_count).max(stats.nodes.len() as u64).max(1);
    let covered = stats.nodes.iter().fold(0u64, |sum, n| sum.saturating_add(n.covered_secs.min(elapsed_secs)));
    match nodes.checked_mul(elapsed_secs) {
        Some(whole) if whole > 0 => (covered as f64 / whole as f64).min(1.0),
        _ => 0.0,
    }
}

/// Everything the samples of one job say.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct SeriesStats {
    pub samples: u64,
    pub nodes: Vec<NodeUse>,
    pub gpus: Vec<GpuUse>,
    /// Share of the job's run covered by samples on its best-covered node (0..1); see
    /// [`allocation_coverage`] for the share of the whole allocation.
    pub coverage_frac: f64,
    /// Most cores busy on any node in any interval.
    pub max_cores: f64,
    /// Longest span with (almost) no CPU use on a node, seconds.
    pub longest_idle_secs: u64,
    pub sys_ratio: SysRatio,
    /// Highest page-fault rate (minor + major) on a node over an interval, per second.
    pub max_fault_rate: f64,
    /// The longest run of consecutive observed intervals on a node whose fault rate stayed
    /// above `SeriesParams::fault_churn_per_sec`: its length and its lowest rate.
    pub fault_churn: FaultRun,
    /// Idle time judged on the sampling windows actually observed (see [`IdleWindows`]), on
    /// the node where it is worst.
    pub idle_windows: IdleWindows,
}

/// A run of consecutive intervals with a high page-fault rate.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct FaultRun {
    pub intervals: u32,
    pub secs: u64,
    /// The lowest rate in the run, faults per second.
    pub min_rate: f64,
}

/// Idleness over the windows a scraper observed. Scrapers placed by the distributor sample a
/// job for a while, then leave it for a while, so an hour of continuous samples may never
/// exist; a job idle in most of the windows seen over a long stretch of its run is idle.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct IdleWindows {
    /// Windows (runs of intervals without a gap) observed on the node.
    pub windows: u32,
    /// Windows idle in at least [`IDLE_WINDOW_FRAC`] of their observed time.
    pub idle_windows: u32,
    /// From the start of the first idle window to the end of the last, seconds.
    pub idle_span_secs: u64,
    /// Observed seconds, and of them idle.
    pub observed_secs: u64,
    pub idle_secs: u64,
}

/// A window counts as idle when this share of its observed time had (almost) no CPU use.
pub const IDLE_WINDOW_FRAC: f64 = 0.9;

impl IdleWindows {
    /// More than half of at least two windows idle, spanning at least `span_secs` of the job.
    pub fn mostly_idle_over(&self, span_secs: u64) -> bool {
        self.windows >= 2 && self.idle_windows * 2 > self.windows && self.idle_span_secs >= span_secs
    }
}

/// Thresholds the sample statistics need.
#[derive(Debug, Clone, Copy)]
pub struct SeriesParams {
    /// Intervals longer than this are gaps (not covered, not used for rates), seconds.
    pub max_gap_secs: u64,
    /// Minimum system time in an interval for the sys-ratio buckets, centiseconds.
    pub sys_ratio_min_sys_cs: u64,
    /// GPU utilisation below this counts as low.
    pub gpu_low_util_pct: f64,
    /// Page faults per second above which an interval counts towards a churn run.
    pub fault_churn_per_sec: f64,
}

/// Last bucket of a node's cores-in-use histogram: rates above it count there. Far above any
/// node's core count, small enough that a forged counter cannot make the histogram huge.
pub const MAX_HISTOGRAM_CORES: usize = 4096;

#[derive(Default, Clone, Copy)]
struct Point {
    cpu_cs: u64,
    user_cs: u64,
    sys_cs: u64,
    /// Resident memory, or a lower bound of it from the cgroup's peak (see `node_points`).
    resident_bytes: u64,
    cache_bytes: u64,
    charged_bytes: u64,
    faults: u64,
}

/// Computes the statistics of one job's samples; `elapsed_secs` is the job's run time.
pub fn series_stats(
    samples: &BTreeMap<SeriesKey, Vec<StepSample>>,
    gpu: &BTreeMap<SeriesKey, Vec<GpuReading>>,
    elapsed_secs: u64,
    params: &SeriesParams,
) -> SeriesStats {
    let mut stats = SeriesStats::default();
    let mut by_node: BTreeMap<&str, Vec<&Vec<StepSample>>> = BTreeMap::new();
    for (key, series) in samples {
        if !series.is_empty() {
            by_node.entry(key.node.as_str()).or_default().push(series);
        }
    }
    let mut covered_secs = 0u64;
    for (node, series) in by_node {
        let points = node_points(&series);
        let cpus = series.iter().filter_map(|s| s.iter().map(|x| x.cpus).max()).max().unwrap_or(0);
        stats.samples += points.len() as u64;
        let peak = |f: fn(&Point) -> u64| points.iter().map(|(_, p)| f(p)).max().unwrap_or(0);
        let mut node_use = NodeUse {
            node: node.to_string(),
            samples: points.len() as u32,
            mean_cores: 0.0,
            max_cores: 0.0,
            peak_mem_bytes: peak(|p| p.resident_bytes),
            peak_cache_bytes: peak(|p| p.cache_bytes),
            peak_charged_bytes: peak(|p| p.charged_bytes),
            cpu_secs: points.last().map_or(0.0, |(_, p)| p.cpu_cs as f64 / 100.0),
            covered_secs: 0,
            energy_j: series.iter().map(|steps| counter_total(steps.iter().map(|x| x.energy_mj))).sum::<u64>() as f64
                / 1000.0,
            cpus,
            cores_histogram: Vec::new(),
        };
        let (mut busy_cs, mut span_secs, mut idle_run) = (0u64, 0u64, 0u64);
        let mut churn = FaultRun::default();
        let mut windows = WindowScan::default();
        let mut node_covered = if points.len() == 1 { params.max_gap_secs.min(elapsed_secs) } else { 0 };
        for pair in points.windows(2) {
            let ((t0, p0), (t1, p1)) = (pair[0], pair[1]);
            let dt = t1.saturating_sub(t0);
            if dt == 0 || dt > params.max_gap_secs {
                idle_run = 0;
                churn = FaultRun::default();
                windows.gap();
                continue;
            }
            node_covered += dt;
            let d_cpu = p1.cpu_cs.saturating_sub(p0.cpu_cs);
            busy_cs = busy_cs.saturating_add(d_cpu);
            span_secs += dt;
            let cores = d_cpu as f64 / 100.0 / dt as f64;
            node_use.max_cores = node_use.max_cores.max(cores);
            // Bounded whatever the counters say: a corrupt or forged sample may claim any rate.
            let bucket = (cores.ceil() as usize).min(MAX_HISTOGRAM_CORES);
            if node_use.cores_histogram.len() <= bucket {
                node_use.cores_histogram.resize(bucket + 1, 0);
            }
            node_use.cores_histogram[bucket] += 1;
            let idle = cores < IDLE_CORES;
            windows.interval(t0, t1, idle);
            if idle {
                idle_run += dt;
                stats.longest_idle_secs = stats.longest_idle_secs.max(idle_run);
            } else {
                idle_run = 0;
            }
            let d_sys = p1.sys_cs.saturating_sub(p0.sys_cs);
            let d_user = p1.user_cs.saturating_sub(p0.user_cs);
            if d_sys >= params.sys_ratio_min_sys_cs && d_user > 0 {
                add_sys_ratio(&mut stats.sys_ratio, d_sys as f64 / d_user as f64);
            }
            let rate = p1.faults.saturating_sub(p0.faults) as f64 / dt as f64;
            stats.max_fault_rate = stats.max_fault_rate.max(rate);
            if rate > params.fault_churn_per_sec {
                churn.min_rate = if churn.intervals == 0 { rate } else { churn.min_rate.min(rate) };
                churn.intervals += 1;
                churn.secs += dt;
                if churn.secs > stats.fault_churn.secs {
                    stats.fault_churn = churn;
                }
            } else {
                churn = FaultRun::default();
            }
        }
        if span_secs > 0 {
            node_use.mean_cores = busy_cs as f64 / 100.0 / span_secs as f64;
        }
        let idle = windows.finish();
        if (idle.mostly_idle_over(0), idle.idle_span_secs)
            > (stats.idle_windows.mostly_idle_over(0), stats.idle_windows.idle_span_secs)
        {
            stats.idle_windows = idle;
        }
        stats.max_cores = stats.max_cores.max(node_use.max_cores);
        covered_secs = covered_secs.max(node_covered);
        node_use.covered_secs = node_covered.min(elapsed_secs);
        stats.nodes.push(node_use);
    }
    stats.coverage_frac = if elapsed_secs > 0 { (covered_secs as f64 / elapsed_secs as f64).min(1.0) } else { 0.0 };
    stats.gpus = gpu_uses(gpu, elapsed_secs, params);
    stats
}

/// What a cumulative counter that may restart at 0 counted in all: its first value plus every
/// rise, and after a drop the new value (a new count from 0).
fn counter_total(values: impl Iterator<Item = u64>) -> u64 {
    let mut prev: Option<u64> = None;
    let mut total = 0u64;
    for v in values {
        total = total.saturating_add(match prev {
            Some(p) if v >= p => v - p,
            _ => v,
        });
        prev = Some(v);
    }
    total
}

/// Splits a node's intervals into windows at gaps and counts the idle ones.
#[derive(Default)]
struct WindowScan {
    done: IdleWindows,
    /// The open window: start, end, observed and idle seconds.
    open: Option<(u64, u64, u64, u64)>,
    first_idle_start: Option<u64>,
}

impl WindowScan {
    fn interval(&mut self, t0: u64, t1: u64, idle: bool) {
        let w = self.open.get_or_insert((t0, t0, 0, 0));
        w.1 = t1;
        w.2 += t1 - t0;
        if idle {
            w.3 += t1 - t0;
        }
    }

    fn gap(&mut self) {
        if let Some((start, end, observed, idle)) = self.open.take() {
            let d = &mut self.done;
            d.windows += 1;
            d.observed_secs += observed;
            d.idle_secs += idle;
            if observed > 0 && idle as f64 >= IDLE_WINDOW_FRAC * observed as f64 {
                d.idle_windows += 1;
                let first = *self.first_idle_start.get_or_insert(start);
                d.idle_span_secs = end.saturating_sub(first);
            }
        }
    }

    fn finish(mut self) -> IdleWindows {
        self.gap();
        self.done
    }
}

/// Sums the steps of one node at each sampling instant.
///
/// Resident memory has no high-water mark in any cgroup version, so a peak between two samples
/// is only seen in the cgroup's peak, which counts page cache too. The cgroup's peak less the
/// most cache the step was ever seen holding is a resident figure the step certainly reached if
/// its cache never exceeded what was seen; the larger of that and the sampled resident memory is
/// taken. Samples without the split (format 1) have no cache figure, so their peak stays
/// whole: the figure of builds before the split.
fn node_points(series: &[&Vec<StepSample>]) -> Vec<(u64, Point)> {
    let mut merged: BTreeMap<u64, Point> = BTreeMap::new();
    for steps in series {
        let most_cache = steps.iter().map(|s| s.cache_kib).max().unwrap_or(0);
        for s in steps.iter() {
            let charged = s.mem_peak_kib.max(s.mem_current_kib);
            let p = Point {
                cpu_cs: s.cpu_user_cs.saturating_add(s.cpu_sys_cs),
                user_cs: s.cpu_user_cs,
                sys_cs: s.cpu_sys_cs,
                resident_bytes: s.resident().max(s.mem_peak_kib.saturating_sub(most_cache)).saturating_mul(1024),
                cache_bytes: s.cache_kib.saturating_mul(1024),
                charged_bytes: charged.max(s.resident()).saturating_mul(1024),
                faults: s.minor_faults.saturating_add(s.major_faults),
            };
            let m = merged.entry(s.at).or_default();
            m.cpu_cs = m.cpu_cs.saturating_add(p.cpu_cs);
            m.user_cs = m.user_cs.saturating_add(p.user_cs);
            m.sys_cs = m.sys_cs.saturating_add(p.sys_cs);
            m.resident_bytes = m.resident_bytes.saturating_add(p.resident_bytes);
            m.cache_bytes = m.cache_bytes.saturating_add(p.cache_bytes);
            m.charged_bytes = m.charged_bytes.saturating_add(p.charged_bytes);
            m.faults = m.faults.saturating_add(p.faults);
        }
    }
    merged.into_iter().collect()
}

fn add_sys_ratio(acc: &mut SysRatio, ratio: f64) {
    acc.intervals += 1;
    if ratio > 1.0 {
        acc.over_100 += 1;
        acc.over_100_sum += ratio;
    } else if ratio > 2.0 / 3.0 {
        acc.r66_100 += 1;
    } else if ratio > 1.0 / 3.0 {
        acc.r33_66 += 1;
    } else if ratio > 0.1 {
        acc.r10_33 += 1;
    }
}

/// One reading of one device at one instant, merged over the steps that saw it.
#[derive(Debug, Clone, Copy)]
struct GpuInstant {
    at: u64,
    util_pct: u32,
    mem_used_mib: u64,
    power_mw: u32,
    sm_clock_mhz: u32,
    in_use: bool,
    energy_mj: u64,
}

/// A GPU draws at most this much (a bound on forged or corrupt counters), watts: above any
/// data-centre GPU's board power (H100 SXM 700 W, B200 1 kW).
pub const MAX_GPU_WATTS: f64 = 1_500.0;

/// What a device's total-energy counter says it drew over the run, joules: the sum of its rises
/// between consecutive readings, each at most [`MAX_GPU_WATTS`] over the interval (a forged or
/// corrupt counter cannot claim more); a counter that goes back was reset by a driver reload,
/// and the interval counts its new value (what it drew since the reload), under the same bound.
/// The counter runs on through sampling gaps, so a gap loses nothing. The readings span less
/// than the run (the first comes after the start, the last before the end): the energy is
/// scaled to the run at the mean power measured. `None` without two readings with a counter
/// (readings of 0 are devices without one, or readings from before it was read).
fn gpu_counter_energy(instants: &[GpuInstant], elapsed_secs: u64) -> Option<f64> {
    let counted: Vec<&GpuInstant> = instants.iter().filter(|r| r.energy_mj > 0).collect();
    let (first, last) = (counted.first()?, counted.last()?);
    let span = last.at.saturating_sub(first.at);
    if span == 0 {
        return None;
    }
    let mut mj = 0.0f64;
    for pair in counted.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let bound = MAX_GPU_WATTS * 1_000.0 * b.at.saturating_sub(a.at) as f64;
        let rise = if b.energy_mj >= a.energy_mj { b.energy_mj - a.energy_mj } else { b.energy_mj };
        mj += (rise as f64).min(bound);
    }
    let scale = if elapsed_secs > 0 { elapsed_secs as f64 / span as f64 } else { 1.0 };
    Some(mj / 1_000.0 * scale)
}

/// One [`GpuUse`] per physical GPU of the job. Readings are stored per step, and every step
/// allocated a GPU (or with a process that has it open) gets a reading of it in each sweep, so
/// the batch step and step 0 both carry the same device's figures. They are grouped by (node,
/// device index), whichever step they were stored under, and merged per instant: readings of
/// one device at the same `at` are one instant, and so are readings of different steps less
/// than half a sampling interval apart (`max_gap_secs / 6`: the gap limit is three intervals).
/// Two readings of one step at different times are never one instant. The merged reading keeps
/// the highest of each figure (NVML's figures are per device, so the steps agree) and is in use
/// when any step's process had the device open.
fn gpu_uses(gpu: &BTreeMap<SeriesKey, Vec<GpuReading>>, elapsed_secs: u64, params: &SeriesParams) -> Vec<GpuUse> {
    let mut by_device: BTreeMap<(&str, u32), Vec<(&SeriesKey, &GpuReading)>> = BTreeMap::new();
    for (key, readings) in gpu {
        for r in readings {
            by_device.entry((key.node.as_str(), r.index)).or_default().push((key, r));
        }
    }
    by_device
        .into_iter()
        .map(|((node, index), mut rs)| {
            rs.sort_by_key(|(_, r)| r.at);
            let steps = rs.iter().map(|(k, _)| (k.job, k.step)).collect::<std::collections::BTreeSet<_>>().len();
            let instants = merge_instants(&rs, params.max_gap_secs / 6);
            gpu_use(node, index, steps as u32, &instants, elapsed_secs, params)
        })
        .collect()
}

/// Merges the time-ordered readings of one device into instants (see [`gpu_uses`]).
fn merge_instants(readings: &[(&SeriesKey, &GpuReading)], tolerance_secs: u64) -> Vec<GpuInstant> {
    let mut out: Vec<GpuInstant> = Vec::new();
    // The steps in the latest instant, with the time of their reading.
    let mut steps: BTreeMap<(crate::job::JobId, crate::job::StepId), u64> = BTreeMap::new();
    for (key, r) in readings {
        let step = (key.job, key.step);
        let joins = out.last().is_some_and(|last| {
            r.at.saturating_sub(last.at) <= tolerance_secs && steps.get(&step).is_none_or(|at| *at == r.at)
        });
        match out.last_mut() {
            Some(last) if joins => {
                last.util_pct = last.util_pct.max(r.util_pct);
                last.mem_used_mib = last.mem_used_mib.max(r.mem_used_mib);
                last.power_mw = last.power_mw.max(r.power_mw);
                last.sm_clock_mhz = last.sm_clock_mhz.max(r.sm_clock_mhz);
                last.in_use |= r.in_use_by_step;
                last.energy_mj = last.energy_mj.max(r.energy_mj);
            }
            _ => {
                steps.clear();
                out.push(GpuInstant {
                    at: r.at,
                    util_pct: r.util_pct,
                    mem_used_mib: r.mem_used_mib,
                    power_mw: r.power_mw,
                    sm_clock_mhz: r.sm_clock_mhz,
                    in_use: r.in_use_by_step,
                    energy_mj: r.energy_mj,
                });
            }
        }
        steps.insert(step, r.at);
    }
    out
}

fn gpu_use(
    node: &str,
    index: u32,
    steps: u32,
    instants: &[GpuInstant],
    elapsed_secs: u64,
    params: &SeriesParams,
) -> GpuUse {
    let n = instants.len().max(1) as f64;
    let (mut run, mut longest, mut run_start, mut longest_secs) = (0u32, 0u32, None, 0u64);
    let mut covered_secs = if instants.len() == 1 { params.max_gap_secs.min(elapsed_secs) } else { 0 };
    let mut previous: Option<u64> = None;
    for r in instants {
        let dt = previous.map_or(0, |p| r.at.saturating_sub(p));
        if dt > params.max_gap_secs {
            // Nobody saw the GPU in between: a zero run does not bridge the gap.
            run = 0;
            run_start = None;
        } else {
            covered_secs = covered_secs.saturating_add(dt);
        }
        previous = Some(r.at);
        if r.util_pct == 0 {
            run += 1;
            longest = longest.max(run);
            let start = *run_start.get_or_insert(r.at);
            longest_secs = longest_secs.max(r.at.saturating_sub(start));
        } else {
            run = 0;
            run_start = None;
        }
    }
    GpuUse {
        node: node.to_string(),
        index,
        readings: instants.len() as u32,
        steps,
        mean_util_pct: instants.iter().map(|r| f64::from(r.util_pct)).sum::<f64>() / n,
        zero_util: instants.iter().filter(|r| r.util_pct == 0).count() as u32,
        low_util: instants.iter().filter(|r| r.util_pct > 0 && f64::from(r.util_pct) < params.gpu_low_util_pct).count()
            as u32,
        longest_zero_run: longest,
        longest_zero_secs: longest_secs,
        peak_mem_mib: instants.iter().map(|r| r.mem_used_mib).max().unwrap_or(0),
        held_mem_mib: instants.iter().filter(|r| r.in_use).map(|r| r.mem_used_mib).max().unwrap_or(0),
        mean_power_w: instants.iter().map(|r| f64::from(r.power_mw) / 1000.0).sum::<f64>() / n,
        mean_sm_clock_mhz: instants.iter().map(|r| f64::from(r.sm_clock_mhz)).sum::<f64>() / n,
        used_by_job: instants.iter().any(|r| r.in_use),
        energy_j: gpu_counter_energy(instants, elapsed_secs),
        covered_secs,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::job::{JobId, StepId};

    #[test]
    fn intervals_with_more_system_than_user_time_count_as_high() {
        let mut acc = SysRatio::default();
        for ratio in [2.0, 3.0, 0.5, 0.05] {
            add_sys_ratio(&mut acc, ratio);
        }
        assert_eq!((acc.intervals, acc.over_100, acc.r33_66, acc.high_intervals()), (4, 2, 1, 3));
        assert!(acc.is_high());
    }

    pub(crate) fn params() -> SeriesParams {
        SeriesParams {
            max_gap_secs: 60,
            sys_ratio_min_sys_cs: 100,
            gpu_low_util_pct: 13.0,
            fault_churn_per_sec: 1_000.0,
        }
    }

    fn key(step: StepId, node: &str) -> SeriesKey {
        SeriesKey { job: JobId(1), step, node: node.into() }
    }

    /// Samples every 20 s of a step using `cores` cores, `rss_mib` resident.
    pub(crate) fn burn(n: u64, cores: f64, rss_mib: u64) -> Vec<StepSample> {
        (0..n)
            .map(|i| StepSample {
                at: 1_000 + i * 20,
                cpu_user_cs: (i as f64 * 20.0 * cores * 100.0) as u64,
                rss_kib: rss_mib * 1024,
                cpus: 4,
                ..StepSample::default()
            })
            .collect()
    }

    #[test]
    fn cores_in_use_come_from_counter_differences() {
        let mut samples = BTreeMap::new();
        samples.insert(key(StepId::BATCH, "n1"), burn(10, 1.0, 100));
        samples.insert(key(StepId(0), "n1"), burn(10, 2.0, 50));
        let s = series_stats(&samples, &BTreeMap::new(), 180, &params());
        assert_eq!(s.nodes.len(), 1);
        let node = &s.nodes[0];
        assert!((node.mean_cores - 3.0).abs() < 1e-6, "{}", node.mean_cores);
        assert_eq!(node.peak_mem_bytes, 150 << 20);
        assert_eq!(node.cores_histogram[3], 9);
        assert!((s.coverage_frac - 1.0).abs() < 1e-9);
        assert_eq!(s.longest_idle_secs, 0);
    }

    #[test]
    fn a_leaping_or_saturated_counter_cannot_blow_up_the_analysis() {
        // A forged cgroup whose CPU counter leaps by 4e11 centiseconds in 20 s (the report that
        // once made the server ask for 400 GB), then every counter at u64::MAX.
        let mut series = burn(3, 1.0, 10);
        series.push(StepSample { at: 1_060, cpu_user_cs: 400_000_000_000_000, ..series[2] });
        series.push(StepSample {
            at: 1_080,
            cpu_user_cs: u64::MAX,
            cpu_sys_cs: u64::MAX,
            rss_kib: u64::MAX,
            minor_faults: u64::MAX,
            major_faults: u64::MAX,
            ..series[2]
        });
        let mut samples = BTreeMap::new();
        samples.insert(key(StepId::BATCH, "n1"), series.clone());
        samples.insert(key(StepId(0), "n1"), series);
        let s = series_stats(&samples, &BTreeMap::new(), 100, &params());
        let node = &s.nodes[0];
        assert_eq!(node.cores_histogram.len(), MAX_HISTOGRAM_CORES + 1);
        assert!(node.cores_histogram[MAX_HISTOGRAM_CORES] >= 1);
        assert_eq!(node.peak_mem_bytes, u64::MAX);
    }

    #[test]
    fn gaps_reduce_coverage_and_idle_spans_are_measured() {
        let mut series = burn(4, 0.0, 10);
        series.extend(burn(3, 1.0, 10).into_iter().map(|mut s| {
            s.at += 1_000;
            s
        }));
        let mut samples = BTreeMap::new();
        samples.insert(key(StepId::BATCH, "n2"), series);
        let s = series_stats(&samples, &BTreeMap::new(), 1_200, &params());
        // 3 intervals of 20 s idle, a gap of 940 s, 2 intervals busy: 100 s of 1200 covered.
        assert_eq!(s.longest_idle_secs, 60);
        assert!((s.coverage_frac - 100.0 / 1_200.0).abs() < 1e-9);
    }

    #[test]
    fn measured_energy_counts_rises_and_restarts_from_zero() {
        assert_eq!(counter_total([5, 9, 9, 20].into_iter()), 20);
        // The scraper restarted after 20: its count begins again.
        assert_eq!(counter_total([5, 20, 3, 8].into_iter()), 28);
        assert_eq!(counter_total(std::iter::empty()), 0);
        let mut series = burn(4, 1.0, 10);
        for (i, s) in series.iter_mut().enumerate() {
            s.energy_mj = 1_000 * (i as u64 + 1);
        }
        let mut samples = BTreeMap::new();
        samples.insert(key(StepId(0), "n1"), series);
        assert!((series_stats(&samples, &BTreeMap::new(), 60, &params()).nodes[0].energy_j - 4.0).abs() < 1e-9);
    }

    #[test]
    fn allocation_coverage_counts_every_node_of_the_job() {
        let mut samples = BTreeMap::new();
        samples.insert(key(StepId(0), "n1"), burn(10, 1.0, 10));
        let s = series_stats(&samples, &BTreeMap::new(), 180, &params());
        assert!((s.coverage_frac - 1.0).abs() < 1e-9);
        assert!((allocation_coverage(&s, 4, 180) - 0.25).abs() < 1e-9);
        samples.insert(key(StepId(0), "n2"), burn(4, 1.0, 10));
        let s = series_stats(&samples, &BTreeMap::new(), 180, &params());
        assert!((allocation_coverage(&s, 2, 180) - (180.0 + 60.0) / 360.0).abs() < 1e-9);
        // More sampled nodes than the record lists (a stale record) never exceeds the whole.
        assert!(allocation_coverage(&s, 1, 180) <= 1.0);
        assert_eq!(allocation_coverage(&s, 2, 0), 0.0);
    }

    #[test]
    fn page_cache_is_kept_apart_from_resident_memory() {
        // A step holding 100 MiB that streamed a file: the cgroup charged it 1 GiB (cache).
        let mut series = burn(10, 1.0, 100);
        for (i, s) in series.iter_mut().enumerate() {
            s.resident_kib = 100 << 10;
            s.cache_kib = (900 << 10) - (i as u64 % 3) * 1024;
            s.mem_current_kib = s.resident_kib + s.cache_kib;
            s.mem_peak_kib = 1 << 20;
        }
        let mut samples = BTreeMap::new();
        samples.insert(key(StepId::BATCH, "n1"), series.clone());
        let node = series_stats(&samples, &BTreeMap::new(), 180, &params()).nodes.remove(0);
        assert_eq!(
            (node.peak_mem_bytes, node.peak_cache_bytes, node.peak_charged_bytes),
            (
                124 << 20, // the cgroup's 1 GiB peak less the 900 MiB of cache ever seen
                900 << 20,
                1 << 30
            )
        );
        // A spike between samples of a step without cache shows through the cgroup's peak.
        for s in &mut series {
            s.cache_kib = 0;
            s.mem_current_kib = s.resident_kib;
        }
        samples.insert(key(StepId::BATCH, "n1"), series.clone());
        assert_eq!(series_stats(&samples, &BTreeMap::new(), 180, &params()).nodes[0].peak_mem_bytes, 1 << 30);
        // Samples of format 1 (no split): the peak stays whole, as before the split.
        for s in &mut series {
            (s.resident_kib, s.cache_kib, s.mem_current_kib) = (0, 0, 1 << 20);
        }
        samples.insert(key(StepId::BATCH, "n1"), series);
        let node = series_stats(&samples, &BTreeMap::new(), 180, &params()).nodes.remove(0);
        assert_eq!((node.peak_mem_bytes, node.peak_charged_bytes), (1 << 30, 1 << 30));
    }

    #[test]
    fn idle_windows_count_what_the_scrapers_saw() {
        // Windows of 5 minutes every 30 minutes over 3 hours (intervals of 20 s, gaps of 25 min).
        let window = |start: u64, cores: f64| -> Vec<StepSample> {
            burn(16, cores, 10)
                .into_iter()
                .map(|mut s| {
                    s.at += start;
                    s
                })
                .collect()
        };
        let mut series = Vec::new();
        let mut cpu = 0;
        for w in 0..7u64 {
            let cores = if w == 2 { 1.0 } else { 0.0 };
            for mut s in window(w * 1_800, cores) {
                s.cpu_user_cs += cpu;
                series.push(s);
            }
            cpu = series.last().map_or(0, |s: &StepSample| s.cpu_user_cs);
        }
        let mut samples = BTreeMap::new();
        samples.insert(key(StepId::BATCH, "n1"), series);
        let s = series_stats(&samples, &BTreeMap::new(), 11_100, &params());
        let w = s.idle_windows;
        assert_eq!((w.windows, w.idle_windows, w.observed_secs, w.idle_secs), (7, 6, 7 * 300, 6 * 300));
        assert_eq!(w.idle_span_secs, 6 * 1_800 + 300);
        assert!(w.mostly_idle_over(3_600));
        assert!(s.longest_idle_secs < 3_600, "no continuous hour was observed");
    }

    #[test]
    fn fault_churn_runs_break_at_quiet_intervals_and_gaps() {
        let mut series = burn(12, 1.0, 10);
        // Faults per 20 s interval: a burst of one interval, then four high in a row.
        let per_interval = [50_000, 0, 0, 30_000, 40_000, 25_000, 30_000, 0, 0, 0, 0];
        let mut total = 0;
        for (s, add) in series.iter_mut().skip(1).zip(per_interval) {
            total += add;
            s.minor_faults = total;
        }
        let mut samples = BTreeMap::new();
        samples.insert(key(StepId::BATCH, "n1"), series);
        let s = series_stats(&samples, &BTreeMap::new(), 240, &params());
        assert_eq!((s.fault_churn.intervals, s.fault_churn.secs), (4, 80));
        assert!((s.fault_churn.min_rate - 1_250.0).abs() < 1e-9);
        assert!((s.max_fault_rate - 2_500.0).abs() < 1e-9);
    }

    #[test]
    fn sys_ratio_buckets_follow_the_original() {
        let mut acc = SysRatio::default();
        for r in [0.05, 0.2, 0.5, 0.8, 2.0] {
            add_sys_ratio(&mut acc, r);
        }
        assert_eq!((acc.intervals, acc.r10_33, acc.r33_66, acc.r66_100), (5, 1, 1, 1));
        assert!((acc.unified() - (1.0 + 2.0 + 6.0)).abs() < 1e-9);
        assert!(acc.is_high());
    }

    #[test]
    fn gpu_zero_runs_and_low_use_are_counted() {
        let readings: Vec<GpuReading> = [0, 0, 0, 5, 50, 0]
            .iter()
            .enumerate()
            .map(|(i, u)| GpuReading { at: i as u64 * 20, index: 0, util_pct: *u, ..GpuReading::default() })
            .collect();
        let mut gpu = BTreeMap::new();
        gpu.insert(key(StepId::BATCH, "g1"), readings);
        let s = series_stats(&BTreeMap::new(), &gpu, 120, &params());
        let g = &s.gpus[0];
        assert_eq!((g.readings, g.zero_util, g.low_util, g.longest_zero_run, g.longest_zero_secs), (6, 4, 1, 3, 40));
    }

    fn gpu_reading(at: u64, index: u32, util_pct: u32, mem_used_mib: u64, in_use_by_step: bool) -> GpuReading {
        GpuReading { at, index, util_pct, mem_used_mib, power_mw: 100_000, in_use_by_step, ..GpuReading::default() }
    }

    #[test]
    fn a_gpu_seen_by_several_steps_is_one_gpu_with_one_reading_per_instant() {
        // The batch step and step 0 both read GPU 0 every 20 s (the batch step without a
        // process on it); step 1 reads it a second later than the sweep (another scraper's
        // clock), half of the time. GPU 1 is read by step 0 only.
        let mut gpu = BTreeMap::new();
        let at = |i: u64| 1_000 + i * 20;
        gpu.insert(key(StepId::BATCH, "g1"), (0..10).map(|i| gpu_reading(at(i), 0, 50, 2_000, false)).collect());
        let step0: Vec<GpuReading> = (0..10)
            .flat_map(|i| [gpu_reading(at(i), 0, 50, 2_000, true), gpu_reading(at(i), 1, 0, 0, false)])
            .collect();
        gpu.insert(key(StepId(0), "g1"), step0);
        gpu.insert(key(StepId(1), "g1"), (0..5).map(|i| gpu_reading(at(i) + 1, 0, 60, 3_000, true)).collect());
        // The same index on another node is another GPU.
        gpu.insert(key(StepId(0), "g2"), vec![gpu_reading(at(0), 0, 10, 0, true)]);
        let s = series_stats(&BTreeMap::new(), &gpu, 200, &params());
        let ids: Vec<(&str, u32, u32, u32)> =
            s.gpus.iter().map(|g| (g.node.as_str(), g.index, g.readings, g.steps)).collect();
        assert_eq!(ids, [("g1", 0, 10, 3), ("g1", 1, 10, 1), ("g2", 0, 1, 1)]);
        let g = &s.gpus[0];
        // The merged instant keeps the device's highest figure: 60 % in the first 5 readings.
        assert!((g.mean_util_pct - 55.0).abs() < 1e-9, "{}", g.mean_util_pct);
        assert!((g.mean_power_w - 100.0).abs() < 1e-9);
        assert_eq!((g.peak_mem_mib, g.held_mem_mib, g.used_by_job, g.covered_secs), (3_000, 3_000, true, 180));
        assert!(!s.gpus[1].used_by_job && s.gpus[1].held_mem_mib == 0);
        // A lone reading covers one gap's worth.
        assert_eq!(s.gpus[2].covered_secs, 60);
    }

    #[test]
    fn one_steps_own_readings_are_never_merged_and_exact_repeats_are() {
        // Readings every 5 s from one step, with a gap limit of 600 s (tolerance 100 s): each is
        // its own instant; the same reading stored twice is one.
        let mut readings: Vec<GpuReading> = (0..20).map(|i| gpu_reading(i * 5, 0, 30, 0, true)).collect();
        readings.push(readings[3].clone());
        let mut gpu = BTreeMap::new();
        gpu.insert(key(StepId(0), "g1"), readings);
        let wide = SeriesParams { max_gap_secs: 600, ..params() };
        let s = series_stats(&BTreeMap::new(), &gpu, 100, &wide);
        assert_eq!((s.gpus.len(), s.gpus[0].readings, s.gpus[0].covered_secs), (1, 20, 95));
    }

    #[test]
    fn gpu_zero_runs_end_at_sampling_gaps() {
        // 0 % at 0, 20, 40 s; nothing read for 960 s; 0 % at 1000, 1020 s; then 40 %.
        let readings: Vec<GpuReading> = [(0, 0), (20, 0), (40, 0), (1_000, 0), (1_020, 0), (1_040, 40)]
            .iter()
            .map(|&(at, util)| gpu_reading(at, 0, util, 0, true))
            .collect();
        let mut gpu = BTreeMap::new();
        gpu.insert(key(StepId::BATCH, "g1"), readings);
        let s = series_stats(&BTreeMap::new(), &gpu, 1_100, &params());
        let g = &s.gpus[0];
        assert_eq!((g.zero_util, g.longest_zero_run, g.longest_zero_secs, g.covered_secs), (5, 3, 40, 80));
    }

    #[test]
    fn gpu_coverage_counts_allocated_and_read_gpu_seconds() {
        let mut gpu = BTreeMap::new();
        gpu.insert(key(StepId(0), "g1"), (0..11).map(|i| gpu_reading(i * 20, 0, 50, 0, true)).collect());
        let read = series_stats(&BTreeMap::new(), &gpu, 400, &params());
        let c = gpu_coverage(3, 400, Some(&read));
        assert_eq!(c, GpuCoverage { no_data: None, secs_alloc: 1_200, secs_sampled: 200, unread: 2 });
        // Sampled, but no GPU read: the readings are missing, not the GPUs idle.
        let mut samples = BTreeMap::new();
        samples.insert(key(StepId::BATCH, "g1"), burn(11, 1.0, 10));
        let cpu_only = series_stats(&samples, &BTreeMap::new(), 400, &params());
        let c = gpu_coverage(2, 400, Some(&cpu_only));
        assert_eq!((c.no_data, c.secs_alloc, c.secs_sampled, c.unread), (Some(GpuNoData::NoGpuReadings), 800, 0, 2));
        assert_eq!(gpu_coverage(2, 400, None).no_data, Some(GpuNoData::NotSampled));
        // No GPU allocated: nothing to say; readings never count above the allocation.
        assert_eq!(gpu_coverage(0, 400, Some(&read)), GpuCoverage::default());
        assert_eq!(gpu_coverage(1, 100, Some(&read)).secs_sampled, 100);
    }
}
