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
