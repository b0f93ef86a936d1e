use super::*;
use crate::analysis::efficiency::efficiency;
use crate::analysis::series::series_stats;
use crate::analysis::series::tests::{burn, params};
use crate::job::StepId;
use crate::store::tests_support::job;
use crate::store::SeriesKey;
use std::collections::BTreeMap;

fn cfg() -> FindingsConfig {
    FindingsConfig { min_runtime: turingwatch_config::Span::secs(10), ..FindingsConfig::default() }
}

fn kinds(j: &JobRecord, stats: Option<&SeriesStats>, apps: &[String]) -> Vec<FindingKind> {
    let cfg = cfg();
    let rules = Rules { config: &cfg, preload_library: "/lib/pre.so" };
    job_findings(j, &efficiency(j), stats, apps, &rules).into_iter().map(|f| f.kind).collect()
}

/// A finished 20-minute job: `cpus` allocated, `busy` cores busy on average, `rss_mib` peak of `req_mib`.
fn finished(cpus: u32, busy: f64, rss_mib: u64, req_mib: u64) -> JobRecord {
    let mut j = job(1, "alice", 0, Some(1_200));
    j.alloc_cpus = cpus;
    j.usage.total_cpu_ms = (busy * 1_200_000.0) as u64;
    j.usage.user_cpu_ms = j.usage.total_cpu_ms;
    j.usage.system_cpu_ms = 0;
    j.usage.max_rss_bytes = Some(rss_mib << 20);
    j.req_mem_bytes = Some(req_mib << 20);
    j.time_limit_secs = Some(1_500);
    j
}

#[test]
fn cpu_waste_on_two_sleeping_cores_is_cpu_underuse() {
    let k = kinds(&finished(2, 0.0, 90, 100), None, &[]);
    assert!(k.contains(&FindingKind::CpuUnderuse), "{k:?}");
    assert!(!k.contains(&FindingKind::LowComputePower));
}

#[test]
fn memory_waste_is_memory_underused_with_a_concrete_mem_option() {
    let j = finished(1, 0.95, 50, 2_048);
    let cfg = cfg();
    let rules = Rules { config: &cfg, preload_library: "/lib/pre.so" };
    let f = job_findings(&j, &efficiency(&j), None, &[], &rules);
    let mem = f.iter().find(|f| f.kind == FindingKind::MemoryUnderused).unwrap();
    assert_eq!(mem.fix, "--mem=64M");
    assert!(mem.evidence.contains("50 MiB of 2.0 GiB"), "{}", mem.evidence);
}

#[test]
fn a_fine_job_has_only_informational_findings() {
    let k = kinds(&finished(1, 0.97, 90, 100), None, &[]);
    assert!(k.iter().all(|k| k.severity() == Severity::Info), "{k:?}");
}

#[test]
fn oom_and_oversubscription_are_reported_even_for_short_jobs() {
    let mut j = finished(1, 1.0, 120, 100);
    j.elapsed_secs = 2;
    assert_eq!(kinds(&j, None, &[]), [FindingKind::MemoryOversubscribed]);
}

#[test]
fn serial_on_many_cores_and_time_limit() {
    let mut j = finished(8, 1.0, 90, 100);
    j.time_limit_secs = Some(86_400);
    let k = kinds(&j, None, &[]);
    assert!(k.contains(&FindingKind::SerialOnManyCores) && k.contains(&FindingKind::CpuUnderuse), "{k:?}");
    assert!(k.contains(&FindingKind::TimeLimitUnused));
}

#[test]
fn sample_based_low_concurrency_idle_and_jupyter() {
    let j = finished(4, 0.9, 90, 100);
    let mut samples = BTreeMap::new();
    let mut s = burn(100, 0.9, 90);
    // An hour and a half with nothing running at the end.
    let last = s.last().unwrap().clone();
    for i in 1..=300 {
        let mut idle = last.clone();
        idle.at += i * 20;
        s.push(idle);
    }
    samples.insert(SeriesKey { job: j.id, step: StepId::BATCH, node: "n1".into() }, s);
    let stats = series_stats(&samples, &BTreeMap::new(), 8_000, &params());
    let k = kinds(&j, Some(&stats), &["jupyter-noteboo".to_string()]);
    for want in [FindingKind::LowConcurrency, FindingKind::IdleAllocation, FindingKind::Jupyter] {
        assert!(k.contains(&want), "{want:?} missing from {k:?}");
    }
}

#[test]
fn high_system_time_recommends_the_preload_library() {
    let mut j = finished(1, 1.0, 90, 100);
    j.usage.system_cpu_ms = 600_000;
    j.usage.user_cpu_ms = 600_000;
    let cfg = cfg();
    let rules = Rules { config: &cfg, preload_library: "/lib/pre.so" };
    let f = job_findings(&j, &efficiency(&j), None, &[], &rules);
    let sys = f.iter().find(|f| f.kind == FindingKind::SystemTimeRatio).unwrap();
    assert!(sys.fix.contains("LD_PRELOAD=/lib/pre.so"));
}

#[test]
fn option_formatting() {
    assert_eq!(mem_option((3u64 << 30) as f64, 1), "3072M");
    assert_eq!(mem_option((100u64 << 20) as f64, 1), "128M");
    assert_eq!(mem_option((10u64 << 30) as f64, 2), "5G");
    assert_eq!(time_option(3_601), "01:01:00");
    assert_eq!(time_option(2 * 86_400), "2-00:00:00");
    assert_eq!(duration_text(90_061), "1d 01:01:01");
}

#[test]
fn gpu_rules_follow_the_original() {
    use crate::sample::GpuReading;
    let mut j = finished(8, 4.0, 90, 100);
    j.alloc_tres = crate::job::Tres(vec![("gres/gpu".into(), 2)]);
    let reading =
        |i: u64, index: u32, util: u32| GpuReading { at: i * 20, index, util_pct: util, ..GpuReading::default() };
    // GPU 0: never used. GPU 1: idle for the first 40 % of readings, then low.
    let mut readings: Vec<GpuReading> = (0..10).map(|i| reading(i, 0, 0)).collect();
    readings.extend((0..10).map(|i| reading(i, 1, if i < 4 { 0 } else { 5 })));
    let mut gpu = BTreeMap::new();
    gpu.insert(SeriesKey { job: j.id, step: StepId::BATCH, node: "g1".into() }, readings);
    let stats = series_stats(&BTreeMap::new(), &gpu, 1_200, &params());
    let k = kinds(&j, Some(&stats), &[]);
    for want in [
        FindingKind::GpuUnderuse,
        FindingKind::GpuNoUtilisation,
        FindingKind::TrySplitting,
        FindingKind::InvestigateGpuUsage,
    ] {
        assert!(k.contains(&want), "{want:?} missing from {k:?}");
    }
    assert!(!k.contains(&FindingKind::LowComputePower), "a GPU job is not low compute power");
}

/// The findings of kind `kind` about GPUs.
fn of_kind(f: &[Finding], kind: FindingKind) -> Vec<&Finding> {
    f.iter().filter(|f| f.kind == kind).collect()
}

const GPU_KINDS: [FindingKind; 5] = [
    FindingKind::GpuUnderuse,
    FindingKind::GpuNoUtilisation,
    FindingKind::TrySplitting,
    FindingKind::InvestigateGpuUsage,
    FindingKind::IdleAllocation,
];

fn gpu_job(gpus: u64) -> JobRecord {
    let mut j = finished(8, 4.0, 90, 100);
    j.alloc_tres = crate::job::Tres(vec![("gres/gpu".into(), gpus)]);
    j
}

#[test]
fn two_steps_sharing_a_gpu_count_it_once_from_a_recording() {
    use crate::sample::gpu::{attribute, GpuSource, RecordedSource};
    // tests/fixtures/nvml/two_steps_one_gpu.json: the batch step (pids 6100, 6101) and step 0
    // (pid 6200) of one job, both allocated GPUs 0 and 1, read in the same 12 sweeps; step 0
    // computes on GPU 0 from the sixth sweep, GPU 1 is never opened, GPU 2 is another job's.
    let path =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/nvml/two_steps_one_gpu.json");
    let mut source = RecordedSource::load(&path).unwrap();
    let j = gpu_job(2);
    let steps = [(StepId::BATCH, vec![6100, 6101]), (StepId(0), vec![6200])];
    let mut gpu: BTreeMap<SeriesKey, Vec<crate::sample::GpuReading>> = BTreeMap::new();
    for sweep in 0..12 {
        let devices = source.read().unwrap();
        for (step, pids) in &steps {
            let key = SeriesKey { job: j.id, step: *step, node: "g1".into() };
            gpu.entry(key).or_default().extend(attribute(&devices, pids, &[0, 1], 1_000 + sweep * 20));
        }
    }
    assert_eq!(gpu.values().map(Vec::len).sum::<usize>(), 48, "each step stores both GPUs every sweep");
    let stats = series_stats(&BTreeMap::new(), &gpu, j.elapsed_secs, &params());
    let seen: Vec<(u32, u32, u32, u32)> =
        stats.gpus.iter().map(|g| (g.index, g.readings, g.steps, g.zero_util)).collect();
    assert_eq!(seen, [(0, 12, 2, 5), (1, 12, 2, 12)], "one GPU per device, one reading per sweep");
    let g0 = &stats.gpus[0];
    assert_eq!((g0.longest_zero_run, g0.peak_mem_mib, g0.held_mem_mib, g0.used_by_job), (5, 30_210, 30_210, true));
    // (3 × 61 + 2 × 88 + 248 + 255 + 262 + 251 + 259 + 254 + 250) W / 12.
    assert!((g0.mean_power_w - 2_138.0 / 12.0).abs() < 1e-9, "{}", g0.mean_power_w);
    assert!(!stats.gpus[1].used_by_job);

    let cfg = cfg();
    let rules = Rules { config: &cfg, preload_library: "/lib/pre.so" };
    let f = job_findings(&j, &efficiency(&j), Some(&stats), &[], &rules);
    let under = of_kind(&f, FindingKind::GpuUnderuse);
    assert_eq!(under.len(), 1, "{f:?}");
    assert_eq!((under[0].evidence.as_str(), under[0].fix.as_str()), ("1 of 2 GPUs ever busy", "--gres=gpu:1"));
    let none = of_kind(&f, FindingKind::GpuNoUtilisation);
    assert_eq!(none.len(), 1, "{f:?}");
    assert_eq!(none[0].evidence, "GPU g1/1: 0 % in all 12 readings (peak memory 0 MiB, mean power 52 W)");
    let split = of_kind(&f, FindingKind::TrySplitting);
    assert_eq!(split.len(), 1, "{f:?}");
    assert!(split[0].evidence.starts_with("GPU g1/0: idle for 5 readings in a row of 12 (peak memory 30210 MiB"));
    assert!(
        of_kind(&f, FindingKind::InvestigateGpuUsage).is_empty() && of_kind(&f, FindingKind::IdleAllocation).is_empty()
    );
}

#[test]
fn a_gpu_job_without_gpu_readings_gets_no_gpu_finding_and_says_no_gpu_data() {
    use crate::analysis::summary::{analyze_job, JobInput};
    // Sampled every 20 s on its node (CPU and memory), but `[gpu] source = "none"`.
    let j = gpu_job(2);
    let mut samples = BTreeMap::new();
    samples.insert(SeriesKey { job: j.id, step: StepId::BATCH, node: "g1".into() }, burn(60, 4.0, 90));
    let input = JobInput { samples, ..JobInput::new(j.clone()) };
    let a = analyze_job(&input, &crate::analysis::summary::tests::params());
    let k: Vec<FindingKind> = a.findings.iter().map(|f| f.kind).collect();
    assert!(GPU_KINDS.iter().all(|g| !k.contains(g)), "{k:?}");
    assert!(a.samples > 1, "the CPU samples were judged");
    assert_eq!(a.gpu_no_data, Some(crate::analysis::series::GpuNoData::NoGpuReadings));
    assert_eq!((a.gpu_secs_alloc, a.gpu_secs_sampled, a.gpus_unread), (2 * 1_200, 0, 2));
    let json = serde_json::to_value(&a).unwrap();
    assert_eq!(json["gpu_no_data"], "no_gpu_readings");
    assert_eq!(json["gpu_secs_alloc"], 2_400);
    // Not sampled at all: accounting findings only, and the same "no GPU data".
    let a = analyze_job(&JobInput::new(j), &crate::analysis::summary::tests::params());
    assert_eq!(a.gpu_no_data, Some(crate::analysis::series::GpuNoData::NotSampled));
    assert!(a.findings.iter().all(|f| !GPU_KINDS.contains(&f.kind)));
}

#[test]
fn only_gpus_with_readings_are_judged() {
    use crate::sample::GpuReading;
    // 3 GPUs allocated; GPU 0 busy, GPU 1 idle, GPU 2 never read.
    let j = gpu_job(3);
    let reading =
        |i: u64, index: u32, util: u32| GpuReading { at: i * 20, index, util_pct: util, ..GpuReading::default() };
    let mut readings: Vec<GpuReading> = (0..10).map(|i| reading(i, 0, 80)).collect();
    readings.extend((0..10).map(|i| reading(i, 1, 0)));
    let mut gpu = BTreeMap::new();
    gpu.insert(SeriesKey { job: j.id, step: StepId(0), node: "g1".into() }, readings.clone());
    let stats = series_stats(&BTreeMap::new(), &gpu, 1_200, &params());
    let cfg = cfg();
    let rules = Rules { config: &cfg, preload_library: "/lib/pre.so" };
    let f = job_findings(&j, &efficiency(&j), Some(&stats), &[], &rules);
    let under = of_kind(&f, FindingKind::GpuUnderuse);
    assert_eq!(under.len(), 1, "{f:?}");
    assert_eq!(under[0].evidence, "1 of the 2 GPUs with readings ever busy (1 of 3 had no readings)");
    // Only the GPU seen idle is given back.
    assert_eq!(under[0].fix, "--gres=gpu:2");
    assert_eq!(of_kind(&f, FindingKind::GpuNoUtilisation).len(), 1);
    // Both read GPUs busy: nothing to say about the third.
    let mut gpu = BTreeMap::new();
    readings.truncate(10);
    gpu.insert(SeriesKey { job: j.id, step: StepId(0), node: "g1".into() }, readings);
    let stats = series_stats(&BTreeMap::new(), &gpu, 1_200, &params());
    let f = job_findings(&j, &efficiency(&j), Some(&stats), &[], &rules);
    assert!(f.iter().all(|f| !GPU_KINDS.contains(&f.kind)), "{f:?}");
    assert_eq!(crate::analysis::series::gpu_coverage(3, 1_200, Some(&stats)).unread, 2);
}

#[test]
fn a_gpu_holding_the_jobs_memory_is_not_called_idle() {
    use crate::sample::GpuReading;
    let j = gpu_job(1);
    // 0 % for 80 minutes, with a process of the job holding `mem` MiB on the device.
    let stats_with = |mem: u64| {
        let readings: Vec<GpuReading> = (0..240)
            .map(|i| GpuReading {
                at: i * 20,
                index: 0,
                mem_used_mib: mem,
                power_mw: 70_000,
                in_use_by_step: true,
                ..GpuReading::default()
            })
            .collect();
        let mut gpu = BTreeMap::new();
        gpu.insert(SeriesKey { job: j.id, step: StepId(0), node: "g1".into() }, readings);
        series_stats(&BTreeMap::new(), &gpu, 4_800, &params())
    };
    let cfg = cfg();
    let rules = Rules { config: &cfg, preload_library: "/lib/pre.so" };
    let held = job_findings(&j, &efficiency(&j), Some(&stats_with(20_000)), &[], &rules);
    let k: Vec<FindingKind> = held.iter().map(|f| f.kind).collect();
    assert_eq!(k.iter().filter(|k| GPU_KINDS.contains(k)).collect::<Vec<_>>(), [&FindingKind::InvestigateGpuUsage]);
    let inv = of_kind(&held, FindingKind::InvestigateGpuUsage);
    assert!(
        inv[0].evidence.contains("held 20000 MiB") && inv[0].evidence.contains("mean power 70 W"),
        "{}",
        inv[0].evidence
    );
    // A CUDA context's few hundred MiB is not data: that GPU is idle.
    let ctx = job_findings(&j, &efficiency(&j), Some(&stats_with(300)), &[], &rules);
    for want in [FindingKind::GpuUnderuse, FindingKind::GpuNoUtilisation, FindingKind::IdleAllocation] {
        assert_eq!(of_kind(&ctx, want).len(), 1, "{want:?} in {ctx:?}");
    }
    assert!(of_kind(&ctx, FindingKind::InvestigateGpuUsage).is_empty());
}

#[test]
fn a_gpu_idle_run_does_not_bridge_an_unobserved_gap() {
    use crate::sample::GpuReading;
    let j = gpu_job(1);
    // 0 % for 40 minutes, 30 minutes unread, 0 % for 40 more: no run reaches the hour.
    let at: Vec<u64> = (0..120).map(|i| i * 20).chain((0..120).map(|i| 4_200 + i * 20)).collect();
    let readings: Vec<GpuReading> = at.iter().map(|&at| GpuReading { at, index: 0, ..GpuReading::default() }).collect();
    let mut gpu = BTreeMap::new();
    gpu.insert(SeriesKey { job: j.id, step: StepId(0), node: "g1".into() }, readings);
    let stats = series_stats(&BTreeMap::new(), &gpu, 6_600, &params());
    let cfg = cfg();
    let rules = Rules { config: &cfg, preload_library: "/lib/pre.so" };
    let f = job_findings(&j, &efficiency(&j), Some(&stats), &[], &rules);
    assert!(of_kind(&f, FindingKind::IdleAllocation).is_empty(), "{f:?}");
    assert_eq!(stats.gpus[0].longest_zero_secs, 2_380);
    assert_eq!(of_kind(&f, FindingKind::GpuNoUtilisation).len(), 1, "still never busy");
}

/// A job of random shape as sacct reports it: `nodes` nodes, tasks spread as SLURM's balanced
/// distribution does (counts differ by at most one), `cpt` CPUs per task, each task's peak;
/// a batch step on the first node. `tot_counts_all` says whether the step total counts every
/// node's tasks (a sound SLURM) or only the first node's (what 22.05 shows on the dev cluster).
struct Shape {
    per_node: Vec<Vec<u64>>,
    cpt: u32,
    per_cpu: bool,
    tot_counts_all: bool,
}

fn shape_job(shape: &Shape) -> JobRecord {
    use crate::job::{MemRequest, StepRecord, Tres, Usage};
    use crate::slurm::sacct_parse::fold_steps_into_job;
    let nodes = shape.per_node.len() as u32;
    let tasks: u32 = shape.per_node.iter().map(|t| t.len() as u32).sum();
    let mut j = finished(tasks * shape.cpt, 1.0, 0, 1);
    j.usage.max_rss_bytes = None;
    j.node_count = nodes;
    j.req_mem = Some(if shape.per_cpu { MemRequest::PerCpu(64 << 30) } else { MemRequest::PerNode(64 << 30) });
    j.req_mem_bytes = Some(64 << 30);
    let max = shape.per_node.iter().flatten().copied().max().unwrap_or(0);
    let tot: u64 =
        if shape.tot_counts_all { shape.per_node.iter().flatten().sum() } else { shape.per_node[0].iter().sum() };
    let step = |id: StepId, nodes: u32, tasks: u32, max: u64, tot: u64| {
        let mut s = StepRecord {
            job: j.id,
            step: id,
            name: String::new(),
            state: "COMPLETED".into(),
            exit_code: 0,
            exit_signal: 0,
            start_at: j.start_at,
            end_at: j.end_at,
            elapsed_secs: j.elapsed_secs,
            node_list: String::new(),
            node_count: nodes,
            task_count: tasks,
            alloc_cpus: j.alloc_cpus,
            usage: Usage { max_rss_bytes: Some(max), ..Usage::default() },
            tres_usage_in_tot: Tres(vec![("mem".into(), tot)]),
            tres_usage_in_max: Tres(vec![("mem".into(), max)]),
            submit_line: String::new(),
        };
        s.derive_memory();
        s
    };
    let steps = [step(StepId::BATCH, 1, 1, 4 << 20, 4 << 20), step(StepId(0), nodes, tasks, max, tot)];
    fold_steps_into_job(&mut j, &steps);
    j
}

/// `--mem=352M` / `--mem-per-cpu=2G` → (bytes, per CPU?).
fn parse_advice(text: &str) -> (u64, bool) {
    let (value, per_cpu) = match text.strip_prefix("--mem-per-cpu=") {
        Some(v) => (v, true),
        None => (text.strip_prefix("--mem=").unwrap_or_else(|| panic!("not a memory option: {text}")), false),
    };
    let (num, unit) = value.split_at(value.len() - 1);
    let scale = match unit {
        "M" => 1u64 << 20,
        "G" => 1 << 30,
        other => panic!("unit {other} in {text}"),
    };
    (num.parse::<u64>().unwrap() * scale, per_cpu)
}

#[test]
fn memory_advice_never_falls_below_any_nodes_use_plus_margin() {
    // xorshift64: a fixed seed, so a failure repeats.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |bound: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % bound
    };
    let margin = 1.2;
    for round in 0..5_000 {
        let nodes = 1 + next(6) as usize;
        let tasks = nodes + next(nodes as u64 * 8) as usize;
        let mut per_node: Vec<Vec<u64>> = vec![Vec::new(); nodes];
        for t in 0..tasks {
            // Balanced, as SLURM spreads tasks over the nodes: counts differ by at most one.
            let node = t % nodes;
            let peak = match next(3) {
                0 => (1 + next(64)) << 20,
                1 => (1 + next(4096)) << 20,
                _ => (1 + next(64)) << 30,
            };
            per_node[node].push(peak);
        }
        let shape = Shape { per_node, cpt: 1 + next(4) as u32, per_cpu: next(2) == 0, tot_counts_all: next(4) != 0 };
        let j = shape_job(&shape);
        let used = j.usage.mem_used().unwrap() as f64;
        let node_peak = j.usage.mem_node_peak().unwrap() as f64;
        let (text, whole) = mem_advice(&j, node_peak * margin, used * margin);
        let (value, per_cpu) = parse_advice(&text);
        assert_eq!(per_cpu, shape.per_cpu, "round {round}: {text} for a per-CPU request? {}", shape.per_cpu);
        let true_total: u64 = shape.per_node.iter().flatten().sum();
        assert!(
            whole as f64 >= true_total as f64 * margin,
            "round {round}: {text} gives {whole} < {true_total} + margin"
        );
        for (n, tasks) in shape.per_node.iter().enumerate() {
            let use_on_node: u64 = tasks.iter().sum::<u64>().max(if n == 0 { 4 << 20 } else { 0 });
            let alloc_on_node = if per_cpu { value * u64::from(shape.cpt) * tasks.len() as u64 } else { value };
            assert!(
                alloc_on_node as f64 >= use_on_node as f64 * margin,
                "round {round}: node {n} uses {use_on_node}, {text} gives it {alloc_on_node} ({:?}, {} CPUs per task)",
                shape.per_node,
                shape.cpt
            );
        }
    }
}

#[test]
fn memory_advice_is_per_node_and_per_cpu_as_asked() {
    use crate::job::MemRequest;
    // -N2 -n2 --mem=1G, 2 tasks × 300 MiB: 600 MiB in all, 300 MiB a node; 20 % margin.
    let mut j = finished(2, 1.0, 0, 2_048);
    j.node_count = 2;
    j.usage.mem_used_bytes = Some(600 << 20);
    j.usage.mem_node_peak_bytes = Some(300 << 20);
    j.req_mem = Some(MemRequest::PerNode(1 << 30));
    let f = job_findings(&j, &efficiency(&j), None, &[], &Rules { config: &cfg(), preload_library: "" });
    let mem = f.iter().find(|f| f.kind == FindingKind::MemoryUnderused).unwrap();
    // 300 MiB × 1.2 = 360 MiB a node (the old advice divided the largest task by the nodes: 192M).
    assert_eq!(mem.fix, "--mem=384M");
    assert!(mem.evidence.contains("600 MiB of 2.0 GiB"), "{}", mem.evidence);
    j.req_mem = Some(MemRequest::PerCpu(1 << 30));
    let f = job_findings(&j, &efficiency(&j), None, &[], &Rules { config: &cfg(), preload_library: "" });
    let mem = f.iter().find(|f| f.kind == FindingKind::MemoryUnderused).unwrap();
    assert_eq!(mem.fix, "--mem-per-cpu=384M");
}

/// `n` samples 20 s apart from `start` of one step on n1, each given by `f(i, sample)`.
fn shaped(
    start: u64,
    n: u64,
    mut f: impl FnMut(u64, &mut crate::sample::StepSample),
) -> Vec<crate::sample::StepSample> {
    burn(n, 1.0, 90)
        .into_iter()
        .enumerate()
        .map(|(i, mut s)| {
            s.at += start;
            f(i as u64, &mut s);
            s
        })
        .collect()
}

fn stats_of(j: &JobRecord, series: Vec<crate::sample::StepSample>) -> SeriesStats {
    let mut samples = BTreeMap::new();
    samples.insert(SeriesKey { job: j.id, step: StepId::BATCH, node: "n1".into() }, series);
    series_stats(&samples, &BTreeMap::new(), j.elapsed_secs, &params())
}

#[test]
fn a_job_streaming_files_is_judged_on_resident_memory_not_page_cache() {
    // 100 MiB resident, the cgroup full of cache up to the 1 GiB limit.
    let mut j = finished(1, 1.0, 100, 1_024);
    j.usage.max_rss_bytes = Some(100 << 20);
    let series = shaped(0, 60, |_, s| {
        s.resident_kib = 100 << 10;
        s.cache_kib = 900 << 10;
        s.mem_current_kib = 1 << 20;
        s.mem_peak_kib = 1 << 20;
    });
    let k = kinds(&j, Some(&stats_of(&j, series)), &[]);
    assert!(!k.contains(&FindingKind::MemoryOversubscribed), "{k:?}");
    assert!(k.contains(&FindingKind::MemoryUnderused), "{k:?}");
    // The same charge with no cache is a job at its limit.
    let series = shaped(0, 60, |_, s| {
        s.resident_kib = 1 << 20;
        s.mem_current_kib = 1 << 20;
        s.mem_peak_kib = 1 << 20;
    });
    assert!(kinds(&j, Some(&stats_of(&j, series)), &[]).contains(&FindingKind::MemoryOversubscribed));
}

#[test]
fn idle_allocation_fires_on_mostly_idle_distributor_windows() {
    // A 3-hour job seen in 5-minute windows every 30 minutes: idle in 6 of 7.
    let mut j = finished(2, 0.05, 90, 100);
    j.elapsed_secs = 11_100;
    j.time_limit_secs = Some(12_000);
    let mut series = Vec::new();
    let mut cpu = 0;
    for w in 0..7u64 {
        let busy = w == 2;
        series.extend(shaped(w * 1_800, 16, |i, s| {
            s.cpu_user_cs = cpu + if busy { i * 2_000 } else { 0 };
        }));
        cpu = series.last().map_or(0, |s: &crate::sample::StepSample| s.cpu_user_cs);
    }
    let stats = stats_of(&j, series.clone());
    let cfg = cfg();
    let rules = Rules { config: &cfg, preload_library: "/lib/pre.so" };
    let f = job_findings(&j, &efficiency(&j), Some(&stats), &[], &rules);
    let idle = f.iter().find(|f| f.kind == FindingKind::IdleAllocation).expect("idle allocation");
    assert!(idle.evidence.contains("6 of 7 sampling windows"), "{}", idle.evidence);
    // Busy in most windows: not idle.
    let mut busy = Vec::new();
    let mut cpu = 0;
    for w in 0..7u64 {
        let on = w != 2;
        busy.extend(shaped(w * 1_800, 16, |i, s| s.cpu_user_cs = cpu + if on { i * 2_000 } else { 0 }));
        cpu = busy.last().map_or(0, |s: &crate::sample::StepSample| s.cpu_user_cs);
    }
    assert!(!kinds(&j, Some(&stats_of(&j, busy)), &[]).contains(&FindingKind::IdleAllocation));
    // Two idle windows 30 minutes apart span less than the hour: not yet.
    let short: Vec<_> = series.into_iter().filter(|s| s.at < 2_400).collect();
    assert!(!kinds(&j, Some(&stats_of(&j, short)), &[]).contains(&FindingKind::IdleAllocation));
}

#[test]
fn page_fault_churn_needs_a_sustained_rate_and_names_the_preload_library() {
    let j = finished(1, 1.0, 90, 100);
    let cfg = cfg();
    let rules = Rules { config: &cfg, preload_library: "/lib/pre.so" };
    // One interval of 80 MB touched for the first time (20 480 pages in 20 s), then quiet.
    let burst = shaped(0, 60, |i, s| s.minor_faults = if i >= 1 { 20_480 * 20 } else { 0 });
    let f = job_findings(&j, &efficiency(&j), Some(&stats_of(&j, burst)), &[], &rules);
    assert!(f.iter().all(|f| f.kind != FindingKind::PageFaultChurn), "{f:?}");
    // 5 000 faults/s for 20 minutes.
    let churn = shaped(0, 60, |i, s| s.minor_faults = i * 100_000);
    let f = job_findings(&j, &efficiency(&j), Some(&stats_of(&j, churn)), &[], &rules);
    let churn = f.iter().find(|f| f.kind == FindingKind::PageFaultChurn).expect("churn");
    assert!(churn.fix.contains("LD_PRELOAD=/lib/pre.so"), "{}", churn.fix);
    assert!(churn.evidence.contains("5000 page faults/s for 00:19:40"), "{}", churn.evidence);
}
