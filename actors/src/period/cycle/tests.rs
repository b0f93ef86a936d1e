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
