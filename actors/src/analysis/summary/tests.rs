use super::*;
use crate::analysis::period::Period;
use crate::store::tests_support::job;

pub(crate) fn params() -> Params {
    let mut config = Config::default();
    config.findings.min_runtime = turingwatch_config::Span::secs(10);
    Params::from_config(&config)
}

/// alice: job 1 wastes CPU, job 2 wastes memory, job 3 is fine.
pub(crate) fn alice_inputs() -> Vec<JobInput> {
    let mut cpu = job(1, "alice", 1_000, Some(1_600));
    cpu.name = "sleeper".into();
    cpu.alloc_cpus = 2;
    cpu.usage.total_cpu_ms = 100;
    cpu.usage.max_rss_bytes = Some(3 << 29);
    cpu.req_mem_bytes = Some(2 << 30);
    let mut mem = job(2, "alice", 1_000, Some(1_600));
    mem.name = "hog".into();
    mem.alloc_cpus = 1;
    mem.usage.total_cpu_ms = 590_000;
    mem.usage.max_rss_bytes = Some(50 << 20);
    mem.req_mem_bytes = Some(2 << 30);
    let mut fine = job(3, "alice", 1_000, Some(1_600));
    fine.name = "burn".into();
    fine.alloc_cpus = 1;
    fine.usage.total_cpu_ms = 595_000;
    fine.usage.max_rss_bytes = Some(90 << 20);
    fine.req_mem_bytes = Some(100 << 20);
    fine.time_limit_secs = Some(700);
    [cpu, mem, fine].into_iter().map(JobInput::new).collect()
}

#[test]
fn the_wasteful_jobs_are_the_worst_and_the_fine_one_is_not_listed() {
    let inputs = alice_inputs();
    let a = analyze_user("alice", Period { start: 0, end: 10_000 }, &inputs, &[], &params());
    assert_eq!(a.jobs.len(), 3);
    assert_eq!(a.worst, [JobId(1), JobId(2)]);
    let kinds: Vec<FindingKind> = a.kinds.iter().map(|k| k.kind).collect();
    assert!(kinds.contains(&FindingKind::CpuUnderuse) && kinds.contains(&FindingKind::MemoryUnderused));
    assert!(a.has_findings());
    assert_eq!(a.jobs[0].sample_coverage_frac, 0.0);
    assert!((a.alloc_core_hours - 2_400.0 / 3_600.0).abs() < 1e-9);
}

#[test]
fn family_history_gives_trends_and_a_right_size_finding() {
    let period = Period { start: 100_000, end: 200_000 };
    let mut history = Vec::new();
    for i in 0..6u64 {
        let mut j = job(10 + i, "bob", 150_000 - 100_000 * (i % 2), Some(150_600 - 100_000 * (i % 2)));
        j.usage.total_cpu_ms = 600_000;
        j.usage.max_rss_bytes = Some(100 << 20);
        history.push(j);
    }
    let inputs = vec![JobInput::new(history[4].clone())];
    let params = Params { period_secs: 100_000, ..params() };
    let a = analyze_user("bob", period, &inputs, &history, &params);
    assert_eq!(a.families.len(), 1);
    let points = &a.families[0].points;
    assert_eq!((points[0].jobs, points[1].jobs), (3, 3));
    assert_eq!(a.rightsize.len(), 1);
    let fix = a.jobs[0].findings.iter().find(|f| f.kind == FindingKind::RightSize).unwrap();
    assert!(fix.fix.contains("--mem=128M") && fix.fix.contains("--cpus-per-task=2"), "{}", fix.fix);
}

#[test]
fn the_services_own_scraper_jobs_are_not_judged() {
    // A scraper job: `[distributor] job_name` by an `[ingest] service_users` user (root by default).
    let mut scraper = alice_inputs().swap_remove(0);
    scraper.job.user = "root".into();
    scraper.job.name = "turingwatch".into();
    let a = analyze_job(&scraper, &params());
    assert!(a.findings.is_empty(), "{:?}", a.findings);
    assert_eq!(a.waste, 0.0);
    assert!(a.efficiency.cpu_frac.is_some(), "its figures are still shown");
    // The same name by another user, or another name by the service user, is judged as usual.
    for (user, name) in [("alice", "turingwatch"), ("root", "sleeper")] {
        let mut other = scraper.clone();
        other.job.user = user.into();
        other.job.name = name.into();
        assert!(!analyze_job(&other, &params()).findings.is_empty(), "{user} {name}");
    }
}
