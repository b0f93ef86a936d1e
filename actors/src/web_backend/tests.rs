//! The store-backed web backend: series arithmetic, findings, coordinator parsing, store reads.

use super::*;
use crate::job::StepId;
use crate::sample::StepSample;
use crate::store::tests_support::job;
use crate::store::{PeriodRecord, UserReport};

fn sample(at: u64, user_cs: u64, sys_cs: u64, rss_kib: u64) -> StepSample {
    StepSample { at, cpu_user_cs: user_cs, cpu_sys_cs: sys_cs, rss_kib, ..StepSample::default() }
}

#[test]
fn job_page_findings_are_the_analysis_findings() {
    let params = Params::from_config(&turingwatch_config::Config::default());
    let mut j = job(1, "alice", 0, Some(3_600));
    j.alloc_cpus = 8;
    j.usage.total_cpu_ms = 3_600 * 1_000; // one core busy out of 8
    j.req_mem_bytes = Some(16 << 30);
    j.usage.max_rss_bytes = Some(2 << 30);
    j.time_limit_secs = Some(24 * 3_600);
    let input = JobInput::new(j);
    let found = web_findings(&input, &params);
    let analysis = analyze_job(&input, &params).findings;
    assert_eq!(found.len(), analysis.len());
    let kinds: Vec<&str> = found.iter().map(|f| f.kind.as_str()).collect();
    assert!(kinds.contains(&"cpu_underuse") && kinds.contains(&"memory_underused"), "{kinds:?}");
    for (web, ana) in found.iter().zip(&analysis) {
        assert_eq!(web.fix.as_deref().unwrap_or(""), ana.fix);
        assert!(web.message.contains(&ana.evidence));
    }
    let cpu = found.iter().find(|f| f.kind == "cpu_underuse").unwrap();
    assert!(cpu.fix.as_deref().unwrap_or("").contains("--cpus-per-task="), "{cpu:?}");
}

#[test]
fn coordinators_and_associations_parse() {
    let c = parse_coordination("dev|carol,dave\nroot|\nphys|carol\n", "alice|dev\nbob|phys\nroot|root\n|x\n");
    assert_eq!(c.accounts_coordinated_by("carol").into_iter().collect::<Vec<_>>(), ["dev", "phys"]);
    assert_eq!(c.users_coordinated_by("carol").into_iter().collect::<Vec<_>>(), ["alice", "bob"]);
    assert!(c.users_coordinated_by("alice").is_empty());
}

#[test]
fn the_backend_reads_jobs_reports_and_samples_from_the_store() {
    let dir = std::env::temp_dir().join(format!("tw-web-backend-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = Arc::new(Store::open(&dir.join("s.redb")).unwrap());
    let (a, b) = (job(1, "alice", 1_000, Some(1_100)), job(2, "bob", 5_000, Some(5_100)));
    store.upsert_jobs(&[a, b], &[], None).unwrap();
    store
        .append_samples(
            "n1",
            &[(JobId(1), StepId::BATCH, sample(1_000, 0, 0, 5)), (JobId(1), StepId::BATCH, sample(1_010, 4_000, 0, 5))],
        )
        .unwrap();
    store.put_period(&PeriodRecord { start: 0, end: 2_000, closed: true, updated_at: 2_000 }).unwrap();
    let report = UserReport {
        period_start: 0,
        user: "alice".into(),
        json: "{}".into(),
        html: "<p>x</p>".into(),
        text: "x".into(),
        has_findings: false,
        updated_at: 3,
    };
    store.put_reports(0, &[report]).unwrap();
    let backend = StoreBackend::new(Arc::clone(&store), &Config::default());
    assert_eq!(backend.periods().unwrap()[0].end, 2_000);
    assert_eq!(backend.report(0, "alice").unwrap().unwrap().html, "<p>x</p>");
    assert!(backend.report(0, "bob").unwrap().is_none());
    let all = backend.jobs(&JobQuery { from: 0, to: 2_000, users: None }).unwrap();
    assert_eq!(all.iter().map(|j| j.id).collect::<Vec<_>>(), [1]);
    let bobs = backend.jobs(&JobQuery { from: 0, to: u64::MAX, users: Some(vec!["bob".into()]) }).unwrap();
    assert_eq!(bobs.iter().map(|j| j.user.as_str()).collect::<Vec<_>>(), ["bob"]);
    let detail = backend.job(1).unwrap().unwrap();
    assert_eq!(detail.series[0].cores, [0.0, 4.0]);
    assert_eq!(detail.cores_requested_per_node, 4.0);
    assert!(backend.job(99).unwrap().is_none());
    // The period's coverage as the rollover stored it; garbage reads as none, not as an error.
    assert_eq!(backend.period_coverage(0).unwrap(), None);
    let coverage = crate::analysis::coverage::PeriodCoverage {
        jobs: 2,
        jobs_unsampled: 1,
        text: "half".into(),
        ..Default::default()
    };
    store.put_period_coverage(0, &serde_json::to_string(&coverage).unwrap()).unwrap();
    let web = backend.period_coverage(0).unwrap().unwrap();
    assert_eq!((web.jobs, web.jobs_unsampled, web.text.as_str()), (2, 1, "half"));
    store.put_period_coverage(0, "not json").unwrap();
    assert_eq!(backend.period_coverage(0).unwrap(), None);
}

#[test]
fn a_running_job_is_listed_with_no_cpu_figure_and_a_reason() {
    let mut j = job(9, "alice", 0, None);
    j.elapsed_secs = 600;
    j.alloc_cpus = 4;
    j.time_limit_secs = None;
    let s = summarize(&j, &efficiency(&j), None);
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["cpu_frac"], serde_json::Value::Null);
    assert_eq!(json["cpu_no_data"], "running");
    assert_eq!(json["time_frac"], serde_json::Value::Null);
    assert_eq!(json["time_no_data"], "unlimited");
    assert_eq!(s.wasted_core_hours, 0.0, "no waste is known before the job reports its CPU time");
    assert_eq!(json["mem_used_bytes"], 1u64 << 30);
}

/// A store in a scratch directory named after the test.
fn scratch_store(name: &str) -> Arc<Store> {
    let dir = std::env::temp_dir().join(format!("tw-web-backend-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Arc::new(Store::open(&dir.join("s.redb")).unwrap())
}

/// A 4-CPU job running since `start`, with accounting's running figures (no CPU time, no peak).
fn running(id: u64, start: u64, now: u64) -> JobRecord {
    let mut j = job(id, "alice", start, None);
    j.elapsed_secs = now - start;
    j.usage.total_cpu_ms = 0;
    j.usage.max_rss_bytes = None;
    j
}

/// Samples of one step on n1, every 10 s from `from` to `to`, `cores` busy, `resident_kib` resident.
fn busy(id: u64, from: u64, to: u64, cores: u64, resident_kib: u64) -> Vec<(JobId, StepId, StepSample)> {
    (from..=to)
        .step_by(10)
        .map(|t| {
            let s = StepSample { resident_kib, cache_kib: 4, ..sample(t, (t - from) * 100 * cores, 0, resident_kib) };
            (JobId(id), StepId::BATCH, s)
        })
        .collect()
}

#[test]
fn a_running_job_with_samples_is_listed_with_its_live_cpu_figure_and_no_waste() {
    let store = scratch_store("live");
    let now = 100_000;
    let j = running(11, now - 7_200, now);
    store.upsert_jobs(std::slice::from_ref(&j), &[], None).unwrap();
    // Idle for the first hour, then 3 of its 4 cores busy: the list reads only the last hour.
    store.append_samples("n1", &busy(11, now - 7_200, now - 3_700, 0, 100 << 10)).unwrap();
    store.append_samples("n1", &busy(11, now - 3_500, now - 20, 3, 200 << 10)).unwrap();
    let backend = StoreBackend::new(Arc::clone(&store), &Config::default());
    let s = backend.summary(&j, now).unwrap();
    let cpu = s.cpu_frac.expect("a live CPU figure");
    assert!((cpu - 0.75).abs() < 0.01, "{cpu}");
    assert!(s.cpu_live && s.cpu_no_data.is_none(), "{s:?}");
    assert_eq!(s.live_since, Some(now - LIVE_WINDOW_SECS));
    assert_eq!(s.mem_used_bytes, Some(200 << 20), "the resident peak of the window");
    assert!(s.mem_live);
    assert_eq!(s.wasted_core_hours, 0.0, "a running job's figure is no waste");
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!((json["cpu_live"].as_bool(), json["mem_live"].as_bool()), (Some(true), Some(true)));
    // The job page reads every sample: the whole run's mean, and the run's resident peak.
    let detail = backend.job(11).unwrap().unwrap();
    let whole = detail.summary.cpu_frac.unwrap();
    assert!(whole > 0.3 && whole < 0.45, "{whole}");
    assert!(detail.summary.cpu_live && detail.summary.live_since.is_none());
    assert_eq!(detail.summary.wasted_core_hours, 0.0);
}

#[test]
fn a_running_job_without_recent_samples_has_no_cpu_figure_and_says_running() {
    let store = scratch_store("no-live");
    let now = 100_000;
    let (fresh, stale) = (running(12, now - 60, now), running(13, now - 9_000, now));
    store.upsert_jobs(&[fresh.clone(), stale.clone()], &[], None).unwrap();
    // Job 13's samples all lie before the window: not read for the list.
    store.append_samples("n1", &busy(13, now - 9_000, now - 4_000, 2, 1 << 10)).unwrap();
    let backend = StoreBackend::new(Arc::clone(&store), &Config::default());
    for j in [&fresh, &stale] {
        let s = backend.summary(j, now).unwrap();
        assert_eq!((s.cpu_frac, s.cpu_no_data.as_deref()), (None, Some("running")), "job {}", j.id);
        assert!(!s.cpu_live && !s.mem_live && s.live_since.is_none(), "{s:?}");
        assert_eq!(s.wasted_core_hours, 0.0);
    }
    // The job page of job 13 has them all.
    assert!(backend.job(13).unwrap().unwrap().summary.cpu_live);
    assert!(!backend.job(12).unwrap().unwrap().summary.cpu_live);
}

#[test]
fn the_job_page_shows_the_sampled_memory_peak_where_accounting_has_none() {
    let store = scratch_store("peak");
    let mut j = job(14, "alice", 1_000, Some(1_600));
    j.usage.max_rss_bytes = None;
    j.req_mem_bytes = Some(1 << 30);
    store.upsert_jobs(std::slice::from_ref(&j), &[], None).unwrap();
    store.append_samples("n1", &busy(14, 1_000, 1_500, 1, 715 << 10)).unwrap();
    let backend = StoreBackend::new(Arc::clone(&store), &Config::default());
    let detail = backend.job(14).unwrap().unwrap();
    assert_eq!(detail.summary.mem_used_bytes, None, "accounting has no figure");
    let peak = detail.sampled_memory.clone().expect("sampled peaks");
    assert_eq!(peak.resident_peak_bytes, 715 << 20);
    assert_eq!(peak.cache_peak_bytes, 4 << 10, "page cache apart");
    assert!(peak.charged_peak_bytes >= peak.resident_peak_bytes);
    let json = serde_json::to_value(&detail).unwrap();
    assert_eq!(json["sampled_memory"]["resident_peak_bytes"], 715u64 << 20);
    // Without samples there is no sampled peak (not a zero one).
    let bare = job(15, "alice", 1_000, Some(1_600));
    store.upsert_jobs(&[bare], &[], None).unwrap();
    assert_eq!(backend.job(15).unwrap().unwrap().sampled_memory, None);
}

#[test]
fn mail_settings_go_through_the_store_and_admins_opt_out_shows() {
    let dir = std::env::temp_dir().join(format!("tw-web-backend-prefs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = Arc::new(Store::open(&dir.join("s.redb")).unwrap());
    let mut config = turingwatch_config::Config::default();
    config.mail.opt_out = vec!["dave".into()];
    config.mail.quiet_days = vec!["sun".into()];
    let backend = StoreBackend::new(Arc::clone(&store), &config);
    let fresh = backend.mail_prefs("alice").unwrap();
    assert_eq!((fresh.opted_out, fresh.updated_at, fresh.opted_out_by_admin), (false, None, false));
    assert!(backend.mail_prefs("dave").unwrap().opted_out_by_admin);
    let change = api::MailPrefs { user: "alice".into(), opted_out: true, quiet_days: vec!["sat".into()], ..fresh };
    backend.set_mail_prefs(&change).unwrap();
    let stored = store.mail_prefs("alice").unwrap().unwrap();
    assert!(stored.opted_out && stored.quiet_days == 1 << 5 && stored.updated_at > 0);
    let back = backend.mail_prefs("alice").unwrap();
    assert_eq!(back.quiet_days, ["sat"]);
    let (users, by_admin) = backend.all_mail_prefs().unwrap();
    assert_eq!((users.len(), users[0].user.as_str(), by_admin), (1, "alice", vec!["dave".to_string()]));
    assert_eq!(backend.site_quiet_days(), ["sun"]);
}
