//! Hostile input at the store: checked reports, rows per block, corrupt blocks, whose series
//! wins, owner changes on import, bounded growth.

use super::tests::job;
use super::*;
use crate::job::JobRecord;
use crate::sample::plausible::{Limits, Reason};
use crate::sample::{GpuReading, StepSample};
use redb::ReadableTable;

const START: u64 = 1_000_800; // an hour boundary is at 1_000_800 (= 278 × 3 600)

fn temp_store(name: &str) -> Store {
    let dir = std::env::temp_dir().join(format!("tw-hostile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Store::open(&dir.join("db.redb")).unwrap()
}

fn running_job(id: u64, user: &str) -> JobRecord {
    JobRecord { start_at: Some(START), alloc_cpus: 4, ..job(id, user, START, None) }
}

fn samples(job: u64, times: impl IntoIterator<Item = u64>) -> Vec<(JobId, StepId, StepSample)> {
    times
        .into_iter()
        .map(|t| (JobId(job), StepId(0), StepSample { at: START + t, cpu_user_cs: t * 300, ..Default::default() }))
        .collect()
}

fn content(samples: Vec<(JobId, StepId, StepSample)>) -> BatchContent {
    BatchContent { samples, ..Default::default() }
}

fn count<T>(map: &std::collections::BTreeMap<SeriesKey, Vec<T>>) -> usize {
    map.values().map(Vec::len).sum()
}

#[test]
fn more_gpu_readings_in_an_hour_than_a_block_holds_are_refused_not_stored_as_an_unreadable_block() {
    let store = temp_store("gpu-rows");
    store.upsert_jobs(&[running_job(9, "alice")], &[], None).unwrap();
    // 72 000 readings in one hour: 20 devices every second.
    let gpus: Vec<_> = (0..3_600u64)
        .flat_map(|t| {
            (0..20u32).map(move |index| {
                // splitmix64: values without a pattern deflate could find.
                let mut z = (t << 8 | u64::from(index)).wrapping_add(0x9e37_79b9_7f4a_7c15);
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                let noise = z ^ (z >> 31);
                let reading = GpuReading {
                    at: START + t,
                    index,
                    util_pct: (noise % 101) as u32,
                    mem_used_mib: noise % 81_920,
                    power_mw: (noise % 400_000) as u32,
                    ..Default::default()
                };
                (JobId(9), StepId(0), reading)
            })
        })
        .collect();
    // Stored whole, such an hour is a block the decoder refuses whenever the bit-packed format is
    // the shorter one (what made every period fail).
    let rows: Vec<GpuReading> = gpus.iter().map(|(_, _, g)| g.clone()).collect();
    let mut packed = vec![3u8];
    packed.extend(super::bitpack::encode_packed(START, &rows, 8));
    assert!(decode_block::<GpuReading>(START, &packed).is_err());
    let report = BatchContent { gpus, ..Default::default() };
    let limits = Limits::default();
    let checks = Checks { limits: &limits, from_service: true, plausibility: true };
    let out = store.store_checked_batch("n1/0", 1, START + 3_700, "n1", &report, &checks).unwrap();
    assert_eq!(out.gpus, 65_536);
    assert_eq!(out.refused.get(Reason::BlockFull), 72_000 - 65_536);
    // Every read of the job and its period still works.
    assert_eq!(count(&store.gpu_readings_of_job(JobId(9)).unwrap()), 65_536);
    let period = store.period_data(START, START + 7_200, |_| true).unwrap();
    assert_eq!(period.jobs.len(), 1);
    assert_eq!(period.corrupt_blocks, 0);
    // The unchecked door caps rows the same way.
    assert_eq!(store.store_batch_once("n2/0", 2, START, "n2", &report).unwrap(), Stored::New);
    assert_eq!(count(&store.gpu_readings_of_job(JobId(9)).unwrap()), 2 * 65_536);
}

#[test]
fn a_corrupt_block_is_skipped_and_counted_by_reads_and_replaced_by_the_next_write() {
    let store = temp_store("corrupt");
    store.upsert_jobs(&[running_job(3, "alice")], &[], None).unwrap();
    store.append_samples("n1", &samples(3, [10, 20, 3_610, 3_620])).unwrap();
    {
        let db = store.test_db();
        let txn = db.begin_write().unwrap();
        {
            let node = txn.open_table(NODES).unwrap().get("n1").unwrap().unwrap().value();
            let mut blocks = txn.open_table(SAMPLE_BLOCKS).unwrap();
            blocks.insert((3, 0, node, START), &[3u8, 0xff, 0xff, 0xff, 0xff][..]).unwrap();
        }
        txn.commit().unwrap();
    }
    assert_eq!(count(&store.samples_of_job(JobId(3)).unwrap()), 2, "the other hour is still read");
    let data = store.job_data(JobId(3)).unwrap();
    assert_eq!((count(&data.samples), data.corrupt_blocks), (2, 1));
    let period = store.period_data(START, START + 7_200, |_| true).unwrap();
    assert_eq!(period.jobs.len(), 1, "the period is read past the corrupt block");
    assert_eq!(period.corrupt_blocks, 1);
    // New samples of that hour replace the corrupt block.
    let limits = Limits::default();
    let checks = Checks { limits: &limits, from_service: true, plausibility: true };
    let out = store.store_checked_batch("n1/0", 1, START + 4_000, "n1", &content(samples(3, [30])), &checks).unwrap();
    assert_eq!((out.samples, out.corrupt_blocks), (1, 1));
    assert_eq!(store.job_data(JobId(3)).unwrap().corrupt_blocks, 0);
    assert_eq!(count(&store.samples_of_job(JobId(3)).unwrap()), 3);
}

#[test]
fn implausible_samples_are_refused_by_reason_and_the_rest_stored() {
    let store = temp_store("plausible");
    store.upsert_jobs(&[running_job(4, "alice")], &[], None).unwrap();
    let limits = Limits::default();
    let checks = Checks { limits: &limits, from_service: false, plausibility: true };
    // The previous hour's last sample bounds the first of the next hour.
    let first =
        store.store_checked_batch("n1/1000", 1, START + 4_000, "n1", &content(samples(4, [3_590])), &checks).unwrap();
    assert_eq!(first.samples, 1);
    let mut hostile = samples(4, [3_600, 3_610]);
    hostile.push((
        JobId(4),
        StepId(0),
        StepSample { at: START + 3_620, cpu_user_cs: 400_000_000_000_000, ..Default::default() },
    ));
    hostile.push((JobId(4), StepId(0), StepSample { at: START + 3_630, cpu_user_cs: 1, ..Default::default() }));
    hostile.push((JobId(4), StepId(0), StepSample { at: START - 1_000, ..Default::default() }));
    hostile.push((
        JobId(4),
        StepId(0),
        StepSample { at: START + 3_640, cpu_user_cs: 3_640 * 300, rss_kib: u64::MAX, ..Default::default() },
    ));
    let out = store.store_checked_batch("n1/1000", 2, START + 4_000, "n1", &content(hostile), &checks).unwrap();
    assert_eq!(out.samples, 2);
    assert_eq!(
        out.refused.by_reason().map(|(r, n)| (r.as_str(), n)).collect::<Vec<_>>(),
        [("outside_run", 1), ("counter_decreased", 1), ("cpu_leap", 1), ("memory", 1)]
    );
    let stored = store.samples_of_job(JobId(4)).unwrap();
    assert_eq!(count(&stored), 3);
    assert!(stored.values().flatten().all(|s| s.cpu_user_cs < 2_000_000));
}

/// A store with alice's running job 5 (on n1 and n2) and three samples its owner reported from n1.
fn store_with_owners_series(name: &str) -> Store {
    let store = temp_store(name);
    store.upsert_jobs(&[JobRecord { node_list: "n[1-2]".into(), ..running_job(5, "alice") }], &[], None).unwrap();
    let owner = Checks { limits: &Limits::default(), from_service: false, plausibility: true };
    let out = store.store_checked_batch("n1/1000", 1, START + 4_000, "n1", &content(samples(5, [10, 20, 30])), &owner);
    assert_eq!(out.unwrap().samples, 3);
    store
}

#[test]
fn the_services_series_win_over_the_owners() {
    // The owner reports first: stored.
    let store = store_with_owners_series("whose");
    let limits = Limits::default();
    let owner = Checks { limits: &limits, from_service: false, plausibility: true };
    let service = Checks { limits: &limits, from_service: true, plausibility: true };
    let now = START + 4_000;
    // The service's scraper reports the series: the owner's samples are gone, the service's kept.
    let out = store.store_checked_batch("n1/0", 1, now, "n1", &content(samples(5, [15, 25])), &service).unwrap();
    assert_eq!(out.samples, 2);
    let stored = store.samples_of_job(JobId(5)).unwrap();
    assert_eq!(stored.values().flatten().map(|s| s.at - START).collect::<Vec<_>>(), [15, 25]);
    // From now on the owner can neither overwrite nor add to it.
    let out = store.store_checked_batch("n1/1000", 2, now, "n1", &content(samples(5, [15, 35])), &owner).unwrap();
    assert_eq!((out.samples, out.refused.get(Reason::ServiceSeries)), (0, 2));
    let gpus = BatchContent {
        gpus: vec![(JobId(5), StepId(0), GpuReading { at: START + 40, ..Default::default() })],
        ..Default::default()
    };
    let out = store.store_checked_batch("n1/1000", 3, now, "n1", &gpus, &owner).unwrap();
    assert_eq!(out.refused.get(Reason::ServiceSeries), 1);
    assert_eq!(store.samples_of_job(JobId(5)).unwrap(), stored);
    assert_eq!(count(&store.gpu_readings_of_job(JobId(5)).unwrap()), 0);
    // A series the service does not report (another node) is the owner's to write.
    let out = store.store_checked_batch("n2/1000", 4, now, "n2", &content(samples(5, [10])), &owner).unwrap();
    assert_eq!(out.samples, 1);
    // The service writes on to its own series.
    let out = store.store_checked_batch("n1/0", 2, now, "n1", &content(samples(5, [35])), &service).unwrap();
    assert_eq!(out.samples, 1);
}

#[test]
fn an_implausible_service_batch_does_not_wipe_the_owners_series() {
    let store = store_with_owners_series("whose-implausible");
    let limits = Limits::default();
    let owner = Checks { limits: &limits, from_service: false, plausibility: true };
    let service = Checks { limits: &limits, from_service: true, plausibility: true };
    let now = START + 4_000;
    // A service batch whose only sample lies far before the job's start is refused whole, and the
    // owner's samples stay (the service has not taken the series over).
    let before_start = BatchContent {
        samples: vec![(JobId(5), StepId(0), StepSample { at: START - 86_400, ..Default::default() })],
        ..Default::default()
    };
    let out = store.store_checked_batch("n1/0", 1, now, "n1", &before_start, &service).unwrap();
    assert_eq!(out.samples, 0);
    assert_eq!(count(&store.samples_of_job(JobId(5)).unwrap()), 3);
    let out = store.store_checked_batch("n1/1000", 2, now, "n1", &content(samples(5, [40])), &owner).unwrap();
    assert_eq!(out.samples, 1, "the series is still the owner's");
}

#[test]
fn a_stored_job_never_changes_owner_on_import() {
    let store = temp_store("owner");
    store.upsert_jobs(&[job(7, "alice", START, Some(START + 60))], &[], None).unwrap();
    let forged = JobRecord { uid: Some(1001), ..job(7, "bob", START, Some(START + 120)) };
    let other = job(8, "bob", START, Some(START + 60));
    let changes = store
        .write_jobs(Some(99), |writer| {
            writer.write(&[&forged, &other], &[])?;
            Ok(writer.take_owner_changes())
        })
        .unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (changes[0].job, changes[0].stored_user.as_str(), changes[0].new_user.as_str()),
        (JobId(7), "alice", "bob")
    );
    let stored = store.job(JobId(7)).unwrap().unwrap();
    assert_eq!((stored.user.as_str(), stored.end_at), ("alice", Some(START + 60)));
    assert_eq!(store.job(JobId(8)).unwrap().unwrap().user, "bob", "the rest of the import is stored");
    assert_eq!(store.job_ids_of_user("bob").unwrap(), [JobId(8)]);
    assert_eq!(store.jobs_in_window(START + 100, START + 200).unwrap().len(), 0, "the index keeps the stored end");
    assert_eq!(store.meta(OWNER_CHANGE_REFUSED_KEY).unwrap(), Some(1));
    assert_eq!(store.meta(IMPORT_WATERMARK_KEY).unwrap(), Some(99));
    // Same id, same owner: updated as before.
    store.upsert_jobs(&[job(7, "alice", START, Some(START + 90))], &[], None).unwrap();
    assert_eq!(store.job(JobId(7)).unwrap().unwrap().end_at, Some(START + 90));
    assert_eq!(store.meta(OWNER_CHANGE_REFUSED_KEY).unwrap(), Some(1));
}

#[test]
fn report_marks_are_pruned_by_age_and_names_are_bounded() {
    let store = temp_store("growth");
    let empty = BatchContent::default();
    store.store_batch_once("n1/0", 1, 100, "n1", &empty).unwrap();
    store.store_batch_once("n1/0", 2, 200, "n1", &empty).unwrap();
    assert_eq!(store.reports_seen_count().unwrap(), 2);
    assert_eq!(store.prune_reports_seen(150).unwrap(), 1);
    assert!(!store.report_seen("n1/0", 1).unwrap());
    assert!(store.report_seen("n1/0", 2).unwrap());

    store.upsert_jobs(&[running_job(6, "alice")], &[], None).unwrap();
    let limits = Limits { max_apps_per_step: 3, ..Limits::default() };
    let checks = Checks { limits: &limits, from_service: true, plausibility: true };
    let long = "n".repeat(8 << 20);
    let mut report = content(samples(6, [10]));
    report.apps = (0..5).map(|i| (JobId(6), StepId(0), format!("app{i}"))).collect();
    report.apps.push((JobId(6), StepId(0), "a".repeat(257)));
    let out = store.store_checked_batch(&format!("{long}/0"), 3, START + 100, &long, &report, &checks).unwrap();
    assert_eq!((out.samples, out.refused.get(Reason::NameTooLong)), (0, 7), "nothing of a report from a long name");
    assert_eq!(store.reports_seen_count().unwrap(), 1, "not even its mark");
    let out = store.store_checked_batch("n1/0", 3, START + 100, "n1", &report, &checks).unwrap();
    assert_eq!(out.samples, 1);
    assert_eq!(out.refused.get(Reason::NameTooLong), 1, "the long app");
    assert_eq!(out.refused.get(Reason::TooManyApps), 2);
    assert_eq!(store.apps_of_job(JobId(6)).unwrap().len(), 3);
    // Nothing of the long name was interned.
    let db = store.test_db();
    let txn = db.begin_read().unwrap();
    assert_eq!(txn.open_table(NODES).map(|t| redb::ReadableTableMetadata::len(&t).unwrap()).unwrap_or(0), 1);
}

#[test]
fn a_corrupt_job_value_is_skipped_by_a_period_read() {
    let store = temp_store("corrupt-job");
    store
        .upsert_jobs(&[job(40, "alice", START, Some(START + 60)), job(70, "bob", START, Some(START + 60))], &[], None)
        .unwrap();
    {
        let db = store.test_db();
        let txn = db.begin_write().unwrap();
        txn.open_table(JOB_BLOCKS).unwrap().insert(super::job_blocks::block_of(40), &[1u8, 8, 3, 0xff][..]).unwrap();
        txn.commit().unwrap();
    }
    let period = store.period_data(START, START + 3_600, |_| true).unwrap();
    assert_eq!(period.jobs.iter().map(|(j, _)| j.id).collect::<Vec<_>>(), [JobId(70)]);
}

#[test]
fn a_step_reported_from_a_node_its_job_never_ran_on_is_refused() {
    let store = temp_store("job-nodes");
    let on_n1 = JobRecord { node_list: "n[1,3]".into(), ..running_job(21, "alice") };
    let pending = JobRecord { start_at: None, node_list: "None assigned".into(), ..job(22, "alice", START, None) };
    store.upsert_jobs(&[on_n1, pending], &[], None).unwrap();
    let limits = Limits::default();
    let checks = Checks { limits: &limits, from_service: true, plausibility: true };
    let now = START + 3_700;
    let out = store.store_checked_batch("n2/0", 1, now, "n2", &content(samples(21, [60, 120])), &checks).unwrap();
    assert_eq!((out.samples, out.refused.get(Reason::NotJobNode)), (0, 2));
    let out = store.store_checked_batch("n3/0", 2, now, "n3", &content(samples(21, [60, 120])), &checks).unwrap();
    assert_eq!((out.samples, out.refused.total()), (2, 0));
    // A job whose record names no nodes yet cannot be checked this way; its other checks apply.
    let out = store.store_checked_batch("n2/0", 3, now, "n2", &content(samples(22, [60])), &checks).unwrap();
    assert_eq!(out.refused.get(Reason::NotJobNode), 0);
    assert_eq!(count(&store.samples_of_job(JobId(21)).unwrap()), 2);
}

#[test]
fn a_sample_sent_late_must_fit_the_ones_after_it() {
    let store = temp_store("late-sample");
    store.upsert_jobs(&[running_job(23, "alice")], &[], None).unwrap();
    let limits = Limits::default();
    let checks = Checks { limits: &limits, from_service: true, plausibility: true };
    let now = START + 3_700;
    let at =
        |t: u64, cpu: u64| (JobId(23), StepId(0), StepSample { at: START + t, cpu_user_cs: cpu, ..Default::default() });
    let first = content(vec![at(100, 1_000), at(200, 2_000)]);
    assert_eq!(store.store_checked_batch("n1/0", 1, now, "n1", &first, &checks).unwrap().samples, 2);
    // Before the first stored sample with more CPU than it: the series would go back. Between
    // two: fine if it fits both; replacing one with a leap the next could not follow: refused.
    let late = content(vec![at(50, 5_000), at(150, 1_500), at(150, 1_000_000)]);
    let out = store.store_checked_batch("n1/0", 2, now, "n1", &late, &checks).unwrap();
    assert_eq!(out.samples, 1, "{:?}", out.refused);
    assert_eq!((out.refused.get(Reason::CounterDecreased), out.refused.get(Reason::CpuLeap)), (1, 1));
    let series: Vec<(u64, u64)> =
        store.samples_of_job(JobId(23)).unwrap().values().flatten().map(|s| (s.at - START, s.cpu_user_cs)).collect();
    assert_eq!(series, [(100, 1_000), (150, 1_500), (200, 2_000)]);
}
