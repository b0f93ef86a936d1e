use super::*;
use crate::store::tests_support::job;

fn setup(name: &str) -> (Store, Config) {
    let dir = std::env::temp_dir().join(format!("tw-admin-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::open(&dir.join("s.redb")).unwrap();
    let mut config = Config::default();
    config.analysis.period = turingwatch_config::Span::secs(600);
    config.analysis.timezone = "UTC".into();
    config.analysis.results_dir = dir.join("results").display().to_string();
    config.findings.min_runtime = turingwatch_config::Span::secs(10);
    config.mail.domain = "example.org".into();
    (store, config)
}

#[test]
fn periods_are_named_as_the_cli_takes_them_and_nonsense_is_a_clear_error() {
    let spec = PeriodSpec::new(600, 0, 0, jiff::tz::TimeZone::UTC).unwrap();
    let now = 1_800_000_300;
    assert_eq!(resolve_period(&spec, "current", now).unwrap(), Period { start: 1_800_000_000, end: 1_800_000_600 });
    assert_eq!(resolve_period(&spec, "previous", now).unwrap().start, 1_799_999_400);
    assert_eq!(resolve_period(&spec, "1799998800", now).unwrap().start, 1_799_998_800);
    let err = resolve_period(&spec, "next week; rm -rf /", now).unwrap_err().to_string();
    assert!(err.contains("expected current, previous"), "{err}");
}

#[test]
fn analyze_then_a_mail_preview_and_the_status_of_a_stopped_server() {
    let (store, config) = setup("analyze");
    let now = unix_now();
    let start = now - now % 600;
    let mut waste = job(1, "alice", start + 1, Some(start + 2));
    (waste.elapsed_secs, waste.alloc_cpus, waste.usage.total_cpu_ms) = (300, 4, 1_000);
    store.upsert_jobs(&[waste], &[], None).unwrap();

    let done = analyze(&config, &store, "current").unwrap();
    assert!(done.ok && done.text.contains("1 user(s), 1 job(s)"), "{}", done.text);
    assert!(done.text.contains("  alice: findings"), "{}", done.text);

    let preview = MailRequest { period: "current".into(), dry_run: true, ..Default::default() };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let store = Arc::new(store);
    let mime = rt.block_on(mail(&config, store.clone(), &preview)).unwrap();
    assert!(mime.text.contains("To: alice@example.org"), "{}", mime.text);
    assert!(store.outbox_entries(None).unwrap().is_empty(), "a preview queues nothing");
    let nobody = MailRequest { users: vec!["mallory".into()], ..preview };
    let err = rt.block_on(mail(&config, store.clone(), &nobody)).unwrap_err().to_string();
    assert!(err.contains("no report for user mallory"), "{err}");

    let s = status(&config, &store, None).unwrap();
    assert_eq!((s.source.as_str(), s.jobs, s.periods, s.periods_closed), ("store", 1, 1, 0));
    assert!(s.store_bytes > 0 && s.actor_restarts.is_empty());
    let text = s.text();
    assert!(text.contains("scraper jobs: n/a (server not running)") && text.contains("mails: none"), "{text}");
}

#[test]
fn the_running_servers_status_names_its_import_scrapers_and_restarts() {
    let (store, config) = setup("status");
    let metrics = Metrics::default();
    metrics.import_last_success_at.set(unix_now() - 30);
    metrics.scraper_jobs_running.set(3);
    metrics.actor_restarted("mailer");
    let s = status(&config, &store, Some(&metrics)).unwrap();
    let text = s.text();
    assert!(text.contains("source: server") && text.contains("scraper jobs: 3 running, 0 pending"), "{text}");
    assert!(text.contains("mailer 1") && text.contains(" s ago)"), "{text}");
    assert_eq!(s.import_watermark, None, "nothing read yet reads n/a, not 1970");
}
