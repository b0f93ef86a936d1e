use super::*;
use crate::mail::outbox::OutboxState;
use crate::store::tests_support::job;

fn setup(name: &str) -> (Store, Cycle, PathBuf) {
    let dir = std::env::temp_dir().join(format!("tw-run-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::open(&dir.join("s.redb")).unwrap();
    let mut config = Config::default();
    config.analysis.period = turingwatch_config::Span::secs(600);
    config.analysis.timezone = "UTC".into();
    config.analysis.results_dir = dir.join("results").display().to_string();
    config.findings.min_runtime = turingwatch_config::Span::secs(10);
    config.mail.opt_out = vec!["carol".into()];
    let cycle = Cycle::new(&config, 1).unwrap();
    (store, cycle, dir)
}

#[test]
fn a_period_closes_after_the_import_passes_its_end_and_queues_mails_once() {
    let (store, cycle, dir) = setup("close");
    let t0: u64 = 1_800_000_000; // a multiple of 600: a period boundary
    let mut waste = job(1, "alice", t0 + 10, Some(t0 + 310));
    waste.usage.total_cpu_ms = 1_000;
    let mut fine = job(2, "bob", t0 + 10, Some(t0 + 310));
    fine.alloc_cpus = 1;
    fine.usage.total_cpu_ms = 299_000;
    fine.usage.max_rss_bytes = Some(3 << 30);
    fine.time_limit_secs = Some(360);
    let mut opted = job(3, "carol", t0 + 10, Some(t0 + 310));
    opted.usage.total_cpu_ms = 0;
    let root = job(4, "root", t0 + 10, Some(t0 + 310));
    store.upsert_jobs(&[waste, fine, opted, root], &[], None).unwrap();

    let first = tick(&store, &cycle, t0 + 400, false).unwrap();
    assert_eq!(first.len(), 1, "the current period is created and refreshed");
    assert_eq!(first[0].users, 3, "root is skipped");
    // The period ended but the import has not caught up: it stays open.
    assert!(tick(&store, &cycle, t0 + 700, false).unwrap().iter().all(|r| r.queued == 0));
    assert!(!store.periods().unwrap()[0].closed);
    store.set_meta(IMPORT_WATERMARK_KEY, t0 + 650).unwrap();
    let closed = tick(&store, &cycle, t0 + 710, false).unwrap();
    assert_eq!(closed[0].period.start, t0);
    assert_eq!(closed[0].queued, 2, "alice and carol (opted out, recorded); bob has nothing to say");
    assert!(store.periods().unwrap()[0].closed);
    let entries = store.outbox_entries(Some(t0)).unwrap();
    let states: Vec<(&str, OutboxState)> = entries.iter().map(|e| (e.user.as_str(), e.state)).collect();
    assert_eq!(states, [("alice", OutboxState::Queued), ("carol", OutboxState::OptedOut)]);
    // Closing is done once: later ticks do not touch the closed period.
    assert!(tick(&store, &cycle, t0 + 720, true).unwrap().iter().all(|r| r.period.start != t0));
    assert!(dir.join("results").join(format!("{t0}.tar.gz")).exists());
    assert!(store.report(t0, "alice").unwrap().unwrap().has_findings);
    assert!(!store.report(t0, "bob").unwrap().unwrap().has_findings);
}

#[test]
fn periods_missed_while_down_are_created_and_closed_after_the_grace() {
    let (store, cycle, _dir) = setup("gap");
    let t0: u64 = 1_800_000_000; // a multiple of 600: a period boundary
    tick(&store, &cycle, t0 + 1, false).unwrap();
    // Down for three periods and more than the grace (1 h) past them.
    let now = t0 + 600 * 10 + 5;
    let done = tick(&store, &cycle, now, false).unwrap();
    let periods = store.periods().unwrap();
    assert_eq!(periods.len(), 11);
    assert!(periods.iter().filter(|p| p.end + 3_600 <= now).all(|p| p.closed));
    assert!(done.len() >= 2);
}

#[test]
fn each_refresh_stores_the_periods_coverage_and_puts_it_in_the_bundle() {
    use crate::job::{JobId, StepId};
    use crate::sample::StepSample;
    use std::io::Read;
    let (store, cycle, dir) = setup("coverage");
    let t0: u64 = 1_800_000_000; // a multiple of 600: a period boundary
                                 // alice: 4 CPUs for 300 s, samples every 20 s over the first 150 s; bob: 2 CPUs, never sampled.
    let half = job(1, "alice", t0 + 10, Some(t0 + 310));
    let mut none = job(2, "bob", t0 + 10, Some(t0 + 310));
    none.alloc_cpus = 2;
    store.upsert_jobs(&[half, none], &[], None).unwrap();
    let rows: Vec<(JobId, StepId, StepSample)> = (0..=150u64)
        .step_by(10)
        .map(|s| {
            (JobId(1), StepId::BATCH, StepSample { at: t0 + 10 + s, cpu_user_cs: s * 100, ..StepSample::default() })
        })
        .collect();
    store.append_samples("n1", &rows).unwrap();
    let done = tick(&store, &cycle, t0 + 400, false).unwrap();
    let c = &done[0].coverage;
    assert_eq!((c.jobs, c.jobs_sampled, c.jobs_unsampled), (2, 1, 1));
    assert!((c.core_hours - 1_800.0 / 3_600.0).abs() < 1e-9, "{c:?}");
    assert!((c.core_hours_sampled_frac.unwrap() - 600.0 / 1_800.0).abs() < 1e-9, "{c:?}");
    assert_eq!(c.text, "33 % of the 0.5 core-hours were sampled; 1 job had no samples.");
    // Stored, for the site and for /metrics: the open period is the current one, none is closed.
    let (current, last) = latest_coverage(&store, &cycle, t0 + 400).unwrap();
    assert_eq!((current.as_ref(), last), (Some(c), None));
    // raw.json carries it.
    let bundle = std::fs::File::open(dir.join("results").join(format!("{t0}.tar.gz"))).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bundle));
    let mut raw = String::new();
    archive.entries().unwrap().next().unwrap().unwrap().read_to_string(&mut raw).unwrap();
    let raw: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(raw["coverage"]["jobs_unsampled"], 1);
    assert_eq!(raw["coverage"]["text"], c.text.as_str());
    // Once the period closes it is the last closed one; the new current one has no jobs.
    store.set_meta(IMPORT_WATERMARK_KEY, t0 + 650).unwrap();
    tick(&store, &cycle, t0 + 700, true).unwrap();
    let (current, last) = latest_coverage(&store, &cycle, t0 + 700).unwrap();
    assert_eq!(last.map(|l| (l.period_start, l.jobs)), Some((t0, 2)));
    assert_eq!(current.map(|c| (c.period_start, c.jobs)), Some((t0 + 600, 0)));
}

#[test]
fn closing_a_period_holds_back_the_holdouts_mails_and_outcomes_see_them() {
    let (store, mut cycle, _dir) = setup("holdout");
    cycle.config.mail.holdout_share = 0.5;
    cycle.config.mail.holdout_salt = "site".into();
    let holdout = crate::mail::holdout::Holdout::from_config(&cycle.config.mail);
    // Twelve users, each with one idle job: about half are held back.
    let users: Vec<String> = (0..12).map(|i| format!("u{i}")).collect();
    let t0: u64 = 1_800_000_000;
    let jobs: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let mut j = job(10 + i as u64, u, t0 + 10, Some(t0 + 310));
            j.usage.total_cpu_ms = 1_000;
            j
        })
        .collect();
    store.upsert_jobs(&jobs, &[], None).unwrap();
    store.set_meta(IMPORT_WATERMARK_KEY, t0 + 650).unwrap();
    tick(&store, &cycle, t0 + 400, false).unwrap();
    let closed = tick(&store, &cycle, t0 + 710, false).unwrap();
    assert_eq!(closed[0].queued, 12, "every decision is on record");
    let entries = store.outbox_entries(Some(t0)).unwrap();
    for e in &entries {
        let expected = if holdout.holds(&e.user) { OutboxState::Held } else { OutboxState::Queued };
        assert_eq!(e.state, expected, "{}", e.user);
    }
    let held = entries.iter().filter(|e| e.state == OutboxState::Held).count();
    assert!(held > 0 && held < 12, "{held} held");
    assert_eq!(store.next_due_mail(t0 + 710).unwrap().1 as usize, 12 - held, "held mails are never due");
    // Outcome tracking reads the held ones as the holdout arm (no follow-up period yet).
    let (inputs, bad) = crate::analysis::load::outcome_inputs(&store).unwrap();
    let o = crate::analysis::outcome::outcomes(&inputs);
    let cpu = o.kinds.iter().find(|k| k.kind == "cpu_underuse").expect("CPU underuse found");
    assert_eq!((bad, cpu.held.pairs as usize, cpu.mailed.pairs), (0, held, 0), "queued mails are not sent yet");
}
