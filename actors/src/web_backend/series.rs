//! The job page's time series: stored samples turned into what the charts draw.
//!
//! Samples hold cumulative counters (CPU centiseconds, faults, `rchar`/`wchar`) and levels
//! (resident memory, page cache). A chart wants rates and levels at each sample time, per node
//! (the node's steps summed) and per step, so: the rate of each counter is its difference
//! between a step's consecutive samples over the time between them; a counter that went
//! backwards (the scraper restarted, a process was replaced) gives no rate rather than a
//! negative one. The extern step holds no work and is left out. Long series are averaged into
//! at most [`MAX_POINTS`] buckets (levels keep the bucket's peak, so no peak disappears).

use crate::job::StepId;
use crate::sample::{GpuReading, StepSample};
use crate::store::SeriesKey;
use std::collections::BTreeMap;
use turingwatch_web::api::{GpuSeries, NodeSeries};

/// Most points per plotted series; longer series are averaged into this many buckets.
pub const MAX_POINTS: usize = 600;

/// One point of a series: rates per second and levels in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Point {
    pub user_cores: f64,
    pub sys_cores: f64,
    pub rss_bytes: u64,
    pub cache_bytes: u64,
    pub read_bps: f64,
    pub write_bps: f64,
    pub minor_fps: f64,
    pub major_fps: f64,
}

impl Point {
    fn cores(&self) -> f64 {
        self.user_cores + self.sys_cores
    }

    fn add(&mut self, other: &Point) {
        self.user_cores += other.user_cores;
        self.sys_cores += other.sys_cores;
        self.rss_bytes = self.rss_bytes.saturating_add(other.rss_bytes);
        self.cache_bytes = self.cache_bytes.saturating_add(other.cache_bytes);
        self.read_bps += other.read_bps;
        self.write_bps += other.write_bps;
        self.minor_fps += other.minor_fps;
        self.major_fps += other.major_fps;
    }
}

/// The rate of a cumulative counter between two readings `dt` seconds apart.
fn rate(then: u64, now: u64, dt: u64, scale: f64) -> f64 {
    now.checked_sub(then).map_or(0.0, |d| d as f64 * scale / dt as f64)
}

/// The point of `sample`, with rates from the step's previous sample (none for its first one,
/// or when the two share a time stamp).
pub(crate) fn point(previous: Option<&StepSample>, sample: &StepSample) -> Point {
    let mut p = Point {
        rss_bytes: sample.resident().saturating_mul(1024),
        cache_bytes: sample.cache_kib.saturating_mul(1024),
        ..Point::default()
    };
    if let Some(prev) = previous {
        if let Some(dt) = sample.at.checked_sub(prev.at).filter(|d| *d > 0) {
            p.user_cores = rate(prev.cpu_user_cs, sample.cpu_user_cs, dt, 0.01);
            p.sys_cores = rate(prev.cpu_sys_cs, sample.cpu_sys_cs, dt, 0.01);
            p.read_bps = rate(prev.read_kib, sample.read_kib, dt, 1024.0);
            p.write_bps = rate(prev.write_kib, sample.write_kib, dt, 1024.0);
            p.minor_fps = rate(prev.minor_faults, sample.minor_faults, dt, 1.0);
            p.major_fps = rate(prev.major_faults, sample.major_faults, dt, 1.0);
        }
    }
    p
}

/// Cores in use between two samples (user + system); `None` for no time between them or a
/// CPU counter that went backwards.
pub fn cores_between(earlier: &StepSample, later: &StepSample) -> Option<f64> {
    let dt = later.at.checked_sub(earlier.at).filter(|d| *d > 0)?;
    let used_cs = (later.cpu_user_cs + later.cpu_sys_cs).checked_sub(earlier.cpu_user_cs + earlier.cpu_sys_cs)?;
    Some(used_cs as f64 / 100.0 / dt as f64)
}

/// Per node, the job's steps summed at each sample time.
pub fn node_series(samples: &BTreeMap<SeriesKey, Vec<StepSample>>) -> Vec<NodeSeries> {
    series_by(samples, |_| None)
}

/// Per step and node.
pub fn step_series(samples: &BTreeMap<SeriesKey, Vec<StepSample>>) -> Vec<NodeSeries> {
    series_by(samples, |step| Some(step.to_string()))
}

fn series_by(
    samples: &BTreeMap<SeriesKey, Vec<StepSample>>,
    step_name: impl Fn(StepId) -> Option<String>,
) -> Vec<NodeSeries> {
    let mut grouped: BTreeMap<(String, Option<String>), BTreeMap<u64, Point>> = BTreeMap::new();
    for (key, series) in samples {
        if key.step == StepId::EXTERN {
            continue;
        }
        let points = grouped.entry((key.node.clone(), step_name(key.step))).or_default();
        let mut previous: Option<&StepSample> = None;
        for sample in series {
            points.entry(sample.at).or_default().add(&point(previous, sample));
            previous = Some(sample);
        }
    }
    grouped
        .into_iter()
        .map(|((node, step), points)| {
            let points = downsample(&points.into_iter().collect::<Vec<_>>());
            let round = |x: f64| (x * 1000.0).round() / 1000.0;
            let col = |f: fn(&Point) -> f64| points.iter().map(|(_, p)| round(f(p))).collect::<Vec<f64>>();
            NodeSeries {
                node,
                step,
                t: points.iter().map(|(t, _)| *t).collect(),
                cores: col(Point::cores),
                user_cores: col(|p| p.user_cores),
                sys_cores: col(|p| p.sys_cores),
                rss_bytes: points.iter().map(|(_, p)| p.rss_bytes).collect(),
                cache_bytes: points.iter().map(|(_, p)| p.cache_bytes).collect(),
                read_bytes_per_sec: col(|p| p.read_bps),
                write_bytes_per_sec: col(|p| p.write_bps),
                minor_faults_per_sec: col(|p| p.minor_fps),
                major_faults_per_sec: col(|p| p.major_fps),
            }
        })
        .collect()
}

/// Averages a series into at most [`MAX_POINTS`] buckets, at the time of each bucket's last
/// point: rates averaged, levels the bucket's peak.
pub(crate) fn downsample(points: &[(u64, Point)]) -> Vec<(u64, Point)> {
    if points.len() <= MAX_POINTS {
        return points.to_vec();
    }
    let per = points.len().div_ceil(MAX_POINTS);
    points
        .chunks(per)
        .map(|chunk| {
            let n = chunk.len() as f64;
            let mean = |f: fn(&Point) -> f64| chunk.iter().map(|(_, p)| f(p)).sum::<f64>() / n;
            let peak = |f: fn(&Point) -> u64| chunk.iter().map(|(_, p)| f(p)).max().unwrap_or(0);
            let p = Point {
                user_cores: mean(|p| p.user_cores),
                sys_cores: mean(|p| p.sys_cores),
                rss_bytes: peak(|p| p.rss_bytes),
                cache_bytes: peak(|p| p.cache_bytes),
                read_bps: mean(|p| p.read_bps),
                write_bps: mean(|p| p.write_bps),
                minor_fps: mean(|p| p.minor_fps),
                major_fps: mean(|p| p.major_fps),
            };
            (chunk.last().map_or(0, |(t, _)| *t), p)
        })
        .collect()
}

/// Utilisation %, memory MiB and power mW of one GPU at one time.
type GpuPoint = (u32, u64, u32);

/// Per GPU (node, index): utilisation, memory and power at each reading time. Two steps that
/// see the same GPU at the same time give one reading (the larger values).
pub fn gpu_series(readings: &BTreeMap<SeriesKey, Vec<GpuReading>>) -> Vec<GpuSeries> {
    let mut by_gpu: BTreeMap<(String, u32), BTreeMap<u64, GpuPoint>> = BTreeMap::new();
    for (key, list) in readings {
        for r in list {
            let slot = by_gpu.entry((key.node.clone(), r.index)).or_default().entry(r.at).or_default();
            *slot = (slot.0.max(r.util_pct), slot.1.max(r.mem_used_mib), slot.2.max(r.power_mw));
        }
    }
    by_gpu
        .into_iter()
        .map(|((node, index), points)| {
            let step = points.len().div_ceil(MAX_POINTS).max(1);
            let points: Vec<_> = points.into_iter().step_by(step).collect();
            GpuSeries {
                node,
                index,
                t: points.iter().map(|p| p.0).collect(),
                util_pct: points.iter().map(|p| p.1 .0).collect(),
                mem_used_mib: points.iter().map(|p| p.1 .1).collect(),
                power_w: points.iter().map(|p| f64::from(p.1 .2) / 1000.0).collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobId;

    fn sample(at: u64, user_cs: u64, sys_cs: u64, rss_kib: u64) -> StepSample {
        StepSample { at, cpu_user_cs: user_cs, cpu_sys_cs: sys_cs, rss_kib, ..StepSample::default() }
    }

    fn key(step: StepId, node: &str) -> SeriesKey {
        SeriesKey { job: JobId(7), step, node: node.into() }
    }

    #[test]
    fn cores_in_use_are_cpu_differences_over_time_summed_per_node() {
        let mut samples = BTreeMap::new();
        // batch on n1: 2 cores busy from t=100 to t=110 (2000 cs in 10 s), then 1 core.
        samples.insert(
            key(StepId::BATCH, "n1"),
            vec![sample(100, 0, 0, 1024), sample(110, 1800, 200, 2048), sample(120, 2700, 300, 2048)],
        );
        // step 0 on n1 at the same times: half a core.
        samples.insert(key(StepId(0), "n1"), vec![sample(110, 0, 0, 1024), sample(120, 500, 0, 1024)]);
        // extern is ignored; n2 has its own series.
        samples.insert(key(StepId::EXTERN, "n1"), vec![sample(110, 0, 0, 999_999), sample(120, 99_999, 0, 999_999)]);
        samples.insert(key(StepId::BATCH, "n2"), vec![sample(100, 0, 0, 10), sample(104, 400, 0, 10)]);
        let series = node_series(&samples);
        assert_eq!(series.len(), 2);
        let n1 = &series[0];
        assert_eq!((n1.node.as_str(), n1.step.as_deref()), ("n1", None));
        assert_eq!(n1.t, [100, 110, 120]);
        assert_eq!(n1.cores, [0.0, 2.0, 1.5]);
        assert_eq!(n1.user_cores, [0.0, 1.8, 1.4]);
        assert_eq!(n1.sys_cores, [0.0, 0.2, 0.1]);
        assert_eq!(n1.rss_bytes, [1024 * 1024, 3072 * 1024, 3072 * 1024]);
        assert_eq!(series[1].cores, [0.0, 1.0]);

        let steps = step_series(&samples);
        let names: Vec<_> = steps.iter().map(|s| (s.node.as_str(), s.step.as_deref().unwrap_or(""))).collect();
        assert_eq!(names, [("n1", "0"), ("n1", "batch"), ("n2", "batch")]);
        assert_eq!(steps[0].cores, [0.0, 0.5]);
        assert_eq!(steps[1].cores, [0.0, 2.0, 1.0]);
    }

    #[test]
    fn io_faults_and_page_cache_are_rates_and_levels() {
        let a = StepSample {
            at: 10,
            read_kib: 1_000,
            write_kib: 0,
            minor_faults: 100,
            major_faults: 5,
            cache_kib: 64,
            resident_kib: 512,
            rss_kib: 9_999,
            ..StepSample::default()
        };
        let b = StepSample { at: 14, read_kib: 5_000, write_kib: 2_048, minor_faults: 500, major_faults: 1, ..a };
        let p = point(Some(&a), &b);
        assert_eq!(p.read_bps, 4_000.0 * 1024.0 / 4.0);
        assert_eq!(p.write_bps, 2_048.0 * 1024.0 / 4.0);
        assert_eq!(p.minor_fps, 100.0);
        // A counter that went backwards gives no rate, not a negative one.
        assert_eq!(p.major_fps, 0.0);
        // Resident is the cgroup's figure when present; page cache is apart.
        assert_eq!((p.rss_bytes, p.cache_bytes), (512 * 1024, 64 * 1024));
        assert_eq!(point(None, &b).read_bps, 0.0);
    }

    #[test]
    fn a_counter_that_goes_backwards_gives_no_rate() {
        assert_eq!(cores_between(&sample(10, 500, 0, 0), &sample(20, 100, 0, 0)), None);
        assert_eq!(cores_between(&sample(10, 0, 0, 0), &sample(10, 100, 0, 0)), None);
        assert_eq!(point(Some(&sample(10, 500, 0, 0)), &sample(20, 100, 0, 0)).user_cores, 0.0);
    }

    #[test]
    fn long_series_are_bounded_and_keep_peaks() {
        let points: Vec<(u64, Point)> = (0..10_000)
            .map(|i| {
                (i, Point { user_cores: 1.0, rss_bytes: if i == 5_001 { 1 << 40 } else { i }, ..Point::default() })
            })
            .collect();
        let out = downsample(&points);
        assert!(out.len() <= MAX_POINTS && out.len() > MAX_POINTS / 2, "{}", out.len());
        assert_eq!(out.last().unwrap().0, 9_999);
        assert!(out.iter().all(|(_, p)| p.user_cores == 1.0));
        assert!(out.iter().any(|(_, p)| p.rss_bytes == 1 << 40));
    }

    #[test]
    fn gpu_power_is_watts_per_gpu() {
        let mut readings = BTreeMap::new();
        let r = |at, index, util, power_mw| GpuReading {
            at,
            index,
            util_pct: util,
            mem_used_mib: 100,
            power_mw,
            ..GpuReading::default()
        };
        readings.insert(key(StepId::BATCH, "n1"), vec![r(1, 0, 50, 70_500), r(1, 1, 0, 30_000), r(2, 0, 90, 250_000)]);
        let out = gpu_series(&readings);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].index, out[0].t.clone(), out[0].power_w.clone()), (0, vec![1, 2], vec![70.5, 250.0]));
        assert_eq!(out[1].util_pct, [0]);
    }
}
