//! Store behaviour: round trips, the watermark rule, range scans, dedup, migrations, size.

use super::*;
use crate::job::{JobRecord, MemRequest, StepRecord, Tres, Usage};
use crate::sample::{GpuReading, StepSample};
use crate::store::records::encode_record;

pub(crate) fn job(id: u64, user: &str, start: u64, end: Option<u64>) -> JobRecord {
    JobRecord {
        name: "burn".into(),
        uid: Some(1000),
        account: "dev".into(),
        partition: "debug".into(),
        qos: "normal".into(),
        state: if end.is_some() { "COMPLETED".into() } else { "RUNNING".into() },
        state_detail: String::new(),
        end_at: end,
        time_limit_secs: Some(3_600),
        node_list: "n1".into(),
        alloc_cpus: 4,
        req_mem: Some(MemRequest::PerNode(4 << 30)),
        req_mem_bytes: Some(4 << 30),
        alloc_tres: Tres(vec![("cpu".into(), 4), ("mem".into(), 4 << 30), ("node".into(), 1)]),
        usage: Usage {
            total_cpu_ms: 1_000,
            user_cpu_ms: 900,
            system_cpu_ms: 100,
            max_rss_bytes: Some(1 << 30),
            max_rss_node: "n1".into(),
            max_rss_task: Some(0),
            ..Usage::default()
        },
        submit_line: "sbatch burn.sh".into(),
        work_dir: "/home/alice".into(),
        imported_at: start,
        ..JobRecord::finished(id, user, start, end.map(|e| e - start).unwrap_or(0))
    }
}

fn sample(at: u64, i: u64) -> StepSample {
    StepSample {
        at,
        cpu_user_cs: 2_000 * i,
        cpu_sys_cs: 5 * i,
        rss_kib: 1_000_000 + (i * 131) % 8_192,
        minor_faults: 10 * i,
        threads: 8,
        processes: 1,
        cpus: 4,
        ..StepSample::default()
    }
}

/// A fresh database path of its own for test `name` (shared with other store modules' tests
/// through `tests_support`).
pub(crate) fn temp_db(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tw-store-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("test.redb")
}

/// A read-only open creates nothing, migrates nothing, and reads what a writer stored.
#[test]
fn open_existing_never_creates_nor_migrates() {
    let path = temp_db("existing");
    assert!(matches!(Store::open_existing(&path), Err(StoreError::Missing(_))));
    assert!(!path.exists(), "a read-only open created {}", path.display());
    {
        let store = Store::open(&path).unwrap();
        store.upsert_jobs(&[job(7, "alice", 100, None)], &[], Some(150)).unwrap();
    }
    let store = Store::open_existing(&path).unwrap();
    assert_eq!(store.job(JobId(7)).unwrap().unwrap().user, "alice");
    drop(store);
    // A file of an older schema is refused, not migrated.
    let old = temp_db("existing-old");
    {
        let db = Database::create(&old).unwrap();
        let txn = db.begin_write().unwrap();
        create_v1(&txn).unwrap();
        txn.commit().unwrap();
    }
    assert!(matches!(Store::open_existing(&old), Err(StoreError::NotCurrent { found: 1, .. })));
    let db = Database::open(&old).unwrap();
    let txn = db.begin_read().unwrap();
    let version = txn.open_table(META).unwrap().get(SCHEMA_VERSION_KEY).unwrap().map(|v| v.value());
    assert_eq!(version, Some(1));
}

#[test]
fn jobs_round_trip_and_upsert_replaces() {
    let store = Store::open(&temp_db("upsert")).unwrap();
    store.upsert_jobs(&[job(7, "alice", 100, None)], &[], Some(150)).unwrap();
    store.upsert_jobs(&[job(7, "alice", 100, Some(200))], &[], Some(250)).unwrap();
    assert_eq!(store.job_count().unwrap(), 1);
    assert_eq!(store.job(JobId(7)).unwrap().unwrap().end_at, Some(200));
    assert_eq!(store.meta(IMPORT_WATERMARK_KEY).unwrap(), Some(250));
    // The running-job index entry was replaced, not duplicated.
    assert_eq!(store.jobs_in_window(150, 160).unwrap().len(), 1);
    assert_eq!(store.jobs_in_window(201, 300).unwrap().len(), 0);
}

#[test]
fn window_query_finds_running_and_overlapping_jobs_only() {
    let store = Store::open(&temp_db("window")).unwrap();
    store
        .upsert_jobs(
            &[job(1, "a", 0, Some(50)), job(2, "a", 40, Some(120)), job(3, "b", 90, None), job(4, "b", 300, Some(400))],
            &[],
            None,
        )
        .unwrap();
    let mut ids: Vec<u64> = store.jobs_in_window(100, 200).unwrap().iter().map(|j| j.id.0).collect();
    ids.sort();
    assert_eq!(ids, [2, 3]);
    assert_eq!(store.job_ids_of_user("b").unwrap(), [JobId(3), JobId(4)]);
}

#[test]
fn samples_scan_by_job() {
    let store = Store::open(&temp_db("samples")).unwrap();
    let mut batch = Vec::new();
    for i in 0..400 {
        batch.push((JobId(5), StepId::BATCH, sample(7_000 + 20 * i, i)));
        batch.push((JobId(6), StepId(0), sample(7_000 + 20 * i, i)));
    }
    store.append_samples("n1", &batch).unwrap();
    let of_job = store.samples_of_job(JobId(5)).unwrap();
    assert_eq!(of_job.len(), 1);
    let series = of_job.values().next().unwrap();
    assert_eq!(series.len(), 400);
    assert!(series.windows(2).all(|w| w[0].at < w[1].at));
    assert_eq!(store.samples_of_job(JobId(6)).unwrap().keys().next().unwrap().step, StepId(0));
}

#[test]
fn resent_samples_are_stored_once() {
    let store = Store::open(&temp_db("dedup")).unwrap();
    let batch: Vec<_> = (0..10).map(|i| (JobId(1), StepId(0), sample(100 + i * 20, i))).collect();
    store.append_samples("n2", &batch).unwrap();
    store.append_samples("n2", &batch).unwrap();
    let series = store.samples_of_job(JobId(1)).unwrap();
    assert_eq!(series.values().next().unwrap().len(), 10);
    assert_eq!(series.keys().next().unwrap().node, "n2");
}

#[test]
fn apps_are_a_set() {
    let store = Store::open(&temp_db("apps")).unwrap();
    let apps = vec![(JobId(1), StepId(0), "python3".to_string()), (JobId(1), StepId(0), "python3".to_string())];
    store.add_apps(&apps).unwrap();
    assert_eq!(store.apps_of_job(JobId(1)).unwrap(), [(StepId(0), "python3".to_string())]);
}

#[test]
fn schema_1_file_is_migrated_forward_with_its_data() {
    let path = temp_db("migrate");
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        create_v1(&txn).unwrap();
        {
            let mut jobs = txn.open_table(JOBS).unwrap();
            for id in [11, 12] {
                jobs.insert(id, encode_record(&job(id, "carol", 10, Some(20))).as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), CURRENT_SCHEMA);
    assert_eq!(store.job_ids_of_user("carol").unwrap(), [JobId(11), JobId(12)]);
    assert_eq!(store.job(JobId(12)).unwrap().unwrap().user, "carol");
}

/// A schema-2 file as the previous build wrote it: postcard (format 1) job and step values, an
/// index entry per job; schema 3 moves the steps into the job values and the index into buckets.
#[test]
fn schema_2_file_is_migrated_with_its_steps_and_indexes() {
    use crate::store::job_codec::JOB_FORMAT;
    let path = temp_db("migrate-v2");
    let running = job(22, "dave", 30, None);
    let jobs = [job(21, "dave", 10, Some(20)), running.clone(), job(23, "erin", 40, Some(50))];
    let step = |job: u64, step: StepId| StepRecord {
        job: JobId(job),
        step,
        name: format!("s{}", step.0),
        state: "COMPLETED".into(),
        exit_code: 0,
        exit_signal: 0,
        start_at: Some(10),
        end_at: Some(20),
        elapsed_secs: 10,
        node_list: "n1".into(),
        node_count: 1,
        task_count: 1,
        alloc_cpus: 1,
        usage: Usage {
            total_cpu_ms: 5,
            user_cpu_ms: 4,
            system_cpu_ms: 1,
            max_rss_bytes: Some(1 << 20),
            max_rss_node: "n1".into(),
            max_rss_task: Some(0),
            ave_rss_bytes: None,
            max_vmsize_bytes: None,
            max_disk_read_bytes: None,
            max_disk_write_bytes: None,
            ..Usage::default()
        },
        tres_usage_in_tot: Tres(vec![("cpu".into(), 5), ("gres/fpga".into(), 1)]),
        tres_usage_in_max: Tres::default(),
        submit_line: String::new(),
    };
    let steps = [step(21, StepId::BATCH), step(21, StepId(0)), step(22, StepId::EXTERN), step(99, StepId(0))];
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        create_v1(&txn).unwrap();
        {
            let mut table = txn.open_table(JOBS).unwrap();
            let mut by_end = txn.open_table(JOBS_BY_END).unwrap();
            let mut by_user = txn.open_table(JOBS_BY_USER).unwrap();
            for j in &jobs {
                table.insert(j.id.0, encode_record(j).as_slice()).unwrap();
                by_end.insert((j.end_at.unwrap_or(u64::MAX), j.id.0), ()).unwrap();
                by_user.insert((j.user.as_str(), j.id.0), ()).unwrap();
            }
            let mut table = txn.open_table(STEPS).unwrap();
            for s in &steps {
                table.insert((s.job.0, s.step.0), encode_record(s).as_slice()).unwrap();
            }
            txn.open_table(META).unwrap().insert(SCHEMA_VERSION_KEY, 2).unwrap();
        }
        txn.commit().unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), CURRENT_SCHEMA);
    for j in &jobs {
        assert_eq!(&store.job(j.id).unwrap().unwrap(), j);
    }
    let ids = |steps: Vec<StepRecord>| steps.iter().map(|s| s.step).collect::<Vec<_>>();
    // Steps read back with their derived memory figures (format 1 did not hold them).
    let derived = |s: &StepRecord| {
        let mut s = s.clone();
        s.derive_memory();
        s
    };
    assert_eq!(store.steps(JobId(21)).unwrap(), [derived(&steps[1]), derived(&steps[0])]);
    assert_eq!(ids(store.steps(JobId(22)).unwrap()), [StepId::EXTERN]);
    assert!(store.steps(JobId(23)).unwrap().is_empty());
    assert_eq!(store.job_ids_of_user("dave").unwrap(), [JobId(21), JobId(22)]);
    let window: Vec<u64> = store.jobs_in_window(15, 45).unwrap().iter().map(|j| j.id.0).collect();
    assert_eq!(window, [21, 23, 22]);
    // Jobs with steps were rewritten in format 2, one without kept its format-1 value.
    let txn = store.test_db().begin_read().unwrap();
    let blocks = txn.open_table(JOB_BLOCKS).unwrap();
    let block = blocks.get(1).unwrap().unwrap();
    let formats: Vec<(u64, u8)> =
        job_blocks::entries(1, block.value()).unwrap().iter().map(|(id, value)| (*id, value[0])).collect();
    assert_eq!(formats, [(21, JOB_FORMAT), (22, JOB_FORMAT), (23, 1)]);
    let names: Vec<String> = txn.list_tables().unwrap().map(|t| redb::TableHandle::name(&t).to_string()).collect();
    assert!(!names.iter().any(|n| ["jobs", "steps", "jobs_by_end", "jobs_by_user"].contains(&n.as_str())), "{names:?}");
    assert_eq!(store.job_count().unwrap(), 3);
    drop((block, blocks, txn));
    // A format-1 job seen again (now finished, with a step) moves in the end-time index.
    let done = Some(60);
    store.upsert_jobs(&[JobRecord { end_at: done, ..running }], &[step(22, StepId(0))], None).unwrap();
    assert_eq!(ids(store.steps(JobId(22)).unwrap()), [StepId(0), StepId::EXTERN]);
    let window: Vec<u64> = store.jobs_in_window(55, 100).unwrap().iter().map(|j| j.id.0).collect();
    assert_eq!(window, [22]);
    assert_eq!(store.jobs_in_window(61, 100).unwrap().len(), 0);
}

#[test]
fn upserts_keep_steps_and_index_entries_exact() {
    let store = Store::open(&temp_db("upsert-steps")).unwrap();
    let mut steps = crate::slurm::sacct_parse::parse_sacct(
        include_str!("../../../tests/fixtures/sacct/window.txt"),
        &jiff::tz::TimeZone::UTC,
        1,
    )
    .jobs
    .swap_remove(0)
    .1;
    for s in &mut steps {
        s.job = JobId(5);
    }
    let first = job(5, "alice", 100, None);
    store.upsert_jobs(std::slice::from_ref(&first), &steps[..2], None).unwrap();
    // The same job twice in one write (running, then ended): the later wins, indexed once.
    let ended = JobRecord { end_at: Some(300), ..first.clone() };
    store.upsert_jobs(&[first.clone(), ended.clone()], &steps[2..], None).unwrap();
    assert_eq!(store.job(JobId(5)).unwrap().unwrap(), ended);
    assert_eq!(store.steps(JobId(5)).unwrap().len(), steps.len());
    assert_eq!(store.jobs_in_window(0, 1_000).unwrap().len(), 1);
    assert_eq!(store.jobs_in_window(301, 1_000).unwrap().len(), 0);
    // Without steps the job keeps its steps; steps of an unknown job are dropped.
    store.upsert_jobs(std::slice::from_ref(&ended), &[], None).unwrap();
    assert_eq!(store.steps(JobId(5)).unwrap().len(), steps.len());
    let mut stray = steps[0].clone();
    stray.job = JobId(77);
    store.upsert_jobs(&[], &[stray], None).unwrap();
    assert!(store.job(JobId(77)).unwrap().is_none() && store.steps(JobId(77)).unwrap().is_empty());
    assert_eq!(store.job_ids_of_user("alice").unwrap(), [JobId(5)]);
}

#[test]
fn newer_schema_is_refused() {
    let path = temp_db("newer");
    Store::open(&path).unwrap().set_meta(SCHEMA_VERSION_KEY, CURRENT_SCHEMA + 1).unwrap();
    match Store::open(&path) {
        Err(StoreError::NewerSchema { found, .. }) => assert_eq!(found, CURRENT_SCHEMA + 1),
        other => panic!("expected NewerSchema, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn corrupt_job_value_is_an_error_naming_the_key() {
    let path = temp_db("corrupt");
    let store = Store::open(&path).unwrap();
    let txn = store.test_db().begin_write().unwrap();
    let mut block = Vec::new();
    job_blocks::BlockBuilder::new(&mut block).push(99, |out| out.extend_from_slice(&[1u8, 0xff, 0xff]));
    txn.open_table(JOB_BLOCKS).unwrap().insert(99 / 16, block.as_slice()).unwrap();
    txn.commit().unwrap();
    let err = store.job(JobId(99)).unwrap_err().to_string();
    assert!(err.contains("jobs") && err.contains("99"), "{err}");
}

/// A schema-3 file: it differs from schema 4 only by the two tables nothing read, which the
/// previous build wrote (`sample_blocks_by_time`) or created (`step_cpus`); schema 4 drops them
/// and keeps everything else.
#[test]
fn schema_3_file_loses_its_unread_tables_and_keeps_its_data() {
    let path = temp_db("migrate-v3");
    {
        let store = Store::open(&path).unwrap();
        store.upsert_jobs(&[job(31, "frank", 7_000, Some(8_000))], &[], Some(9_000)).unwrap();
        store.append_samples("n1", &[(JobId(31), StepId(0), sample(7_200, 1))]).unwrap();
        let txn = store.test_db().begin_write().unwrap();
        txn.open_table(SAMPLE_HOURS).unwrap().insert((7_200, 31, 0, 0), ()).unwrap();
        txn.open_table(STEP_CPUS).unwrap().insert((31, 0, 0), 4).unwrap();
        txn.open_table(META).unwrap().insert(SCHEMA_VERSION_KEY, 3).unwrap();
        txn.commit().unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), CURRENT_SCHEMA);
    let txn = store.test_db().begin_read().unwrap();
    let names: Vec<String> = txn.list_tables().unwrap().map(|t| redb::TableHandle::name(&t).to_string()).collect();
    assert!(!names.iter().any(|n| ["sample_blocks_by_time", "step_cpus"].contains(&n.as_str())), "{names:?}");
    drop(txn);
    assert_eq!(store.job(JobId(31)).unwrap().unwrap().user, "frank");
    assert_eq!(store.samples_of_job(JobId(31)).unwrap().values().map(Vec::len).sum::<usize>(), 1);
    assert_eq!(store.meta(IMPORT_WATERMARK_KEY).unwrap(), Some(9_000));
    // New files are created without them too.
    let fresh = Store::open(&temp_db("fresh-v4")).unwrap();
    let txn = fresh.test_db().begin_read().unwrap();
    assert!(!txn
        .list_tables()
        .unwrap()
        .any(|t| ["sample_blocks_by_time", "step_cpus"].contains(&redb::TableHandle::name(&t))));
}

/// The one-transaction reads give what the one-call-each reads give.
#[test]
fn period_and_job_data_read_what_the_single_reads_read() {
    let store = Store::open(&temp_db("period-data")).unwrap();
    let jobs =
        [job(1, "a", 0, Some(50)), job(2, "a", 40, Some(120)), job(3, "b", 90, None), job(40, "a", 300, Some(400))];
    store.upsert_jobs(&jobs, &[], None).unwrap();
    let samples: Vec<_> = (0..5).map(|i| (JobId(2), StepId(0), sample(3_500 + 20 * i, i))).collect();
    store
        .store_batch_once(
            "n1",
            1,
            5,
            "n1",
            &BatchContent {
                samples,
                gpus: vec![(JobId(2), StepId(0), GpuReading { at: 3_600, index: 1, ..Default::default() })],
                apps: vec![(JobId(2), StepId(0), "python3".into())],
            },
        )
        .unwrap();
    let data = store.period_data(100, 200, |j| j.user == "a").unwrap();
    assert_eq!(data.jobs.iter().map(|(j, _)| j.id.0).collect::<Vec<_>>(), [2]);
    let (job2, data2) = &data.jobs[0];
    assert_eq!(Some(job2), store.job(JobId(2)).unwrap().as_ref());
    assert_eq!(data2.steps, store.steps(JobId(2)).unwrap());
    assert_eq!(data2.samples, store.samples_of_job(JobId(2)).unwrap());
    assert_eq!(data2.gpu, store.gpu_readings_of_job(JobId(2)).unwrap());
    assert_eq!(data2.apps, store.apps_of_job(JobId(2)).unwrap());
    assert_eq!(data2.samples.values().map(Vec::len).sum::<usize>(), 5);
    let history: Vec<u64> = data.history["a"].iter().map(|j| j.id.0).collect();
    assert_eq!(history, [1, 2, 40]);
    assert!(!data.history.contains_key("b"), "b has no kept job");
    let one = store.job_data(JobId(2)).unwrap();
    assert_eq!((one.samples, one.gpu, one.apps), (data2.samples.clone(), data2.gpu.clone(), data2.apps.clone()));
}

/// A period read a user at a time gives each user once, in name order, with only that user's
/// kept jobs (in end order) and that user's whole history.
#[test]
fn a_period_is_read_one_user_at_a_time_with_only_that_users_jobs() {
    let store = Store::open(&temp_db("each-user")).unwrap();
    let jobs = [
        job(1, "b", 100, Some(180)),
        job(2, "a", 110, Some(150)),
        job(3, "b", 120, None),
        job(4, "a", 10, Some(20)),
        job(5, "c", 130, Some(140)),
        job(6, "a", 105, Some(120)),
    ];
    store.upsert_jobs(&jobs, &[], None).unwrap();
    let mut seen = Vec::new();
    store
        .each_user_of_period(
            100,
            200,
            |j| j.user != "c",
            |part| {
                let ids: Vec<u64> = part.jobs.iter().map(|(j, _)| j.id.0).collect();
                let history: Vec<u64> = part.history.iter().map(|j| j.id.0).collect();
                seen.push((part.user, ids, history));
            },
        )
        .unwrap();
    assert_eq!(
        seen,
        [("a".to_string(), vec![6, 2], vec![2, 4, 6]), ("b".to_string(), vec![1, 3], vec![1, 3])],
        "job 4 ended before the window; c's jobs are not kept"
    );
}

#[test]
fn a_database_is_created_whole_and_a_crash_mid_creation_leaves_nothing_to_trip_on() {
    let dir = std::env::temp_dir().join(format!("tw-create-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("db.redb");
    // What a process killed while creating leaves: a half-written file under the temporary name.
    std::fs::write(dir.join(".db.redb.creating"), b"redb\x1a\x0a\xa9 half a header").unwrap();
    let store = Store::open(&db).unwrap();
    drop(store);
    assert!(!dir.join(".db.redb.creating").exists());
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["db.redb"]);
    // And it is a complete database: it opens again, as an existing one too.
    drop(Store::open(&db).unwrap());
    drop(Store::open_existing(&db).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}
