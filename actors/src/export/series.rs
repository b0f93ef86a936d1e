//! From stored rows to exported series: metric names, bounded labels, the latest sample of
//! each running step (for `/metrics/jobs` and for CPU rates), and the bounded buffer of points
//! waiting to be sent.
//!
//! Metrics (all per job step on one node; GPU ones per device index as well):
//!
//! | name | type | from |
//! | --- | --- | --- |
//! | `turingwatch_step_cpu_seconds_total` | counter | user + system CPU time |
//! | `turingwatch_step_cpu_cores` | gauge | CPU time over wall time since the step's previous sample |
//! | `turingwatch_step_cpus` | gauge | CPUs in the step's cpuset (when known) |
//! | `turingwatch_step_memory_resident_bytes` | gauge | resident memory (cgroup figure, else RSS sum) |
//! | `turingwatch_step_memory_cache_bytes` | gauge | page cache charged to the step |
//! | `turingwatch_step_io_read_bytes_total`, `..._write_...` | counter | `rchar` / `wchar` |
//! | `turingwatch_step_processes`, `turingwatch_step_threads` | gauge | |
//! | `turingwatch_step_energy_joules_total` | counter | RAPL share (when measured) |
//! | `turingwatch_gpu_utilization_ratio` | gauge | NVML utilisation / 100 |
//! | `turingwatch_gpu_memory_used_bytes` | gauge | device memory in use |
//! | `turingwatch_gpu_power_watts` | gauge | power draw |
//!
//! Labels: `job`, `step` (`batch`, `extern`, `0`, …), `node`, `user`, `account` (the last two
//! left out while unknown), `gpu` for GPU series. Values are cut to [`MAX_LABEL_CHARS`].

use super::remote_write::Series;
use crate::job::{JobId, StepId};
use crate::sample::{GpuReading, StepSample};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write;
use std::sync::Arc;

/// Longest label value exported (user and account names come from SLURM; node names are
/// bounded at ingest).
pub const MAX_LABEL_CHARS: usize = 128;

/// Most steps (and GPU devices) the live view holds; beyond it, new ones are exported but not
/// shown in `/metrics/jobs` until stale ones age out.
pub const MAX_LIVE: usize = 200_000;

/// (name, type, help) of every step metric, in output order.
pub const STEP_METRICS: &[(&str, &str, &str)] = &[
    ("turingwatch_step_cpu_seconds_total", "counter", "CPU time (user + system) of the step on the node, seconds."),
    ("turingwatch_step_cpu_cores", "gauge", "CPU cores busy: CPU time over wall time since the previous sample."),
    ("turingwatch_step_cpus", "gauge", "CPUs in the step's cpuset."),
    ("turingwatch_step_memory_resident_bytes", "gauge", "Resident memory of the step, bytes."),
    ("turingwatch_step_memory_cache_bytes", "gauge", "Page cache charged to the step and not mapped by it, bytes."),
    ("turingwatch_step_io_read_bytes_total", "counter", "Bytes read (rchar) by the step's processes."),
    ("turingwatch_step_io_write_bytes_total", "counter", "Bytes written (wchar) by the step's processes."),
    ("turingwatch_step_processes", "gauge", "Processes of the step."),
    ("turingwatch_step_threads", "gauge", "Threads of the step."),
    ("turingwatch_step_energy_joules_total", "counter", "Energy measured by RAPL and given to the step, joules."),
    ("turingwatch_step_sample_timestamp_seconds", "gauge", "Unix time of the step's latest sample."),
];

/// (name, type, help) of every GPU metric.
pub const GPU_METRICS: &[(&str, &str, &str)] = &[
    ("turingwatch_gpu_utilization_ratio", "gauge", "GPU utilisation, 0 to 1."),
    ("turingwatch_gpu_memory_used_bytes", "gauge", "GPU memory in use, bytes."),
    ("turingwatch_gpu_power_watts", "gauge", "GPU power draw, watts."),
];

/// A job's owner as exported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owner {
    pub user: String,
    pub account: String,
}

/// One step of one job on one node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StepKey {
    pub job: JobId,
    pub step: StepId,
    pub node: String,
}

/// The labels of a step's series, `__name__` aside, sorted by name.
pub type BaseLabels = Arc<[(String, String)]>;

fn cut(value: &str) -> String {
    value.chars().take(MAX_LABEL_CHARS).collect()
}

/// The bounded labels of `key` owned by `owner` (user and account left out while empty).
pub fn base_labels(key: &StepKey, owner: &Owner, gpu: Option<u32>) -> BaseLabels {
    let mut labels = Vec::with_capacity(6);
    if !owner.account.is_empty() {
        labels.push(("account".to_string(), cut(&owner.account)));
    }
    if let Some(gpu) = gpu {
        labels.push(("gpu".to_string(), gpu.to_string()));
    }
    labels.push(("job".to_string(), key.job.to_string()));
    labels.push(("node".to_string(), cut(&key.node)));
    labels.push(("step".to_string(), key.step.to_string()));
    if !owner.user.is_empty() {
        labels.push(("user".to_string(), cut(&owner.user)));
    }
    labels.into()
}

/// The values of a step sample; `prev` (the step's sample before it) gives the CPU rate.
pub fn step_values(prev: Option<&StepSample>, s: &StepSample) -> Vec<(&'static str, f64)> {
    let cpu_cs = |s: &StepSample| s.cpu_user_cs.saturating_add(s.cpu_sys_cs);
    let mut out = vec![("turingwatch_step_cpu_seconds_total", cpu_cs(s) as f64 / 100.0)];
    if let Some(p) = prev.filter(|p| p.at < s.at && cpu_cs(p) <= cpu_cs(s)) {
        let cores = (cpu_cs(s) - cpu_cs(p)) as f64 / 100.0 / (s.at - p.at) as f64;
        out.push(("turingwatch_step_cpu_cores", cores));
    }
    if s.cpus > 0 {
        out.push(("turingwatch_step_cpus", f64::from(s.cpus)));
    }
    out.push(("turingwatch_step_memory_resident_bytes", s.resident() as f64 * 1024.0));
    out.push(("turingwatch_step_memory_cache_bytes", s.cache_kib as f64 * 1024.0));
    out.push(("turingwatch_step_io_read_bytes_total", s.read_kib as f64 * 1024.0));
    out.push(("turingwatch_step_io_write_bytes_total", s.write_kib as f64 * 1024.0));
    out.push(("turingwatch_step_processes", f64::from(s.processes)));
    out.push(("turingwatch_step_threads", f64::from(s.threads)));
    if s.energy_mj > 0 {
        out.push(("turingwatch_step_energy_joules_total", s.energy_mj as f64 / 1000.0));
    }
    out
}

/// The values of a GPU reading.
pub fn gpu_values(r: &GpuReading) -> Vec<(&'static str, f64)> {
    vec![
        ("turingwatch_gpu_utilization_ratio", f64::from(r.util_pct) / 100.0),
        ("turingwatch_gpu_memory_used_bytes", r.mem_used_mib as f64 * 1024.0 * 1024.0),
        ("turingwatch_gpu_power_watts", f64::from(r.power_mw) / 1000.0),
    ]
}

/// One value waiting to be sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub name: &'static str,
    pub labels: BaseLabels,
    pub value: f64,
    pub at_ms: i64,
}

/// Points waiting to be sent, oldest first, at most `max`: beyond it the oldest are dropped.
#[derive(Debug)]
pub struct Pending {
    points: VecDeque<Point>,
    max: usize,
}

impl Pending {
    pub fn new(max: usize) -> Pending {
        Pending { points: VecDeque::new(), max: max.max(1) }
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Adds points; returns how many old ones were dropped to keep within the bound.
    pub fn extend(&mut self, points: impl IntoIterator<Item = Point>) -> u64 {
        self.points.extend(points);
        self.trim()
    }

    /// Takes the oldest `n` points to send.
    pub fn take(&mut self, n: usize) -> Vec<Point> {
        let n = n.min(self.points.len());
        self.points.drain(..n).collect()
    }

    /// Puts points whose sending failed back in front (they are the oldest); returns how many
    /// were dropped to keep within the bound.
    pub fn put_back(&mut self, points: Vec<Point>) -> u64 {
        for p in points.into_iter().rev() {
            self.points.push_front(p);
        }
        self.trim()
    }

    fn trim(&mut self) -> u64 {
        let over = self.points.len().saturating_sub(self.max);
        self.points.drain(..over);
        over as u64
    }
}

/// A series' identity while grouping: its name and labels.
type SeriesId<'a> = (&'static str, &'a [(String, String)]);
/// A series being grouped: name, labels, samples.
type Group<'a> = (&'static str, &'a BaseLabels, Vec<(f64, i64)>);

/// Points grouped into series (one per name and label set, samples in time order).
pub fn to_series(points: &[Point]) -> Vec<Series> {
    let mut index: HashMap<SeriesId<'_>, usize> = HashMap::new();
    let mut groups: Vec<Group<'_>> = Vec::new();
    for p in points {
        let i = *index.entry((p.name, &p.labels[..])).or_insert_with(|| {
            groups.push((p.name, &p.labels, Vec::new()));
            groups.len() - 1
        });
        groups[i].2.push((p.value, p.at_ms));
    }
    groups
        .into_iter()
        .map(|(name, labels, samples)| {
            let mut all = Vec::with_capacity(labels.len() + 1);
            all.push(("__name__".to_string(), name.to_string()));
            all.extend(labels.iter().cloned());
            Series::new(all, samples)
        })
        .collect()
}

#[derive(Debug)]
struct LiveStep {
    labels: BaseLabels,
    owner: Owner,
    last: StepSample,
}

#[derive(Debug)]
struct LiveGpu {
    labels: BaseLabels,
    last: GpuReading,
}

/// The latest sample of every step seen recently (and of its GPUs): what `/metrics/jobs`
/// shows and where the CPU rate's previous sample comes from.
#[derive(Debug, Default)]
pub struct Live {
    steps: BTreeMap<StepKey, LiveStep>,
    gpus: BTreeMap<(StepKey, u32), LiveGpu>,
}

impl Live {
    /// Records a stored step sample; returns its points to export.
    pub fn step(&mut self, key: StepKey, owner: &Owner, sample: &StepSample) -> Vec<Point> {
        let full = self.steps.len() >= MAX_LIVE;
        let (labels, values) = match self.steps.get_mut(&key) {
            Some(live) => {
                if live.owner != *owner {
                    live.labels = base_labels(&key, owner, None);
                    live.owner = owner.clone();
                }
                let values = step_values(Some(&live.last), sample);
                if sample.at >= live.last.at {
                    live.last = sample.clone();
                }
                (live.labels.clone(), values)
            }
            None => {
                let labels = base_labels(&key, owner, None);
                if !full {
                    let live = LiveStep { labels: labels.clone(), owner: owner.clone(), last: sample.clone() };
                    self.steps.insert(key, live);
                }
                (labels, step_values(None, sample))
            }
        };
        let at_ms = sample.at.saturating_mul(1000).min(i64::MAX as u64) as i64;
        values.into_iter().map(|(name, value)| Point { name, labels: labels.clone(), value, at_ms }).collect()
    }

    /// Records a stored GPU reading; returns its points to export.
    pub fn gpu(&mut self, key: StepKey, owner: &Owner, reading: &GpuReading) -> Vec<Point> {
        let full = self.gpus.len() >= MAX_LIVE;
        let id = (key, reading.index);
        let labels = match self.gpus.get_mut(&id) {
            Some(live) => {
                if reading.at >= live.last.at {
                    live.last = reading.clone();
                }
                live.labels.clone()
            }
            None => {
                let labels = base_labels(&id.0, owner, Some(reading.index));
                if !full {
                    self.gpus.insert(id, LiveGpu { labels: labels.clone(), last: reading.clone() });
                }
                labels
            }
        };
        let at_ms = reading.at.saturating_mul(1000).min(i64::MAX as u64) as i64;
        gpu_values(reading)
            .into_iter()
            .map(|(name, value)| Point { name, labels: labels.clone(), value, at_ms })
            .collect()
    }

    /// Forgets steps and GPUs whose latest sample is older than `before` (unix seconds): their
    /// jobs ended or their node stopped reporting.
    pub fn prune(&mut self, before: u64) {
        self.steps.retain(|_, s| s.last.at >= before);
        self.gpus.retain(|_, g| g.last.at >= before);
    }

    /// Steps held.
    pub fn steps(&self) -> usize {
        self.steps.len()
    }

    /// Prometheus text (format 0.0.4, which OpenMetrics scrapers read too) of the latest sample
    /// of every step and GPU, without timestamps (the sample's time is its own gauge); the CPU
    /// rate is not shown (`rate(turingwatch_step_cpu_seconds_total[…])` gives it).
    pub fn render(&self) -> String {
        let mut by_name: BTreeMap<&str, Vec<(&BaseLabels, f64)>> = BTreeMap::new();
        for live in self.steps.values() {
            for (name, value) in step_values(None, &live.last) {
                by_name.entry(name).or_default().push((&live.labels, value));
            }
            by_name
                .entry("turingwatch_step_sample_timestamp_seconds")
                .or_default()
                .push((&live.labels, live.last.at as f64));
        }
        for live in self.gpus.values() {
            for (name, value) in gpu_values(&live.last) {
                by_name.entry(name).or_default().push((&live.labels, value));
            }
        }
        let mut out = String::new();
        for (name, kind, help) in STEP_METRICS.iter().chain(GPU_METRICS) {
            let Some(lines) = by_name.get(name) else { continue };
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in lines {
                let _ = write!(out, "{name}{{");
                for (i, (k, v)) in labels.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "," };
                    let _ = write!(out, "{sep}{k}=\"{}\"", escape_label(v));
                }
                let _ = writeln!(out, "}} {value}");
            }
        }
        out
    }
}

/// A label value as the text format writes it: backslash, double quote and line feed escaped.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(job: u64) -> StepKey {
        StepKey { job: JobId(job), step: StepId::BATCH, node: "n1".into() }
    }

    fn owner() -> Owner {
        Owner { user: "alice".into(), account: "physics".into() }
    }

    fn sample(at: u64, cpu_cs: u64) -> StepSample {
        StepSample { at, cpu_user_cs: cpu_cs, resident_kib: 2048, processes: 3, threads: 7, ..Default::default() }
    }

    fn value(points: &[Point], name: &str) -> Option<f64> {
        points.iter().find(|p| p.name == name).map(|p| p.value)
    }

    #[test]
    fn labels_are_bounded_and_never_a_process_id() {
        let labels = base_labels(&key(42), &owner(), None);
        let names: Vec<&str> = labels.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["account", "job", "node", "step", "user"]);
        assert_eq!(labels[1].1, "42");
        assert_eq!(labels[3].1, "batch");
        let long = Owner { user: "u".repeat(1000), account: String::new() };
        let labels = base_labels(&key(1), &long, Some(2));
        let names: Vec<&str> = labels.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["gpu", "job", "node", "step", "user"], "no empty account label");
        assert_eq!(labels[4].1.chars().count(), MAX_LABEL_CHARS);
    }

    #[test]
    fn the_cpu_rate_comes_from_the_previous_sample() {
        let mut live = Live::default();
        let first = live.step(key(1), &owner(), &sample(100, 0));
        assert_eq!(value(&first, "turingwatch_step_cpu_cores"), None, "no rate without a previous sample");
        let second = live.step(key(1), &owner(), &sample(110, 1500));
        assert_eq!(value(&second, "turingwatch_step_cpu_cores"), Some(1.5));
        assert_eq!(value(&second, "turingwatch_step_cpu_seconds_total"), Some(15.0));
        assert_eq!(value(&second, "turingwatch_step_memory_resident_bytes"), Some(2048.0 * 1024.0));
        assert!(second.iter().all(|p| p.at_ms == 110_000));
        // An older sample (a resend) gives no rate and does not replace the latest.
        let old = live.step(key(1), &owner(), &sample(105, 700));
        assert_eq!(value(&old, "turingwatch_step_cpu_cores"), None);
        assert!(live.render().contains("turingwatch_step_sample_timestamp_seconds{account=\"physics\",job=\"1\",node=\"n1\",step=\"batch\",user=\"alice\"} 110\n"), "{}", live.render());
    }

    #[test]
    fn the_text_view_escapes_hostile_names_and_forgets_stale_steps() {
        let mut live = Live::default();
        let hostile = Owner { user: "ev\"il\\\nuser} 1\nfake 2".into(), account: "a".into() };
        live.step(key(7), &hostile, &sample(100, 10));
        live.gpu(
            key(7),
            &hostile,
            &GpuReading { at: 100, index: 0, util_pct: 50, power_mw: 150_000, ..Default::default() },
        );
        let text = live.render();
        assert!(text.contains("user=\"ev\\\"il\\\\\\nuser} 1\\nfake 2\""), "{text}");
        for line in text.lines() {
            assert!(line.starts_with("# ") || line.starts_with("turingwatch_"), "a forged line: {line:?}");
        }
        assert!(text.contains("# TYPE turingwatch_step_cpu_seconds_total counter\n"));
        assert!(text.contains("turingwatch_gpu_power_watts{account=\"a\",gpu=\"0\",job=\"7\""), "{text}");
        assert!(text.contains("} 0.5\n"), "{text}");
        assert!(!text.contains("turingwatch_step_cpu_cores"), "the rate is not shown");
        live.step(key(8), &owner(), &sample(200, 10));
        live.prune(150);
        assert_eq!(live.steps(), 1);
        let text = live.render();
        assert!(!text.contains("job=\"7\"") && text.contains("job=\"8\""), "{text}");
    }

    #[test]
    fn pending_points_are_bounded_and_failed_ones_go_back_in_front() {
        let mut live = Live::default();
        let mut pending = Pending::new(25);
        let mut dropped = 0;
        for i in 0..4 {
            dropped += pending.extend(live.step(key(1), &owner(), &sample(100 + i, i * 100)));
        }
        // 7 + 8 + 8 + 8 points (no rate for the first), 25 kept: the oldest 6 dropped.
        assert_eq!((pending.len(), dropped), (25, 6));
        let batch = pending.take(10);
        let first_at = batch[0].at_ms;
        assert_eq!(pending.len(), 15);
        assert_eq!(pending.put_back(batch), 0);
        assert_eq!(pending.take(1)[0].at_ms, first_at);
        let series = to_series(&pending.take(100));
        let cpu = series
            .iter()
            .find(|s| s.labels()[0].1 == "turingwatch_step_cpu_seconds_total")
            .expect("the CPU counter is a series");
        assert_eq!(cpu.samples(), [(1.0, 101_000), (2.0, 102_000), (3.0, 103_000)]);
        assert_eq!(
            cpu.labels().iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["__name__", "account", "job", "node", "step", "user"]
        );
    }
}
